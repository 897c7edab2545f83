"""Invalid queries raise QueryError naming the offending field or value."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from analytics.query import QueryError, run_query
from analytics.tests.query_support import make_cast

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "query: the body must be a JSON object"),
        ({"date_range": "day"}, "metrics: a non-empty list"),
        ({"metrics": ["visitors"]}, "date_range: is required"),
        ({"metrics": ["nope"], "date_range": "day"}, "metrics: unknown metric 'nope'"),
        ({"metrics": ["visitors", "visitors"], "date_range": "day"}, "metrics: a metric is listed twice"),
        ({"metrics": ["visitors"], "date_range": "fortnight"}, "date_range: must be one of"),
        (
            {"metrics": ["visitors"], "date_range": ["2026-01-02", "2026-01-01"]},
            "date_range: the end is before the start",
        ),
        (
            {"metrics": ["visitors"], "date_range": ["2026-13-01", "2026-01-01"]},
            "date_range: '2026-13-01' is not a valid date",
        ),
        ({"metrics": ["visitors"], "date_range": ["2026-01-01"]}, "date_range: a custom range is a list of two"),
        (
            {"metrics": ["visitors"], "date_range": "day", "dimensions": ["visit:planet"]},
            "dimensions[0]: unknown dimension 'visit:planet'",
        ),
        (
            {"metrics": ["visitors"], "date_range": "day", "dimensions": ["time:day", "time:hour"]},
            "dimensions: at most one time",
        ),
        (
            {"metrics": ["visitors"], "date_range": "day", "filters": [["is", "time", ["x"]]]},
            "filters[0][1]: time dimensions cannot be filtered",
        ),
        (
            {"metrics": ["visitors"], "date_range": "day", "filters": [["equals", "event:page", ["/"]]]},
            "filters[0]: unknown filter operator 'equals'",
        ),
        (
            {"metrics": ["visitors"], "date_range": "day", "filters": [["is", "event:page", "/"]]},
            "filters[0][2]: clauses must be a list",
        ),
        (
            {"metrics": ["visitors"], "date_range": "day", "filters": [["matches", "event:page", ["("]]]},
            "filters[0][2]: '(' is not a valid regular expression",
        ),
        (
            {"metrics": ["visitors"], "date_range": "day", "filters": [["and", []]]},
            "filters[0]: 'and' takes a non-empty list",
        ),
        (
            {"metrics": ["visitors"], "date_range": "day", "filters": [["is_not", "event:goal", ["x"]]]},
            "filters[0]: only 'is' and 'contains'",
        ),
        (
            {"metrics": ["bounce_rate"], "date_range": "day", "dimensions": ["event:page"]},
            "metrics: 'bounce_rate' cannot be broken down by the event dimension",
        ),
        ({"metrics": ["percentage"], "date_range": "day"}, "metrics: 'percentage' requires a dimension"),
        ({"metrics": ["conversion_rate"], "date_range": "day"}, "metrics: 'conversion_rate' requires an event:goal"),
        ({"metrics": ["time_on_page"], "date_range": "day"}, "metrics: 'time_on_page' requires an event:page"),
        (
            {"metrics": ["visitors"], "date_range": "day", "order_by": [["pageviews", "desc"]]},
            "order_by[0]: 'pageviews' is not among",
        ),
        ({"metrics": ["visitors"], "date_range": "day", "order_by": [["visitors", "up"]]}, "order_by[0]: must be"),
        (
            {"metrics": ["visitors"], "date_range": "day", "pagination": {"limit": 0}},
            "pagination.limit: must be an integer",
        ),
        ({"metrics": ["visitors"], "date_range": "day", "pagination": {"offset": -1}}, "pagination.offset"),
        (
            {"metrics": ["visitors"], "date_range": "day", "include": {"time_labels": True}},
            "include.time_labels: requires a time dimension",
        ),
        (
            {"metrics": ["visitors"], "date_range": "day", "include": {"comparisons": {"mode": "last_week"}}},
            "include.comparisons.mode",
        ),
        ({"metrics": ["visitors"], "date_range": "day", "colour": "red"}, "colour: unknown field"),
        (
            {"metrics": ["visitors"], "date_range": "year", "dimensions": ["time:minute"]},
            "dimensions: time:minute is available",
        ),
        (
            {"metrics": ["visitors"], "date_range": ["0001-01-01", "9999-12-31"]},
            "date_range: 0001-01-01 is outside the days a query may name (1970-01-01 to 2999-12-31)",
        ),
        (
            {"metrics": ["visitors"], "date_range": ["2026-01-01", "9999-12-31"]},
            "date_range: 9999-12-31 is outside the days a query may name",
        ),
        (
            {"metrics": ["visitors"], "date_range": ["2026-01-01T00:00:00", "9999-12-31T23:59:59+14:00"]},
            "date_range: 9999-12-31 is outside the days a query may name",
        ),
        (
            {"metrics": ["visitors"], "date_range": ["0001-01-01T00:00:00+14:00", "2026-01-01T00:00:00"]},
            "date_range: 0001-01-01 is outside the days a query may name",
        ),
        (
            {"metrics": ["visitors"], "date_range": "day", "filters": [["and", [["is", "event:page", ["/"]]] * 201]]},
            "filters: at most 200 conditions in a query, not 201",
        ),
    ],
)
def test_it_rejects_an_invalid_query_naming_the_field(body: Any, message: str) -> None:
    site = make_cast()["site"]
    with pytest.raises(QueryError) as caught:
        run_query(site, body)
    assert caught.value.message.startswith(message)


def test_it_rejects_a_v1_anchor_day_outside_the_supported_days() -> None:
    site = make_cast()["site"]
    with pytest.raises(QueryError) as caught:
        run_query(site, {"metrics": ["visitors"], "date_range": "12mo"}, today=dt.date(9999, 12, 31))
    assert caught.value.message.startswith("date: 9999-12-31 is outside the days a query may name")


@pytest.mark.parametrize("mode", ["previous_period", "year_over_year"])
@pytest.mark.parametrize("date_range", [["1970-01-01", "1970-01-31"], ["2999-12-01", "2999-12-31"]])
def test_it_answers_ranges_at_the_first_and_last_supported_days(date_range: list[str], mode: str) -> None:
    site = make_cast()["site"]
    body = {"metrics": ["visitors"], "date_range": date_range, "include": {"comparisons": {"mode": mode}}}
    result = run_query(site, body)
    assert result["results"][0]["metrics"] == [0]
