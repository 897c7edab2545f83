"""The faults the soak injects, one of each kind (issue 19's fault suite), on the live service.

Each fault acts on ``Service``, the processes and servers of the run, and returns once its action
is over (a server back, a process restarted); whether and when the pipeline recovered is read
from the samples afterwards (``bench/soak/run.py``).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from accounts.models import Site
from analytics.payloads import EVENTS_SERIALIZER, INGEST_TASK
from analytics.tests.factories import make_event
from bench.e2e.harness import start_web, start_worker, wait_for_port, wait_for_worker
from bench.soak.servers import Fleet
from spinnakr.celery import app
from spinnakr.embedded import postgres as embedded_postgres

# How long the broker and PostgreSQL stay down (the 10 s).
OUTAGE_SECONDS = 10.0
# Events of each message of the duplicated group.
DUPLICATE_EVENTS = 50


class Skipped(Exception):
    """The fault cannot be injected on these servers (say why)."""


@dataclass
class Service:
    fleet: Fleet
    port: int
    concurrency: int
    log_dir: Path
    sites: list[Site]
    dup_site: Site
    web: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    worker_logs: list[Path] = field(default_factory=list)
    # Pathnames of events sent outside the load generators (the duplicated group), per site.
    extra: dict[int, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start_web(self) -> None:
        self.web = start_web(self.port)
        wait_for_port(self.port, self.web)

    def start_worker(self) -> None:
        log = self.log_dir / f"worker-{len(self.worker_logs)}.log"
        self.worker_logs.append(log)
        self.worker = start_worker(self.concurrency, log)
        wait_for_worker(self.worker)

    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [process for process in (self.web, self.worker) if process is not None]


def _kill_group(process: subprocess.Popen[bytes] | None) -> None:
    assert process is not None
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def worker_killed(service: Service) -> str:
    """The worker and its pool SIGKILLed while it applies groups, then a new one started: its
    unacknowledged messages come back (leases on a Redis broker, the dropped connection on RabbitMQ)."""
    with service.lock:
        _kill_group(service.worker)
        service.start_worker()
    return "worker SIGKILLed mid-group, a new one started"


def web_killed(service: Service) -> str:
    """uvicorn and its workers SIGKILLed with requests in flight, then started again on the same
    port: what it answered 202 to must be counted."""
    with service.lock:
        _kill_group(service.web)
        service.start_web()
    return "web SIGKILLed mid-request, started again"


def rollups_restarted(service: Service) -> str:
    """The first rollup server stopped as an operator stops it and started again (AOF replay)."""
    server = service.fleet.rollups[0]
    server.stop()
    server.start()
    return f"rollup server {server.tcp_url} restarted (AOF replayed)"


def rollups_lost(service: Service) -> str:
    """The last rollup server killed and started empty, as a replaced host: its sites are
    answered from SQL and rebuilt (the run asks the planner, which queues the rebuilds)."""
    server = service.fleet.rollups[-1]
    service.fleet.wipe(server)
    server.start()
    return f"rollup server {server.tcp_url} lost with its data, started empty"


def broker_down(service: Service) -> str:
    """The broker stopped for ``OUTAGE_SECONDS``: the collector answers 503 with Retry-After."""
    service.fleet.broker.stop()
    time.sleep(OUTAGE_SECONDS)
    service.fleet.broker.start()
    return f"broker down for {OUTAGE_SECONDS:.0f} s"


def postgres_down(service: Service) -> str:
    """PostgreSQL stopped (fast shutdown: every session cut) for ``OUTAGE_SECONDS``."""
    if os.environ.get("DATABASE_URL"):
        raise Skipped("DATABASE_URL names a PostgreSQL the bench does not run")
    embedded_postgres.stop()
    time.sleep(OUTAGE_SECONDS)
    embedded_postgres.start()
    return f"PostgreSQL down for {OUTAGE_SECONDS:.0f} s"


def duplicate_group(service: Service) -> str:
    """Three messages of a site of their own published, then the same three again once applied:
    the worker takes the copies as a group of their own, and must change nothing."""
    site = service.dup_site
    now = dt.datetime.now(dt.UTC)
    messages = []
    paths = service.extra.setdefault(site.id, [])
    for m in range(3):
        batch = f"soak-dup-{uuid.uuid4().hex}"
        events = []
        for k in range(DUPLICATE_EVENTS):
            path = f"/dup/{batch}/{k}"
            paths.append(path)
            events.append(make_event(site, now, visitor=10**12 + m * DUPLICATE_EVENTS + k, pathname=path))
        messages.append((batch, events))
    for _ in range(2):
        for batch, events in messages:
            app.send_task(
                INGEST_TASK,
                kwargs={"batch_id": batch, "events": events},
                queue=settings.EVENTS_QUEUE,
                serializer=EVENTS_SERIALIZER,
            )
        time.sleep(3)
    return f"a group of 3 messages ({3 * DUPLICATE_EVENTS} events) delivered twice"


FAULTS: dict[str, Callable[[Service], str]] = {
    "worker-killed": worker_killed,
    "rollups-restarted": rollups_restarted,
    "rollups-lost": rollups_lost,
    "broker-down": broker_down,
    "postgres-down": postgres_down,
    "duplicate-group": duplicate_group,
    "web-killed": web_killed,
}
