"""Throwaway servers that a test may stop and start again: the session's own stay up.

Each keeps its data across a stop, as the embedded servers do (a Valkey with its AOF, a
PostgreSQL with its data directory), so a test can stop one under a worker and see what the
worker makes of its return.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import redis
from django.conf import settings

from spinnakr.embedded import postgres as embedded_postgres
from spinnakr.embedded import valkey as embedded_valkey
from spinnakr.tests.waiting import wait_for


class ThrowawayValkey:
    """A Valkey on a Unix socket of ``directory`` and, with ``port``, on that loopback TCP port,
    appending every write to its AOF."""

    def __init__(self, directory: Path, port: int = 0) -> None:
        self.directory = directory
        self.socket = directory / "valkey.sock"
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The address Celery's settings take (``CELERY_BROKER_URL``), on database 0."""
        return f"redis+socket://{self.socket}?virtual_host=0"

    @property
    def tcp_url(self) -> str:
        """The address ``REDIS_URL`` and ``REDIS_URLS`` take, on database 0 (with ``port``)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5)

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        args = [
            str(embedded_valkey.binary()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket),
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
        ]  # fmt: skip
        # A session of its own: a Ctrl-C meant for a bench (bench/soak) leaves it to the bench's teardown.
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True)
        wait_for(self._answers, timeout=30)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except (redis.ConnectionError, redis.BusyLoadingError):
            return False

    def stop(self) -> None:
        """SIGTERM, as an operator stops it: Valkey writes its AOF and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


def free_port() -> int:
    """A loopback TCP port nothing listens on at the moment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def throwaway_valkey(directory: Path) -> Iterator[ThrowawayValkey]:
    server = ThrowawayValkey(directory)
    server.start()
    yield server
    server.stop()


class ThrowawayPostgres:
    """A PostgreSQL of its own (``spinnakr.embedded`` under a var directory of its own), migrated."""

    def __init__(self) -> None:
        # Not under pytest's 0700 tmp_path: the PostgreSQL user must reach it.
        self.var = Path(tempfile.mkdtemp(prefix="spinnakr-pg-outage-"))
        self.var.chmod(0o755)
        # The CLI starts only what no URL names: PostgreSQL.
        self.env = {
            **os.environ,
            "SPINNAKR_VAR_DIR": str(self.var),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": str(settings.CELERY_BROKER_URL),
        }
        self.env.pop("DATABASE_URL", None)

    @property
    def socket_dir(self) -> Path:
        return self.var / "run" / "pg"

    @property
    def url(self) -> str:
        return f"postgres://{embedded_postgres.USER}@/{embedded_postgres.DATABASE}?host={self.socket_dir}"

    def _embedded(self, command: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "spinnakr.embedded", command],
            env=self.env,
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr

    def start(self) -> None:
        self._embedded("start")

    def stop(self) -> None:
        self._embedded("stop")

    def django(self, code: str) -> str:
        """Run ``code`` in a Django process whose database is this server; its output."""
        env = {**self.env, "DATABASE_URL": self.url, "SPINNAKR_TESTING": "1", "SPINNAKR_TEST_DB_NAME": ""}
        result = subprocess.run(
            [sys.executable, "-c", f"import django\ndjango.setup()\n{code}"],
            env={**env, "DJANGO_SETTINGS_MODULE": "spinnakr.settings"},
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def query(self, sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
        with psycopg.connect(
            host=str(self.socket_dir), user=embedded_postgres.USER, dbname=embedded_postgres.DATABASE
        ) as conn:
            return conn.execute(sql, params or []).fetchall()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.var, ignore_errors=True)
