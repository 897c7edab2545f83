"""Builders for the analytics tests: customers, sites and enriched events."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from accounts.models import Account, Site
from analytics.ingest.store import EPOCH
from analytics.payloads import EnrichedEvent


def make_site(domain: str = "example.com", timezone: str = "UTC", **account: Any) -> Site:
    owner = Account.objects.create(name=f"Owner of {domain}", **account)
    return Site.objects.create(account=owner, domain=domain, timezone=timezone)


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def make_event(
    site: Site, at: datetime, name: str = "pageview", visitor: int = 1, pathname: str = "/", **fields: Any
) -> EnrichedEvent:
    event = EnrichedEvent(
        site_id=site.id,
        ts=micros(at),
        event_id=str(uuid.uuid4()),
        name=name,
        visitor_id=visitor,
        hostname=site.domain,
        pathname=pathname,
        referrer="",
        referrer_source="",
        channel="Direct",
        utm_source="",
        utm_medium="",
        utm_campaign="",
        utm_content="",
        utm_term="",
        country="DE",
        browser="Firefox",
        browser_version="140.0",
        os="GNU/Linux",
        os_version="",
        device="Desktop",
        screen="desktop",
        props={},
        revenue_amount=None,
        revenue_currency="",
        interactive=True,
        scroll_depth=None,
        engagement_ms=None,
    )
    event.update(fields)  # type: ignore[typeddict-item]
    return event
