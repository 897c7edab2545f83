"""Stats API v1 parameters translated to v2 bodies."""

from __future__ import annotations

import datetime as dt

import pytest

from analytics.query import QueryError, v1


def test_it_translates_the_v1_filter_syntax() -> None:
    assert v1.parse_filters("visit:country==DE|FR;event:page!=/a;visit:source~goo;visit:browser!~fire") == [
        ["is", "visit:country", ["DE", "FR"]],
        ["is_not", "event:page", ["/a"]],
        ["contains", "visit:source", ["goo"]],
        ["contains_not", "visit:browser", ["fire"]],
    ]


def test_it_turns_wildcards_into_anchored_patterns() -> None:
    assert v1.parse_filters("event:page==/blog/**|/docs/*") == [
        ["matches", "event:page", ["^/blog/.*$", "^/docs/[^/]*$"]]
    ]


def test_it_takes_the_earliest_operator_of_a_filter() -> None:
    assert v1.parse_filters("event:props:q==a!=b") == [["is", "event:props:q", ["a!=b"]]]


@pytest.mark.parametrize(
    ("raw", "message"),
    [("visit:country", "has no operator"), ("==DE", "needs a property and a value")],
)
def test_it_rejects_a_malformed_filter(raw: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        v1.parse_filters(raw)


def test_a_custom_period_becomes_a_date_range() -> None:
    assert v1.period_range({"period": "custom", "date": "2026-01-01,2026-01-31"}) == (
        ["2026-01-01", "2026-01-31"],
        None,
    )


def test_date_anchors_a_relative_period() -> None:
    assert v1.period_range({"period": "month", "date": "2026-02-10"}) == ("month", dt.date(2026, 2, 10))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"period": "fortnight"}, "period: must be one of"),
        ({"period": "custom"}, "date: a custom period needs"),
        ({"period": "day", "date": "yesterday"}, "date: 'yesterday' is not a date"),
        ({"property": "event:page", "limit": "0"}, "limit: must be from 1 to 1000"),
        ({"property": "event:page", "page": "x"}, "page: must be an integer"),
        ({}, "property: is required"),
        ({"property": "event:page", "metrics": "visitors,nope"}, "metrics: unknown metric 'nope'"),
    ],
)
def test_it_rejects_invalid_v1_parameters(params: dict[str, str], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        v1.breakdown_body(params)


def test_breakdown_pages_become_offsets() -> None:
    body, _ = v1.breakdown_body({"property": "visit:source", "limit": "5", "page": "3"})
    assert body["pagination"] == {"limit": 5, "offset": 10}
    assert body["dimensions"] == ["visit:source"]
