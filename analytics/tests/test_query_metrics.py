"""Every metric of the SQL path against a small, hand-computed fixture.

The day (2026-03-10, site in UTC):
- visitor 1, visit A: 10:00 / (Google, DE), 10:04 engagement on / (240 s, 50 %),
  10:05 /pricing, 10:07 Signup → 2 pageviews, 420 s, entry /, exit /pricing;
- visitor 1, visit B: 12:00 /blog (Twitter) → bounce, 0 s;
- visitor 2: 11:00 / (direct, US, Mobile), 11:01 non-interactive Outbound Link: Click
  → bounce, 60 s;
- visitor 3: 13:00 /pricing (Google, US), 13:10 /, 13:19 engagement on / (120 s, 90 %),
  13:20 /pricing, 13:21 Purchase (10.50 EUR) → 3 pageviews, 1260 s.
Totals: 3 visitors, 4 visits, 7 pageviews, 10 events, bounce rate 50 %, visit duration
(420 + 0 + 60 + 1260) / 4 = 435 s, views per visit 1.75.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from analytics.models import Goal
from analytics.query import QueryError, run_query
from analytics.tests.query_support import add_events, make_cast

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]

DAY = dt.date(2026, 3, 10)
NOW = dt.datetime(2026, 3, 10, 23, 0, tzinfo=dt.UTC)


def at(hour: int, minute: int) -> dt.datetime:
    return dt.datetime(2026, 3, 10, hour, minute, tzinfo=dt.UTC)


@pytest.fixture
def site() -> Any:
    cast = make_cast()
    site = cast["site"]
    v1 = {"visitor": 1, "country": "DE", "browser": "Firefox", "device": "Desktop", "os": "Linux"}
    v2 = {"visitor": 2, "country": "US", "browser": "Chrome", "device": "Mobile", "os": "Android"}
    v3 = {"visitor": 3, "country": "US", "browser": "Chrome", "device": "Desktop", "os": "Mac"}
    add_events(
        site,
        [
            {**v1, "ts": at(10, 0), "pathname": "/", "referrer_source": "Google", "utm_source": "newsletter"},
            {
                **v1,
                "ts": at(10, 4),
                "name": "engagement",
                "pathname": "/",
                "engagement_ms": 240_000,
                "scroll_depth": 50,
            },
            {**v1, "ts": at(10, 5), "pathname": "/pricing", "referrer_source": "Google"},
            {**v1, "ts": at(10, 7), "name": "Signup", "pathname": "/pricing", "props": {"plan": "pro"}},
            {**v1, "ts": at(12, 0), "pathname": "/blog", "referrer_source": "Twitter"},
            {**v2, "ts": at(11, 0), "pathname": "/"},
            {**v2, "ts": at(11, 1), "name": "Outbound Link: Click", "pathname": "/", "interactive": False},
            {**v3, "ts": at(13, 0), "pathname": "/pricing", "referrer_source": "Google"},
            {**v3, "ts": at(13, 10), "pathname": "/"},
            {
                **v3,
                "ts": at(13, 19),
                "name": "engagement",
                "pathname": "/",
                "engagement_ms": 120_000,
                "scroll_depth": 90,
            },
            {**v3, "ts": at(13, 20), "pathname": "/pricing"},
            {
                **v3,
                "ts": at(13, 21),
                "name": "Purchase",
                "pathname": "/pricing",
                "revenue_amount": Decimal("10.50"),
                "revenue_currency": "EUR",
                "props": {"plan": "basic"},
            },
        ],
    )
    Goal.objects.create(site=site, display_name="Signup", event_name="Signup")
    Goal.objects.create(site=site, display_name="Visit pricing", page_path="/pricing")
    Goal.objects.create(site=site, display_name="Purchase", event_name="Purchase", currency="EUR")
    return site


def query(site: Any, **body: Any) -> dict[str, Any]:
    body.setdefault("date_range", "day")
    return run_query(site, body, now=NOW)


def metrics_of(answer: dict[str, Any]) -> list[Any]:
    return answer["results"][0]["metrics"]


def table(answer: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(*row["dimensions"], *row["metrics"]) for row in answer["results"]]


def test_it_computes_the_aggregate_metrics(site: Any) -> None:
    answer = query(
        site,
        metrics=["visitors", "visits", "pageviews", "events", "bounce_rate", "visit_duration", "views_per_visit"],
    )
    assert metrics_of(answer) == [3, 4, 7, 10, 50, 435, 1.75]
    assert answer["results"][0]["dimensions"] == []


def test_it_counts_a_visitor_with_two_visits_once_and_both_visits(site: Any) -> None:
    answer = query(site, metrics=["visitors", "visits"], filters=[["is", "visit:browser", ["Firefox"]]])
    assert metrics_of(answer) == [1, 2]


def test_it_breaks_down_by_entry_page(site: Any) -> None:
    answer = query(site, metrics=["visits", "visitors", "bounce_rate"], dimensions=["visit:entry_page"])
    assert table(answer) == [("/", 2, 2, 50), ("/blog", 1, 1, 100), ("/pricing", 1, 1, 0)]


def test_it_breaks_down_by_exit_page(site: Any) -> None:
    answer = query(site, metrics=["visits", "visit_duration"], dimensions=["visit:exit_page"])
    assert table(answer) == [("/pricing", 2, 840), ("/", 1, 60), ("/blog", 1, 0)]


def test_it_breaks_down_by_page_with_pageviews_and_percentage(site: Any) -> None:
    answer = query(site, metrics=["visitors", "pageviews", "percentage"], dimensions=["event:page"])
    assert table(answer) == [("/", 3, 3, 100.0), ("/pricing", 2, 3, 66.67), ("/blog", 1, 1, 33.33)]


def test_it_breaks_down_by_source_naming_direct_traffic(site: Any) -> None:
    answer = query(site, metrics=["visitors", "visits"], dimensions=["visit:source"])
    assert table(answer) == [("Google", 2, 2), ("Direct / None", 1, 1), ("Twitter", 1, 1)]


def test_it_filters_visits_by_source_and_keeps_their_other_events(site: Any) -> None:
    answer = query(
        site, metrics=["visitors", "visits", "pageviews", "events"], filters=[["is", "visit:source", ["Google"]]]
    )
    assert metrics_of(answer) == [2, 2, 5, 7]


def test_it_breaks_down_by_goal_with_conversion_rate(site: Any) -> None:
    answer = query(site, metrics=["visitors", "events", "conversion_rate"], dimensions=["event:goal"])
    assert table(answer) == [("Visit pricing", 2, 3, 66.67), ("Purchase", 1, 1, 33.33), ("Signup", 1, 1, 33.33)]


def test_it_filters_by_goal(site: Any) -> None:
    answer = query(site, metrics=["visitors", "events", "conversion_rate"], filters=[["is", "event:goal", ["Signup"]]])
    assert metrics_of(answer) == [1, 1, 33.33]


def test_it_sums_revenue_of_a_revenue_goal(site: Any) -> None:
    answer = query(site, metrics=["total_revenue", "average_revenue"], filters=[["is", "event:goal", ["Purchase"]]])
    total, average = metrics_of(answer)
    assert total == {"value": 10.5, "currency": "EUR", "short": "€10.50", "long": "€10.50"}
    assert average["value"] == 10.5


def test_it_computes_time_on_page_and_scroll_depth_from_engagement_events(site: Any) -> None:
    answer = query(site, metrics=["visitors", "time_on_page", "scroll_depth"], filters=[["is", "event:page", ["/"]]])
    assert metrics_of(answer) == [3, 180, 70]


def test_it_breaks_down_by_custom_property(site: Any) -> None:
    answer = query(
        site,
        metrics=["visitors", "events"],
        dimensions=["event:props:plan"],
        filters=[["is_not", "event:name", ["pageview"]]],
    )
    assert table(answer) == [("(none)", 1, 1), ("basic", 1, 1), ("pro", 1, 1)]


def test_it_breaks_down_by_hour(site: Any) -> None:
    answer = query(site, metrics=["visitors", "visits", "pageviews"], dimensions=["time:hour"])
    assert table(answer) == [
        ("2026-03-10 10:00:00", 1, 1, 2),
        ("2026-03-10 11:00:00", 1, 1, 1),
        ("2026-03-10 12:00:00", 1, 1, 1),
        ("2026-03-10 13:00:00", 1, 1, 3),
    ]


def test_it_combines_filters_with_or_and_not(site: Any) -> None:
    either = ["or", [["is", "visit:country", ["DE"]], ["is", "visit:device", ["Mobile"]]]]
    answer = query(site, metrics=["visitors"], filters=[either, ["not", ["is", "visit:source", ["Twitter"]]]])
    assert metrics_of(answer) == [2]


@pytest.mark.parametrize(
    ("operator", "clauses", "modifiers", "expected"),
    [
        ("is", ["/PRICING"], {"case_sensitive": False}, 2),
        ("is_not", ["/"], None, 2),
        ("contains", ["ric"], None, 2),
        ("contains_not", ["blog", "pric"], None, 3),
        ("matches", ["^/b.*g$"], None, 1),
        ("matches_not", ["^/$"], None, 2),
    ],
)
def test_it_applies_each_filter_operator(
    site: Any, operator: str, clauses: list[str], modifiers: Any, expected: int
) -> None:
    condition: list[Any] = [operator, "event:page", clauses]
    if modifiers:
        condition.append(modifiers)
    assert metrics_of(query(site, metrics=["visitors"], filters=[condition])) == [expected]


def test_it_orders_and_pages_with_a_total_row_count(site: Any) -> None:
    answer = query(
        site,
        metrics=["pageviews"],
        dimensions=["event:page"],
        order_by=[["event:page", "desc"]],
        pagination={"limit": 1, "offset": 1},
        include={"total_rows": True},
    )
    assert table(answer) == [("/blog", 1)]
    assert answer["meta"]["total_rows"] == 3


def test_it_compares_with_the_previous_period(site: Any) -> None:
    answer = run_query(
        site,
        {"metrics": ["visitors"], "date_range": "day", "include": {"comparisons": {"mode": "previous_period"}}},
        now=NOW,
    )
    assert answer["results"][0]["comparison"] == {"dimensions": [], "metrics": [0], "change": [100]}


def test_it_rejects_a_goal_that_is_not_configured(site: Any) -> None:
    with pytest.raises(QueryError, match="filters\\[0\\]\\[2\\]: the goal 'Nope'"):
        query(site, metrics=["visitors"], filters=[["is", "event:goal", ["Nope"]]])
