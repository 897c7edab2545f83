"""What the worker needs to know about a site: its timezone, account, retention and quota.

Loaded for all sites of a batch with one query and kept per process for 60 seconds, so a
timezone change reaches every worker within a minute (the rebuild it triggers replays
everything again in the new timezone anyway).
"""

from __future__ import annotations

import time
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from accounts.models import Site

TTL_SECONDS = 60.0


@dataclass(frozen=True)
class SiteSettings:
    site_id: int
    domain: str
    tz: zoneinfo.ZoneInfo
    account_id: int
    retention_days: int
    monthly_event_quota: int
    created: datetime

    @property
    def created_day(self) -> date:
        return self.created.astimezone(self.tz).date()


_cache: dict[int, tuple[float, SiteSettings]] = {}


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def load_sites(site_ids: Iterable[int]) -> dict[int, SiteSettings]:
    """The sites among ``site_ids`` that exist (deleted ones are absent)."""
    now = time.monotonic()
    wanted = set(site_ids)
    found: dict[int, SiteSettings] = {}
    missing: list[int] = []
    for site_id in wanted:
        cached = _cache.get(site_id)
        if cached is not None and now - cached[0] < TTL_SECONDS:
            found[site_id] = cached[1]
        else:
            missing.append(site_id)
    if missing:
        rows = Site.objects.filter(id__in=missing).values_list(
            "id",
            "domain",
            "timezone",
            "account_id",
            "account__retention_days",
            "account__monthly_event_quota",
            "created",
        )
        for site_id, domain, tz, account_id, retention, quota, created in rows:
            info = SiteSettings(site_id, domain, _zone(tz), account_id, retention, quota, created)
            _cache[site_id] = (now, info)
            found[site_id] = info
    return found


def forget(site_id: int) -> None:
    """Drop a cached site (after a change this process made itself)."""
    _cache.pop(site_id, None)


def site_info(site: Site) -> SiteSettings:
    """A fresh ``SiteSettings`` for a site at hand (rebuilds and tests)."""
    return SiteSettings(
        site.id,
        site.domain,
        _zone(site.timezone),
        site.account_id,
        site.account.retention_days,
        site.account.monthly_event_quota,
        site.created,
    )
