"""Worker benchmark: how fast ``analytics.ingest_batch`` drains, and its lag under steady load.

Runs against this checkout's servers (embedded by default) on queues prefixed ``bench.``, with a
site of its own (``bench-worker.example``, deleted with its data at the end), and starts its own
``celery worker`` (``--concurrency`` processes). Two phases:

1. drain: ``--drain-batches`` batches of ``--batch`` events are queued with no worker running,
   then a worker starts; events/s = events / time until all are stored and counted.
2. steady: ``--rate`` events/s are published (in batches of ``--batch``) for ``--seconds`` while
   the worker runs; lag = time from publishing a batch until PostgreSQL and Redis both hold it
   (sampled every 50 ms); loss = published - stored, published - counted at the end.

    .venv/bin/python bench/worker/drain.py --rate 2000 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")
os.environ["SPINNAKR_QUEUE_PREFIX"] = "bench."

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from accounts.models import Account, Site  # noqa: E402
from analytics.ingest import rollups  # noqa: E402
from analytics.ingest.cleanup import purge_site  # noqa: E402
from analytics.payloads import EVENTS_SERIALIZER  # noqa: E402
from analytics.tests.factories import make_event  # noqa: E402
from spinnakr import embedded  # noqa: E402
from spinnakr.celery import app  # noqa: E402

DOMAIN = "bench-worker.example"
PAGES = [f"/page/{n}" for n in range(50)]


def batch_of(site: Site, size: int, rng: random.Random) -> list[dict]:
    now = datetime.now(UTC)
    return [
        dict(
            make_event(
                site,
                now,
                visitor=rng.randrange(5000),
                pathname=rng.choice(PAGES),
                referrer_source=rng.choice(["", "Google", "Bing"]),
            )
        )
        for _ in range(size)
    ]


def publish(batch: list[dict]) -> None:
    app.send_task(
        "analytics.ingest_batch",
        kwargs={"batch_id": uuid.uuid4().hex, "events": batch},
        queue=settings.EVENTS_QUEUE,
        serializer=EVENTS_SERIALIZER,
    )


def stored(site: Site) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM analytics_event WHERE site_id = %s", [site.id])
        return int(cursor.fetchone()[0])


def counted(site: Site) -> int:
    day = datetime.now(UTC).strftime("%Y%m%d")
    return rollups.counters(site.id, "d", [day])[0]["pageviews"]


def start_worker(concurrency: int, pool: str = "prefork") -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "spinnakr", "worker", "-Q", f"{settings.EVENTS_QUEUE},{settings.DEFAULT_QUEUE}",
               "--concurrency", str(concurrency), "--pool", pool, "--without-gossip", "--without-mingle", "--loglevel", "WARNING",
               "-n", f"bench-{uuid.uuid4().hex[:6]}@%h"]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=dict(os.environ), start_new_session=True)


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=30)


def wait_until(predicate: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise SystemExit("timed out")
        time.sleep(0.02)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--drain-batches", type=int, default=300)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    embedded.acquire()
    rng = random.Random(1)
    Site.objects.filter(domain=DOMAIN).delete()
    account = Account.objects.create(name="bench", monthly_event_quota=10**12)
    site = Site.objects.create(account=account, domain=DOMAIN, timezone="Europe/Berlin")
    try:
        # Phase 1: drain a backlog.
        total = args.drain_batches * args.batch
        for _ in range(args.drain_batches):
            publish(batch_of(site, args.batch, rng))
        worker = start_worker(args.concurrency)
        started = time.monotonic()
        wait_until(lambda: stored(site) >= total and counted(site) >= total, timeout=600)
        elapsed = time.monotonic() - started
        print(f"drain: {total} events in {elapsed:.2f} s (incl. worker start) = {total / elapsed:,.0f} events/s")

        # Phase 2: steady load with the worker running.
        base_stored, base_counted = stored(site), counted(site)
        interval = args.batch / args.rate
        published: list[tuple[int, float]] = []
        observed: list[tuple[int, float]] = []
        next_at = time.monotonic()
        end = next_at + args.seconds
        sent = 0
        last_sample = 0.0
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_at:
                publish(batch_of(site, args.batch, rng))
                sent += args.batch
                published.append((sent, now))
                next_at += interval
            if now - last_sample >= 0.05:
                observed.append((min(stored(site) - base_stored, counted(site) - base_counted), time.monotonic()))
                last_sample = now
            time.sleep(max(0.0, min(next_at, last_sample + 0.05) - time.monotonic()))
        wait_until(lambda: stored(site) - base_stored >= sent and counted(site) - base_counted >= sent, timeout=300)
        observed.append((sent, time.monotonic()))
        lags = []
        j = 0
        for cumulative, at in published:
            while observed[j][0] < cumulative:
                j += 1
            lags.append(max(0.0, observed[j][1] - at))
        lags.sort()
        p50 = statistics.median(lags)
        p95 = lags[int(len(lags) * 0.95) - 1]
        p99 = lags[int(len(lags) * 0.99) - 1]
        time.sleep(1)
        loss_store = sent - (stored(site) - base_stored)
        loss_count = sent - (counted(site) - base_counted)
        print(
            f"steady: {sent} events at {args.rate}/s for {args.seconds} s, batches of {args.batch}: "
            f"lag p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms; "
            f"not stored {loss_store}, not counted {loss_count}"
        )
        stop_worker(worker)
    finally:
        purge_site(site.id)
        account.delete()
        embedded.release()


if __name__ == "__main__":
    main()
