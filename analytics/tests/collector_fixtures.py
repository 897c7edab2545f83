"""Fixtures of the collector tests: a real uvicorn serving the app, the test queue, sites.

The server runs in its own process on a free loopback port against the test
database (tests that create sites commit them: ``transactional_db``), the
test Redis databases and the ``test.events`` queue; what it publishes is read
back with a kombu consumer on the same broker.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection
from kombu import Connection, Consumer, Queue

from accounts.models import Account, Site
from spinnakr.tests.waiting import wait_for

BASE_DIR = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url() -> str:
    params = connection.settings_dict
    host = params["HOST"]
    name = params["NAME"]
    user = params["USER"] or "postgres"
    if host.startswith("/"):
        return f"postgres://{user}@/{name}?host={host}"
    password = f":{params['PASSWORD']}" if params["PASSWORD"] else ""
    return f"postgres://{user}{password}@{host}:{params['PORT'] or 5432}/{name}"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]


def start_server(
    tmp: Path, extra_env: dict[str, str] | None = None, workers: int = 1, port: int | None = None
) -> Server:
    """uvicorn serving the app on ``port`` (a free one by default), once it answers."""
    port = port or free_port()
    log = tmp / f"uvicorn-{port}-{uuid.uuid4().hex[:6]}.log"
    env = {
        **os.environ,
        "SPINNAKR_TESTING": "1",
        "DATABASE_URL": database_url(),
        "COLLECTOR_FLUSH_SECONDS": "1",
        **(extra_env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "spinnakr.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--lifespan",
        "on",
        "--workers",
        str(workers),
        "--no-proxy-headers",  # as make run and production: spinnakr.asgi applies them
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        wait_for(lambda: answers(server), timeout=60, message="uvicorn to answer")
    except AssertionError:
        process.kill()
        raise RuntimeError(f"uvicorn did not start: {server.output()}") from None
    return server


def answers(server: Server) -> bool:
    """Whether the server answers the collector's preflight; a ``RuntimeError`` once it has exited."""
    if server.process.poll() is not None:
        raise RuntimeError(f"uvicorn exited: {server.output()}")
    try:
        return httpx.options(f"{server.url}/api/event", timeout=1).status_code == 204
    except httpx.HTTPError:
        return False


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def collector(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a uvicorn serving ``spinnakr.asgi:application``."""
    with django_db_blocker.unblock():
        server = start_server(tmp_path_factory.mktemp("collector"))
    yield server.url
    stop_server(server)


def events_queue() -> Queue:
    return next(queue for queue in settings.CELERY_TASK_QUEUES if queue.name == settings.EVENTS_QUEUE)


@dataclass
class Published:
    headers: dict[str, Any]
    properties: dict[str, Any]
    kwargs: dict[str, Any]
    content_type: str


def consume(until: Any = None, timeout: float = 10.0) -> list[Published]:
    """Messages on the events queue (acknowledged), until ``until(messages)`` holds or the time is up."""
    received: list[Published] = []

    def on_message(body: Any, message: Any) -> None:
        _args, kwargs, _embed = body
        received.append(Published(dict(message.headers), dict(message.properties), kwargs, message.content_type))
        message.ack()

    deadline = time.monotonic() + timeout
    with (
        Connection(str(settings.CELERY_BROKER_URL)) as conn,
        Consumer(conn, queues=[events_queue()], callbacks=[on_message], accept=settings.CELERY_ACCEPT_CONTENT),
    ):
        while time.monotonic() < deadline:
            if until is not None and until(received):
                break
            try:
                conn.drain_events(timeout=0.2)
            except TimeoutError:
                if until is None and received:
                    break
    return received


def events_of(messages: list[Published], site_id: int) -> list[dict[str, Any]]:
    return [event for message in messages for event in message.kwargs["events"] if event["site_id"] == site_id]


def purge_events_queue() -> None:
    with Connection(str(settings.CELERY_BROKER_URL)) as conn:
        queue = events_queue()(conn.channel())
        queue.declare()  # RabbitMQ refuses to purge a queue nobody declared yet
        queue.purge()


def make_site(**account_fields: Any) -> Site:
    """A site of a new account (``account_fields``: plan, suspended, …) on a random domain."""
    account = Account.objects.create(name="Acme", **account_fields)
    return Site.objects.create(account=account, domain=f"{uuid.uuid4().hex[:12]}.example.com")


BROWSER_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


@pytest.fixture(scope="session")
def strict_collector(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A collector allowing one event per second per address, with bursts of five."""
    with django_db_blocker.unblock():
        server = start_server(
            tmp_path_factory.mktemp("strict"), {"COLLECTOR_RATE_PER_IP": "1", "COLLECTOR_BURST_PER_IP": "5"}
        )
    yield server.url
    stop_server(server)
