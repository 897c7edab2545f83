"""``REDIS_URLS``: each site's rollups on one of three real Valkey servers, everything else in place."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import time_machine
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings

from accounts.models import Site
from analytics.ingest import rollups
from analytics.ingest.cleanup import purge_site
from analytics.ingest.pipeline import ingest
from analytics.query import run_query
from analytics.tests.conftest import WorkerProcess
from analytics.tests.factories import make_event, make_site
from analytics.tests.outage_servers import ThrowawayValkey, free_port
from spinnakr import redis_clients, rendezvous
from spinnakr.celery import app
from spinnakr.settings import redis_db_url
from spinnakr.tests.waiting import wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
DAY = NOW.date().isoformat()
TOTALS = {"metrics": ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"], "date_range": [DAY, DAY]}
PAGES = {"metrics": ["visitors", "pageviews"], "dimensions": ["event:page"], "date_range": [DAY, DAY]}


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ThrowawayValkey]]:
    """Three Valkeys on loopback ports, holding the rollups (``ROLLUP_REDIS_URLS``) for the test."""
    started = [ThrowawayValkey(tmp_path / f"rollups-{n}", port=free_port()) for n in range(3)]
    for server in started:
        server.directory.mkdir()
        server.start()
    with override_settings(ROLLUP_REDIS_URLS=tuple(redis_db_url(s.tcp_url, 0) for s in started)):
        yield started
    for server in started:
        server.stop()


def urls() -> tuple[str, ...]:
    return redis_clients.rollup_urls()


def holders(site_id: int) -> set[str]:
    """The rollups' servers holding a key of the site."""
    pattern = f"{rollups.prefix(site_id)}*"
    return {url for url in urls() if list(redis.Redis.from_url(url).scan_iter(match=pattern))}


def sites_on_every_server(count: int = 6) -> list[Site]:
    """At least ``count`` new sites, and as many more as it takes for each server to hold one."""
    sites: list[Site] = []
    while len(sites) < count or {rendezvous.choose(urls(), s.id) for s in sites} != set(urls()):
        sites.append(make_site(f"site{len(sites)}.example"))
        assert len(sites) < 100, "the hashing leaves a server empty"
    return sites


def visits(site: Site, n: int, at: datetime = NOW) -> list[Any]:
    """``n`` + 1 visitors' pageviews over the hour before ``at``: each site's own figures."""
    return [
        make_event(site, at - timedelta(minutes=50 - 5 * p), visitor=v, pathname=f"/p{p}")
        for v in range(n + 1)
        for p in range(1 + v % 3)
    ]


def answers(sites: list[Site]) -> list[tuple[Any, Any]]:
    return [(run_query(site, TOTALS)["results"], run_query(site, PAGES)["results"]) for site in sites]


def sources(caplog: pytest.LogCaptureFixture) -> set[str]:
    return {r.source for r in caplog.records if r.getMessage() == "query.answered"}  # type: ignore[attr-defined]


@time_machine.travel(NOW, tick=False)
def test_each_site_s_rollups_live_on_its_server_alone(servers: list[ThrowawayValkey], data_redis: redis.Redis) -> None:
    sites = sites_on_every_server()

    ingest(uuid.uuid4().hex, [event for n, site in enumerate(sites) for event in visits(site, n)])

    assert {site.id: holders(site.id) for site in sites} == {
        site.id: {rendezvous.choose(urls(), site.id)} for site in sites
    }
    assert list(data_redis.scan_iter(match="{s:*")) == []
    assert all(redis.Redis.from_url(url).exists(rollups.EPOCH_KEY) for url in urls())


@time_machine.travel(NOW, tick=False)
def test_a_fresh_server_trusts_its_first_batch_though_another_server_counted_before(
    servers: list[ThrowawayValkey],
) -> None:
    sites = sites_on_every_server(count=3)
    Site.objects.filter(pk__in=[site.pk for site in sites]).update(created=NOW - timedelta(days=1))

    for n, site in enumerate(sites):
        ingest(uuid.uuid4().hex, visits(site, n))

    assert [rollups.meta(site.id).get("complete_since") for site in sites] == ["2026-03-09"] * len(sites)


@time_machine.travel(NOW, tick=False)
def test_queries_answer_from_three_servers_what_they_answer_from_one(
    servers: list[ThrowawayValkey], caplog: pytest.LogCaptureFixture
) -> None:
    spread = sites_on_every_server()
    ingest(uuid.uuid4().hex, [event for n, site in enumerate(spread) for event in visits(site, n)])
    with override_settings(ROLLUP_REDIS_URLS=()):
        alone = [make_site(f"alone{n}.example") for n in range(len(spread))]
        ingest(uuid.uuid4().hex, [event for n, site in enumerate(alone) for event in visits(site, n)])

        with caplog.at_level(logging.INFO, logger="analytics.query.engine"):
            expected = answers(alone)

    with caplog.at_level(logging.INFO, logger="analytics.query.engine"):
        actual = answers(spread)

    assert actual == expected
    assert len({str(answer) for answer in actual}) == len(spread)
    assert sources(caplog) == {"redis"}


@time_machine.travel(NOW, tick=False)
def test_rebuilding_every_site_recomputes_each_on_its_server(servers: list[ThrowawayValkey]) -> None:
    sites = sites_on_every_server(count=3)
    ingest(uuid.uuid4().hex, [event for n, site in enumerate(sites) for event in visits(site, n)])
    live = [rollups.counters(site.id, "d", ["20260310"]) for site in sites]
    for url in urls():
        redis.Redis.from_url(url).flushdb()  # the servers lost; PostgreSQL still has the events

    call_command("rebuild_rollups", "--all", stdout=io.StringIO())

    assert [rollups.counters(site.id, "d", ["20260310"]) for site in sites] == live
    assert {site.id: holders(site.id) for site in sites} == {
        site.id: {rendezvous.choose(urls(), site.id)} for site in sites
    }


@time_machine.travel(NOW, tick=False)
def test_deleting_a_site_removes_its_keys_from_its_server_and_spares_the_others(
    servers: list[ThrowawayValkey],
) -> None:
    sites = sites_on_every_server()
    ingest(uuid.uuid4().hex, [event for n, site in enumerate(sites) for event in visits(site, n)])
    gone, kept = sites[0], sites[1:]

    events, keys = purge_site(gone.id)

    assert events == len(visits(gone, 0))
    assert keys > 10
    assert holders(gone.id) == set()
    assert all(holders(site.id) == {rendezvous.choose(urls(), site.id)} for site in kept)


def test_health_names_a_rollups_server_that_stopped(servers: list[ThrowawayValkey], client: Client) -> None:
    assert client.get("/healthz").status_code == 200
    servers[1].stop()

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["down"] == ["redis"]
    assert f"rollups on 127.0.0.1:{servers[1].port}/" in response.json()["components"]["redis"]["error"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_events")
def test_a_worker_given_redis_urls_counts_each_site_on_its_server(
    servers: list[ThrowawayValkey], celery_worker_factory: Callable[..., WorkerProcess]
) -> None:
    sites = sites_on_every_server()
    yesterday = datetime.now(UTC).replace(hour=23, minute=0, second=0, microsecond=0) - timedelta(days=1)
    batches = [visits(site, n, yesterday) for n, site in enumerate(sites)]
    celery_worker_factory(env={"REDIS_URLS": ",".join(server.tcp_url for server in servers)})

    app.send_task(
        "analytics.ingest_batch",
        kwargs={"batch_id": uuid.uuid4().hex, "events": [event for batch in batches for event in batch]},
        queue=settings.EVENTS_QUEUE,
    )

    day = yesterday.strftime("%Y%m%d")
    wait_for(
        lambda: [rollups.counters(s.id, "d", [day])[0]["pageviews"] for s in sites] == list(map(len, batches)),
        timeout=60,
    )
    assert {site.id: holders(site.id) for site in sites} == {
        site.id: {rendezvous.choose(urls(), site.id)} for site in sites
    }
