"""The planner: Redis when the rollups are complete and hold the shape, SQL otherwise, never zeros."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
import redis

from accounts.models import Site
from analytics.ingest import rollups
from analytics.query import run_query
from analytics.tests.query_support import add_events, make_cast
from spinnakr import redis_clients
from spinnakr.tests.waiting import wait_for

TODAY_UTC = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAY = TODAY_UTC - dt.timedelta(days=2)
BODY = {"metrics": ["visitors", "visits", "pageviews"], "date_range": [DAY.date().isoformat(), DAY.date().isoformat()]}


def _events() -> list[dict[str, Any]]:
    return [
        {"visitor": 1, "ts": DAY + dt.timedelta(hours=9)},
        {"visitor": 1, "ts": DAY + dt.timedelta(hours=9, minutes=5), "pathname": "/a"},
        {"visitor": 2, "ts": DAY + dt.timedelta(hours=10)},
    ]


def _site_with_events() -> Site:
    site = make_cast()["site"]
    Site.objects.filter(pk=site.pk).update(created=TODAY_UTC - dt.timedelta(days=30))
    site.refresh_from_db()
    add_events(site, _events())
    return site


def _sources(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.source for r in caplog.records if r.getMessage() == "query.answered"]  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_it_answers_an_unfiltered_aggregate_from_redis(
    data_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    site = _site_with_events()
    with caplog.at_level(logging.INFO, logger="analytics.query.engine"):
        answer = run_query(site, BODY)
    assert answer["results"][0]["metrics"] == [2, 2, 3]
    assert _sources(caplog) == ["redis"]


@pytest.mark.django_db
def test_it_answers_a_filtered_query_from_sql(data_redis: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    site = _site_with_events()
    with caplog.at_level(logging.INFO, logger="analytics.query.engine"):
        answer = run_query(site, {**BODY, "filters": [["is", "event:page", ["/a"]]]})
    assert answer["results"][0]["metrics"] == [1, 1, 1]
    assert _sources(caplog) == ["sql"]


@pytest.mark.django_db
def test_it_answers_from_sql_while_a_rebuild_runs(data_redis: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    site = _site_with_events()
    redis_clients.for_site(site.pk).hset(f"{rollups.prefix(site.pk)}meta", "rebuilding", "1")
    with caplog.at_level(logging.INFO, logger="analytics.query.engine"):
        answer = run_query(site, BODY)
    assert answer["results"][0]["metrics"] == [2, 2, 3]
    assert _sources(caplog) == ["sql"]


@pytest.mark.django_db
def test_it_answers_from_sql_for_days_before_the_rollups_are_complete(
    data_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    site = _site_with_events()
    redis_clients.for_site(site.pk).hset(
        f"{rollups.prefix(site.pk)}meta", "complete_since", TODAY_UTC.date().isoformat()
    )
    with caplog.at_level(logging.INFO, logger="analytics.query.engine"):
        answer = run_query(site, BODY)
    assert answer["results"][0]["metrics"] == [2, 2, 3]
    assert _sources(caplog) == ["sql"]


@pytest.mark.django_db(transaction=True)
def test_it_answers_from_sql_after_redis_is_wiped_and_a_worker_rebuilds_the_rollups(
    data_redis: redis.Redis, celery_worker_factory: Any, clean_events: None, caplog: pytest.LogCaptureFixture
) -> None:
    site = _site_with_events()
    redis_clients.for_site(site.pk).flushdb()
    celery_worker_factory()
    with caplog.at_level(logging.INFO, logger="analytics.query.engine"):
        wiped = run_query(site, BODY)
        assert wiped["results"][0]["metrics"] == [2, 2, 3]
        wait_for(lambda: rollups.meta(site.pk).get("complete_since"), timeout=60)
        rebuilt = run_query(site, BODY)
    assert rebuilt["results"][0]["metrics"] == [2, 2, 3]
    assert _sources(caplog) == ["sql", "redis"]


@pytest.mark.django_db
def test_it_answers_a_rolling_24_hours_from_sql_because_its_first_hour_is_cut(
    data_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    site = _site_with_events()
    now = dt.datetime.now(dt.UTC).replace(minute=30)
    with caplog.at_level(logging.INFO, logger="analytics.query.engine"):
        run_query(site, {"metrics": ["pageviews"], "date_range": "24h", "dimensions": ["time:hour"]}, now=now)
        run_query(site, {**BODY, "dimensions": ["time:hour"]})
    assert _sources(caplog) == ["sql", "redis"]
