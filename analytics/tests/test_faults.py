"""The fault suite: real processes under a steady HTTP load, one fault each, and every fault ends
with accepted (202) = counted (rollups) = stored (PostgreSQL rows), with no event stored twice.

Each test runs a real uvicorn serving the collector, real Celery worker subprocesses and, where
the fault needs a server it may stop, throwaway servers of its own (analytics.tests.outage_servers)
instead of the session's. The load, its ledger and the balance: analytics.tests.fault_load.
"""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.models import Site
from analytics.ingest.pipeline import PAUSE_ENV
from analytics.query import planner, run_query
from analytics.tests.collector_fixtures import Server, free_port, start_server, stop_server
from analytics.tests.conftest import WorkerProcess
from analytics.tests.factories import make_site
from analytics.tests.fault_load import (
    Load,
    assert_balanced,
    batches_done,
    counted,
    rollup_valkeys,
    server_of,
    sites_on_every_server,
    urls_env,
)
from analytics.tests.outage_servers import ThrowawayPostgres, ThrowawayValkey, throwaway_valkey
from spinnakr.tests.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_events"), pytest.mark.slow]

OUTAGE_SECONDS = 10
# A lost worker's messages come back to a Redis broker once its lease has expired.
SHORT_LEASE = {"BROKER_LEASE_SECONDS": "3"}

WebFactory = Callable[..., Server]
WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def web_factory(tmp_path: Path) -> Iterator[WebFactory]:
    """Start real collectors (``start(env={...}, port=...)``): one uvicorn process each, stopped after the test."""
    servers: list[Server] = []

    def start(env: dict[str, str] | None = None, port: int | None = None) -> Server:
        server = start_server(tmp_path, env, port=port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        stop_server(server)


def two_sites() -> list[Site]:
    return [make_site("a.example"), make_site("b.example")]


def test_a_worker_killed_mid_group_leaves_every_accepted_event_counted_and_stored_once(
    web_factory: WebFactory, celery_worker_factory: WorkerFactory
) -> None:
    web = web_factory()
    with Load(web.url, two_sites()) as load:
        load.run_for(2)  # messages wait, so the first worker takes them as one group
        paused = celery_worker_factory(env={PAUSE_ENV: "after_rollups:60", **SHORT_LEASE})
        wait_for(lambda: "ingest.test_pause" in paused.log.read_text(), timeout=30)
        paused.kill()  # the group's rollups applied, none of its rows stored
        worker = celery_worker_factory(env=SHORT_LEASE)
        load.run_for(8)

    assert_balanced(load.ledger)
    assert load.ledger.total() > 200
    assert max(batches_done(worker.log, duplicate=True)) >= 2  # the group came back, its markers held


def test_a_whole_group_delivered_twice_is_counted_and_stored_once(
    web_factory: WebFactory, celery_worker_factory: WorkerFactory
) -> None:
    web = web_factory()
    with Load(web.url, two_sites()) as load:
        load.run_for(2)
        paused = celery_worker_factory(env={PAUSE_ENV: "after_store:60", **SHORT_LEASE})
        wait_for(lambda: "ingest.test_pause" in paused.log.read_text(), timeout=30)
        paused.kill()  # the group applied whole, and never acknowledged
        worker = celery_worker_factory(env=SHORT_LEASE)
        load.run_for(8)

    assert_balanced(load.ledger)
    assert max(batches_done(worker.log, duplicate=True)) >= 2


def test_a_rollups_server_restarted_mid_load_replays_its_aof_and_misses_nothing(
    tmp_path: Path, web_factory: WebFactory, celery_worker_factory: WorkerFactory
) -> None:
    with rollup_valkeys(tmp_path) as servers:
        sites = sites_on_every_server(make_site, servers)
        web = web_factory(env=urls_env(servers))
        celery_worker_factory(env=urls_env(servers))
        restarted = server_of(sites[1], servers)
        with Load(web.url, sites) as load:
            load.run_for(4)
            restarted.stop()  # SIGTERM: Valkey flushes its AOF and exits
            load.run_for(3)
            restarted.start()  # and replays it
            load.run_for(5)

        assert_balanced(load.ledger)
        assert all(len(paths) > 50 for paths in load.ledger.accepted.values())


def test_a_rollups_server_lost_with_its_data_is_answered_from_sql_then_rebuilt_to_the_live_figures(
    tmp_path: Path, web_factory: WebFactory, celery_worker_factory: WorkerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with rollup_valkeys(tmp_path) as servers:
        sites = sites_on_every_server(make_site, servers)
        web = web_factory(env=urls_env(servers))
        celery_worker_factory(env=urls_env(servers))
        lost_site = sites[0]
        lost = server_of(lost_site, servers)
        with Load(web.url, sites) as load:
            load.run_for(4)
            lose_with_its_data(lost)
            load.run_for(2)
            wait_for(lambda: counted(lost_site.id) > 0, timeout=30)  # a batch since the loss
            with caplog.at_level("INFO", logger="analytics.query.engine"):
                run_query(lost_site, totals())  # after the loss: from SQL, and a rebuild queued
            load.run_for(6)

        assert_balanced(load.ledger)
        with caplog.at_level("INFO", logger="analytics.query.engine"):
            rebuilt = wait_for(lambda: answered_from_redis(lost_site), timeout=60)
            from_sql = run_query(lost_site, totals(filtered=True))["results"]
        assert sources(caplog) == ["sql", "redis", "sql"]
        assert rebuilt == from_sql
        assert rebuilt[0]["metrics"][0] == len(load.ledger.accepted[lost_site.id])


def lose_with_its_data(server: ThrowawayValkey) -> None:
    """The server gone with its disk: stopped, its files deleted, started empty."""
    server.stop()
    for path in server.directory.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    server.start()


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def totals(filtered: bool = False) -> dict[str, Any]:
    """Today's totals (visitors left out: HyperLogLog's count is near, not equal); ``filtered``
    adds a filter every event passes, which only SQL answers."""
    body: dict[str, Any] = {
        "metrics": ["pageviews", "visits", "bounce_rate", "visit_duration"],
        "date_range": [today().isoformat(), today().isoformat()],
    }
    if filtered:
        body["filters"] = [["is_not", "event:page", ["/nowhere"]]]
    return body


def answered_from_redis(site: Site) -> list[dict[str, Any]]:
    """The totals, once the planner answers them from the rollups (the rebuild is done)."""
    if not planner.rollups_ready(site.pk, today()):
        return []
    return list(run_query(site, totals())["results"])


def sources(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.source for r in caplog.records if r.getMessage() == "query.answered"]  # type: ignore[attr-defined]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[ThrowawayValkey]:
    """A Redis broker of the test's own (whatever the session's broker), which it stops."""
    yield from throwaway_valkey(tmp_path)


def test_with_the_broker_down_for_ten_seconds_the_collector_answers_503_and_loses_nothing_it_accepted(
    own_broker: ThrowawayValkey, web_factory: WebFactory, celery_worker_factory: WorkerFactory
) -> None:
    broker = {"CELERY_BROKER_URL": own_broker.url, **SHORT_LEASE}
    web = web_factory(env=broker)
    # Each group waits a moment between its rollups and its rows: the outage finds one in flight.
    worker = celery_worker_factory(env={**broker, PAUSE_ENV: "after_rollups:1"})
    with Load(web.url, two_sites()) as load:
        load.run_for(3)
        wait_for(lambda: "ingest.test_pause" in worker.log.read_text(), timeout=10)
        stopping = time.monotonic()
        own_broker.stop()
        stopped = time.monotonic()
        load.run_for(OUTAGE_SECONDS)
        own_broker.start()
        load.run_for(5)

    assert_balanced(load.ledger, in_doubt=frozenset(load.ledger.in_flight(stopping, stopped)))
    assert load.ledger.statuses[503] > 100
    assert sum(load.ledger.retry_after.values()) == load.ledger.statuses[503]
    assert set(load.ledger.statuses) == {202, 503}
    assert worker.process.poll() is None
    wait_for(lambda: own_broker.client().hlen("unacked") == 0, timeout=30)


MAKE_SITES = """
from django.core.management import call_command
from analytics.tests.factories import make_site
call_command("migrate", verbosity=0)
print(*(make_site(domain).id for domain in ("a.example", "b.example")))
"""


@pytest.fixture
def own_postgres() -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres()
    server.start()
    yield server
    server.remove()


def test_with_postgresql_down_for_ten_seconds_the_worker_retries_without_counting_anything_twice(
    own_postgres: ThrowawayPostgres, web_factory: WebFactory, celery_worker_factory: WorkerFactory
) -> None:
    # The sites, the collector's lookups and the raw rows live in the throwaway database; the
    # rollups in the session's Redis.
    sites = [
        Site(id=int(site_id), domain=domain)
        for site_id, domain in zip(own_postgres.django(MAKE_SITES).split(), ("a.example", "b.example"), strict=True)
    ]
    database = {"DATABASE_URL": own_postgres.url, "SPINNAKR_TEST_DB_NAME": ""}
    web = web_factory(env=database)
    worker = celery_worker_factory(env=database)

    def stored_in_own_postgres(site_id: int) -> list[str]:
        rows = own_postgres.query("SELECT pathname FROM analytics_event WHERE site_id = %s", [site_id])
        return [str(row[0]) for row in rows]

    with Load(web.url, sites) as load:
        load.run_for(3)
        own_postgres.stop()
        load.run_for(OUTAGE_SECONDS)
        own_postgres.start()
        load.run_for(5)

    assert_balanced(load.ledger, stored=stored_in_own_postgres)
    assert set(load.ledger.statuses) == {202}
    assert worker.process.poll() is None
    assert batches_done(worker.log, duplicate=True)  # retried after its rollups: their markers held
    # The waiting batches were handed back to the queue, not republished each with a countdown
    # of its own (a batch taken again at once was retried five times in under two seconds).
    assert "ingest.batch_deferred" not in worker.log.read_text()


def test_a_web_process_killed_mid_request_leaves_every_event_it_answered_202_counted(
    web_factory: WebFactory, celery_worker_factory: WorkerFactory
) -> None:
    port = free_port()
    web = web_factory(port=port)
    celery_worker_factory()
    with Load(web.url, two_sites()) as load:
        load.run_for(3)
        half_sent = socket.create_connection(("127.0.0.1", port))
        half_sent.sendall(b"POST /api/event HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")  # body to come
        killed = time.monotonic()
        web.process.send_signal(signal.SIGKILL)
        web.process.wait(10)
        unanswered = answer_of(half_sent)
        web_factory(port=port)
        load.run_for(5)

    assert unanswered == b""  # its connection closed without an answer
    assert_balanced(load.ledger, in_doubt=frozenset(load.ledger.in_flight(killed, killed)))
    assert load.ledger.total() > 200
    assert sum(map(len, load.ledger.unanswered.values())) >= 1


def answer_of(connection: socket.socket) -> bytes:
    """What the server answered on ``connection`` before it closed (a reset answers nothing)."""
    connection.settimeout(10)
    with connection:
        try:
            return connection.recv(100)
        except ConnectionResetError:
            return b""
