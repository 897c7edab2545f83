"""Live dashboards over WebSocket: the worker's per-batch deltas, forwarded to the browser.

- ``ws/sites/<domain>/``: one site's dashboard. The viewer is authorised by the
  session (``scope["user"]`` and ``scope["session"]``) through
  ``analytics.sharing.dashboard_access`` — members via ``accounts.access``,
  public sites and unlocked shared links read-only. Anyone else is refused
  with close code 4404 before the handshake completes (the HTTP upgrade fails).
- ``ws/sites/``: the sites overview, one socket for every site of the user.

Each socket joins the channel-layer group ``site.<id>`` and forwards
``live.delta`` messages (contract 2, sent by ``analytics.livepush`` after the
batch is committed) as ``{"type": "delta", ...}``. Access is checked again
at most once a minute while deltas flow, so a revoked member or a deleted
shared link stops receiving within a minute. The socket never polls anything.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from accounts.access import sites_for_user
from analytics.sharing import DashboardAccess, dashboard_access

logger = logging.getLogger(__name__)

CLOSE_NOT_FOUND = 4404
CLOSE_FORBIDDEN = 4403
RECHECK_SECONDS = 60.0
DELTA_FIELDS = ("site_id", "batch_id", "newest_ts", "counts", "visitors_now", "events")


def group_name(site_id: int) -> str:
    return f"site.{site_id}"


def _delta_message(event: dict[str, Any], domain: str) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "delta", "domain": domain}
    for field in DELTA_FIELDS:
        if field in event:
            message[field] = event[field]
    return message


def _hello(domains: list[str], read_only: bool) -> dict[str, Any]:
    return {"type": "hello", "server_time": int(time.time() * 1000), "domains": domains, "read_only": read_only}


class SiteLiveConsumer(AsyncJsonWebsocketConsumer):
    """One site's live dashboard."""

    access: DashboardAccess | None = None
    checked_at = 0.0

    async def connect(self) -> None:
        domain = str(self.scope["url_route"]["kwargs"]["domain"])
        try:
            self.access = await self._resolve(domain)
        except Http404:
            logger.info("live.refused", extra={"domain": domain[:255], "reason": "not_found"})
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.checked_at = time.monotonic()
        await self.channel_layer.group_add(group_name(self.access.site.pk), self.channel_name)
        await self.accept()
        await self.send_json(_hello([self.access.site.domain], self.access.read_only))

    async def _resolve(self, domain: str) -> DashboardAccess:
        return await database_sync_to_async(dashboard_access)(self.scope.get("user"), self.scope.get("session"), domain)

    async def disconnect(self, code: int) -> None:
        if self.access is not None:
            await self.channel_layer.group_discard(group_name(self.access.site.pk), self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # Read-only: the only message a browser sends is a ping to measure the round trip.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong", "server_time": int(time.time() * 1000)})

    async def live_delta(self, event: dict[str, Any]) -> None:
        if self.access is None:
            return
        if time.monotonic() - self.checked_at > RECHECK_SECONDS:
            try:
                self.access = await self._resolve(self.access.site.domain)
            except Http404:
                logger.info("live.revoked", extra={"site_id": self.access.site.pk})
                await self.close(code=CLOSE_FORBIDDEN)
                return
            self.checked_at = time.monotonic()
        await self.send_json(_delta_message(event, self.access.site.domain))


class OverviewLiveConsumer(AsyncJsonWebsocketConsumer):
    """Every site of the signed-in user on one socket (the sites overview)."""

    domains: dict[int, str]

    async def connect(self) -> None:
        self.domains = {}
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.domains = await database_sync_to_async(lambda: dict(sites_for_user(user).values_list("pk", "domain")))()
        for site_id in self.domains:
            await self.channel_layer.group_add(group_name(site_id), self.channel_name)
        await self.accept()
        await self.send_json(_hello(sorted(self.domains.values()), False))

    async def disconnect(self, code: int) -> None:
        for site_id in self.domains:
            await self.channel_layer.group_discard(group_name(site_id), self.channel_name)

    async def live_delta(self, event: dict[str, Any]) -> None:
        domain = self.domains.get(int(event.get("site_id", 0)))
        if domain is not None:
            await self.send_json(_delta_message(event, domain))
