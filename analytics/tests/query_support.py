"""Test data for the query engine: a cast (owner, teammate, outsider) and events in ``analytics_event``.

``add_events`` ingests events through the worker's real pipeline (``analytics.ingest.pipeline.ingest``
called in process), so both the raw events and the Redis rollups hold them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from accounts.models import Account, Membership, Role, Site, User
from analytics.fields import EVENT_FIELDS
from analytics.ingest.pipeline import ingest
from analytics.ingest.store import EPOCH
from analytics.payloads import EnrichedEvent

# The text fields a test description may set (all but the event's name).
COLUMNS = tuple(f.name for f in EVENT_FIELDS if f.kind == "text" and f.name != "name")


def make_cast() -> dict[str, Any]:
    account = Account.objects.create(name="Acme")
    other = Account.objects.create(name="Other")
    owner = User.objects.create_user("owner@example.com")
    teammate = User.objects.create_user("teammate@example.com")
    outsider = User.objects.create_user("outsider@example.com")
    Membership.objects.create(account=account, user=owner, role=Role.OWNER)
    Membership.objects.create(account=account, user=teammate, role=Role.VIEWER)
    Membership.objects.create(account=other, user=outsider, role=Role.OWNER)
    site = Site.objects.create(account=account, domain="acme.test", timezone="UTC")
    other_site = Site.objects.create(account=other, domain="other.test", timezone="UTC")
    return {
        "account": account,
        "other_account": other,
        "owner": owner,
        "teammate": teammate,
        "outsider": outsider,
        "site": site,
        "other_site": other_site,
    }


def enriched(site: Site, event: dict[str, Any]) -> EnrichedEvent:
    """An enriched event (docs/interfaces.md) from a short test description."""
    fields = {c: str(event.get(c, "")) for c in COLUMNS}
    fields["pathname"] = event.get("pathname") or "/"
    fields["hostname"] = event.get("hostname") or site.domain
    revenue = event.get("revenue_amount")
    event_dict: dict[str, Any] = dict(
        site_id=site.pk,
        ts=(event["ts"] - EPOCH) // dt.timedelta(microseconds=1),
        event_id=str(event.get("event_id") or uuid.uuid4()),
        name=event.get("name", "pageview"),
        visitor_id=int(event.get("visitor", 1)),
        props=dict(event.get("props", {})),
        revenue_amount=None if revenue is None else str(revenue),
        interactive=bool(event.get("interactive", True)),
        scroll_depth=event.get("scroll_depth"),
        engagement_ms=event.get("engagement_ms"),
        **fields,
    )
    return cast(EnrichedEvent, event_dict)


def add_events(site: Site, events: list[dict[str, Any]], batch_size: int = 500) -> None:
    """Ingest ``events`` through the worker's own pipeline (raw store and rollups), in process.

    Each event is a dict with ``ts`` (aware datetime), ``visitor`` and any enriched field.
    """
    payload = [enriched(site, e) for e in events]
    for i in range(0, len(payload), batch_size):
        ingest(uuid.uuid4().hex, payload[i : i + batch_size])
