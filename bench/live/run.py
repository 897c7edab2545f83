"""Live dashboard benchmark: accepted event → DOM change, and concurrent WebSockets per web process.

Starts its own web process (uvicorn, one worker) and Celery worker on the
embedded servers of this checkout (the development database, a dedicated bench
site), then:

1. ``dom``: a headless Chromium dashboard (Debian's chromium through
   Playwright) watches ``[data-metric=pageviews]`` with a MutationObserver while
   events are POSTed to ``/api/event`` at a fixed rate; for each event, the
   latency is the time from its 202 to the first DOM value that counts it.
2. ``sockets``: N WebSocket clients on one web process; events at a low rate;
   for each delta, the time from the 202 of the batch's newest event to its
   arrival on every socket.

Bounded and loopback only: ``python -m bench.live.run dom --rate 10 --seconds 10``,
``python -m bench.live.run sockets --clients 1000 --rate 5 --seconds 15``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")

import django  # noqa: E402

from spinnakr import embedded  # noqa: E402

embedded.acquire()  # this checkout's embedded servers, released when the process exits
django.setup()

import httpx  # noqa: E402
import websockets  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.core.management import call_command  # noqa: E402

from accounts.models import Account, Membership, Role, Site, User  # noqa: E402

logging.getLogger("httpx").setLevel(logging.WARNING)

DOMAIN = "bench-live.spinnakr.test"
EMAIL = "bench-live@spinnakr.test"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def summary(name: str, values_ms: list[float]) -> dict[str, Any]:
    return {
        "measure": name,
        "samples": len(values_ms),
        "p50_ms": round(percentile(values_ms, 50), 1) if values_ms else None,
        "p95_ms": round(percentile(values_ms, 95), 1) if values_ms else None,
        "max_ms": round(max(values_ms), 1) if values_ms else None,
        "mean_ms": round(statistics.fmean(values_ms), 1) if values_ms else None,
    }


def bench_site() -> tuple[Site, str]:
    """The bench customer and site, and a logged-in session id for it."""
    call_command("migrate", verbosity=0)
    user = User.objects.filter(email=EMAIL).first() or User.objects.create_user(EMAIL, uuid.uuid4().hex)
    site = Site.objects.filter(domain=DOMAIN).first()
    if site is None:
        account = Account.objects.create(name="Bench (live)")
        Membership.objects.create(account=account, user=user, role=Role.OWNER)
        site = Site.objects.create(account=account, domain=DOMAIN, timezone="UTC")
    # The enterprise plan's per-site rate (50,000/s) so the collector's limits stay out of the way.
    Account.objects.filter(pk=site.account_id).update(plan="enterprise", monthly_event_quota=10**12)
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.save()
    return site, str(session.session_key)


@contextmanager
def service(web_workers: int = 1, worker_concurrency: int = 2) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLLECTOR_RATE_PER_IP": "100000", "LOG_LEVEL": "WARNING"}
    logs = BASE_DIR / "var" / "bench-live"
    logs.mkdir(parents=True, exist_ok=True)
    web = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "spinnakr.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(web_workers), "--loop", "uvloop", "--http", "httptools", "--lifespan", "on",
         "--no-access-log"],
        cwd=BASE_DIR, env=env, stdout=(logs / "web.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "spinnakr", "worker", "-Q",
         f"{settings.EVENTS_QUEUE},{settings.DEFAULT_QUEUE}", "--concurrency", str(worker_concurrency), "--without-gossip",
         "--without-mingle", "-n", f"bench-live-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "WARNING"],
        cwd=BASE_DIR, env=env, stdout=(logs / "worker.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the web process did not start; see var/bench-live/web.log")
            time.sleep(0.2)
        time.sleep(3)  # the worker's start-up
        yield url
    finally:
        for process in (web, worker):
            process.terminate()
        for process in (web, worker):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


async def _connection(
    host: str, port: int, jobs: asyncio.Queue[int | None], accepted: list[float], failed: list[int]
) -> None:
    """One kept-alive HTTP/1.1 connection posting the events it takes from ``jobs``.

    A raw client: httpx spends about a millisecond of CPU per request, which on
    this box caps a Python sender well below 1,000 events/s.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (index := await jobs.get()) is not None:
            body = json.dumps(
                {"name": "pageview", "url": f"https://{DOMAIN}/p/{index % 20}", "domain": DOMAIN}
            ).encode()
            address = f"79.{192 + index % 60}.{(index // 60) % 250}.{1 + index % 250}"
            writer.write(
                (
                    f"POST /api/event HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {UA}\r\n"
                    f"X-Forwarded-For: {address}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if status == 202:
                accepted.append(time.time() * 1000)
            else:
                failed.append(status)
    finally:
        writer.close()


async def send_events(url: str, rate: float, seconds: float, connections: int = 32) -> list[float]:
    """POST pageviews at ``rate`` per second; answers the wall-clock time (ms) of each 202, in order."""
    host, port = url.removeprefix("http://").split(":")
    accepted: list[float] = []
    failed: list[int] = []
    jobs: asyncio.Queue[int | None] = asyncio.Queue()
    workers = [asyncio.create_task(_connection(host, int(port), jobs, accepted, failed)) for _ in range(connections)]
    start = time.monotonic()
    for index in range(int(rate * seconds)):
        delay = start + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        jobs.put_nowait(index)
    for _ in workers:
        jobs.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.monotonic() - start
    print(
        f"sent {len(accepted) + len(failed)} in {elapsed:.1f} s, accepted {len(accepted)}, other {len(failed)}",
        file=sys.stderr,
    )
    accepted.sort()
    return accepted


def dom_latency(url: str, session_id: str, rate: float, seconds: float) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context()
        context.add_cookies([{"name": "sessionid", "value": session_id, "url": url}])
        page = context.new_page()
        page.goto(f"{url}/sites/{DOMAIN}/?period=day")
        page.wait_for_selector("#live-status[data-state=live]", timeout=20_000)
        page.wait_for_function("document.querySelector('[data-metric=pageviews]').dataset.value !== ''")
        page.wait_for_timeout(1000)
        base = int(page.locator("[data-metric=pageviews]").get_attribute("data-value") or "0")
        page.evaluate(
            """() => {
                window.__changes = [];
                const el = document.querySelector('[data-metric=pageviews]');
                new MutationObserver(() => window.__changes.push([Date.now(), Number(el.dataset.value)]))
                    .observe(el, {attributes: true, attributeFilter: ['data-value']});
            }"""
        )
        # Playwright's sync API owns this thread's event loop: send from another thread.
        accepted: list[float] = []
        sender = threading.Thread(target=lambda: accepted.extend(asyncio.run(send_events(url, rate, seconds))))
        sender.start()
        while sender.is_alive():
            page.wait_for_timeout(200)
        page.wait_for_timeout(5000)
        changes: list[list[float]] = page.evaluate("window.__changes")
        browser.close()
    latencies = []
    missing = 0
    for index, at in enumerate(accepted):
        needed = base + index + 1
        seen = next((when for when, value in changes if value >= needed), None)
        if seen is None:
            missing += 1
        else:
            latencies.append(max(0.0, seen - at))
    result = summary(f"dom_latency@{rate:g}/s", latencies)
    result.update({"accepted": len(accepted), "never_shown": missing, "dom_updates": len(changes)})
    return result


async def socket_fanout(url: str, session_id: str, clients: int, rate: float, seconds: float) -> dict[str, Any]:
    ws_url = url.replace("http://", "ws://") + f"/ws/sites/{DOMAIN}/"
    headers = {"Cookie": f"sessionid={session_id}", "Origin": url}
    arrivals: list[tuple[int, float]] = []  # (newest_ts of the delta, arrival ms)
    sockets = []
    opened = 0
    for _ in range(clients):
        try:
            sockets.append(await websockets.connect(ws_url, additional_headers=headers, open_timeout=20))
            opened += 1
        except (OSError, websockets.WebSocketException):
            break
    for sock in sockets:
        await sock.recv()  # hello

    async def listen(sock: Any) -> None:
        try:
            async for raw in sock:
                message = json.loads(raw)
                if message.get("type") == "delta":
                    arrivals.append((int(message["newest_ts"]), time.time() * 1000))
        except websockets.ConnectionClosed:
            return

    listeners = [asyncio.create_task(listen(sock)) for sock in sockets]
    accepted = await send_events(url, rate, seconds)
    await asyncio.sleep(5)
    for sock in sockets:
        await sock.close()
    await asyncio.gather(*listeners, return_exceptions=True)
    # A delta's latency: from the 202 of its newest event to its arrival on each socket.
    latencies = []
    for newest_ts, arrived in arrivals:
        acked = next((a for a in accepted if a >= newest_ts), None)
        if acked is not None:
            latencies.append(max(0.0, arrived - acked))
    result = summary(f"delta_fanout@{clients}_sockets", latencies)
    result.update({"sockets_open": opened, "deltas_received": len(arrivals), "accepted": len(accepted)})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["dom", "sockets"])
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--worker-concurrency", type=int, default=2, help="Celery processes (make run: 2)")
    args = parser.parse_args()
    _, session_id = bench_site()
    with service(worker_concurrency=args.worker_concurrency) as url:
        if args.mode == "dom":
            result = dom_latency(url, session_id, args.rate, args.seconds)
        else:
            result = asyncio.run(socket_fanout(url, session_id, args.clients, args.rate, args.seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
