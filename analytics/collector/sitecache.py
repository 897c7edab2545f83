"""Per-process cache of what the collector needs to know about sites.

Sites are found by domain or by public site key. A miss runs one database
lookup in a small thread pool (never on the event loop); concurrent misses of
the same name share that lookup, and unknown names are remembered for
``NEGATIVE_TTL`` seconds so a flood of them cannot hammer the database. A lookup
that fails (the database unreachable) raises to every waiter and is not remembered:
the collector answers 503, and the next request asks again.

Changes reach every process through Redis pub/sub: saving or deleting a Site
or an Account publishes, on transaction commit, a message on
``invalidation_channel()``; each web process runs a subscriber (started from
``analytics.routes.STARTUP``) that drops the affected entries. Since the
message is published before the saving call returns, a process learns of a
changed site within a round trip of that call. Losing the subscription clears
the whole cache, so a missed message cannot leave a stale entry behind.

Quotas: a background loop reads, every ``QUOTA_REFRESH_SECONDS``, the Redis set
``analytics.ingest.quota.OVER_SET`` (account ids past their monthly quota, kept by
the worker's quota accounting) into memory; requests only read memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save

from accounts.domains import lookup_name
from accounts.models import Account, Site
from analytics.ingest.quota import OVER_SET
from spinnakr import redis_clients
from spinnakr.aio import cancel_all

logger = logging.getLogger(__name__)

POSITIVE_TTL = 300.0
NEGATIVE_TTL = 10.0
MAX_NEGATIVE = 100_000
QUOTA_REFRESH_SECONDS = 5.0

# Events per second per site (per web process), with the burst allowed above it.
PLAN_RATES: dict[str, tuple[float, float]] = {
    "free": (200.0, 1_000.0),
    "growth": (1_000.0, 5_000.0),
    "business": (5_000.0, 25_000.0),
    "enterprise": (50_000.0, 250_000.0),
}


def invalidation_channel() -> str:
    # Pub/sub channels are not scoped by Redis database: tests get their own.
    return f"{settings.QUEUE_PREFIX}spinnakr:sitecache"


@dataclass(frozen=True)
class SiteInfo:
    site_id: int
    account_id: int
    domain: str
    site_key: str
    allowed_origins: frozenset[str]
    suspended: bool
    plan: str

    @property
    def rate(self) -> tuple[float, float]:
        return PLAN_RATES.get(self.plan, PLAN_RATES["free"])

    def origin_allowed(self, origin: str | None) -> bool:
        """An empty list accepts every origin; requests without Origin (servers) always pass."""
        if not self.allowed_origins or not origin:
            return True
        return origin.rstrip("/").lower() in self.allowed_origins


def _info(site: Any) -> SiteInfo:
    return SiteInfo(
        site_id=site.id,
        account_id=site.account_id,
        domain=site.domain,
        site_key=site.site_key,
        allowed_origins=frozenset(origin.rstrip("/").lower() for origin in site.allowed_origins),
        suspended=site.account.suspended,
        plan=site.account.plan,
    )


def _fetch(field: str, value: str) -> SiteInfo | None:
    try:
        site = Site.objects.select_related("account").filter(**{field: value}).first()
        return None if site is None else _info(site)
    finally:
        # Misses are rare (once per site per POSITIVE_TTL): no idle connection per pool thread.
        connection.close()


class SiteCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[SiteInfo, float]] = {}
        self._negative: dict[tuple[str, str], float] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[SiteInfo | None]] = {}
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sitecache")
        self.over_quota: frozenset[int] = frozenset()
        self.lookups = 0  # database lookups made, for tests and logs

    # Reads --------------------------------------------------------------------

    def peek(self, field: str, value: str) -> SiteInfo | bool | None:
        """The cached answer without waiting: SiteInfo, None (known unknown) or False (must look up)."""
        # Domains are stored in one form (accounts.domains): A-Site.test or a Unicode name finds it.
        key = (field, lookup_name(value) if field == "domain" else value)
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[1] > now:
            return entry[0]
        expires = self._negative.get(key)
        if expires is not None and expires > now:
            return None
        return False

    async def get(self, field: str, value: str) -> SiteInfo | None:
        """The site whose ``field`` ('domain' or 'site_key') is ``value``, or None."""
        if field == "domain":
            value = lookup_name(value)
        cached = self.peek(field, value)
        if cached is not False:
            return cached  # type: ignore[return-value]
        key = (field, value)
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SiteInfo | None] = loop.create_future()
        self._inflight[key] = future
        try:
            self.lookups += 1
            info = await loop.run_in_executor(self._pool, _fetch, field, value)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters re-raise it
            raise
        finally:
            self._inflight.pop(key, None)
        now = time.monotonic()
        if info is None:
            if len(self._negative) >= MAX_NEGATIVE:
                self._negative.clear()
            self._negative[key] = now + NEGATIVE_TTL
        else:
            self._store(info, now)
        future.set_result(info)
        return info

    def _store(self, info: SiteInfo, now: float) -> None:
        expires = now + POSITIVE_TTL
        self._entries[("domain", info.domain)] = (info, expires)
        self._entries[("site_key", info.site_key)] = (info, expires)

    def is_over_quota(self, account_id: int) -> bool:
        return account_id in self.over_quota

    # Invalidation -------------------------------------------------------------

    def invalidate(self, kind: str, ident: int, names: tuple[str, ...] = ()) -> None:
        """Drop a site's (or an account's sites') entries, and any entry under the given domain or key."""
        attribute = "site_id" if kind == "site" else "account_id"
        for key, (info, _) in list(self._entries.items()):
            if getattr(info, attribute) == ident or info.domain in names or info.site_key in names:
                self._entries.pop(key, None)
        # A new site or a renamed domain may sit in the negative cache.
        self._negative.clear()

    def clear(self) -> None:
        self._entries.clear()
        self._negative.clear()


CACHE = SiteCache()


# Publishing changes (Django signals, connected in AnalyticsConfig.ready) ------


def _publish(kind: str, ident: int, names: tuple[str, ...] = ()) -> None:
    CACHE.invalidate(kind, ident, names)
    try:
        message = json.dumps({"kind": kind, "id": ident, "names": list(names)})
        redis_clients.data().publish(invalidation_channel(), message)
    except Exception:
        logger.exception("sitecache.publish_failed", extra={"kind": kind, "id": ident})


def site_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    ident = int(instance.pk) if instance.pk is not None else int(getattr(instance, "id", 0) or 0)
    names = (str(instance.domain), str(instance.site_key))
    transaction.on_commit(lambda: _publish("site", ident, names))


def account_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    ident = int(instance.pk) if instance.pk is not None else int(getattr(instance, "id", 0) or 0)
    transaction.on_commit(lambda: _publish("account", ident))


def connect_signals() -> None:
    post_save.connect(site_changed, sender=Site, dispatch_uid="sitecache.site_saved")
    post_delete.connect(site_changed, sender=Site, dispatch_uid="sitecache.site_deleted")
    post_save.connect(account_changed, sender=Account, dispatch_uid="sitecache.account_saved")
    post_delete.connect(account_changed, sender=Account, dispatch_uid="sitecache.account_deleted")


# Background tasks of each web process -----------------------------------------

_tasks: list[asyncio.Task[None]] = []


async def _subscribe() -> None:
    while True:
        client = redis_clients.data_async()
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(invalidation_channel())
                CACHE.clear()  # anything published while unsubscribed is forgotten
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        body = json.loads(message["data"])
                        names = tuple(str(name) for name in body.get("names", []))
                        CACHE.invalidate(str(body["kind"]), int(body["id"]), names)
                    except (ValueError, KeyError, TypeError):
                        logger.warning("sitecache.bad_message", extra={"data": repr(message.get("data"))[:200]})
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("sitecache.subscription_lost", exc_info=True)
            CACHE.clear()
            await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()


async def refresh_quota(client: aioredis.Redis) -> None:
    members = await client.smembers(OVER_SET)
    CACHE.over_quota = frozenset(int(member) for member in members if member.isdigit())


async def _refresh_quota_loop() -> None:
    client = redis_clients.data_async()
    try:
        while True:
            try:
                await refresh_quota(client)
            except Exception:
                logger.warning("sitecache.quota_refresh_failed", exc_info=True)
            await asyncio.sleep(QUOTA_REFRESH_SECONDS)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


async def start() -> None:
    client = redis_clients.data_async()
    try:
        await refresh_quota(client)
    except Exception:
        logger.warning("sitecache.quota_refresh_failed", exc_info=True)
    finally:
        await client.aclose()
    _tasks.append(asyncio.create_task(_subscribe(), name="sitecache.subscribe"))
    _tasks.append(asyncio.create_task(_refresh_quota_loop(), name="sitecache.quota"))


async def stop() -> None:
    await cancel_all(_tasks)
