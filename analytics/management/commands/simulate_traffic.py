"""Send realistic demo traffic to a site through the real collector over HTTP.

Visits of several pages with think time in between, arriving from search
engines, social sites, newsletters (UTM-tagged) or directly; visitors from
many countries (``X-Forwarded-For`` addresses in real allocations that
iptocc maps to that country) on real browser user agents; custom events with
properties and the odd purchase with revenue. Every event is a real
``POST /api/event``, so it goes through validation, enrichment, the queue, the
worker and the live push like any visitor's.
"""

from __future__ import annotations

import heapq
import http.client
import ipaddress
import json
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import iptocc
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

# Address blocks allocated to ISPs of each country (checked against iptocc when drawn).
COUNTRY_BLOCKS: dict[str, list[str]] = {
    "US": ["3.0.0.0/9", "24.0.0.0/12"],
    "DE": ["46.114.0.0/15", "79.192.0.0/10", "84.128.0.0/10"],
    "GB": ["81.128.0.0/11", "86.128.0.0/11"],
    "FR": ["90.0.0.0/9", "86.192.0.0/11"],
    "NL": ["77.160.0.0/12"],
    "ES": ["88.0.0.0/11", "83.32.0.0/11"],
    "IT": ["79.0.0.0/10", "93.32.0.0/11"],
    "PL": ["83.0.0.0/11", "89.64.0.0/12"],
    "SE": ["78.64.0.0/12"],
    "IN": ["117.192.0.0/10"],
    "JP": ["133.0.0.0/8"],
    "KR": ["211.32.0.0/11", "175.192.0.0/10"],
    "AU": ["1.120.0.0/13", "101.160.0.0/11"],
    "CA": ["99.224.0.0/11"],
    "MX": ["187.128.0.0/10"],
}
COUNTRY_WEIGHTS = {"US": 30, "DE": 14, "GB": 10, "FR": 7, "NL": 4, "ES": 4, "IT": 4, "PL": 3, "SE": 2, "IN": 8,
                   "JP": 4, "KR": 2, "AU": 3, "CA": 4, "MX": 2}  # fmt: skip

# (user agent, screen width, weight)
USER_AGENTS: list[tuple[str, int, int]] = [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", 1920, 30),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", 1440, 12),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", 1512, 10),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0", 1366, 7),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", 1920, 3),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", 1600, 6),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", 390, 18),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36", 412, 12),
    ("Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", 360, 4),
    ("Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1", 820, 3),
]  # fmt: skip

PAGES: list[tuple[str, int]] = [
    ("/", 30), ("/pricing", 12), ("/features", 9), ("/blog", 8), ("/blog/real-time-analytics-without-cookies", 6),
    ("/blog/django-channels-at-scale", 5), ("/blog/why-we-left-google-analytics", 4), ("/docs", 7),
    ("/docs/getting-started", 6), ("/docs/api", 4), ("/about", 3), ("/contact", 2), ("/signup", 5), ("/login", 4),
]  # fmt: skip

# (referrer, utm query string, weight): empty referrer and query = direct.
ACQUISITION: list[tuple[str, str, int]] = [
    ("", "", 30),
    ("https://www.google.com/", "", 28),
    ("https://duckduckgo.com/", "", 5),
    ("https://www.bing.com/", "", 3),
    ("https://t.co/x7Yq2Lp9", "", 5),
    ("https://news.ycombinator.com/item?id=41234567", "", 6),
    ("https://www.reddit.com/r/django/comments/1abcde/", "", 4),
    ("https://github.com/spinnakr/spinnakr", "", 4),
    ("https://www.linkedin.com/", "", 2),
    ("", "utm_source=newsletter&utm_medium=email&utm_campaign=autumn-launch", 6),
    ("https://www.google.com/", "utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=privacy+analytics", 4),
    ("https://t.co/Ab12Cd34", "utm_source=twitter&utm_medium=social&utm_campaign=launch-week&utm_content=thread", 3),
]

CUSTOM_EVENTS: list[tuple[str, dict[str, list[str]], int]] = [
    ("Signup", {"plan": ["free", "free", "pro", "business"], "method": ["email", "github", "google"]}, 5),
    ("Download", {"file": ["whitepaper.pdf", "pricing.pdf", "spinnakr-cli.tar.gz"]}, 3),
    ("Outbound Link: Click", {"url": ["https://github.com/spinnakr/spinnakr", "https://docs.djangoproject.com/"]}, 3),
    ("Newsletter", {"position": ["footer", "blog-sidebar"]}, 2),
]


def weighted(rng: random.Random, items: list[Any], weight_index: int = -1) -> Any:
    return rng.choices(items, weights=[item[weight_index] for item in items])[0]


def country_address(rng: random.Random, country: str) -> str:
    """A random address in one of ``country``'s blocks that iptocc maps back to ``country``."""
    for _ in range(20):
        network = ipaddress.ip_network(rng.choice(COUNTRY_BLOCKS[country]))
        address = str(network[rng.randrange(1, network.num_addresses - 1)])
        if iptocc.country_code(address) == country:
            return address
    return address


@dataclass
class Visit:
    ip: str
    user_agent: str
    width: int
    referrer: str
    utm: str
    pages_left: int
    path: str = "/"
    first: bool = True
    converted: bool = False
    history: list[str] = field(default_factory=list)


class Simulator:
    """Draws the next event of a population of overlapping visits."""

    def __init__(self, domain: str, rng: random.Random, think: float) -> None:
        self.domain = domain
        self.rng = rng
        self.think = think
        # Visits between two of their events, by when their next event is due.
        self.waiting: list[tuple[float, int, Visit]] = []
        self.sequence = 0
        # Returning visitors: a pool of (address, user agent) that come back.
        self.returning: list[tuple[str, str, int]] = []

    def new_visit(self, now: float) -> Visit:
        rng = self.rng
        if self.returning and rng.random() < 0.25:
            ip, user_agent, width = rng.choice(self.returning)
        else:
            countries = list(COUNTRY_WEIGHTS)
            country = rng.choices(countries, weights=[COUNTRY_WEIGHTS[c] for c in countries])[0]
            user_agent, width, _ = weighted(rng, USER_AGENTS)
            ip = country_address(rng, country)
            self.returning.append((ip, user_agent, width))
            self.returning = self.returning[-500:]
        referrer, utm, _ = weighted(rng, ACQUISITION)
        # Bounces are common; engaged visits read several pages.
        pages = 1 if rng.random() < 0.4 else rng.randint(2, 7)
        entry = weighted(rng, PAGES)[0] if referrer or utm else rng.choice(["/", "/", "/pricing", "/docs"])
        return Visit(ip, user_agent, width, referrer, utm, pages, path=entry)

    def next_event(self, now: float) -> tuple[Visit, dict[str, Any]]:
        """The next page or event of a visit that is due, else the first page of a new visit."""
        visit = heapq.heappop(self.waiting)[2] if self.waiting and self.waiting[0][0] <= now else self.new_visit(now)
        body = self.event_for(visit)
        if visit.pages_left > 0 or (not visit.converted and self.rng.random() < 0.1):
            self.sequence += 1
            heapq.heappush(self.waiting, (now + self.rng.expovariate(1 / self.think), self.sequence, visit))
        return visit, body

    def event_for(self, visit: Visit) -> dict[str, Any]:
        rng = self.rng
        base = f"https://{self.domain}"
        if visit.first:
            visit.first = False
            visit.pages_left -= 1
            visit.history.append(visit.path)
            query = f"?{visit.utm}" if visit.utm else ""
            return {"name": "pageview", "url": f"{base}{visit.path}{query}", "referrer": visit.referrer or None,
                    "domain": self.domain, "w": visit.width}  # fmt: skip
        if not visit.converted and rng.random() < 0.18:
            visit.converted = True
            name, props, _ = weighted(rng, CUSTOM_EVENTS)
            body: dict[str, Any] = {
                "name": name,
                "url": f"{base}{visit.path}",
                "domain": self.domain,
                "props": {key: rng.choice(values) for key, values in props.items()},
                "w": visit.width,
            }
            if name == "Signup" and body["props"]["plan"] != "free" and rng.random() < 0.5:
                body["name"] = "Purchase"
                body["revenue"] = {"amount": rng.choice(["19.00", "49.00", "199.00"]), "currency": "EUR"}
            return body
        previous = visit.path
        choices = [p for p in PAGES if p[0] != previous]
        visit.path = weighted(rng, choices)[0]
        visit.pages_left -= 1
        visit.history.append(visit.path)
        return {"name": "pageview", "url": f"{base}{visit.path}", "referrer": f"{base}{previous}",
                "domain": self.domain, "w": visit.width}  # fmt: skip


class Sender(threading.Thread):
    """Posts events from a queue over one kept-alive HTTP connection."""

    def __init__(
        self,
        base: str,
        jobs: queue.Queue[tuple[Visit, dict[str, Any]] | None],
        stats: dict[str, int],
        lock: threading.Lock,
    ) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(base)
        self.scheme = parts.scheme
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.jobs = jobs
        self.stats = stats
        self.lock = lock
        self.connection: http.client.HTTPConnection | None = None

    def connect(self) -> http.client.HTTPConnection:
        if self.connection is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self.connection = cls(self.host, self.port, timeout=10)
        return self.connection

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            visit, body = job
            status = self.post(visit, body)
            with self.lock:
                self.stats[str(status)] = self.stats.get(str(status), 0) + 1

    def post(self, visit: Visit, body: dict[str, Any]) -> int | str:
        payload = json.dumps({k: v for k, v in body.items() if v is not None}).encode()
        headers = {
            "Content-Type": "text/plain",
            "User-Agent": visit.user_agent,
            "X-Forwarded-For": visit.ip,
            "Origin": f"https://{body['domain']}",
        }
        for attempt in range(2):
            try:
                connection = self.connect()
                connection.request("POST", "/api/event", body=payload, headers=headers)
                response = connection.getresponse()
                response.read()
                return response.status
            except (OSError, http.client.HTTPException) as exc:
                if self.connection is not None:
                    self.connection.close()
                self.connection = None
                if attempt == 1:
                    return type(exc).__name__
        return "error"


class Command(BaseCommand):
    help = "Send realistic visits to a site through the collector (/api/event) over HTTP."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--site", required=True, help="the site's domain, e.g. demo.spinnakr.test")
        parser.add_argument("--rate", type=float, default=5.0, help="events per second (default 5)")
        parser.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
        parser.add_argument("--url", default=None, help="base URL of Spinnakr (default SITE_URL)")
        parser.add_argument("--think", type=float, default=15.0, help="mean seconds between a visitor's pages")
        parser.add_argument("--seed", type=int, default=None, help="random seed, for repeatable traffic")

    def handle(self, *args: Any, **options: Any) -> None:
        rate: float = options["rate"]
        duration: float = options["duration"]
        if rate <= 0 or rate > 20000:
            raise CommandError("--rate must be between 0 and 20000 events per second")
        if duration <= 0:
            raise CommandError("--duration must be positive")
        base = (options["url"] or settings.SITE_URL).rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise CommandError("--url must start with http:// or https://")
        rng = random.Random(options["seed"])  # noqa: S311 - demo traffic, not security
        simulator = Simulator(options["site"], rng, options["think"])
        jobs: queue.Queue[tuple[Visit, dict[str, Any]] | None] = queue.Queue(maxsize=int(rate * 5) + 100)
        stats: dict[str, int] = {}
        lock = threading.Lock()
        senders = [Sender(base, jobs, stats, lock) for _ in range(max(2, min(64, int(rate / 25) + 2)))]
        for sender in senders:
            sender.start()
        self.stdout.write(f"sending ~{rate:g} events/s to {base}/api/event for {options['site']} during {duration:g} s")
        start = time.monotonic()
        sent = 0
        next_report = start + 5
        try:
            while True:
                now = time.monotonic()
                # Catch up to the schedule: event n goes out at start + n / rate, and the events
                # due before the end go out even when this loop wakes up after it.
                while sent < min(now - start, duration) * rate:
                    jobs.put(simulator.next_event(now))
                    sent += 1
                if now - start >= duration:
                    break
                if now >= next_report:
                    self.report(stats, lock, now - start)
                    next_report += 5
                time.sleep(min(0.05, 1 / rate))
        except KeyboardInterrupt:
            self.stdout.write("interrupted")
        for _ in senders:
            jobs.put(None)
        for sender in senders:
            sender.join(timeout=15)
        self.report(stats, lock, time.monotonic() - start, final=True)

    def report(self, stats: dict[str, int], lock: threading.Lock, elapsed: float, final: bool = False) -> None:
        with lock:
            snapshot = dict(stats)
        total = sum(snapshot.values())
        accepted = snapshot.get("202", 0)
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(snapshot.items()) if k != "202")
        label = "done" if final else "so far"
        self.stdout.write(
            f"{label}: {total} sent, {accepted} accepted (202) in {elapsed:.0f} s"
            f" ({total / max(elapsed, 0.001):.1f}/s){'; other: ' + detail if detail else ''}"
        )
        if final and total and accepted < total:
            self.stderr.write("some events were not accepted: see the statuses above")
