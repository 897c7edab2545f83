"""bench/ingest/profile: the collector's CPU per event, in process, without HTTP or wrk.

Usage (bounded: ``--events`` requests on one core, a few seconds):

    .venv/bin/python -m bench.ingest.profile --events 20000
    .venv/bin/python -m bench.ingest.profile --endpoint batch --cprofile /tmp/batch.prof

Drives the collector's ASGI handlers directly (``event_endpoint`` with the
payloads of ``event.lua``, ``batch_endpoint`` with those of ``batch.lua``)
from ``--concurrency`` coroutines on uvloop, and prints the CPU time per event
(``time.process_time``); ``--endpoint bare`` drives the bare app of ``bare.py``
the same way, the floor of the driver itself. What it leaves out is uvicorn's own work (HTTP
parsing, the task per request: the bare app's ~25 µs per request). The
publisher is a stub that answers at once unless ``--publish real``, which
publishes to ``bench.events`` on the embedded servers (drained afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import faulthandler
import gc
import json
import os
import random
import signal
import time
from collections.abc import Sequence
from typing import Any

os.environ["SPINNAKR_QUEUE_PREFIX"] = "bench."
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")

AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
]
REFERRERS = ["https://www.google.com/", "https://t.co/x", "", "https://news.ycombinator.com/item?id=1"]
BATCH_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


def random_ip(rng: random.Random) -> str:
    return f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def event_request(rng: random.Random, domain: str) -> tuple[dict[str, Any], bytes]:
    """A scope and body as uvicorn hands them over for one request of ``event.lua``."""
    body = json.dumps(
        {
            "n": "pageview",
            "u": f"https://{domain}/page/{rng.randint(1, 200)}?utm_source=bench",
            "d": domain,
            "r": rng.choice(REFERRERS),
            "w": rng.randint(320, 2560),
        },
        separators=(",", ":"),
    ).encode()
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"x-forwarded-for", random_ip(rng).encode()),
        (b"user-agent", rng.choice(AGENTS).encode()),
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(body)).encode()),
    ]
    return scope("/api/event", headers), body


def batch_request(rng: random.Random, domain: str, key: str, size: int) -> tuple[dict[str, Any], bytes]:
    """A scope and body for one request of ``batch.lua``."""
    events = [
        {
            "name": "pageview",
            "url": f"https://{domain}/p/{rng.randint(1, 200)}",
            "domain": domain,
            "ip": random_ip(rng),
            "user_agent": BATCH_AGENT,
        }
        for _ in range(size)
    ]
    body = json.dumps({"events": events}, separators=(",", ":")).encode()
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"authorization", f"Bearer {key}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    return scope("/api/events", headers), body


def scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
    }


class StubPublisher:
    """Takes every event at once: the collector's own cost, without the broker's."""

    def __init__(self) -> None:
        self.events = 0

    async def submit(self, events: Sequence[Any]) -> None:
        self.events += len(events)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


async def drive(
    handler: Any, requests: list[tuple[dict[str, Any], bytes]], total: int, concurrency: int
) -> dict[int, int]:
    statuses: dict[int, int] = {}
    counter = iter(range(total))

    async def client() -> None:
        for index in counter:
            request_scope, body = requests[index % len(requests)]
            message = {"type": "http.request", "body": body, "more_body": False}

            async def receive(message: dict[str, Any] = message) -> dict[str, Any]:
                return message

            async def send(event: dict[str, Any]) -> None:
                if event["type"] == "http.response.start":
                    statuses[event["status"]] = statuses.get(event["status"], 0) + 1

            await handler(dict(request_scope), receive, send)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return statuses


async def run(options: argparse.Namespace, domain: str, key: str) -> None:
    from analytics.collector import app as collector
    from bench.ingest import bare

    stub = None
    if options.publish == "stub":
        stub = StubPublisher()
        collector.PUBLISHER = stub  # type: ignore[assignment]
    # Bounded: a broker or Redis that does not answer fails the run instead of hanging it.
    await asyncio.wait_for(collector.startup(), 30)
    try:
        rng = random.Random(42)
        endpoints = ["event", "batch"] if options.endpoint == "both" else [options.endpoint]
        for endpoint in endpoints:
            if endpoint in {"event", "bare"}:
                handler, per_request = collector.event_endpoint if endpoint == "event" else bare.app, 1
                requests = [event_request(rng, domain) for _ in range(min(options.events, 20_000))]
                total = options.events
            else:
                handler, per_request = collector.batch_endpoint, options.batch
                requests = [batch_request(rng, domain, key, options.batch) for _ in range(200)]
                total = max(1, options.events // options.batch)
            # Warm-up: fills the site cache, the key cache, the UA cache and the salts.
            await drive(handler, requests, min(total, 200), options.concurrency)
            for _round in range(options.rounds):
                gc.collect()
                profiler = cProfile.Profile() if options.cprofile else None
                started_cpu, started = time.process_time(), time.perf_counter()
                if profiler is not None:
                    profiler.enable()
                statuses = await drive(handler, requests, total, options.concurrency)
                if profiler is not None:
                    profiler.disable()
                    path = f"{options.cprofile}.{endpoint}" if options.endpoint == "both" else options.cprofile
                    profiler.dump_stats(path)
                cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
                events = total * per_request
                print(
                    f"{endpoint:5}: {events} events in {total} requests, {cpu * 1e6 / events:6.1f} µs CPU/event, "
                    f"{events / wall:,.0f} events/s wall, statuses {statuses}"
                )
    finally:
        await asyncio.wait_for(collector.shutdown(), 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", choices=["event", "batch", "both", "bare"], default="both")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--publish", choices=["stub", "real"], default="stub")
    parser.add_argument("--cprofile", help="write a cProfile of each measured round to this file")
    options = parser.parse_args()
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: where is it stuck?

    from bench.ingest.run import drain_queue, prepare

    domain, key = prepare()
    import uvloop

    uvloop.run(run(options, domain, key))
    if options.publish == "real":
        print(f"drained {drain_queue()} events from bench.events")


if __name__ == "__main__":
    main()
