"""Date ranges and time buckets in the site's timezone, across DST changes (Europe/Berlin)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import pytest

from analytics.query import run_query
from analytics.query.dates import DateRange
from analytics.query.timeline import time_labels
from analytics.tests.query_support import add_events, make_cast

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]

UTC = dt.UTC


@pytest.fixture
def site() -> Any:
    site = make_cast()["site"]
    site.timezone = "Europe/Berlin"
    site.save()
    return site


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def table(answer: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(*row["dimensions"], *row["metrics"]) for row in answer["results"]]


def test_it_counts_a_day_from_local_midnight_to_local_midnight(site: Any) -> None:
    add_events(
        site,
        [
            {"visitor": 1, "ts": utc(2026, 1, 14, 22, 59)},  # 23:59 on the 14th in Berlin
            {"visitor": 2, "ts": utc(2026, 1, 14, 23, 0)},  # 00:00 on the 15th
            {"visitor": 3, "ts": utc(2026, 1, 15, 22, 59)},  # 23:59 on the 15th
            {"visitor": 4, "ts": utc(2026, 1, 15, 23, 0)},  # the 16th
        ],
    )
    answer = run_query(site, {"metrics": ["visitors"], "date_range": ["2026-01-15", "2026-01-15"]})
    assert table(answer) == [(2,)]
    assert answer["query"]["date_range"] == ["2026-01-15T00:00:00+01:00", "2026-01-15T23:59:59+01:00"]


def test_it_buckets_days_in_the_site_timezone(site: Any) -> None:
    add_events(site, [{"visitor": 1, "ts": utc(2026, 1, 14, 22, 59)}, {"visitor": 2, "ts": utc(2026, 1, 14, 23, 0)}])
    answer = run_query(
        site, {"metrics": ["pageviews"], "date_range": ["2026-01-14", "2026-01-15"], "dimensions": ["time:day"]}
    )
    assert table(answer) == [("2026-01-14", 1), ("2026-01-15", 1)]


def test_it_skips_the_hour_lost_when_summer_time_starts(site: Any) -> None:
    add_events(
        site,
        [
            {"visitor": 1, "ts": utc(2026, 3, 29, 0, 30)},  # 01:30 CET
            {"visitor": 2, "ts": utc(2026, 3, 29, 1, 30)},  # 03:30 CEST
        ],
    )
    answer = run_query(
        site,
        {
            "metrics": ["pageviews"],
            "date_range": ["2026-03-29", "2026-03-29"],
            "dimensions": ["time:hour"],
            "include": {"time_labels": True},
        },
    )
    assert table(answer) == [("2026-03-29 01:00:00", 1), ("2026-03-29 03:00:00", 1)]
    labels = answer["meta"]["time_labels"]
    assert len(labels) == 23
    assert "2026-03-29 02:00:00" not in labels


def test_it_merges_the_hour_repeated_when_summer_time_ends(site: Any) -> None:
    add_events(
        site,
        [
            {"visitor": 1, "ts": utc(2026, 10, 25, 0, 30)},  # 02:30 CEST
            {"visitor": 2, "ts": utc(2026, 10, 25, 1, 30)},  # 02:30 CET
            {"visitor": 3, "ts": utc(2026, 10, 25, 22, 59)},  # 23:59 CET, still the 25th
        ],
    )
    answer = run_query(
        site,
        {
            "metrics": ["pageviews"],
            "date_range": ["2026-10-25", "2026-10-25"],
            "dimensions": ["time:hour"],
            "include": {"time_labels": True},
        },
    )
    assert table(answer) == [("2026-10-25 02:00:00", 2), ("2026-10-25 23:00:00", 1)]
    assert len(answer["meta"]["time_labels"]) == 24


def test_it_resolves_relative_ranges_against_the_local_date(site: Any) -> None:
    add_events(site, [{"visitor": 1, "ts": utc(2026, 6, 30, 22, 30)}])  # 00:30 on 1 July in Berlin
    now = utc(2026, 6, 30, 23, 0)  # already 1 July in Berlin
    answer = run_query(site, {"metrics": ["visitors"], "date_range": "day"}, now=now)
    assert table(answer) == [(1,)]
    assert answer["query"]["date_range"][0] == "2026-07-01T00:00:00+02:00"


def test_it_takes_datetime_ranges_with_offsets(site: Any) -> None:
    add_events(site, [{"visitor": 1, "ts": utc(2026, 2, 1, 12, 0)}, {"visitor": 2, "ts": utc(2026, 2, 1, 15, 0)}])
    answer = run_query(
        site, {"metrics": ["visitors"], "date_range": ["2026-02-01T12:00:00+01:00", "2026-02-01T15:59:59+01:00"]}
    )
    assert table(answer) == [(1,)]


def test_it_labels_months_of_a_twelve_month_range(site: Any) -> None:
    now = utc(2026, 5, 15, 12, 0)
    answer = run_query(
        site,
        {"metrics": ["visitors"], "date_range": "12mo", "dimensions": ["time"], "include": {"time_labels": True}},
        now=now,
    )
    assert answer["meta"]["time_labels"][0] == "2025-06-01"
    assert answer["meta"]["time_labels"][-1] == "2026-05-01"
    assert len(answer["meta"]["time_labels"]) == 12


def test_the_time_labels_of_24h_end_with_the_current_hour() -> None:
    tz = zoneinfo.ZoneInfo("Europe/Berlin")
    end = dt.datetime(2026, 11, 30, 6, 4, 51, tzinfo=dt.UTC)
    rng = DateRange(end - dt.timedelta(hours=24), end, dt.date(2026, 11, 29), dt.date(2026, 11, 30), tz)

    labels = time_labels(rng, "hour")

    assert len(labels) == 25
    assert labels[0] == "2026-11-29 07:00:00"
    assert labels[-1] == "2026-11-30 07:00:00"
