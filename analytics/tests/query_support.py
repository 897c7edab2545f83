"""Test data for the query engine: a cast (owner, teammate, outsider) and events in ``analytics_event``.

``add_events`` stores events the way the worker does (monthly partitions, visits
split after 30 minutes of inactivity), so the engine reads realistic rows.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from typing import Any

from django.db import connection, transaction

from accounts.models import Account, Membership, Role, Site, User

VISIT_GAP = dt.timedelta(minutes=30)

COLUMNS = (
    "hostname",
    "pathname",
    "referrer",
    "referrer_source",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "country",
    "browser",
    "browser_version",
    "os",
    "os_version",
    "device",
    "screen",
    "revenue_currency",
)


def make_cast() -> dict[str, Any]:
    account = Account.objects.create(name="Acme")
    other = Account.objects.create(name="Other")
    owner = User.objects.create_user("owner@example.com", "pw-owner-123456")
    teammate = User.objects.create_user("teammate@example.com", "pw-mate-123456")
    outsider = User.objects.create_user("outsider@example.com", "pw-out-123456")
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


def ensure_partition(day: dt.datetime) -> None:
    start = dt.datetime(day.year, day.month, 1, tzinfo=dt.UTC)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    name = f"analytics_event_p{start:%Y%m}"
    with connection.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'analytics_event' "
            "AND pg_get_expr(c.relpartbound, c.oid) LIKE %s",
            [f"%{start:%Y-%m-%d}%"],
        )
        if cur.fetchone():
            return
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF analytics_event FOR VALUES FROM (%s) TO (%s)",
            [start, end],
        )


def add_events(site: Site, events: list[dict[str, Any]]) -> None:
    """Store ``events`` (dicts with ``ts`` (aware datetime), ``visitor`` and any event fields)."""
    by_visitor: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_visitor[int(event.get("visitor", 1))].append(event)
    rows = []
    for visitor, items in by_visitor.items():
        items.sort(key=lambda e: e["ts"])
        visit_id = 0
        last: dt.datetime | None = None
        for event in items:
            if last is None or event["ts"] - last > VISIT_GAP:
                visit_id = int(event["ts"].timestamp() * 1_000_000)
            last = event["ts"]
            rows.append((visitor, visit_id, event))
    with transaction.atomic():
        for month in {(e["ts"].year, e["ts"].month) for e in events}:
            ensure_partition(dt.datetime(month[0], month[1], 1, tzinfo=dt.UTC))
        with connection.cursor() as cur:
            for visitor, visit_id, event in rows:
                values = [event.get(c, "") for c in COLUMNS]
                if not event.get("pathname"):
                    values[1] = "/"
                cur.execute(
                    "INSERT INTO analytics_event (site_id, timestamp, event_id, name, visitor_id, visit_id, "  # noqa: S608 - fixed column names
                    + ", ".join(COLUMNS)
                    + ", props, revenue_amount, interactive, scroll_depth, engagement_ms) VALUES ("
                    + ", ".join(["%s"] * (6 + len(COLUMNS) + 5))
                    + ")",
                    [
                        site.pk,
                        event["ts"],
                        event.get("event_id") or uuid.uuid4(),
                        event.get("name", "pageview"),
                        visitor,
                        visit_id,
                        *values,
                        json.dumps(event.get("props", {})),
                        event.get("revenue_amount"),
                        event.get("interactive", True),
                        event.get("scroll_depth"),
                        event.get("engagement_ms"),
                    ],
                )
