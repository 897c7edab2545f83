"""End to end: events accepted by the collector until they are counted in Redis and stored.

Starts the real app under uvicorn (1 worker) and a Celery worker (``--pool``, ``--concurrency``)
on queues ``bench.*``, then posts ``--rate`` events/s as 100-event batches to ``/api/events``
(API key, random client addresses) for ``--seconds``. Every 50 ms it samples the site's stored
rows (PostgreSQL) and counted pageviews (Redis day counter); the lag of a batch is the time from
its 202 until both hold it. Loss = accepted - stored, accepted - counted once all is drained.

    .venv/bin/python bench/worker/endtoend.py --rate 2000 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")
os.environ["SPINNAKR_QUEUE_PREFIX"] = "bench."

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from accounts.apikeys import create_api_key  # noqa: E402
from accounts.models import Account, Site  # noqa: E402
from analytics.ingest import rollups  # noqa: E402
from analytics.ingest.cleanup import purge_site  # noqa: E402
from spinnakr import embedded  # noqa: E402

DOMAIN = "bench-e2e.example"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stored(site_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM analytics_event WHERE site_id = %s", [site_id])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def counted(site_id: int) -> int:
    return rollups.counters(site_id, "d", [datetime.now(UTC).strftime("%Y%m%d")])[0]["pageviews"]


def body(rng: random.Random, size: int) -> dict[str, object]:
    return {
        "events": [
            {
                "name": "pageview",
                "url": f"https://{DOMAIN}/p/{rng.randrange(200)}",
                "domain": DOMAIN,
                "ip": f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                "user_agent": UA,
            }
            for _ in range(size)
        ]
    }


async def load(url: str, key: str, rate: int, seconds: int, size: int) -> list[tuple[int, float]]:
    """Posts at the rate; answers (accepted so far, time of the 202) per request."""
    rng = random.Random(3)
    accepted: list[tuple[int, float]] = []
    total = 0
    interval = size / rate
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            response = await client.post("/api/events", json=body(rng, size))
            if response.status_code == 202:
                total += size
                accepted.append((total, time.monotonic()))
            n += 1
            await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
    return accepted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    embedded.acquire()
    Site.objects.filter(domain=DOMAIN).delete()
    account = Account.objects.create(name="bench e2e", plan="enterprise", monthly_event_quota=10**12)
    site = Site.objects.create(account=account, domain=DOMAIN, timezone="UTC")
    _, key = create_api_key(account, "bench", ["events:write"])
    port = free_port()
    env = dict(os.environ)
    web = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "spinnakr.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "spinnakr", "worker", "-Q", f"{settings.EVENTS_QUEUE},{settings.DEFAULT_QUEUE}",
         "--pool", args.pool, "--concurrency", str(args.concurrency), "--without-gossip", "--without-mingle",
         "--loglevel", "WARNING", "-n", f"bench-{uuid.uuid4().hex[:6]}@%h"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(6)
        samples: list[tuple[int, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((min(stored(site.id), counted(site.id)), time.monotonic()))
                time.sleep(0.05)
            connection.close()

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        accepted = asyncio.run(load(f"http://127.0.0.1:{port}", key, args.rate, args.seconds, 100))
        goal = accepted[-1][0] if accepted else 0
        deadline = time.monotonic() + 300
        while min(stored(site.id), counted(site.id)) < goal and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        sampler.join()
        samples.append((min(stored(site.id), counted(site.id)), time.monotonic()))
        lags = []
        j = 0
        for total, at in accepted:
            while j < len(samples) - 1 and samples[j][0] < total:
                j += 1
            lags.append(max(0.0, samples[j][1] - at))
        lags.sort()
        total = accepted[-1][0] if accepted else 0
        time.sleep(1)
        print(
            f"end to end: {total} events accepted at {args.rate}/s for {args.seconds} s "
            f"({total / args.seconds:,.0f}/s achieved), worker {args.pool} x{args.concurrency}: "
            f"lag p50 {statistics.median(lags) * 1000:.0f} ms, p95 {lags[int(len(lags) * 0.95) - 1] * 1000:.0f} ms, "
            f"max {lags[-1] * 1000:.0f} ms; accepted {total}, stored {stored(site.id)}, counted {counted(site.id)}"
        )
    finally:
        for process in (worker, web):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        purge_site(site.id)
        account.delete()
        embedded.release()


if __name__ == "__main__":
    main()
