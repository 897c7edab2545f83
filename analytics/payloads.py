"""The enriched event: what the collector publishes and the worker consumes.

Interface 1 of the contracts between the work streams. The collector
publishes the Celery task ``analytics.ingest_batch`` on
``settings.EVENTS_QUEUE`` with kwargs ``{"batch_id": "<uuid4 hex>",
"events": [EnrichedEvent, ...]}``. Every value is JSON-serialisable; the
worker computes ``visit_id`` itself.
"""

from __future__ import annotations

from typing import TypedDict

INGEST_TASK = "analytics.ingest_batch"


class EnrichedEvent(TypedDict):
    site_id: int
    ts: int  # epoch microseconds, UTC
    event_id: str  # uuid, canonical text form
    name: str  # 'pageview', 'engagement' or a custom name
    visitor_id: int  # signed 64-bit
    hostname: str
    pathname: str
    referrer: str
    referrer_source: str
    channel: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    utm_content: str
    utm_term: str
    country: str  # ISO 3166-1 alpha-2, '' when unknown
    browser: str
    browser_version: str
    os: str
    os_version: str
    device: str  # 'Desktop', 'Mobile', 'Tablet' or ''
    screen: str  # 'mobile', 'tablet', 'laptop', 'desktop' or ''
    props: dict[str, str]
    revenue_amount: str | None  # decimal as text
    revenue_currency: str
    interactive: bool
    scroll_depth: int | None  # 0-100, engagement events only
    engagement_ms: int | None  # engagement events only


class IngestBatchKwargs(TypedDict):
    batch_id: str  # uuid4 hex
    events: list[EnrichedEvent]
