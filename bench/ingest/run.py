"""bench/ingest: the collector under wrk beside a bare ASGI app answering 202, in the same run.

Usage (bounded: a few runs of ``--duration`` seconds on loopback):

    .venv/bin/python -m bench.ingest.run --duration 10 --connections 1,16,64

Both apps run under uvicorn with 2 workers (uvloop, httptools, ``--no-proxy-headers`` as
``make run``); wrk (2 threads, 1 for a single connection) varies the client address per
request. Each app is measured at every connection count of ``--connections``: 1 is a lone
sequential sender, whose latency is the collector's own per request. The collector
publishes to its own queue ``bench.events`` on the embedded servers, so a running
``make run`` is left alone; after each collector run the queue is drained and its
events counted, so "accepted" (2xx answers) can be checked against "queued".

``--with-worker`` adds, at the largest connection count, the collector with a real Celery
worker draining its queue at the same time, and, as that run's baseline, the bare app while the same worker drains a backlog
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
    threads = min(2, connections)  # wrk wants at least one connection a thread
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(HERE / script)]
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


def connection_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("connections: positive integers separated by commas")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument(
        "--connections", type=connection_counts, default=[1, 16, 64], help="wrk connections, e.g. 1,16,64"
    )
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batch-connections", type=int, default=16, help="connections of the /api/events run")
    parser.add_argument("--with-worker", action="store_true", help="also measure with a Celery worker draining")
    options = parser.parse_args()
    domain, key = prepare()
    env = {**os.environ, "BENCH_DOMAIN": domain, "BENCH_KEY": key, "BENCH_BATCH": str(options.batch)}
    drain_queue()
    # (name, connections, wrk's result, events queued or None, events a request, the bare app's rate beside it)
    rows: list[tuple[str, int, dict[str, Any], int | None, int, float]] = []
    widest = max(options.connections)

    bare_port = free_port()
    bare = serve("bench.ingest.bare:app", bare_port, env)
    port = free_port()
    collector = serve("spinnakr.asgi:application", port, env)
    try:
        for connections in options.connections:
            base = wrk(bare_port, "event.lua", options.duration, connections, env, bare)
            rows.append(("bare ASGI app, single POST", connections, base, None, 1, base["rps"]))
            result = wrk(port, "event.lua", options.duration, connections, env, collector, drain=True)
            rows.append(("collector /api/event, worker stopped", connections, result, drain_queue(), 1, base["rps"]))
        widest_base = next(row[2]["rps"] for row in rows if row[1] == widest)
        if options.with_worker:
            with draining_worker(env):
                draining = wrk(port, "event.lua", options.duration, widest, env, collector)
            # What the worker took off the queue meanwhile: the accepted events not left in it.
            draining["drained"] = draining["requests"] - draining["non2xx"] - drain_queue()
            # The baseline of that run: the bare app while the same worker drains a backlog
            # (the collector's events of a run twice as long, enough to keep the worker busy
            # through the measurement), so both share the box with a draining worker alike.
            wrk(port, "event.lua", 2 * options.duration, widest, env, collector)
            with draining_worker(env):
                draining_base = wrk(bare_port, "event.lua", options.duration, widest, env, bare)
            draining_base["left"] = drain_queue()
            rows.append(("collector /api/event, worker draining", widest, draining, None, 1, widest_base))
            rows.append(("bare ASGI app, worker draining a backlog", widest, draining_base, None, 1, widest_base))
        result = wrk(port, "batch.lua", options.duration, options.batch_connections, env, collector, drain=True)
        name = f"collector /api/events, {options.batch}-event batches"
        rows.append((name, options.batch_connections, result, drain_queue(), options.batch, widest_base))
    finally:
        for server in (collector, bare):
            server.terminate()
            server.wait()

    print(f"\n{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(
        "| run | connections | requests/s | events/s | p50 ms | p99 ms | non-2xx | queued events "
        "| server CPU µs/event | vs bare |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, connections, result, queued, per_request, base_rps in rows:
        events = result["rps"] * per_request
        accepted = (result["requests"] - result["non2xx"]) * per_request
        queued_text = "" if queued is None else f"{queued} of {accepted}"
        print(
            f"| {name} | {connections} | {result['rps']:,.0f} | {events:,.0f} | {result['p50']:.2f} "
            f"| {result['p99']:.2f} | {result['non2xx']} | {queued_text} "
            f"| {result['cpu'] / (result['requests'] * per_request) * 1e6:.0f} | {events / base_rps:.0%} |"
        )
    print(f"\n(vs bare: against the bare app at the same connection count; the batch run against {widest})")
    if options.with_worker:
        draining_rps, base_rps = draining["rps"], draining_base["rps"]
        print(
            f"\nworker draining: collector {draining_rps:,.0f}/s = {draining_rps / base_rps:.0%} of the bare app "
            f"with the worker draining a backlog ({base_rps:,.0f}/s; {draining_base['left']} events of the backlog "
            f"left after it); the worker took {draining['drained']:,} events "
            f"({draining['drained'] / options.duration:,.0f}/s) off the queue while the collector was measured"
        )


if __name__ == "__main__":
    main()
