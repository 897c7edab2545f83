"""Builders for the analytics tests: customers, sites and enriched events."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from accounts.models import Account, Site
from analytics.fields import EVENT_FIELDS
from analytics.ingest.store import EPOCH
from analytics.payloads import EnrichedEvent

# Text fields default to empty; the event below sets those a typical pageview has.
TEXT_FIELDS = tuple(f.name for f in EVENT_FIELDS if f.kind == "text")


def make_site(domain: str = "example.com", timezone: str = "UTC", **account: Any) -> Site:
    owner = Account.objects.create(name=f"Owner of {domain}", **account)
    return Site.objects.create(account=owner, domain=domain, timezone=timezone)


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def make_event(
    site: Site, at: datetime, name: str = "pageview", visitor: int = 1, pathname: str = "/", **fields: Any
) -> EnrichedEvent:
    event = cast(
        EnrichedEvent,
        {
            **dict.fromkeys(TEXT_FIELDS, ""),
            "site_id": site.id,
            "ts": micros(at),
            "event_id": str(uuid.uuid4()),
            "name": name,
            "visitor_id": visitor,
            "hostname": site.domain,
            "pathname": pathname,
            "channel": "Direct",
            "country": "DE",
            "browser": "Firefox",
            "browser_version": "140.0",
            "os": "GNU/Linux",
            "device": "Desktop",
            "screen": "desktop",
            "props": {},
            "revenue_amount": None,
            "interactive": True,
            "scroll_depth": None,
            "engagement_ms": None,
        },
    )
    event.update(fields)  # type: ignore[typeddict-item]
    return event
