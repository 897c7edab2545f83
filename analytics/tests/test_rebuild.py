"""Rebuilding rollups from PostgreSQL gives exactly the rollups ingestion built."""

from __future__ import annotations

import json
import random
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection

from accounts.sites import update_site
from analytics.ingest import rollups
from analytics.ingest.pipeline import ingest
from analytics.ingest.rebuild import rebuild_site
from analytics.tests.factories import make_event, make_site
from spinnakr import redis_clients
from spinnakr.tests.waiting import wait_for

NOW = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)  # 00:30 the next day in Berlin
PAGES = ["/", "/pricing", "/blog/a", "/blog/b", "/signup"]
SOURCES = [("", "Direct"), ("Google", "Organic Search"), ("Newsletter", "Email")]


def snapshot(site_id):
    """Every rollup key of the site with its content and TTL (HyperLogLogs by their count)."""
    client = redis_clients.for_site(site_id)
    base = rollups.prefix(site_id)
    found = {}
    for key in sorted(client.scan_iter(match=f"{base}*", count=1000)):
        rest = key[len(base) :]
        if rest in ("meta", "live") or rest.startswith(("batch:", "rb:")):
            continue
        kind = client.type(key)
        value: tuple[str, object]
        if rest.startswith(("uv:", "uvm:")):
            value = ("hll", client.pfcount(key))
        elif kind == "hash":
            value = ("hash", client.hgetall(key))
        elif kind == "zset":
            value = ("zset", client.zrange(key, 0, -1, withscores=True))
        else:
            value = ("json", json.loads(str(client.get(key))))
        found[key] = (value, client.ttl(key))
    return found


def assert_same_rollups(actual, expected):
    """Same keys, same contents, expiries within two minutes (the test's real time passes)."""
    assert {k: v for k, (v, _) in actual.items()} == {k: v for k, (v, _) in expected.items()}
    drift = {k: ttl - expected[k][1] for k, (_, ttl) in actual.items() if abs(ttl - expected[k][1]) > 120}
    assert drift == {}


def workload(site, rng, visitors=12, count=240):
    """Events of the last 20 hours, shuffled into batches so many arrive late."""
    events = []
    for _ in range(count):
        visitor = rng.randrange(visitors)
        at = NOW - timedelta(minutes=rng.randrange(20 * 60))
        source, channel = rng.choice(SOURCES)
        kind = rng.random()
        if kind < 0.7:
            events.append(
                make_event(
                    site, at, visitor=visitor, pathname=rng.choice(PAGES), referrer_source=source, channel=channel
                )
            )
        elif kind < 0.85:
            events.append(
                make_event(
                    site,
                    at,
                    name="Signup",
                    visitor=visitor,
                    pathname="/signup",
                    props={"plan": rng.choice(["pro", "free"])},
                )
            )
        else:
            events.append(
                make_event(
                    site,
                    at,
                    name="engagement",
                    visitor=visitor,
                    pathname=rng.choice(PAGES),
                    engagement_ms=rng.randrange(100, 60_000),
                    scroll_depth=rng.randrange(0, 101),
                )
            )
    rng.shuffle(events)
    return [events[n : n + 17] for n in range(0, len(events), 17)]


@pytest.mark.django_db
@pytest.mark.usefixtures("data_redis")
@time_machine.travel(NOW, tick=False)
def test_rebuilt_rollups_equal_the_live_ones_key_by_key():
    site = make_site(timezone="Europe/Berlin", created=NOW - timedelta(days=3))
    site.created = NOW - timedelta(days=3)
    site.save()
    for batch in workload(site, random.Random(4)):
        ingest(uuid.uuid4().hex, batch)
    live = snapshot(site.id)
    assert len(live) > 100

    report = rebuild_site(site, grace_seconds=0)

    assert report.events == 240
    assert_same_rollups(snapshot(site.id), live)
    assert rollups.meta(site.id) == {"complete_since": "2026-03-08"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("data_redis", "clean_events")
@time_machine.travel(NOW, tick=False)
def test_batches_ingested_during_a_rebuild_are_counted_once():
    site = make_site(domain="busy.example", timezone="Europe/Berlin")
    batches = workload(site, random.Random(9))
    for batch in batches[:8]:
        ingest(uuid.uuid4().hex, batch)
    late = batches[8:]

    def rebuild_in_background():
        try:
            rebuild_site(site, grace_seconds=1.0)
        finally:
            connection.close()

    thread = threading.Thread(target=rebuild_in_background)

    thread.start()
    wait_for(lambda: rollups.meta(site.id).get("rebuilding") == "1", timeout=5, interval=0.01)
    for batch in late:
        ingest(uuid.uuid4().hex, batch)
    ingest("f" * 32, late[0])  # a redelivery while the rebuild runs
    thread.join(timeout=30)
    during = snapshot(site.id)

    rebuild_site(site, grace_seconds=0)

    assert_same_rollups(snapshot(site.id), during)
    total = sum(1 for batch in batches for e in batch if e["name"] == "pageview")
    days = ["20260310", "20260311"]
    assert sum(row["pageviews"] for row in rollups.counters(site.id, "d", days)) == total
    assert "rebuilding" not in rollups.meta(site.id)


@pytest.mark.django_db
@pytest.mark.usefixtures("data_redis")
@time_machine.travel(NOW, tick=False)
def test_the_command_rebuilds_from_a_day_on():
    site = make_site(domain="cmd.example", timezone="UTC")
    ingest(uuid.uuid4().hex, [make_event(site, NOW - timedelta(days=1)), make_event(site, NOW - timedelta(hours=1))])

    call_command("rebuild_rollups", "--site", "cmd.example", "--since", "2026-03-10")

    assert rollups.counters(site.id, "d", ["20260309", "20260310"]) == [
        {"pageviews": 0, "events": 0, "visits": 0, "bounces": 0, "duration": 0},
        {"pageviews": 1, "events": 1, "visits": 1, "bounces": 1, "duration": 0},
    ]
    assert rollups.meta(site.id)["complete_since"] == "2026-03-10"


@pytest.mark.django_db
@pytest.mark.usefixtures("data_redis")
@time_machine.travel(NOW, tick=False)
def test_a_rebuild_keeps_the_events_the_worker_set_aside():
    site = make_site(domain="rejected.example", timezone="UTC")
    ingest("a" * 32, [make_event(site, NOW - timedelta(hours=1)), make_event(site, NOW, pathname="/\x00")])
    prefix = rollups.prefix(site.id)

    rebuild_site(site, grace_seconds=0)
    server = redis_clients.for_site(site.id)
    kept = (server.hgetall(f"{prefix}rejected"), server.llen(f"{prefix}rejected:events"))
    ingest("a" * 32, [make_event(site, NOW, pathname="/\x00")])  # delivered again after the rebuild

    assert kept == ({"unstorable:pathname": "1"}, 1)
    assert server.hgetall(f"{prefix}rejected") == {"unstorable:pathname": "1"}
    assert rollups.counters(site.id, "d", ["20260310"])[0]["pageviews"] == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_events")
@pytest.mark.slow
def test_changing_a_sites_timezone_rebuilds_its_day_buckets(celery_worker_factory):
    site = make_site(domain="tz.example", timezone="UTC")
    moment = datetime.now(UTC).replace(hour=20, minute=0, second=0, microsecond=0) - timedelta(days=1)
    ingest(uuid.uuid4().hex, [make_event(site, moment)])
    utc_day = moment.strftime("%Y%m%d")
    tokyo_day = (moment + timedelta(hours=9)).strftime("%Y%m%d")
    celery_worker_factory()

    update_site(site, timezone="Asia/Tokyo")

    wait_for(lambda: rollups.counters(site.id, "d", [tokyo_day])[0]["pageviews"] == 1, timeout=30)
    assert rollups.counters(site.id, "d", [utc_day])[0]["pageviews"] == 0
