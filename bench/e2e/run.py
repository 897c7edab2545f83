"""bench/e2e: sustained end-to-end — accepted (202) → counted in Redis and stored in PostgreSQL.

Usage (bounded by ``--duration`` plus at most ``--drain-timeout`` seconds; loopback only):

    .venv/bin/python -m bench.e2e.run --rate 2000 --duration 600 [--json]

Starts, on this checkout's embedded servers and on queues of its own (``bench-e2e.events``,
``bench-e2e.default``), the real collector (``uvicorn spinnakr.asgi:application``, 2 workers,
``--no-proxy-headers`` as ``make run``, free loopback port) and the real worker (``celery -A
spinnakr worker -c 2``, at ``make run``'s ``WORKER_NICE``), with a site of its own
(``e2e.bench.spinnakr.test``, enterprise plan, UTC). ``bench/e2e/load.py`` (a separate
process) posts one pageview per request at a constant rate (open loop), each with its own
pathname ``/e2e/<n>`` and one of 50,000 client addresses. Every 100 ms this process reads the
site's stored events in PostgreSQL and its pageviews in the Redis day counter
``{s:<id>}:d:<YYYYMMDD>``. The lag of an accepted event is the time from its 202 until both
counts have reached the number of events accepted up to it (resolution: the 100 ms sampling).
At the end it waits (bounded) for the pipeline to drain and checks zero loss: accepted =
counted = stored, and the set of stored pathnames = the set accepted. Every process it
started is stopped and the site's data deleted, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

from bench.e2e.load import CONNECTION_ERROR, TIMED_OUT

os.environ["SPINNAKR_QUEUE_PREFIX"] = "bench-e2e."
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")

BASE_DIR = Path(__file__).resolve().parents[2]
DOMAIN = "e2e.bench.spinnakr.test"
SAMPLE_SECONDS = 0.1
# PostgreSQL is counted as a frozen part (events older than the boundary: the slice it moved
# over is added each time it moves, and the whole part recounted every minute) plus the recent
# window, so a sample stays cheap at 100 ms.
BOUNDARY_STEP = 5.0
BOUNDARY_MARGIN = 10.0
FULL_RECOUNT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: list[str], log: Any = None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C reaches only this process, which stops the group itself.
    environment = {**os.environ, **(env or {})}
    return subprocess.Popen(command, cwd=BASE_DIR, env=environment, start_new_session=True, stdout=log, stderr=log)


def batches(log: Path) -> list[tuple[int, int]]:
    """(events, broker messages) of each group the worker applied, from its ``ingest.batch_done``
    log lines (a pool process applies the messages waiting in the queue together)."""
    text = log.read_text(errors="replace")
    return [
        (int(events), int(messages))
        for events, messages in re.findall(r"ingest\.batch_done .*?\bevents=(\d+) .*?\bmessages=(\d+)", text)
    ]


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
    import psutil

    root = psutil.Process(process if isinstance(process, int) else process.pid)
    total = 0.0
    for member in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = member.cpu_times()
            total += times.user + times.system
    return total


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
    from spinnakr.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the Celery worker exited")
        if app.control.ping(timeout=0.5):
            return
    raise RuntimeError("the Celery worker did not answer a ping")


def purge_queues() -> None:
    from django.conf import settings

    from spinnakr.celery import app

    with app.connection_for_write() as conn:
        for name in (settings.EVENTS_QUEUE, settings.DEFAULT_QUEUE):
            conn.default_channel.queue_purge(name)  # type: ignore[attr-defined]


def queue_depth() -> int:
    """Messages waiting in the events queue (ready, not yet taken by the worker)."""
    from django.conf import settings

    from spinnakr.celery import app

    with app.connection_for_read() as conn:
        try:
            declared = conn.default_channel.queue_declare(settings.EVENTS_QUEUE, passive=True)  # type: ignore[attr-defined]
        except conn.channel_errors:
            return 0  # the Redis transport knows an empty queue only by its (then absent) list
        return int(declared.message_count)


class Counts:
    """The site's stored events (PostgreSQL) and counted pageviews (Redis), cheaply."""

    def __init__(self, site_id: int, timezone: str, since: dt.datetime) -> None:
        from django.db import connection

        from analytics.ingest import rollups

        self.site_id = site_id
        self.cursor = connection.cursor()
        self.rollups = rollups
        self.zone = dt.UTC if timezone == "UTC" else __import__("zoneinfo").ZoneInfo(timezone)
        self.since = since
        self.boundary: dt.datetime | None = None
        self.frozen = 0
        self.recounted = 0.0

    def stored(self) -> int:
        now = dt.datetime.now(dt.UTC)
        boundary = now - dt.timedelta(seconds=BOUNDARY_MARGIN)
        boundary = dt.datetime.fromtimestamp(boundary.timestamp() // BOUNDARY_STEP * BOUNDARY_STEP, dt.UTC)
        if boundary != self.boundary:
            if self.boundary is None or time.monotonic() - self.recounted > FULL_RECOUNT_SECONDS:
                # In full now and then: rows the worker stored behind the boundary (a lag of more
                # than BOUNDARY_MARGIN) count from then on.
                self.cursor.execute(
                    "SELECT count(*) FROM analytics_event WHERE site_id = %s AND timestamp < %s",
                    [self.site_id, boundary],
                )
                self.frozen = int(self.cursor.fetchone()[0])
                self.recounted = time.monotonic()
            else:  # the slice the boundary moved over
                self.cursor.execute(
                    "SELECT count(*) FROM analytics_event WHERE site_id = %s AND timestamp >= %s AND timestamp < %s",
                    [self.site_id, self.boundary, boundary],
                )
                self.frozen += int(self.cursor.fetchone()[0])
            self.boundary = boundary
        self.cursor.execute(
            "SELECT count(*) FROM analytics_event WHERE site_id = %s AND timestamp >= %s", [self.site_id, self.boundary]
        )
        return self.frozen + int(self.cursor.fetchone()[0])

    def stored_exact(self) -> int:
        self.cursor.execute("SELECT count(*) FROM analytics_event WHERE site_id = %s", [self.site_id])
        return int(self.cursor.fetchone()[0])

    def counted(self) -> int:
        first = self.since.astimezone(self.zone).date()
        last = dt.datetime.now(self.zone).date()
        days = [(first + dt.timedelta(days=n)).strftime("%Y%m%d") for n in range((last - first).days + 1)]
        return sum(row["pageviews"] for row in self.rollups.counters(self.site_id, "d", days))

    def pathnames(self) -> list[str]:
        self.cursor.execute("SELECT pathname FROM analytics_event WHERE site_id = %s", [self.site_id])
        return [row[0] for row in self.cursor.fetchall()]


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))]


def ms(sorted_values: list[float], fraction: float) -> float | None:
    """A percentile in milliseconds, None when there is nothing to measure."""
    value = percentile(sorted_values, fraction)
    return None if value is None else round(value * 1000, 1)


def lags(accepted_at: list[float], samples: list[tuple[float, int]]) -> list[float]:
    """Per accepted event (in 202 order): first sample at/after its 202 where both counts ≥ its rank.

    An event never reached gets the time until the last sample (a lower bound; the run then
    reports ``drained`` false).
    """
    result: list[float] = []
    j = 0
    for rank, at in enumerate(accepted_at, start=1):
        while j < len(samples) and (samples[j][0] < at or samples[j][1] < rank):
            j += 1
        if j == len(samples):
            # Not there by the last sample (the drain timed out): count the time waited so far, a
            # lower bound, so the percentiles do not leave the slowest events out.
            result.extend(max(0.0, samples[-1][0] - later) for later in accepted_at[rank - 1 :])
            break
        result.append(samples[j][0] - at)
    return sorted(result)


def setup_site() -> Any:
    import django

    django.setup()
    from django.core.management import call_command

    from accounts.models import Account, Site
    from spinnakr import embedded

    embedded.acquire()
    call_command("migrate", verbosity=0)
    delete_site()
    account = Account.objects.create(name="bench e2e", plan="enterprise", monthly_event_quota=10**12)
    return Site.objects.create(account=account, domain=DOMAIN, timezone="UTC")


def delete_site() -> None:
    from accounts.models import Site
    from analytics.ingest.cleanup import purge_site

    for site in Site.objects.filter(domain=DOMAIN).select_related("account"):
        purge_site(site.id)
        account = site.account
        site.delete()
        if not account.sites.exists():
            account.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--drain-timeout", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="diagnostic only: the worker's PostgreSQL sessions commit without waiting for the WAL flush "
        "(PGOPTIONS=-c synchronous_commit=off), to see how much of its time per message is the fsync",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    options = parser.parse_args()

    site = setup_site()
    processes: list[subprocess.Popen[bytes]] = []
    load_out = Path(tempfile.mkstemp(prefix="bench-e2e-", suffix=".json")[1])
    worker_log = Path(tempfile.mkstemp(prefix="bench-e2e-worker-", suffix=".log")[1])
    try:
        from django.conf import settings

        from spinnakr.run import niced

        purge_queues()
        port = free_port()
        python = sys.executable
        web = start([python, "-m", "uvicorn", "spinnakr.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                     "--workers", "2", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                     "--no-proxy-headers", "--log-level", "warning"])  # fmt: skip
        processes.append(web)
        worker = start(niced([python, "-m", "celery", "-A", "spinnakr", "worker", "-Q",
                              f"{settings.EVENTS_QUEUE},{settings.DEFAULT_QUEUE}", "-c", str(options.concurrency),
                              "--without-gossip", "--without-mingle", "--loglevel", "INFO",
                              "-n", f"bench-e2e-{os.getpid()}@%h"]), worker_log.open("wb"),
                       {"PGOPTIONS": "-c synchronous_commit=off"} if options.async_commit else None)  # fmt: skip
        processes.append(worker)
        wait_for_port(port, web)
        wait_for_worker(worker)

        cpu_before = {"web": cpu_seconds(web), "worker": cpu_seconds(worker)} | server_cpu()
        wall_before = time.monotonic()
        began = dt.datetime.now(dt.UTC)
        load_before = os.getloadavg()
        counts = Counts(site.id, site.timezone, began - dt.timedelta(seconds=1))
        load = start([python, "-m", "bench.e2e.load", "--port", str(port), "--domain", DOMAIN,
                      "--rate", str(options.rate), "--duration", str(options.duration), "--out", str(load_out)])  # fmt: skip
        processes.append(load)
        samples: list[tuple[float, int]] = []
        sample_cost: list[float] = []
        last_progress = time.monotonic()
        depths: list[int] = []

        def sample() -> tuple[int, int]:
            before = time.monotonic()
            stored, counted = counts.stored(), counts.counted()
            samples.append((before, min(stored, counted)))
            sample_cost.append(time.monotonic() - before)
            return stored, counted

        next_at = time.monotonic()
        while load.poll() is None:
            stored, counted = sample()
            if time.monotonic() - last_progress >= 10:
                depth = queue_depth()
                depths.append(depth)
                print(
                    f"  {time.monotonic() - samples[0][0]:5.0f} s  stored {stored:,}  counted {counted:,}  "
                    f"messages waiting {depth:,}",
                    flush=True,
                )
                last_progress = time.monotonic()
            next_at += SAMPLE_SECONDS
            time.sleep(max(0.0, next_at - time.monotonic()))
        if load.returncode != 0:
            raise RuntimeError(f"the load generator failed ({load.returncode})")
        result = json.loads(load_out.read_text())
        status = array("h")
        status.frombytes(base64.b64decode(result["status"]))
        answered = array("d")
        answered.frombytes(base64.b64decode(result["answered"]))
        due = array("d")
        due.frombytes(base64.b64decode(result["due"]))
        late = array("d")
        late.frombytes(base64.b64decode(result["sent_late"]))
        unanswered = [i for i, code in enumerate(status) if code in (TIMED_OUT, CONNECTION_ERROR)]
        accepted_index = [i for i, code in enumerate(status) if code == 202]
        accepted = len(accepted_index)
        rejected: dict[str, int] = {}
        for code in status:
            if code != 202:
                key = {TIMED_OUT: "timed out", CONNECTION_ERROR: "connection error"}.get(code, str(code))
                rejected[key] = rejected.get(key, 0) + 1

        # Drain: until both counts reach the accepted number (bounded).
        drain_start = time.monotonic()
        drained = False
        while time.monotonic() - drain_start < options.drain_timeout:
            stored, counted = sample()
            if stored >= accepted and counted >= accepted:
                drained = True
                break
            time.sleep(SAMPLE_SECONDS)
        drain_seconds = time.monotonic() - drain_start
        wall = time.monotonic() - wall_before
        cpu_after = {"web": cpu_seconds(web), "worker": cpu_seconds(worker)} | server_cpu()
        cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_before if name in cpu_after}
        time.sleep(1)  # anything arriving late (duplicates, rejected-but-queued) shows in the final counts
        stored_final, counted_final = counts.stored_exact(), counts.counted()
        paths = counts.pathnames()
        stored_set = set(paths)
        accepted_set = {f"/e2e/{i}" for i in accepted_index}
        lag = lags(sorted(answered[i] for i in accepted_index), samples)
        sizes = batches(worker_log)
        messages = sum(m for _, m in sizes)
        sent_late = sorted(late)
        latency = sorted(answered[i] - due[i] for i in accepted_index)  # from the moment it was due: open loop
        first_answer = min((answered[i] for i in accepted_index), default=drain_start)
        done_at = samples[-1][0] if drained else None
        figures: dict[str, Any] = {
            "date": began.strftime("%Y-%m-%d %H:%M UTC"),
            "cores": os.cpu_count(),
            "load_average_before": round(load_before[0], 2),
            "load_average_after": round(os.getloadavg()[0], 2),
            "rate": options.rate,
            "worker_synchronous_commit": "off" if options.async_commit else "on",
            "duration_s": options.duration,
            "sent": result["total"],
            "achieved_rate": round(result["total"] / max(1e-9, result["end"] - result["start"]), 1),
            "generator_late_p99_ms": ms(sent_late, 0.99),
            "generator_connections": result["connections"],
            "response_p50_ms": ms(latency, 0.50),
            "response_p99_ms": ms(latency, 0.99),
            "accepted": accepted,
            "rejected": rejected,
            "unanswered_first_indexes": unanswered[:10],
            "counted_redis": counted_final,
            "stored_postgresql": stored_final,
            "missing_from_postgresql": len(accepted_set - stored_set),
            "stored_not_accepted": len(stored_set - accepted_set),
            "duplicate_rows": len(paths) - len(stored_set),
            "drained": drained,
            "drain_s": round(drain_seconds, 2),
            "broker_messages": messages,
            "events_per_message": round(sum(e for e, _ in sizes) / messages, 2) if messages else None,
            "groups_applied": len(sizes),
            "events_per_group": round(sum(e for e, _ in sizes) / len(sizes), 2) if sizes else None,
            "max_messages_waiting": max(depths, default=None),
            "web_cpu_us_per_event": round(cpu["web"] / max(1, accepted) * 1e6),
            "worker_cpu_us_per_event": round(cpu["worker"] / max(1, accepted) * 1e6),
            "worker_cpu_ms_per_message": round(cpu["worker"] / max(1, messages) * 1e3, 2),
            # The embedded servers' share (PostgreSQL includes this process's sampling queries).
            "server_cpu_us_per_event": {
                name: round(cpu[name] / max(1, accepted) * 1e6)
                for name in ("postgres", "redis", "broker")
                if name in cpu
            },
            "worker_cpu_share": round(cpu["worker"] / (wall * options.concurrency), 2),
            "pipeline_events_per_s": round(accepted / (done_at - first_answer), 1) if done_at else None,
            "lag_p50_ms": ms(lag, 0.50),
            "lag_p95_ms": ms(lag, 0.95),
            "lag_p99_ms": ms(lag, 0.99),
            "lag_max_ms": round(lag[-1] * 1000, 1) if lag else None,
            "sample_ms_p50": ms(sorted(sample_cost), 0.5),
            "sample_ms_max": round(max(sample_cost) * 1000, 1) if sample_cost else None,
        }
        figures["zero_loss"] = (
            accepted == counted_final == stored_final and figures["missing_from_postgresql"] == 0
            and figures["stored_not_accepted"] == 0
        )  # fmt: skip
        report(figures)
        if options.json:
            print(json.dumps(figures))
    finally:
        for process in reversed(processes):
            stop(process)
        load_out.unlink(missing_ok=True)
        if sys.exc_info()[0] is None:
            worker_log.unlink(missing_ok=True)
        else:
            print(f"the worker's log is kept in {worker_log}", file=sys.stderr)
        try:
            purge_queues()
            delete_site()
        finally:
            from spinnakr import embedded

            embedded.release()


def server_cpu() -> dict[str, float]:
    """CPU seconds used so far by each running embedded server (a PostgreSQL with its backends)."""
    from spinnakr import embedded

    return {name: cpu_seconds(pid) for name, pid in embedded.server_pids().items()}


def report(figures: dict[str, Any]) -> None:
    rejected = ", ".join(f"{key}: {value}" for key, value in sorted(figures["rejected"].items())) or "none"
    rows = [
        ("date", f"{figures['date']}, {figures['cores']} cores, load {figures['load_average_before']} → "
                 f"{figures['load_average_after']}"),
        ("offered", f"{figures['rate']:,.0f} events/s for {figures['duration_s']:,.0f} s = {figures['sent']:,} "
                    f"(generator: {figures['achieved_rate']:,.0f}/s, sent late p99 {figures['generator_late_p99_ms']} ms, "
                    f"{figures['generator_connections']} connections)"),
        ("worker's synchronous_commit", figures["worker_synchronous_commit"]),
        ("accepted (202)", f"{figures['accepted']:,}"),
        ("response time (from the moment due)", f"p50 {figures['response_p50_ms']} ms, p99 {figures['response_p99_ms']} ms"),
        ("rejected", rejected),
        ("counted in Redis", f"{figures['counted_redis']:,}"),
        ("stored in PostgreSQL", f"{figures['stored_postgresql']:,}"),
        ("accepted not stored / stored not accepted / duplicates",
         f"{figures['missing_from_postgresql']} / {figures['stored_not_accepted']} / {figures['duplicate_rows']}"),
        ("zero loss", "yes" if figures["zero_loss"] else "NO"),
        ("drain after the load", f"{figures['drain_s']} s" + ("" if figures["drained"] else " (timed out)")),
        ("broker messages the worker applied", f"{figures['broker_messages']:,}, "
                                                f"{figures['events_per_message']} events per message"),
        ("groups applied (waiting messages taken together)", f"{figures['groups_applied']:,}, "
                                                             f"{figures['events_per_group']} events per group"),
        ("most messages waiting in the queue (every 10 s)", f"{figures['max_messages_waiting']}"),
        ("CPU per event: collector / worker", f"{figures['web_cpu_us_per_event']} µs / "
                                              f"{figures['worker_cpu_us_per_event']} µs"),
        ("CPU per event: embedded servers (PostgreSQL includes the sampling)",
         ", ".join(f"{name} {value} µs" for name, value in figures["server_cpu_us_per_event"].items()) or "none"),
        ("worker CPU per message; busy share of its processes", f"{figures['worker_cpu_ms_per_message']} ms; "
                                                                f"{figures['worker_cpu_share']:.0%}"),
        ("pipeline throughput (first 202 → all stored and counted)", f"{figures['pipeline_events_per_s']} events/s"),
        ("lag 202 → Redis and PostgreSQL", f"p50 {figures['lag_p50_ms']} ms, p95 {figures['lag_p95_ms']} ms, "
                                           f"p99 {figures['lag_p99_ms']} ms, max {figures['lag_max_ms']} ms"),
        ("one sample (2 SQL counts + Redis)", f"p50 {figures['sample_ms_p50']} ms, max {figures['sample_ms_max']} ms"),
    ]  # fmt: skip
    print("\n| measure | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
