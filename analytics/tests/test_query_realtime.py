"""Realtime numbers: visitors now, top pages now, the last 30 minutes (Redis, or SQL without rollups)."""

from __future__ import annotations

import datetime as dt

import pytest
import redis

from analytics.query.realtime import snapshot, visitors_now
from analytics.tests.query_support import add_events, make_cast

pytestmark = pytest.mark.django_db


def _ingest_recent() -> tuple[object, dt.datetime]:
    site = make_cast()["site"]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    add_events(
        site,
        [
            {"visitor": 1, "ts": now - dt.timedelta(minutes=2), "pathname": "/"},
            {"visitor": 2, "ts": now - dt.timedelta(minutes=1), "pathname": "/pricing"},
            {"visitor": 2, "ts": now - dt.timedelta(minutes=1), "pathname": "/pricing", "name": "Signup"},
            {"visitor": 3, "ts": now - dt.timedelta(minutes=20), "pathname": "/old"},
        ],
    )
    return site, now


def test_it_counts_visitors_of_the_last_five_minutes_and_their_pages(data_redis: redis.Redis) -> None:
    site, now = _ingest_recent()
    data = snapshot(site, now)  # type: ignore[arg-type]
    assert data["visitors_now"] == 2
    assert data["top_pages"] == [{"page": "/", "visitors": 1}, {"page": "/pricing", "visitors": 1}]
    assert len(data["minutes"]) == 30
    assert sum(m["pageviews"] for m in data["minutes"]) == 3
    assert sum(m["events"] for m in data["minutes"]) == 4
    assert data["minutes"][-2]["pageviews"] == 1


def test_it_answers_from_postgres_when_the_rollups_are_gone(data_redis: redis.Redis) -> None:
    site, now = _ingest_recent()
    data_redis.flushdb()
    assert visitors_now(site, now) == 2  # type: ignore[arg-type]
    data = snapshot(site, now)  # type: ignore[arg-type]
    assert sum(m["pageviews"] for m in data["minutes"]) == 3
    assert sum(m["visitors"] for m in data["minutes"]) == 3
