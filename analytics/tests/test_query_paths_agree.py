"""The Redis path and the SQL path agree on random event sets ingested through the real pipeline.

Counts agree exactly; unique visitors (HyperLogLog on the Redis side) within 2 %. They agree
too once the days are compacted (``analytics.ingest.compact``: breakdowns in compact strings).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Account, Site
from analytics.ingest import compact
from analytics.query import redis_path, sql
from analytics.query.engine import site_goals
from analytics.query.model import parse_query
from analytics.tests.query_support import add_events

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]

TIMEZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]
DAYS = 3
COUNTRIES = ["DE", "US", "FR"]
BROWSERS = ["Firefox", "Chrome", "Safari"]

event_strategy = st.fixed_dictionaries(
    {
        "visitor": st.integers(min_value=1, max_value=8),
        "second": st.integers(min_value=0, max_value=DAYS * 86400 - 1),
        "name": st.sampled_from(["pageview", "pageview", "pageview", "Signup", "Outbound Link: Click", "engagement"]),
        "pathname": st.sampled_from(["/", "/a", "/b/c"]),
        "referrer_source": st.sampled_from(["", "Google", "Twitter"]),
        "utm_source": st.sampled_from(["", "newsletter"]),
        "interactive": st.booleans(),
        "engagement_ms": st.integers(min_value=0, max_value=100_000),
    }
)

SHAPES: list[dict[str, Any]] = [
    {"metrics": ["visitors", "visits", "pageviews", "events", "bounce_rate", "visit_duration", "views_per_visit"]},
    {
        "metrics": ["visitors", "visits", "pageviews", "events", "bounce_rate", "visit_duration"],
        "dimensions": ["time:day"],
    },
    {
        "metrics": ["visitors", "visits", "pageviews", "events", "bounce_rate", "visit_duration"],
        "dimensions": ["time:hour"],
    },
    {"metrics": ["visitors", "visits", "pageviews", "bounce_rate"], "dimensions": ["time:week"]},
    {"metrics": ["visitors", "visits", "events", "visit_duration"], "dimensions": ["time:month"]},
    {"metrics": ["visitors", "pageviews", "events"], "dimensions": ["event:page"]},
    {"metrics": ["visitors", "pageviews", "percentage"], "dimensions": ["event:hostname"]},
    {"metrics": ["visitors", "events"], "dimensions": ["event:name"]},
    {
        "metrics": ["visits", "bounce_rate", "visit_duration", "pageviews", "events", "views_per_visit"],
        "dimensions": ["visit:source"],
    },
    {"metrics": ["visits", "bounce_rate", "visit_duration"], "dimensions": ["visit:entry_page"]},
    {"metrics": ["visits"], "dimensions": ["visit:exit_page"]},
    {"metrics": ["visits", "pageviews"], "dimensions": ["visit:utm_source"]},
    {
        "metrics": ["visitors", "visits", "bounce_rate", "visit_duration", "pageviews", "events"],
        "dimensions": ["visit:country"],
    },
    {"metrics": ["visitors", "visits"], "dimensions": ["visit:browser"]},
]


def _close(metric: str, a: Any, b: Any) -> bool:
    if metric == "visitors":
        return abs(int(a) - int(b)) <= 0.02 * max(int(a), int(b))
    if metric == "percentage":  # a ratio of two visitor counts
        return abs(float(a) - float(b)) <= 4.0
    return a == b


def _ingest(tz_name: str, events: list[dict[str, Any]]) -> tuple[Site, dt.date]:
    """A new site in ``tz_name`` with the events ingested; answers it and its first day."""
    tz = ZoneInfo(tz_name)
    account = Account.objects.create(name="Property")
    site = Site.objects.create(account=account, domain=f"{uuid.uuid4().hex[:12]}.test", timezone=tz_name)
    # Recent days, so the hour rollups (kept 90 days) still hold them.
    first_day = dt.datetime.now(tz).date() - dt.timedelta(days=DAYS + 2)
    start = dt.datetime.combine(first_day, dt.time(), tzinfo=tz).astimezone(dt.UTC)
    end = dt.datetime.combine(first_day + dt.timedelta(days=DAYS), dt.time(), tzinfo=tz).astimezone(dt.UTC)
    span = int((end - start).total_seconds())
    rows = []
    for event in events:
        visitor = event["visitor"]
        rows.append(
            {
                **event,
                "ts": start + dt.timedelta(seconds=event["second"] % span),
                # Attributes of the IP address and user agent are the visitor's own.
                "country": COUNTRIES[visitor % 3],
                "browser": BROWSERS[visitor % 2],
                "device": "Desktop",
                "engagement_ms": event["engagement_ms"] if event["name"] == "engagement" else None,
            }
        )
    add_events(site, rows)
    return site, first_day


def _assert_paths_agree(site: Site, first_day: dt.date) -> None:
    last_day = first_day + dt.timedelta(days=DAYS - 1)
    goals = site_goals(site)
    for shape in SHAPES:
        body = {**shape, "date_range": [first_day.isoformat(), last_day.isoformat()]}
        query = parse_query(site, body, goals=set(), now=dt.datetime.now(dt.UTC), first_event_day=None)
        assert redis_path.supports(query, dt.datetime.now(dt.UTC)), shape
        from_sql = {tuple(d): v for d, v in sql.execute(query, goals).rows}
        answer = redis_path.answer(query)
        assert answer is not None
        from_redis = {tuple(d): v for d, v in answer}
        assert set(from_sql) == set(from_redis), (shape, from_sql, from_redis)
        for key, values in from_sql.items():
            for metric in query.metrics:
                assert _close(metric, values[metric], from_redis[key][metric]), (
                    shape,
                    key,
                    metric,
                    values,
                    from_redis[key],
                )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(tz_name=st.sampled_from(TIMEZONES), events=st.lists(event_strategy, min_size=1, max_size=60))
def test_redis_and_sql_paths_agree(tz_name: str, events: list[dict[str, Any]]) -> None:
    site, first_day = _ingest(tz_name, events)
    _assert_paths_agree(site, first_day)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(tz_name=st.sampled_from(TIMEZONES), events=st.lists(event_strategy, min_size=1, max_size=60))
def test_redis_and_sql_paths_agree_once_the_days_are_compacted(tz_name: str, events: list[dict[str, Any]]) -> None:
    site, first_day = _ingest(tz_name, events)
    compact.compact_site(site.pk, first_day - dt.timedelta(days=1), first_day + dt.timedelta(days=DAYS))
    _assert_paths_agree(site, first_day)
