"""bench/ingest: the collector under wrk beside a bare ASGI app answering 202, in the same run.

Usage (bounded: a few runs of ``--duration`` seconds on loopback):

    .venv/bin/python -m bench.ingest.run --duration 10 --connections 64

Both apps run under uvicorn with 2 workers (uvloop, httptools, ``--no-proxy-headers`` as
``make run``); wrk (2 threads) varies the client address per request. The collector
publishes to its own queue ``bench.events`` on the embedded servers, so a running
``make run`` is left alone; after each collector run the queue is drained and its
events counted, so "accepted" (2xx answers) can be checked against "queued".

``--with-worker`` adds the collector with a real Celery worker draining its queue at the
same time, and, as that run's baseline, the bare app while the same worker drains a backlog
of the collector's events.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ["SPINNAKR_QUEUE_PREFIX"] = "bench."
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")

BASE_DIR = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    command += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--no-proxy-headers"]
    command += ["--log-level", "warning"]
    process = subprocess.Popen(command, cwd=BASE_DIR, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(2)  # both workers up
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{app} did not start")


def cpu_seconds(server: subprocess.Popen[bytes]) -> float:
    """CPU time (user + system) used so far by the server's processes."""
    import psutil

    root = psutil.Process(server.pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def wrk(
    port: int,
    script: str,
    duration: int,
    connections: int,
    env: dict[str, str],
    server: subprocess.Popen[bytes],
    *,
    drain: bool = False,
) -> dict[str, Any]:
    # Two seconds of warm-up (first requests fill the site cache, the salts and the producer connection).
    warm = ["wrk", "-t1", "-c4", "-d2s", "-s", str(HERE / script), f"http://127.0.0.1:{port}"]
    subprocess.run(warm, capture_output=True, env=env, check=True)
    if drain:  # the warm-up's events are not part of the count
        drain_queue()
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(HERE / script)]
    command.append(f"http://127.0.0.1:{port}")
    before = cpu_seconds(server)
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    result: dict[str, Any] = {"raw": output, "cpu": cpu_seconds(server) - before}
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    result["requests"] = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non2xx"] = int(errors.group(1)) if errors else 0
    for percent in ("50", "99"):
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        result[f"p{percent}"] = float(match.group(1)) * UNITS[match.group(2)] if match else float("nan")
    return result


def drain_queue() -> int:
    """Remove every message of bench.events; return how many events they carried."""
    from django.conf import settings
    from kombu import Connection, Consumer

    queue = next(queue for queue in settings.CELERY_TASK_QUEUES if queue.name == settings.EVENTS_QUEUE)
    total = 0

    def on_message(body: Any, message: Any) -> None:
        nonlocal total
        total += len(body[1]["events"])
        message.ack()

    with (
        Connection(str(settings.CELERY_BROKER_URL)) as conn,
        Consumer(conn, queues=[queue], callbacks=[on_message], accept=settings.CELERY_ACCEPT_CONTENT),
    ):
        idle = 0
        while idle < 3:
            try:
                conn.drain_events(timeout=0.5)
                idle = 0
            except TimeoutError:
                idle += 1
    return total


@contextlib.contextmanager
def draining_worker(env: dict[str, str]) -> Iterator[None]:
    """A real Celery worker (one pool process) draining the bench queue while the block runs,
    at the CPU priority `make run` gives the worker (settings.WORKER_NICE)."""
    from spinnakr.run import niced

    command = [sys.executable, "-m", "celery", "-A", "spinnakr", "worker", "-Q", "bench.events", "-c", "1"]
    command += ["--without-gossip", "--without-mingle", "-l", "WARNING"]
    command = niced(command)
    worker = subprocess.Popen(command, cwd=BASE_DIR, env=env)
    try:
        time.sleep(5)
        yield
    finally:
        worker.terminate()
        worker.wait(30)


def prepare() -> tuple[str, str]:
    import django

    django.setup()
    from django.core.management import call_command

    from accounts.apikeys import create_api_key
    from accounts.models import Account, Site
    from spinnakr import embedded

    embedded.acquire()
    call_command("migrate", verbosity=0)
    site = Site.objects.filter(domain="bench.spinnakr.test").select_related("account").first()
    if site is None:
        account = Account.objects.create(name="Bench", plan="enterprise", monthly_event_quota=10**12)
        site = Site.objects.create(account=account, domain="bench.spinnakr.test")
    _, key = create_api_key(site.account, "bench", ["events:write"])
    return site.domain, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batch-connections", type=int, default=16, help="connections of the /api/events run")
    parser.add_argument("--with-worker", action="store_true", help="also measure with a Celery worker draining")
    options = parser.parse_args()
    domain, key = prepare()
    env = {**os.environ, "BENCH_DOMAIN": domain, "BENCH_KEY": key, "BENCH_BATCH": str(options.batch)}
    drain_queue()
    rows: list[tuple[str, dict[str, Any], int | None, int]] = []

    bare_port = free_port()
    bare = serve("bench.ingest.bare:app", bare_port, env)
    port = free_port()
    collector = serve("spinnakr.asgi:application", port, env)
    try:
        rows.append(
            (
                "bare ASGI app, single POST",
                wrk(bare_port, "event.lua", options.duration, options.connections, env, bare),
                None,
                1,
            )
        )
        result = wrk(port, "event.lua", options.duration, options.connections, env, collector, drain=True)
        rows.append(("collector /api/event, worker stopped", result, drain_queue(), 1))
        if options.with_worker:
            with draining_worker(env):
                result = wrk(port, "event.lua", options.duration, options.connections, env, collector)
            rows.append(("collector /api/event, worker draining", result, None, 1))
            # What the worker took off the queue meanwhile: the accepted events not left in it.
            result["drained"] = result["requests"] - result["non2xx"] - drain_queue()
            # The baseline of that run: the bare app while the same worker drains a backlog
            # (the collector's events of a run twice as long, enough to keep the worker busy
            # through the measurement), so both share the box with a draining worker alike.
            wrk(port, "event.lua", 2 * options.duration, options.connections, env, collector)
            with draining_worker(env):
                result = wrk(bare_port, "event.lua", options.duration, options.connections, env, bare)
            rows.append(("bare ASGI app, worker draining a backlog", result, None, 1))
            result["left"] = drain_queue()
        result = wrk(port, "batch.lua", options.duration, options.batch_connections, env, collector, drain=True)
        rows.append((f"collector /api/events, {options.batch}-event batches", result, drain_queue(), options.batch))
    finally:
        for server in (collector, bare):
            server.terminate()
            server.wait()

    base = rows[0][1]["rps"]
    draining_base = next((r[1]["rps"] for r in rows if r[0].startswith("bare ASGI app, worker")), None)
    print(f"\n{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print("| run | requests/s | events/s | p50 ms | p99 ms | non-2xx | queued events | server CPU µs/event | vs bare |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, result, queued, per_request in rows:
        events = result["rps"] * per_request
        accepted = (result["requests"] - result["non2xx"]) * per_request
        queued_text = "" if queued is None else f"{queued} of {accepted}"
        print(
            f"| {name} | {result['rps']:,.0f} | {events:,.0f} | {result['p50']:.2f} | {result['p99']:.2f} "
            f"| {result['non2xx']} | {queued_text} | {result['cpu'] / (result['requests'] * per_request) * 1e6:.0f} "
            f"| {events / base:.0%} |"
        )
    if draining_base:
        draining = next(r[1]["rps"] for r in rows if r[0] == "collector /api/event, worker draining")
        left = next(r[1]["left"] for r in rows if r[0].startswith("bare ASGI app, worker"))
        drained = next(r[1]["drained"] for r in rows if r[0] == "collector /api/event, worker draining")
        print(
            f"\nworker draining: collector {draining:,.0f}/s = {draining / draining_base:.0%} of the bare app "
            f"with the worker draining a backlog ({draining_base:,.0f}/s; {left} events of the backlog left after it); "
            f"the worker took {drained:,} events ({drained / options.duration:,.0f}/s) off the queue while "
            "the collector was measured"
        )


if __name__ == "__main__":
    main()
