"""What the bench/e2e runs share: their processes, their site and queues, and how they stop.

On the queues the package sets apart (``bench/e2e/__init__.py``), ``setup_site`` starts the
embedded servers (when no server URLs are set) and makes the bench's own site
(``e2e.bench.spinnakr.test``, enterprise plan, quota 10¹², UTC); ``teardown`` deletes its events,
Redis keys, site and account and purges the queues.
Every process is started in a session of its own, so Ctrl-C reaches only the bench, which stops
them itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import psutil
from django.conf import settings
from django.core.management import call_command

from accounts.apikeys import create_api_key
from accounts.models import Account, Site
from analytics.ingest.cleanup import purge_site
from spinnakr import embedded
from spinnakr.celery import app
from spinnakr.run import niced

BASE_DIR = Path(__file__).resolve().parents[2]
DOMAIN = "e2e.bench.spinnakr.test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    command: list[str], log: IO[bytes] | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C reaches only this process, which stops the group itself.
    environment = {**os.environ, **(env or {})}
    return subprocess.Popen(command, cwd=BASE_DIR, env=environment, start_new_session=True, stdout=log, stderr=log)


def start_web(port: int) -> subprocess.Popen[bytes]:
    """The real app as ``make run`` serves it: uvicorn, 2 workers, uvloop and httptools."""
    return start([sys.executable, "-m", "uvicorn", "spinnakr.asgi:application", "--host", "127.0.0.1",
                  "--port", str(port), "--workers", "2", "--loop", "uvloop", "--http", "httptools",
                  "--no-access-log", "--no-proxy-headers", "--log-level", "warning"])  # fmt: skip


def start_worker(concurrency: int, log: Path, async_commit: bool = False) -> subprocess.Popen[bytes]:
    """``celery worker`` on both bench queues at ``make run``'s ``WORKER_NICE``, logging at INFO
    (its ``ingest.batch_done`` lines give the groups it applied) to ``log``."""
    command = niced([sys.executable, "-m", "celery", "-A", "spinnakr", "worker", "-Q",
                     f"{settings.EVENTS_QUEUE},{settings.DEFAULT_QUEUE}", "-c", str(concurrency),
                     "--without-gossip", "--without-mingle", "--loglevel", "INFO",
                     "-n", f"bench-e2e-{os.getpid()}@%h"])  # fmt: skip
    env = {"PGOPTIONS": "-c synchronous_commit=off"} if async_commit else None
    return start(command, log.open("wb"), env)


def stop(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM to the main process (uvicorn and Celery then stop their children cleanly: a Celery
    warm shutdown finishes its tasks), then SIGKILL to whatever is left of its process group."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def cpu_seconds(process: subprocess.Popen[bytes] | int) -> float:
    """CPU time (user + system) used so far by a process and its children (psutil)."""
    root = psutil.Process(process if isinstance(process, int) else process.pid)
    total = 0.0
    for member in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = member.cpu_times()
            total += times.user + times.system
    return total


def server_cpu() -> dict[str, float]:
    """CPU seconds used so far by each running embedded server (a PostgreSQL with its backends)."""
    return {name: cpu_seconds(pid) for name, pid in embedded.server_pids().items()}


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("uvicorn exited before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(2)  # both workers up
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("uvicorn did not start")


def wait_for_worker(process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the Celery worker exited")
        if app.control.ping(timeout=0.5):
            return
    raise RuntimeError("the Celery worker did not answer a ping")


def purge_queues() -> None:
    """Empty the bench's queues, declaring them first: RabbitMQ refuses to purge a queue nothing
    has declared yet (a fresh broker), and declaring one that exists changes nothing."""
    with app.connection_for_write() as conn:
        for queue in settings.CELERY_TASK_QUEUES:
            bound = queue(conn.default_channel)
            bound.declare()
            bound.purge()


def queue_depth() -> int:
    """Messages waiting in the events queue (ready, not yet taken by the worker)."""
    with app.connection_for_read() as conn:
        try:
            declared = conn.default_channel.queue_declare(settings.EVENTS_QUEUE, passive=True)  # type: ignore[attr-defined]
        except conn.channel_errors:
            return 0  # the Redis transport knows an empty queue only by its (then absent) list
        return int(declared.message_count)


def setup_site() -> Site:
    """The embedded servers up (when no server URLs are set), migrated, and a fresh bench site."""
    embedded.acquire()
    call_command("migrate", verbosity=0)
    delete_site()
    account = Account.objects.create(name="bench e2e", plan="enterprise", monthly_event_quota=10**12)
    return Site.objects.create(account=account, domain=DOMAIN, timezone="UTC")


def events_key(site: Site) -> str:
    """A new API key of the site's account for ``POST /api/events``."""
    return create_api_key(site.account, "bench e2e", ["events:write"])[1]


def delete_site() -> None:
    for site in Site.objects.filter(domain=DOMAIN).select_related("account"):
        purge_site(site.id)
        account = site.account
        site.delete()
        if not account.sites.exists():
            account.delete()


def teardown(processes: list[subprocess.Popen[bytes]], worker_log: Path | None = None) -> None:
    """Stop ``processes`` (last started first), purge the queues, delete the site, release the
    servers. The worker's log is kept (and named) when an error is on its way out."""
    for process in reversed(processes):
        stop(process)
    if worker_log is not None:
        if sys.exc_info()[0] is None:
            worker_log.unlink(missing_ok=True)
        else:
            print(f"the worker's log is kept in {worker_log}", file=sys.stderr)
    try:
        purge_queues()
        delete_site()
    finally:
        embedded.release()


def cpu_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process or server used between two readings."""
    return {name: after[name] - before[name] for name in before if name in after}
