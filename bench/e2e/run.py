"""bench/e2e: sustained end-to-end — accepted (202) → counted in Redis and stored in PostgreSQL.

Usage (bounded by ``--duration`` plus at most ``--drain-timeout`` seconds; loopback only):

    .venv/bin/python -m bench.e2e.run --rate 2000 --duration 600 [--json]
    .venv/bin/python -m bench.e2e.run --rate 2000 --duration 60 --batch 100   # batches to /api/events

Starts, on this checkout's embedded servers and on queues of its own (``bench/e2e/harness.py``),
the real collector (``uvicorn spinnakr.asgi:application``, 2 workers, ``--no-proxy-headers`` as
``make run``, free loopback port) and the real worker (``celery -A spinnakr worker -c 2``, at
``make run``'s ``WORKER_NICE``), with a site of its own. ``bench/e2e/load.py`` (a separate
process) posts at a constant rate (open loop) one pageview per request to ``/api/event``, or with
``--batch N`` N pageviews per request to ``/api/events`` with an API key; every event has its own
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
import datetime as dt
import json
import os
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

from bench.e2e.harness import (
    cpu_between,
    cpu_seconds,
    events_key,
    free_port,
    purge_queues,
    queue_depth,
    server_cpu,
    setup_site,
    start,
    start_web,
    start_worker,
    teardown,
    wait_for_port,
    wait_for_worker,
)
from bench.e2e.load import CONNECTION_ERROR, TIMED_OUT
from bench.e2e.sampling import (
    SAMPLE_SECONDS,
    Counts,
    Sampler,
    date_row,
    lag_figures,
    lags,
    loss_figures,
    loss_rows,
    machine_figures,
    ms,
    print_table,
    worker_figures,
)


def arrays(result: dict[str, Any]) -> dict[str, array[Any]]:
    """The load generator's per-request arrays (base64 of machine-order ``array`` bytes)."""
    decoded: dict[str, array[Any]] = {}
    for name, kind in (("status", "h"), ("answered", "d"), ("due", "d"), ("sent_late", "d")):
        decoded[name] = array(kind)
        decoded[name].frombytes(base64.b64decode(result[name]))
    return decoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000, help="events a second")
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--batch", type=int, default=1, help="events a request: above 1, batches to /api/events")
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
    processes = []
    load_out = Path(tempfile.mkstemp(prefix="bench-e2e-", suffix=".json")[1])
    worker_log = Path(tempfile.mkstemp(prefix="bench-e2e-worker-", suffix=".log")[1])
    try:
        purge_queues()
        port = free_port()
        web = start_web(port)
        processes.append(web)
        worker = start_worker(options.concurrency, worker_log, options.async_commit)
        processes.append(worker)
        wait_for_port(port, web)
        wait_for_worker(worker)

        cpu_before = {"web": cpu_seconds(web), "worker": cpu_seconds(worker)} | server_cpu()
        wall_before = time.monotonic()
        began = dt.datetime.now(dt.UTC)
        load_before = os.getloadavg()
        sampler = Sampler(Counts(site.id, site.timezone, began - dt.timedelta(seconds=1)))
        key = {"BENCH_KEY": events_key(site)} if options.batch > 1 else None
        load = start([sys.executable, "-m", "bench.e2e.load", "--port", str(port), "--domain", site.domain,
                      "--rate", str(options.rate), "--duration", str(options.duration),
                      "--batch", str(options.batch), "--out", str(load_out)], env=key)  # fmt: skip
        processes.append(load)
        last_progress = time.monotonic()
        depths: list[int] = []
        next_at = time.monotonic()
        while load.poll() is None:
            stored, counted = sampler.sample()
            if time.monotonic() - last_progress >= 10:
                depth = queue_depth()
                depths.append(depth)
                print(
                    f"  {time.monotonic() - sampler.samples[0][0]:5.0f} s  stored {stored:,}  counted {counted:,}  "
                    f"messages waiting {depth:,}",
                    flush=True,
                )
                last_progress = time.monotonic()
            next_at += SAMPLE_SECONDS
            time.sleep(max(0.0, next_at - time.monotonic()))
        if load.returncode != 0:
            raise RuntimeError(f"the load generator failed ({load.returncode})")
        result = json.loads(load_out.read_text())
        got = arrays(result)
        status, answered, due = got["status"], got["answered"], got["due"]
        size = options.batch
        unanswered = [i for i, code in enumerate(status) if code in (TIMED_OUT, CONNECTION_ERROR)]
        accepted_index = [i for i, code in enumerate(status) if code == 202]
        accepted = len(accepted_index) * size
        rejected: dict[str, int] = {}
        for code in status:
            if code != 202:
                key_name = {TIMED_OUT: "timed out", CONNECTION_ERROR: "connection error"}.get(code, str(code))
                rejected[key_name] = rejected.get(key_name, 0) + 1

        drained, drain_seconds = sampler.drain(accepted, options.drain_timeout)
        drain_start = time.monotonic() - drain_seconds
        wall = time.monotonic() - wall_before
        cpu = cpu_between(cpu_before, {"web": cpu_seconds(web), "worker": cpu_seconds(worker)} | server_cpu())
        accepted_set = {f"/e2e/{i * size + k}" for i in accepted_index for k in range(size)}
        # Every event of a batch was accepted at its request's 202.
        lag = lags(sorted(answered[i] for i in accepted_index for _ in range(size)), sampler.samples)
        latency = sorted(answered[i] - due[i] for i in accepted_index)  # from the moment it was due: open loop
        first_answer = min((answered[i] for i in accepted_index), default=drain_start)
        done_at = sampler.samples[-1][0] if drained else None
        figures: dict[str, Any] = machine_figures(began, load_before) | {
            "rate": options.rate,
            "batch": size,
            "worker_synchronous_commit": "off" if options.async_commit else "on",
            "duration_s": options.duration,
            "sent": result["total"] * size,
            "achieved_rate": round(result["total"] * size / max(1e-9, result["end"] - result["start"]), 1),
            "generator_late_p99_ms": ms(sorted(got["sent_late"]), 0.99),
            "generator_connections": result["connections"],
            "response_p50_ms": ms(latency, 0.50),
            "response_p99_ms": ms(latency, 0.99),
            "accepted": accepted,
            "rejected": rejected,
            "unanswered_first_indexes": unanswered[:10],
            "drained": drained,
            "drain_s": round(drain_seconds, 2),
            "max_messages_waiting": max(depths, default=None),
            "web_cpu_us_per_event": round(cpu["web"] / max(1, accepted) * 1e6),
            # The embedded servers' share (PostgreSQL includes this process's sampling queries).
            "server_cpu_us_per_event": {
                name: round(cpu[name] / max(1, accepted) * 1e6)
                for name in ("postgres", "redis", "broker")
                if name in cpu
            },
            "pipeline_events_per_s": round(accepted / (done_at - first_answer), 1) if done_at else None,
            "sample_ms_p50": ms(sorted(sampler.cost), 0.5),
            "sample_ms_max": round(max(sampler.cost) * 1000, 1) if sampler.cost else None,
        }
        figures |= worker_figures(worker_log, cpu["worker"], accepted, wall, options.concurrency) | lag_figures(lag)
        figures |= loss_figures(sampler.counts, accepted_set)
        report(figures)
        if options.json:
            print(json.dumps(figures))
    finally:
        load_out.unlink(missing_ok=True)
        teardown(processes, worker_log)


def report(figures: dict[str, Any]) -> None:
    rejected = ", ".join(f"{key}: {value}" for key, value in sorted(figures["rejected"].items())) or "none"
    rows = [
        date_row(figures),
        ("offered", f"{figures['rate']:,.0f} events/s for {figures['duration_s']:,.0f} s = {figures['sent']:,} "
                    f"{'events' if figures['batch'] == 1 else 'events in batches of ' + str(figures['batch'])} "
                    f"(generator: {figures['achieved_rate']:,.0f}/s, sent late p99 {figures['generator_late_p99_ms']} ms, "
                    f"{figures['generator_connections']} connections)"),
        ("worker's synchronous_commit", figures["worker_synchronous_commit"]),
        ("accepted (202)", f"{figures['accepted']:,}"),
        ("response time (from the moment due)", f"p50 {figures['response_p50_ms']} ms, p99 {figures['response_p99_ms']} ms"),
        ("rejected requests", rejected),
        *loss_rows(figures),
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
    print_table(rows)


if __name__ == "__main__":
    main()
