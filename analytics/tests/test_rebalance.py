"""``manage.py rebalance_rollups``: sites move between rollups servers while ingestion goes on."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import time_machine
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.models import Site
from analytics.ingest import rollups
from analytics.ingest.pipeline import ingest
from analytics.payloads import EVENTS_SERIALIZER, INGEST_TASK
from analytics.query import run_query
from analytics.tests.conftest import WorkerProcess, purge_broker
from analytics.tests.factories import make_site
from analytics.tests.outage_servers import ThrowawayValkey, free_port
from analytics.tests.test_shards import TOTALS, servers, sites_on_every_server, visits
from spinnakr import breaker, placement, redis_clients
from spinnakr.celery import app
from spinnakr.settings import redis_db_url
from spinnakr.tests.waiting import wait_for

__all__ = ["servers"]
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis", "fresh_placement")]
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


@pytest.fixture
def fresh_placement() -> Iterator[None]:
    """No placement or failure remembered from another test, before or after."""
    placement.forget()
    breaker.reset()
    purge_broker()
    yield
    placement.forget()
    breaker.reset()
    purge_broker()


@pytest.fixture
def spare(tmp_path: Path) -> Iterator[ThrowawayValkey]:
    """A fourth Valkey, not in use until a rebalance adds it."""
    server = ThrowawayValkey(tmp_path / "spare", port=free_port())
    server.directory.mkdir()
    server.start()
    yield server
    server.stop()


def url_of(server: ThrowawayValkey) -> str:
    return redis_db_url(server.tcp_url, 0)


def holders(site: Site, among: list[ThrowawayValkey]) -> set[str]:
    pattern = f"{rollups.prefix(site.id)}*"
    return {url_of(s) for s in among if list(redis.Redis.from_url(url_of(s)).scan_iter(match=pattern))}


def some_moving(move: placement.Placement, count: int = 6) -> list[Site]:
    """Sites on every server, and as many more as it takes for ``move`` to move one."""
    sites = sites_on_every_server(count)
    while not any(move.moving(site.id) for site in sites):
        sites.append(make_site(f"more{len(sites)}.example"))
        assert len(sites) < 100, "the move moves no site"
    return sites


def stored(site: Site) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM analytics_event WHERE site_id = %s", [site.id])
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


@time_machine.travel(NOW, tick=False)
def test_a_moving_site_s_batches_wait_and_its_queries_answer_from_sql_marked_not_live(
    servers: list[ThrowawayValkey], spare: ThrowawayValkey
) -> None:
    now = redis_clients.rollup_urls()
    announced = placement.Placement(now, (*now, url_of(spare)))
    sites = some_moving(announced)
    ingest(uuid.uuid4().hex, [event for n, site in enumerate(sites) for event in visits(site, n)])
    redis_clients.data().set(placement.KEY, announced.dumps())
    placement.forget()
    moving = [site for site in sites if announced.moving(site.id)]
    staying = [site for site in sites if not announced.moving(site.id)]
    before = {site.id: rollups.counters(site.id, "d", ["20260310"])[0]["pageviews"] for site in sites}

    ingest(uuid.uuid4().hex, [event for n, site in enumerate(sites) for event in visits(site, n)])

    assert [rollups.counters(s.id, "d", ["20260310"])[0]["pageviews"] for s in moving] == [before[s.id] for s in moving]
    assert [rollups.counters(s.id, "d", ["20260310"])[0]["pageviews"] for s in staying] == [
        2 * before[s.id] for s in staying
    ]
    assert [run_query(s, TOTALS)["meta"].get("live") for s in sites] == [False if s in moving else None for s in sites]


def test_a_rebalance_to_a_server_that_does_not_answer_changes_nothing(servers: list[ThrowawayValkey]) -> None:
    before = redis_clients.rollup_urls()

    with pytest.raises(CommandError, match="does not answer"):
        call_command("rebalance_rollups", "--add", f"redis://127.0.0.1:{free_port()}", settle=0, stdout=io.StringIO())

    assert redis_clients.data().get(placement.KEY) is None
    assert redis_clients.rollup_urls() == before


def test_removing_a_server_not_in_use_is_refused(servers: list[ThrowawayValkey], spare: ThrowawayValkey) -> None:
    with pytest.raises(CommandError, match="not a server in use"):
        call_command("rebalance_rollups", "--remove", spare.tcp_url, settle=0, stdout=io.StringIO())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_events")
def test_sites_move_from_three_servers_to_four_and_to_three_again_under_load_each_event_counted_once(
    servers: list[ThrowawayValkey], spare: ThrowawayValkey, celery_worker_factory: Callable[..., WorkerProcess]
) -> None:
    three = redis_clients.rollup_urls()
    sites = some_moving(placement.Placement(three, (*three, url_of(spare))), count=12)
    worker = celery_worker_factory(env={"REDIS_URLS": ",".join(server.tcp_url for server in servers)})
    yesterday = datetime.now(UTC).replace(hour=23, minute=0, second=0, microsecond=0) - timedelta(days=1)
    day = yesterday.strftime("%Y%m%d")
    sent: Counter[int] = Counter()
    stop = threading.Event()

    def send() -> None:
        while not stop.is_set():
            events = [event for n, site in enumerate(sites) for event in visits(site, n % 4, yesterday)]
            app.send_task(
                INGEST_TASK,
                kwargs={"batch_id": uuid.uuid4().hex, "events": events},
                serializer=EVENTS_SERIALIZER,
                queue=settings.EVENTS_QUEUE,
            )
            sent.update(event["site_id"] for event in events)
            time.sleep(0.1)

    added, removed = io.StringIO(), io.StringIO()
    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(2)
        call_command("rebalance_rollups", "--add", spare.tcp_url, stdout=added)
        on_four = Counter(redis_clients.rollup_url(site.id) for site in sites)
        busiest = max(servers, key=lambda server: on_four[url_of(server)])  # one an original site leaves
        call_command("rebalance_rollups", "--remove", busiest.tcp_url, stdout=removed)
        time.sleep(2)
    finally:
        stop.set()
        sender.join()

    def counted() -> list[tuple[int, int]]:
        return [(rollups.counters(s.id, "d", [day])[0]["pageviews"], stored(s)) for s in sites]

    wait_for(lambda: counted() == [(sent[s.id], sent[s.id]) for s in sites], timeout=60)
    assert b"ingest.parts_held" in worker.log.read_bytes()  # the moving sites' batches waited
    assert (moved(added), moved(removed)) == (on_four[url_of(spare)], on_four[url_of(busiest)])
    assert on_four[url_of(busiest)] > 0 and on_four[url_of(spare)] > 0
    assert redis_clients.rollup_urls() == tuple(url_of(s) for s in [*servers, spare] if s is not busiest)
    assert [holders(site, [*servers, spare]) for site in sites] == [
        {redis_clients.rollup_url(site.id)} for site in sites
    ]


def moved(output: io.StringIO) -> int:
    """The number of sites the command said it moved."""
    return int(output.getvalue().rsplit("moved ", 1)[1].split()[0])
