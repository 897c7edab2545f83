"""Fixtures of the analytics tests: clean rollups and a real Celery worker subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import override_settings
from kombu import Connection
from redis.cluster import RedisCluster

from analytics.ingest import siteinfo, store
from analytics.tests.cluster_servers import assert_throwaway, redis_cluster
from analytics.tests.collector_fixtures import collector, strict_collector
from spinnakr import redis_clients
from spinnakr.tests.waiting import wait_for

__all__ = ["collector", "redis_cluster", "strict_collector"]


@pytest.fixture(scope="session", autouse=True)
def rollups_on_a_cluster(request: pytest.FixtureRequest) -> Iterator[None]:
    """With ``SPINNAKR_TEST_ROLLUPS_CLUSTER=1`` (the CI's cluster leg), the analytics tests keep the
    rollups on the session's throwaway Redis Cluster, their worker subprocesses too; else nothing."""
    if os.environ.get("SPINNAKR_TEST_ROLLUPS_CLUSTER") != "1":
        yield
        return
    url = request.getfixturevalue("redis_cluster").url
    before = os.environ.get("REDIS_URLS")
    os.environ["REDIS_URLS"] = url
    try:
        with override_settings(ROLLUP_REDIS_URLS=(url,)):
            yield
    finally:
        os.environ.pop("REDIS_URLS")
        if before is not None:
            os.environ["REDIS_URLS"] = before


@pytest.fixture
def fresh_partition_cache() -> Iterator[None]:
    """The raw store's memory of the partitions it has made, forgotten before and after the test."""
    store.forget_partitions()
    yield
    store.forget_partitions()


@pytest.fixture
def data_redis() -> Iterator[redis.Redis]:
    """The data Redis's database (tests use their own, +8), empty before and after the test, as is
    each rollups server's."""
    client = redis_clients.data()
    _flush_rollups(client)
    siteinfo._cache.clear()
    store.forget_partitions()
    yield client
    _flush_rollups(client)


def _flush_rollups(data: redis.Redis) -> None:
    for server in {id(server): server for server in [data, *redis_clients.rollup_servers()]}.values():
        if isinstance(server, RedisCluster):  # a cluster has no test database of its own
            assert_throwaway(server)
        server.flushdb()


def purge_broker() -> None:
    """Empty the test queues: RabbitMQ's by purging them, a Redis broker's test database whole
    (which also drops the unacknowledged messages it keeps for redelivery)."""
    url = str(settings.CELERY_BROKER_URL)
    if settings.BROKER_IS_AMQP:
        with Connection(url) as conn:
            channel = conn.channel()
            for queue in settings.CELERY_TASK_QUEUES:
                bound = queue(channel)
                bound.declare()
                bound.purge()
        return
    if url.startswith("redis+socket://"):
        path, _, query = url.removeprefix("redis+socket://").partition("?")
        db = int(dict(p.split("=") for p in query.split("&") if p).get("virtual_host", "0"))
        redis.Redis(unix_socket_path=path, db=db).flushdb()
        return
    redis.Redis.from_url(url).flushdb()


WORKER_APP_NAME = "spinnakr-test-worker"


class WorkerProcess:
    """A ``celery worker`` subprocess on the test queues, against the test database."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log = log_dir / f"worker-{uuid.uuid4().hex[:8]}.log"
        self.node = f"test-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"  # as on a host of its own
        full_env = {
            **os.environ,
            "SPINNAKR_TESTING": "1",
            "SPINNAKR_TEST_DB_NAME": connection.settings_dict["NAME"],
            "PGAPPNAME": WORKER_APP_NAME,
            **env,
        }
        command = [
            sys.executable, "-m", "celery", "-A", "spinnakr", "worker",
            "-Q", f"{settings.EVENTS_QUEUE},{settings.DEFAULT_QUEUE}",
            "--concurrency", "1", "--prefetch-multiplier", "1",
            "--without-heartbeat", "--without-gossip", "--without-mingle",
            "-n", self.node, "--loglevel", "INFO",
        ]  # fmt: skip
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=settings.BASE_DIR,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: self.process.poll() is not None or b" ready." in self.log.read_bytes(), timeout=60)
        assert self.process.poll() is None, self.log.read_text()

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def celery_worker_factory(tmp_path: Path, data_redis: redis.Redis) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real workers: ``start(env={...})``; all are stopped after the test.

    Tests using it need ``@pytest.mark.django_db(transaction=True)`` so the worker sees their rows.
    """
    purge_broker()
    workers: list[WorkerProcess] = []

    def start(env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(tmp_path, env or {})
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    purge_broker()
    # The workers' database sessions end a moment after the processes; the test database can
    # only be dropped once they have.
    wait_for(_no_worker_sessions, timeout=15)


def _no_worker_sessions() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            [WORKER_APP_NAME],
        )
        row = cursor.fetchone()
    return row is not None and row[0] == 0


@pytest.fixture
def clean_events() -> Iterator[None]:
    """Transactional tests: the raw event table is not Django's to flush."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM analytics_event")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM analytics_event")
