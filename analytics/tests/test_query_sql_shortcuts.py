"""The SQL path's shortcuts give the rows of its plain statement.

``sql.execute`` answers with a statement that skips work (visits from ``analytics_visit``,
visit-level answers, narrow event rows, goal events only before the goal join);
``plain=True`` builds the reference statement without them. On random events ingested through
the real pipeline, both answer the same rows for every query shape below.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Account, Site
from analytics.models import Goal, page_pattern_regex
from analytics.query import sql
from analytics.query.engine import site_goals
from analytics.query.model import parse_query
from analytics.query.sql_filters import literal_regex
from analytics.tests.query_support import add_events

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]

DAYS = 3
COUNTRIES = ["DE", "US", "FR"]
BROWSERS = ["Firefox", "Chrome", "Safari"]

event_strategy = st.fixed_dictionaries(
    {
        "visitor": st.integers(min_value=1, max_value=8),
        "second": st.integers(min_value=0, max_value=DAYS * 86400 - 1),
        "name": st.sampled_from(["pageview", "pageview", "pageview", "Signup", "Outbound Link: Click", "engagement"]),
        "pathname": st.sampled_from(["/", "/a", "/b/c", "/pricing"]),
        "referrer_source": st.sampled_from(["", "Google", "Twitter"]),
        "utm_source": st.sampled_from(["", "newsletter"]),
        # Per event: a visit's attribute is its first event's, which other events may not share.
        "country": st.sampled_from(COUNTRIES),
        "interactive": st.booleans(),
        "engagement_ms": st.integers(min_value=0, max_value=100_000),
        "scroll_depth": st.integers(min_value=0, max_value=100),
        "plan": st.sampled_from(["", "free", "pro"]),
    }
)

ALL_VISIT = ["visitors", "visits", "pageviews", "events", "bounce_rate", "visit_duration", "views_per_visit"]
SHAPES: list[dict[str, Any]] = [
    {"metrics": ALL_VISIT},
    {"metrics": ALL_VISIT, "filters": [["is", "visit:country", ["DE"]]]},
    {"metrics": ALL_VISIT, "filters": [["is", "visit:source", ["Direct / None"]]]},
    {"metrics": ["visitors", "visits", "percentage"], "dimensions": ["visit:source"]},
    {
        "metrics": ["visitors", "visits", "pageviews", "events", "percentage", "bounce_rate"],
        "dimensions": ["visit:country"],
        "filters": [["contains", "visit:entry_page", ["/b"]], ["is_not", "visit:source", ["Twitter"]]],
    },
    {
        "metrics": ["visits", "bounce_rate"],
        "dimensions": ["visit:exit_page"],
        "filters": [["is", "visit:exit_page", ["/a"]]],
    },
    {
        "metrics": ["visitors", "pageviews"],
        "dimensions": ["event:page"],
        "filters": [["is", "visit:source", ["google"], {"case_sensitive": False}]],
    },
    {
        "metrics": ["visitors", "visits", "pageviews"],
        "dimensions": ["time:day"],
        "filters": [["matches", "visit:country", ["^(DE|FR)$"]], ["is", "event:page", ["/a", "/"]]],
    },
    {"metrics": ["visitors", "events", "conversion_rate"], "dimensions": ["event:goal"]},
    {
        "metrics": ["visitors", "events", "conversion_rate", "group_conversion_rate"],
        "dimensions": ["event:goal", "visit:country"],
        "filters": [["is", "visit:source", ["Google", "Twitter"]]],
    },
    {"metrics": ["visitors", "pageviews"], "filters": [["is", "event:goal", ["Signup", "Visit /pricing"]]]},
    {
        "metrics": ["visitors", "time_on_page", "scroll_depth"],
        "dimensions": ["event:page"],
        "filters": [["contains", "event:page", ["/b", "/p"]]],
    },
    {
        "metrics": ["visitors", "visits", "time_on_page", "scroll_depth"],
        "dimensions": ["event:page"],
        "filters": [["is", "visit:country", ["US"]]],
    },
    {
        "metrics": ["visitors", "events"],
        "dimensions": ["event:props:plan"],
        "filters": [["is", "visit:country", ["FR"]]],
    },
    {"metrics": ["visitors", "visits"], "filters": [["not", ["is", "visit:country", ["DE"]]]]},
    {
        "metrics": ["visitors", "visits"],
        "filters": [["or", [["is", "visit:country", ["DE"]], ["is", "visit:source", ["Google"]]]]],
    },
]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(events=st.lists(event_strategy, min_size=1, max_size=60))
def test_shortcuts_answer_the_plain_statements_rows(events: list[dict[str, Any]]) -> None:
    account = Account.objects.create(name="Shortcuts")
    site = Site.objects.create(account=account, domain=f"{uuid.uuid4().hex[:12]}.test", timezone="Europe/Berlin")
    Goal.objects.create(site=site, display_name="Signup", event_name="Signup")
    Goal.objects.create(site=site, display_name="Visit /pricing", page_path="/pricing")
    Goal.objects.create(site=site, display_name="Visit /b/*", page_path="/b/*")
    first_day = dt.date.today() - dt.timedelta(days=DAYS + 2)
    start = dt.datetime.combine(first_day, dt.time(), tzinfo=dt.UTC)
    rows = []
    for event in events:
        engagement = event["name"] == "engagement"
        rows.append(
            {
                **event,
                "ts": start + dt.timedelta(seconds=event["second"]),
                "browser": BROWSERS[event["visitor"] % 3],
                "props": {"plan": event["plan"]} if event["plan"] and event["name"] == "Signup" else {},
                "engagement_ms": event["engagement_ms"] if engagement else None,
                "scroll_depth": event["scroll_depth"] if engagement else None,
            }
        )
    add_events(site, rows)
    goals = site_goals(site)
    # The range cuts visits at both ends (events start at midnight UTC, the range in Berlin time).
    date_range = [(first_day + dt.timedelta(days=1)).isoformat(), (first_day + dt.timedelta(days=DAYS - 1)).isoformat()]
    for shape in SHAPES:
        body = {**shape, "date_range": date_range}
        query = parse_query(
            site, body, goals={g.name for g in goals}, now=dt.datetime.now(dt.UTC), first_event_day=None
        )
        fast = sql.execute(query, goals)
        plain = sql.execute(query, goals, plain=True)
        assert fast.rows == plain.rows, (shape, fast.rows, plain.rows)
        assert fast.total_rows == plain.total_rows, shape


def test_shortcut_statements_skip_the_work() -> None:
    """The statements do use the shortcuts (else the test above would compare a path with itself)."""
    account = Account.objects.create(name="Shortcuts")
    site = Site.objects.create(account=account, domain="shortcuts.test", timezone="UTC")
    goals = [sql.GoalDef(name="Signup", event_name="Signup", page_regex="")]

    def statement(body: dict[str, Any], *, plain: bool = False) -> str:
        query = parse_query(
            site, {**body, "date_range": "30d"}, goals={"Signup"}, now=dt.datetime.now(dt.UTC), first_event_day=None
        )
        return sql.SqlBuilder(query, goals, plain=plain).build()

    by_country = {
        "metrics": ["visitors", "visits"],
        "dimensions": ["visit:country"],
        "filters": [["is", "visit:country", ["DE"]]],
    }
    fast = statement(by_country)
    assert "mv AS" in fast and " m AS" not in fast  # visit-level: no event table
    assert "FROM analytics_visit WHERE" in fast  # visits from the visit table
    assert "SELECT *" not in fast.split("vis AS")[0]  # narrow event rows
    plain = statement(by_country, plain=True)
    assert "mv AS" not in plain and "ev AS (SELECT * FROM" in plain and "analytics_visit" not in plain
    goal = statement({"metrics": ["visitors", "conversion_rate"], "dimensions": ["event:goal"]})
    assert "FROM m WHERE name = " in goal
    engagement = statement({"metrics": ["visitors", "time_on_page"], "dimensions": ["event:page"]})
    assert "em0 AS" in engagement and "FROM analytics_visit WHERE" in engagement


@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        ("/pricing", "/pricing"),
        ("/blog/post-1", "/blog/post-1"),
        ("/a.b(c)$[d]+?", "/a.b(c)$[d]+?"),
        ("/", "/"),
        ("/b/*", None),
        ("/docs/**", None),
    ],
)
def test_a_goal_page_without_wildcards_is_one_literal(pattern: str, literal: str | None) -> None:
    assert literal_regex(page_pattern_regex(pattern)) == literal


@pytest.mark.parametrize("regex", ["^/a\\d$", "^/a\\$", "/a", "^/a", "^(a|b)$", "^a.c$"])
def test_other_regular_expressions_are_not_literals(regex: str) -> None:
    assert literal_regex(regex) is None


def test_engagement_of_a_visit_without_events_in_the_range_counts_on_neither_statement() -> None:
    """An engagement event whose visit's pageview is just before the range belongs to no visit of it."""
    account = Account.objects.create(name="Shortcuts")
    site = Site.objects.create(account=account, domain="edge.test", timezone="UTC")
    day = dt.date.today() - dt.timedelta(days=3)
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    add_events(
        site,
        [
            {"ts": start - dt.timedelta(seconds=60), "visitor": 1, "pathname": "/blog"},
            {
                "ts": start + dt.timedelta(seconds=60),
                "visitor": 1,
                "pathname": "/blog",
                "name": "engagement",
                "engagement_ms": 50_000,
            },
            {"ts": start + dt.timedelta(hours=2), "visitor": 2, "pathname": "/blog"},
            {
                "ts": start + dt.timedelta(hours=2, seconds=30),
                "visitor": 2,
                "pathname": "/blog",
                "name": "engagement",
                "engagement_ms": 10_000,
            },
        ],
    )
    body = {"metrics": ["visitors", "time_on_page"], "dimensions": ["event:page"], "date_range": [day.isoformat()] * 2}
    query = parse_query(site, body, goals=set(), now=dt.datetime.now(dt.UTC), first_event_day=None)
    fast = sql.execute(query, [])
    assert fast.rows == sql.execute(query, [], plain=True).rows
    assert fast.rows == [(["/blog"], {"visitors": 1, "time_on_page": 10, "__currencies": None})]
