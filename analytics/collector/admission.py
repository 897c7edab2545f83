"""Admission: the day's salts, the sites an event names (``analytics.collector.sitecache``), their
allowed origins, state and quota, and the per-IP and per-site rate limits."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from django.conf import settings
from django.db import InterfaceError, OperationalError

from analytics.collector import visitors
from analytics.collector.http import Reject, rate_limited, unavailable
from analytics.collector.ratelimit import TokenBuckets
from analytics.collector.sitecache import CACHE, SiteInfo
from analytics.payloads import (
    IncomingEvent,
)

logger = logging.getLogger(__name__)

IP_BUCKETS = TokenBuckets(settings.COLLECTOR_RATE_PER_IP, settings.COLLECTOR_BURST_PER_IP)
SITE_BUCKETS = TokenBuckets(1.0, 1.0, max_keys=100_000)  # rates come from each site's plan
BOT_DROPS: Counter[int] = Counter()


# Salts ------------------------------------------------------------------------


async def ensure_salts(now: float) -> None:
    today = visitors.utc_day(now)
    if visitors.SALTS.fresh(today):
        return
    try:
        await asyncio.get_running_loop().run_in_executor(None, visitors.SALTS.load, today)
    except Exception:
        logger.warning("collector.salts_unavailable", exc_info=True)
        raise unavailable() from None


def cached_sites(event: IncomingEvent) -> list[SiteInfo] | None:
    """The event's site when the cache knows it without waiting, else None (``find_sites`` decides)."""
    if event.key:
        site = CACHE.peek("site_key", event.key)
    elif len(event.domains) == 1:
        site = CACHE.peek("domain", event.domains[0])
    else:
        return None
    return [site] if isinstance(site, SiteInfo) else None


async def lookup_site(field: str, value: str) -> SiteInfo | None:
    """The cache's answer; 503 while the database it asks on a miss is unreachable."""
    try:
        return await CACHE.get(field, value)
    except (OperationalError, InterfaceError):
        logger.warning("collector.sites_unavailable", extra={"field": field}, exc_info=True)
        raise unavailable() from None


async def find_sites(event: IncomingEvent) -> list[SiteInfo]:
    if event.key:
        site = await lookup_site("site_key", event.key)
        if site is None:
            raise Reject(404, "unknown site key")
        return [site]
    sites = []
    for domain in event.domains:
        site = await lookup_site("domain", domain)
        if site is not None and site not in sites:
            sites.append(site)
    if not sites:
        raise Reject(404, f"unknown domain: {event.domains[0]}" if len(event.domains) == 1 else "unknown domains")
    return sites


def admit(site: SiteInfo, origin: str | None, count: int, now: float) -> None:
    """Refuse an event the site may not take now (origin, suspension, quota, rate)."""
    if not site.origin_allowed(origin):
        raise Reject(403, f"origin not allowed for {site.domain}", reason="origin")
    if site.suspended:
        raise Reject(403, "account suspended", reason="suspended")
    if CACHE.is_over_quota(site.account_id):
        raise Reject(403, "monthly event quota exceeded", reason="quota")
    rate, burst = site.rate
    wait = SITE_BUCKETS.take(site.site_id, count, rate=rate, burst=burst, now=now)
    if wait:
        raise rate_limited(f"rate limit exceeded for {site.domain}", wait)
