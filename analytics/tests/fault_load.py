"""What the fault suite shares: a steady HTTP load on a real collector, the ledger of what it
answered, and the three-way balance every fault must end with.

The load is one thread POSTing one pageview a request to ``/api/event`` at a steady rate, each
with a pathname of its own (``/f/<n>``) and one of 250 client addresses, round-robin over the
sites it is given, as a browser does: no retry. The ledger keeps the pathname of every event the
collector answered 202 (accepted), every status and ``Retry-After`` it answered otherwise, and
the pathnames of the requests that got no answer at all (a connection lost, a timeout): those are
the only events whose fate nobody was told.

The balance (``assert_balanced``) compares, per site, the accepted events with what the rollups
count (the day counters of today and yesterday, in case the load crosses midnight) and with what
PostgreSQL stores (its raw rows): equal counts, the same pathnames, and no event stored twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from django.test import override_settings

from accounts.models import Site
from analytics.ingest import rollups
from analytics.models import Event
from analytics.tests.collector_fixtures import BROWSER_UA
from analytics.tests.outage_servers import ThrowawayValkey, free_port
from spinnakr import redis_clients, rendezvous
from spinnakr.settings import redis_db_url
from spinnakr.tests.waiting import wait_for

# httpx logs every request at INFO: thousands of lines in a failing test's report.
logging.getLogger("httpx").setLevel(logging.WARNING)

# Rate and length of a fault's load: short, so the whole suite stays within minutes.
RATE = 40
SETTLE_SECONDS = 90


@dataclass
class Ledger:
    """What the collector answered, per site: accepted pathnames, other answers, no answer."""

    accepted: dict[int, set[str]] = field(default_factory=dict, repr=False)
    unanswered: dict[int, set[str]] = field(default_factory=dict, repr=False)
    statuses: Counter[int] = field(default_factory=Counter)
    retry_after: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    # Per request, in order: (sent at, answered at (time.monotonic()), status or 0, pathname).
    timeline: list[tuple[float, float, int, str]] = field(default_factory=list, repr=False)

    def total(self) -> int:
        return sum(len(paths) for paths in self.accepted.values())

    def when(self, paths: set[str]) -> list[tuple[float, float, int, str]]:
        """The requests of ``paths``: (sent, answered) in seconds since the first request, status, path."""
        first = min((sent for sent, *_ in self.timeline), default=0.0)
        return [
            (round(sent - first, 3), round(answered - first, 3), status, path)
            for sent, answered, status, path in self.timeline
            if path in paths
        ]

    def in_flight(self, start: float, end: float) -> set[str]:
        """The pathnames of the requests under way at some moment between ``start`` and ``end``
        (``time.monotonic()``): a server that died or shut down meanwhile may have taken their
        events without saying so."""
        return {path for sent, answered, _, path in self.timeline if sent <= end and answered >= start}


class Load:
    """A steady load of pageviews on ``url``'s ``/api/event`` for ``sites``, from a thread."""

    def __init__(self, url: str, sites: list[Site], rate: float = RATE) -> None:
        self.url = url
        self.sites = sites
        self.rate = rate
        self.ledger = Ledger(accepted={site.id: set() for site in sites}, unanswered={site.id: set() for site in sites})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Ledger:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.ledger

    def run_for(self, seconds: float) -> None:
        """Let the load go on for ``seconds`` (it runs in its thread; the test just waits)."""
        self._stop.wait(seconds)

    def _run(self) -> None:
        asyncio.run(self._load())

    async def _load(self) -> None:
        # Open loop, as browsers are: request n goes out when due, whatever the earlier ones
        # are waiting for, so a collector that holds its requests is seen holding many.
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(15, connect=2), limits=limits) as client:
            started = time.monotonic()
            in_flight: set[asyncio.Task[None]] = set()
            while not self._stop.is_set():
                n = self.ledger.sent
                self.ledger.sent += 1
                task = asyncio.create_task(self._send(client, n))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                await asyncio.sleep(max(0.0, started + (n + 1) / self.rate - time.monotonic()))
            if in_flight:
                await asyncio.wait(in_flight, timeout=30)

    async def _send(self, client: httpx.AsyncClient, n: int) -> None:
        site = self.sites[n % len(self.sites)]
        path = f"/f/{n}"
        headers = {"user-agent": BROWSER_UA, "x-forwarded-for": f"198.51.100.{n % 250}"}
        body = {"n": "pageview", "u": f"https://{site.domain}{path}", "d": site.domain}
        sent = time.monotonic()
        try:
            response = await client.post("/api/event", json=body, headers=headers)
        except httpx.TransportError:
            self.ledger.timeline.append((sent, time.monotonic(), 0, path))
            self.ledger.unanswered[site.id].add(path)
            return
        self.ledger.timeline.append((sent, time.monotonic(), response.status_code, path))
        self.ledger.statuses[response.status_code] += 1
        if response.status_code == 202:
            self.ledger.accepted[site.id].add(path)
        elif "retry-after" in response.headers:
            self.ledger.retry_after[response.headers["retry-after"]] += 1


def days() -> list[str]:
    today = datetime.now(UTC)
    return [(today - timedelta(days=1)).strftime("%Y%m%d"), today.strftime("%Y%m%d")]


def counted(site_id: int) -> int:
    """The site's pageviews in its rollups (its UTC day counters of yesterday and today)."""
    return sum(row["pageviews"] for row in rollups.counters(site_id, "d", days()))


def stored_paths(site_id: int) -> list[str]:
    """The pathnames of the site's raw rows in the test database, one per row."""
    return list(Event.objects.filter(site_id=site_id).values_list("pathname", flat=True))


StoredPaths = Callable[[int], list[str]]


def balanced(ledger: Ledger, stored: StoredPaths = stored_paths, in_doubt: frozenset[str] = frozenset()) -> bool:
    """Whether every site's rollups count what PostgreSQL stores, and that is what was accepted
    (plus, at most, events of the requests ``in_doubt``)."""
    for site_id, accepted in ledger.accepted.items():
        paths = stored(site_id)
        extra = set(paths) - accepted
        if counted(site_id) != len(paths) or not accepted <= set(paths):
            return False
        if not extra <= in_doubt:
            return False
    return True


def assert_balanced(ledger: Ledger, stored: StoredPaths = stored_paths, in_doubt: frozenset[str] = frozenset()) -> None:
    """Wait (bounded) until accepted = counted = stored for every site, then check that no event
    is stored twice and no accepted one is missing. ``in_doubt`` names requests whose events
    may be stored though they were not answered 202: those under way when a server died
    (``Ledger.in_flight``)."""
    try:
        wait_for(lambda: balanced(ledger, stored, in_doubt), timeout=SETTLE_SECONDS, interval=0.5)
    except AssertionError:
        missing = set().union(*(accepted - set(stored(site_id)) for site_id, accepted in ledger.accepted.items()))
        raise AssertionError(f"not balanced: {describe(ledger, stored)}; missing {ledger.when(missing)}") from None
    for site_id, accepted in ledger.accepted.items():
        paths = stored(site_id)
        assert len(paths) == len(set(paths)), f"site {site_id}: an event stored twice"
        assert counted(site_id) == len(paths)
        assert accepted <= set(paths)


def describe(ledger: Ledger, stored: StoredPaths) -> dict[int, tuple[int, int, int]]:
    """Per site: (accepted, counted, stored)."""
    return {
        site_id: (len(accepted), counted(site_id), len(stored(site_id)))
        for site_id, accepted in ledger.accepted.items()
    }


def batches_done(log: Path, duplicate: bool | None = None) -> list[int]:
    """The message count of every group a worker applied (``ingest.batch_done``); with
    ``duplicate``, only of the groups holding (or not) a batch applied before."""
    lines = re.findall(r"ingest\.batch_done .*", log.read_text(errors="replace"))
    wanted = [line for line in lines if duplicate is None or f"duplicate={str(duplicate).lower()}" in line]
    return [int(match.group(1)) for line in wanted if (match := re.search(r"\bmessages=(\d+)", line))]


@contextmanager
def rollup_valkeys(directory: Path, count: int = 3) -> Iterator[list[ThrowawayValkey]]:
    """``count`` Valkeys on loopback ports as the rollups' servers of this process
    (``ROLLUP_REDIS_URLS``) for the block; workers get them as ``REDIS_URLS`` (``urls_env``)."""
    servers = [ThrowawayValkey(directory / f"rollups-{n}", port=free_port()) for n in range(count)]
    for server in servers:
        server.directory.mkdir()
        server.start()
    try:
        with override_settings(ROLLUP_REDIS_URLS=tuple(redis_db_url(s.tcp_url, 0) for s in servers)):
            yield servers
    finally:
        for server in servers:
            server.stop()


def urls_env(servers: list[ThrowawayValkey]) -> dict[str, str]:
    return {"REDIS_URLS": ",".join(server.tcp_url for server in servers)}


def server_of(site: Site, servers: list[ThrowawayValkey]) -> ThrowawayValkey:
    """The server of ``servers`` holding the site's rollups (rendezvous hashing, as every process)."""
    chosen = rendezvous.choose(redis_clients.rollup_urls(), site.id)
    return next(s for s in servers if redis_db_url(s.tcp_url, 0) == chosen)


def sites_on_every_server(
    make: Callable[[str], Site], servers: list[ThrowawayValkey], prefix: str = "fault"
) -> list[Site]:
    """One site per server (made with ``make(domain)`` until each server has one), in server order."""
    chosen: dict[int, Site] = {}
    for n in range(100):
        site = make(f"{prefix}{n}.example")
        chosen.setdefault(servers.index(server_of(site, servers)), site)
        if len(chosen) == len(servers):
            return [chosen[index] for index in range(len(servers))]
    raise AssertionError("the hashing left a server without a site")
