"""Several worker nodes on one queue: separate ``celery worker`` processes with node names of their
own, as on separate hosts, each with its own PostgreSQL and Redis connections, consuming the
session's events queue (a RabbitMQ quorum queue when ``CELERY_BROKER_URL`` is amqp, the embedded
Redis broker otherwise) while a real collector takes a steady HTTP load for sites spread over
three rollups servers (``REDIS_URLS``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from analytics.tests.collector_fixtures import Server, start_server, stop_server
from analytics.tests.conftest import WorkerProcess
from analytics.tests.factories import make_site
from analytics.tests.fault_load import (
    Load,
    assert_balanced,
    batches_done,
    rollup_valkeys,
    sites_on_every_server,
    urls_env,
)
from spinnakr.celery import app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_events"), pytest.mark.slow]


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Server]]:
    started: list[Server] = []

    def start(env: dict[str, str]) -> Server:
        started.append(start_server(tmp_path, env))
        return started[-1]

    yield start
    for server in started:
        stop_server(server)


def test_two_worker_nodes_share_one_queue_and_three_rollups_servers_and_every_accepted_event_counts_once(
    tmp_path: Path, web: Callable[[dict[str, str]], Server], celery_worker_factory: Callable[..., WorkerProcess]
) -> None:
    with rollup_valkeys(tmp_path) as servers:
        sites = sites_on_every_server(make_site, servers, "one") + sites_on_every_server(make_site, servers, "two")
        collector = web(urls_env(servers))
        nodes = [celery_worker_factory(env=urls_env(servers)) for _ in range(2)]
        with Load(collector.url, sites, rate=80) as load:
            load.run_for(10)

        assert_balanced(load.ledger)

    assert load.ledger.total() > 400
    answered = {name for reply in app.control.ping(timeout=2) or [] for name in reply}
    assert answered >= {node.node for node in nodes}  # two live nodes, each of its own name
    assert all(sum(batches_done(node.log)) > 0 for node in nodes)  # both took messages of the queue
