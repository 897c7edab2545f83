"""The service's Prometheus metrics, written by every process of a host and read by ``GET /metrics``.

Every process (uvicorn workers, Celery pool processes) writes its values into files of its own
in one directory, prometheus-client's multiprocess mode, and ``spinnakr.metrics_view`` sums
them at each scrape: an answer does not depend on which process gives it. The directory is
``PROMETHEUS_MULTIPROC_DIR``, by default ``metrics`` in the checkout's ``var/`` (``SPINNAKR_VAR_DIR``); ``make run``
(``spinnakr.run``) empties it before it starts anything, and a test session uses one of its own. It must be
set before prometheus-client is imported, which picks its way of storing values then: hence the
order of this module's first lines.

Recording a value costs a lock and a write into a memory-mapped file (about a microsecond), so
the collector's hot path counts its answers without a round trip to anything.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spinnakr.embedded.paths import var_dir

# Under pytest (it sets PYTEST_VERSION) a new directory for the session, whose servers and workers
# inherit the variable (a pid alone may name an earlier session's: pids wrap).
if "PYTEST_VERSION" in os.environ:
    _DEFAULT = var_dir() / "metrics-test" / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
else:
    _DEFAULT = var_dir() / "metrics"
MULTIPROC_DIR = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_DEFAULT)))
MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)

import redis  # noqa: E402
import redis.sentinel  # noqa: E402
from django.conf import settings  # noqa: E402
from prometheus_client import Counter, Gauge, Histogram  # noqa: E402
from prometheus_client.values import ValueClass  # noqa: E402
from redis.cluster import RedisCluster  # noqa: E402

from spinnakr import rendezvous  # noqa: E402

# Whether this process writes into MULTIPROC_DIR (False: prometheus-client was imported before this
# module set the variable, and the values stay in this process).
MULTIPROCESS = bool(getattr(ValueClass, "_multiprocess", False))


def empty_directory(directory: Path = MULTIPROC_DIR) -> None:
    """Forget every process's values: for a launcher, before it starts the processes (an earlier
    run's counters would add up with this one's)."""
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)


# Collector ----------------------------------------------------------------------

COLLECTOR_EVENTS = Counter(
    "spinnakr_collector_events",
    "The collector's answers: one per event of a request it read, or one per request refused whole",
    ["endpoint", "status", "reason"],
)


@functools.cache
def collector_answer(endpoint: str, status: int, reason: str) -> Counter:
    """The child counter of one kind of answer, bound once: ``labels`` costs more than ``inc``."""
    return COLLECTOR_EVENTS.labels(endpoint, str(status), reason)


# Worker -------------------------------------------------------------------------

INGEST_GROUP_SECONDS = Histogram(
    "spinnakr_ingest_group_seconds",
    "Time to apply one group of broker messages (rollups, PostgreSQL, quota, live push)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
INGEST_EVENTS = Counter("spinnakr_ingest_events", "Events applied by the worker (redeliveries included)")
INGEST_LAG_SECONDS = Histogram(
    "spinnakr_ingest_lag_seconds",
    "Per message applied: the time from its events' receipt by the collector to their application",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
_CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
ROLLUP_CALL_SECONDS = Histogram(
    "spinnakr_rollup_call_seconds",
    "One round trip of rollup scripts to one rollup server",
    ["server"],
    buckets=_CALL_BUCKETS,
)
POSTGRES_CALL_SECONDS = Histogram(
    "spinnakr_postgres_call_seconds",
    "One transaction of the worker's raw-event store (COPY, INSERT, renames, commit)",
    ["server"],
    buckets=_CALL_BUCKETS,
)


@contextlib.contextmanager
def timed_rollups(server: redis.Redis | RedisCluster) -> Iterator[None]:
    """Times what it wraps (one round trip of scripts or a pipeline) as one rollup call to ``server``."""
    started = time.monotonic()
    yield
    ROLLUP_CALL_SECONDS.labels(redis_server(server)).observe(time.monotonic() - started)


# Web: live ----------------------------------------------------------------------

# livesum: the sum over the processes alive now; the view forgets the files of dead ones.
LIVE_CONSUMERS = Gauge("spinnakr_live_consumers", "Open WebSocket consumers", ["kind"], multiprocess_mode="livesum")


# Server labels --------------------------------------------------------------------


_REDIS_SERVERS: dict[redis.Redis | RedisCluster, str] = {}  # the process's clients live as long as it does


def redis_server(client: redis.Redis | RedisCluster) -> str:
    """The identity of a Redis client's server (``spinnakr.rendezvous.identity``): no credentials.
    A Redis Cluster is ``cluster`` (one logical server), a master behind Sentinel its name."""
    label = _REDIS_SERVERS.get(client)
    if label is not None:
        return label
    if isinstance(client, RedisCluster):
        label = "cluster"
    else:
        pool = client.connection_pool
        db = pool.connection_kwargs.get("db", 0)
        if isinstance(pool, redis.sentinel.SentinelConnectionPool):
            label = f"sentinel:{pool.service_name}/{db}"
        elif "path" in pool.connection_kwargs:
            label = rendezvous.identity(f"unix://{pool.connection_kwargs['path']}?db={db}")
        else:
            options = pool.connection_kwargs
            label = rendezvous.identity(f"redis://{options.get('host', 'localhost')}:{options.get('port', 6379)}/{db}")
    _REDIS_SERVERS[client] = label
    return label


def postgres_server(database: dict[str, Any] | None = None) -> str:
    """The worker's PostgreSQL (or ``database``, settings of a connection) as ``host:port/database``,
    ``unix:directory/database`` for a socket: no credentials."""
    database = database or settings.DATABASES["default"]
    host, name = str(database.get("HOST") or "localhost"), database["NAME"]
    if host.startswith("/"):
        return f"unix:{host}/{name}"
    return f"{host}:{database.get('PORT') or 5432}/{name}"
