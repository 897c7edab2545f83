"""bench/e2e drain: the Celery worker alone — how fast ``analytics.ingest_batch`` drains, and its
lag under a steady rate.

Usage (bounded: the backlog's drain within ``--drain-timeout``, then ``--duration`` seconds plus
at most ``--drain-timeout``; loopback only):

    .venv/bin/python -m bench.e2e.drain --drain-batches 300 --rate 2000 --duration 30

No collector: enriched events (``analytics.tests.factories.make_event``, each with its own
pathname ``/e2e/<n>``) are published straight to the bench's events queue as ``ingest_batch``
messages of ``--batch`` events, on the site, queues and worker of ``bench/e2e/harness.py``.

1. drain: ``--drain-batches`` messages are queued with no worker running, then the worker
   starts; events/s = events / time from its start until all are stored and counted.
2. steady: ``--rate`` events/s are published (in messages of ``--batch``) for ``--duration``
   seconds while the worker runs; the lag of an event is the time from its publish until
   PostgreSQL and Redis both hold it (the same 100 ms sampling as ``bench.e2e.run``); then zero
   loss is checked: published = counted = stored, stored pathnames = published pathnames.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings

from accounts.models import Site
from analytics.payloads import EVENTS_SERIALIZER
from analytics.tests.factories import make_event
from bench.e2e import sampling
from bench.e2e.harness import cpu_seconds, purge_queues, setup_site, start_worker, teardown
from spinnakr.celery import app

VISITORS = 5000
SOURCES = ["", "Google", "Bing"]


class Publisher:
    """Publishes messages of ``size`` enriched events, numbering the events from 0."""

    def __init__(self, site: Site, size: int) -> None:
        self.site = site
        self.size = size
        self.sent = 0
        self.rng = random.Random(1)

    def publish(self) -> None:
        now = dt.datetime.now(dt.UTC)
        events = [
            dict(
                make_event(
                    self.site,
                    now,
                    visitor=self.rng.randrange(VISITORS),
                    pathname=f"/e2e/{self.sent + n}",
                    referrer_source=self.rng.choice(SOURCES),
                )
            )
            for n in range(self.size)
        ]
        app.send_task(
            "analytics.ingest_batch",
            kwargs={"batch_id": uuid.uuid4().hex, "events": events},
            queue=settings.EVENTS_QUEUE,
            serializer=EVENTS_SERIALIZER,
        )
        self.sent += self.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100, help="events a message")
    parser.add_argument("--drain-batches", type=int, default=300, help="messages queued before the worker starts")
    parser.add_argument("--rate", type=float, default=2000, help="events a second in the steady phase")
    parser.add_argument("--duration", type=float, default=30, help="seconds of the steady phase")
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    options = parser.parse_args()

    site = setup_site()
    processes = []
    worker_log = Path(tempfile.mkstemp(prefix="bench-e2e-worker-", suffix=".log")[1])
    try:
        purge_queues()
        began = dt.datetime.now(dt.UTC)
        load_before = os.getloadavg()
        sampler = sampling.Sampler(sampling.Counts(site.id, site.timezone, began - dt.timedelta(seconds=1)))
        publisher = Publisher(site, options.batch)

        # 1. A backlog, then the worker.
        for _ in range(options.drain_batches):
            publisher.publish()
        backlog = publisher.sent
        worker = start_worker(options.concurrency, worker_log)
        processes.append(worker)
        worker_started = time.monotonic()
        backlog_drained, _ = sampler.drain(backlog, options.drain_timeout)
        backlog_seconds = time.monotonic() - worker_started

        # 2. A steady rate while the worker runs.
        cpu_before = cpu_seconds(worker)
        log_offset = worker_log.stat().st_size
        steady_began = time.monotonic()
        published_at: list[float] = []
        interval = options.batch / options.rate
        next_publish = next_sample = steady_began
        while (now := time.monotonic()) < steady_began + options.duration:
            if now >= next_publish:
                publisher.publish()
                published_at.extend([time.monotonic()] * options.batch)
                next_publish += interval
            if now >= next_sample:
                sampler.sample()
                next_sample += sampling.SAMPLE_SECONDS
            time.sleep(max(0.0, min(next_publish, next_sample) - time.monotonic()))
        drained, drain_seconds = sampler.drain(publisher.sent, options.drain_timeout)
        wall = time.monotonic() - steady_began
        cpu = cpu_seconds(worker) - cpu_before
        lag = sampling.lags(published_at, sampler.samples, before=backlog)  # the samples count the backlog too
        steady = len(published_at)
        figures: dict[str, Any] = sampling.machine_figures(began, load_before) | {
            "batch": options.batch,
            "backlog_events": backlog,
            "backlog_drained": backlog_drained,
            "backlog_s": round(backlog_seconds, 2),
            "backlog_events_per_s": round(backlog / backlog_seconds, 1) if backlog_drained else None,
            "rate": options.rate,
            "duration_s": options.duration,
            "published": steady,
            "drained": drained,
            "drain_s": round(drain_seconds, 2),
            "published_total": publisher.sent,
        }
        figures |= sampling.worker_figures(
            worker_log, cpu, steady, wall, options.concurrency, log_offset
        ) | sampling.lag_figures(lag)
        figures |= sampling.loss_figures(sampler.counts, {f"/e2e/{n}" for n in range(publisher.sent)})
        report(figures)
        if options.json:
            print(json.dumps(figures))
    finally:
        teardown(processes, worker_log)


def report(figures: dict[str, Any]) -> None:
    rows = [
        sampling.date_row(figures),
        ("drain: backlog, incl. the worker's start", f"{figures['backlog_events']:,} events in messages of "
                                                     f"{figures['batch']}: {figures['backlog_s']} s = "
                                                     f"{figures['backlog_events_per_s']} events/s"
                                                     + ("" if figures["backlog_drained"] else " (timed out)")),
        ("steady: published", f"{figures['rate']:,.0f} events/s for {figures['duration_s']:,.0f} s = "
                              f"{figures['published']:,} events"),
        ("published, both phases", f"{figures['published_total']:,}"),
        *sampling.loss_rows(figures),
        ("drain after the steady phase", f"{figures['drain_s']} s" + ("" if figures["drained"] else " (timed out)")),
        ("broker messages the worker applied (steady)", f"{figures['broker_messages']:,}, "
                                                        f"{figures['events_per_message']} events per message"),
        ("groups applied (waiting messages taken together)", f"{figures['groups_applied']:,}, "
                                                             f"{figures['events_per_group']} events per group"),
        ("worker CPU per event; per message; busy share", f"{figures['worker_cpu_us_per_event']} µs; "
                                                          f"{figures['worker_cpu_ms_per_message']} ms; "
                                                          f"{figures['worker_cpu_share']:.0%}"),
        ("lag publish → Redis and PostgreSQL (steady)", f"p50 {figures['lag_p50_ms']} ms, p95 {figures['lag_p95_ms']} ms, "
                                                        f"p99 {figures['lag_p99_ms']} ms, max {figures['lag_max_ms']} ms"),
    ]  # fmt: skip
    sampling.print_table(rows)


if __name__ == "__main__":
    main()
