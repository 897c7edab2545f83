"""Live dashboards over WebSocket: the worker's per-batch deltas, forwarded to the browser.

- ``ws/sites/<domain>/``: one site's dashboard. The viewer is authorised by the
  session (``scope["user"]`` and ``scope["session"]``) through
  ``accounts.access.dashboard_access``: members, and read-only public sites
  and unlocked shared links. Anyone else is refused
  with close code 4404 before the handshake completes (the HTTP upgrade fails).
- ``ws/sites/``: the sites overview, one socket for every site of the user's
  current account (as the page shows).
- ``ws/feed/<domain>/``: the live feed for customers' own code, authenticated by
  an API key with the ``feed:read`` scope in ``Authorization: Bearer <key>``,
  decided by ``accounts.access.feed_site`` (close 4401 without a valid key, 4403 without the scope, 4404 for a site
  outside the key's account). It carries the same deltas; a delta lists at
  most the batch's 50 newest events (docs/interfaces.md), so the feed is a live view,
  not an export.

The worker sends one ``live.delta`` per site per batch to the channel-layer
group ``site.<id>`` (docs/interfaces.md, ``analytics.live.push``, after the batch is
committed). Each web process subscribes once per site it has viewers for (the
``Hub``): one channel in the group, whatever the number of open dashboards,
and each delta is encoded to JSON once and written to every socket of that
site: a socket of its own in the group would make Redis carry, and the process
decode, one copy per socket (bench/README.md, bench/live). Access is checked again
at most once a minute while deltas flow, so a revoked member or a deleted
shared link stops receiving within a minute. The socket never polls anything.

Every open socket of each kind is counted in ``spinnakr_live_consumers`` (``spinnakr.metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.http import Http404

from accounts import access
from accounts.access import DashboardAccess, dashboard_access, overview_sites
from accounts.models import APIKey, Site
from spinnakr.metrics import LIVE_CONSUMERS

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_FORBIDDEN = 4403
RECHECK_SECONDS = 60.0
# Group memberships expire in channels_redis (a day by default): re-join well before.
GROUP_REFRESH_SECONDS = 3600.0
DISCARD_TIMEOUT_SECONDS = 2.0
DELTA_FIELDS = ("site_id", "batch_id", "batch_ids", "newest_ts", "counts", "visitors_now", "events")


class CountedConsumer(AsyncJsonWebsocketConsumer):
    """A consumer counted in ``spinnakr_live_consumers{kind}`` from its handshake to its close."""

    kind = "site"
    _counted = False

    async def accept(self, subprotocol: str | None = None, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        await super().accept(subprotocol, headers)
        LIVE_CONSUMERS.labels(self.kind).inc()
        self._counted = True

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self._counted:
            self._counted = False
            LIVE_CONSUMERS.labels(self.kind).dec()
        await super().websocket_disconnect(message)


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


class Subscriber(Protocol):
    async def deliver(self, text: str) -> None: ...


class Hub:
    """One event loop's subscriptions: one channel in ``site.<id>`` per site with viewers here."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.subscribers: dict[int, set[Subscriber]] = {}
        self.domains: dict[int, str] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.ready: dict[int, asyncio.Event] = {}
        self.pending: set[asyncio.Task[None]] = set()

    async def subscribe(self, site_id: int, domain: str, subscriber: Subscriber) -> None:
        self.subscribers.setdefault(site_id, set()).add(subscriber)
        self.domains[site_id] = domain
        if site_id not in self.tasks:
            ready = self.ready[site_id] = asyncio.Event()
            self.tasks[site_id] = asyncio.create_task(self._pump(site_id, ready))
        task = self.tasks[site_id]
        await self.ready[site_id].wait()
        if task.done() and not task.cancelled() and task.exception() is not None:
            # Joining the group failed (the channel layer is down): let the next viewer retry.
            self.tasks.pop(site_id, None)
            self.ready.pop(site_id, None)
            self.subscribers.get(site_id, set()).discard(subscriber)
            raise task.exception()  # type: ignore[misc]

    def unsubscribe_soon(self, site_id: int, subscriber: Subscriber) -> None:
        """``unsubscribe`` from inside a delivery (the pump must not wait for itself)."""
        task = asyncio.create_task(self.unsubscribe(site_id, subscriber))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def unsubscribe(self, site_id: int, subscriber: Subscriber) -> None:
        subscribers = self.subscribers.get(site_id)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self.subscribers[site_id]
            self.ready.pop(site_id, None)
            task = self.tasks.pop(site_id, None)
            if task is not None:
                task.cancel()
                # Wait for it, so the channel layer's receive lock is released in this loop.
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _pump(self, site_id: int, ready: asyncio.Event) -> None:
        group = group_name(site_id)
        channel = await self.layer.new_channel()
        try:
            await self.layer.group_add(group, channel)
        finally:
            ready.set()
        joined = time.monotonic()
        try:
            while True:
                try:
                    message = await asyncio.wait_for(self.layer.receive(channel), GROUP_REFRESH_SECONDS)
                except TimeoutError:
                    message = None
                if time.monotonic() - joined > GROUP_REFRESH_SECONDS / 2:
                    await self.layer.group_add(group, channel)
                    joined = time.monotonic()
                if message is not None and message.get("type") == "live.delta":
                    await self._fan_out(site_id, message)
        finally:
            # Best effort, bounded: the membership expires anyway, and a pump being torn down
            # with its event loop must not hang waiting for Redis.
            discard = asyncio.ensure_future(self.layer.group_discard(group, channel))
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(discard), DISCARD_TIMEOUT_SECONDS)

    async def close(self) -> None:
        """Stop every pump of this loop (tests, and a server shutting down)."""
        tasks = [*self.tasks.values(), *self.pending]
        self.tasks.clear()
        self.ready.clear()
        self.subscribers.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=DISCARD_TIMEOUT_SECONDS + 1)

    async def _fan_out(self, site_id: int, event: dict[str, Any]) -> None:
        text = json.dumps(_delta_message(event, self.domains.get(site_id, "")))
        subscribers = list(self.subscribers.get(site_id, ()))
        results = await asyncio.gather(*(s.deliver(text) for s in subscribers), return_exceptions=True)
        failures = [r for r in results if isinstance(r, Exception)]
        if failures:
            logger.warning("live.deliver_failed", extra={"site_id": site_id, "sockets": len(failures)})


async def close_hub() -> None:
    """Stop the running loop's hub, if it has one."""
    found = _hubs.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub()
    return found


class SiteLiveConsumer(CountedConsumer):
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
        await hub().subscribe(self.access.site.pk, self.access.site.domain, self)
        await self.accept()
        await self.send_json(_hello([self.access.site.domain], self.access.read_only))

    async def _resolve(self, domain: str) -> DashboardAccess:
        return await database_sync_to_async(dashboard_access)(self.scope.get("user"), self.scope.get("session"), domain)

    async def disconnect(self, code: int) -> None:
        if self.access is not None:
            await hub().unsubscribe(self.access.site.pk, self)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # Read-only: the only message a browser sends is a ping to measure the round trip.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong", "server_time": int(time.time() * 1000)})

    async def deliver(self, text: str) -> None:
        """A delta from the hub, already encoded; access is checked again once a minute."""
        access = self.access
        if access is None:
            return
        if time.monotonic() - self.checked_at > RECHECK_SECONDS:
            self.checked_at = time.monotonic()
            try:
                self.access = await self._resolve(access.site.domain)
            except Http404:
                logger.info("live.revoked", extra={"site_id": access.site.pk})
                hub().unsubscribe_soon(access.site.pk, self)
                self.access = None
                await self.close(code=CLOSE_FORBIDDEN)
                return
        await self.send(text_data=text)

    async def live_delta(self, event: dict[str, Any]) -> None:
        """Contract 2's handler, for a delta sent to this socket's own channel."""
        if self.access is not None:
            await self.deliver(json.dumps(_delta_message(event, self.access.site.domain)))


class OverviewLiveConsumer(CountedConsumer):
    """Every site of the user's current account on one socket (the sites overview)."""

    kind = "overview"

    domains: dict[int, str]

    async def connect(self) -> None:
        self.domains = {}
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.domains = await database_sync_to_async(overview_sites)(user, self.scope.get("session"))
        for site_id, domain in self.domains.items():
            await hub().subscribe(site_id, domain, self)
        await self.accept()
        await self.send_json(_hello(sorted(self.domains.values()), False))

    async def disconnect(self, code: int) -> None:
        for site_id in self.domains:
            await hub().unsubscribe(site_id, self)

    async def deliver(self, text: str) -> None:
        await self.send(text_data=text)


class FeedError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _bearer(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if kind.lower() == "bearer" else ""
    return ""


def feed_site(raw_key: str, domain: str) -> tuple[APIKey, Site]:
    """The key and the site a feed socket may follow, or ``FeedError`` with its close code."""
    try:
        return access.feed_site(raw_key, domain)
    except (access.BadKey, access.AccountSuspended):
        raise FeedError(CLOSE_UNAUTHORIZED, "a valid API key is required") from None
    except access.ScopeMissing:
        raise FeedError(CLOSE_FORBIDDEN, "the key lacks the feed:read scope") from None
    except Http404:
        raise FeedError(CLOSE_NOT_FOUND, "not found") from None


class FeedConsumer(CountedConsumer):
    """A customer's own code following one site's live events, with an API key."""

    kind = "feed"

    site: Site | None = None
    checked_at = 0.0

    async def connect(self) -> None:
        domain = str(self.scope["url_route"]["kwargs"]["domain"])
        self.raw_key = _bearer(self.scope)
        try:
            _, self.site = await database_sync_to_async(feed_site)(self.raw_key, domain)
        except FeedError as exc:
            logger.info("live.feed_refused", extra={"domain": domain[:255], "code": exc.code})
            await self.close(code=exc.code)
            return
        self.checked_at = time.monotonic()
        await hub().subscribe(self.site.pk, self.site.domain, self)
        await self.accept()
        await self.send_json(_hello([self.site.domain], True))

    async def disconnect(self, code: int) -> None:
        if self.site is not None:
            await hub().unsubscribe(self.site.pk, self)

    async def deliver(self, text: str) -> None:
        site = self.site
        if site is None:
            return
        if time.monotonic() - self.checked_at > RECHECK_SECONDS:
            self.checked_at = time.monotonic()
            try:
                await database_sync_to_async(feed_site)(self.raw_key, site.domain)
            except FeedError as exc:
                logger.info("live.feed_revoked", extra={"site_id": site.pk, "code": exc.code})
                hub().unsubscribe_soon(site.pk, self)
                self.site = None
                await self.close(code=exc.code)
                return
        await self.send(text_data=text)
