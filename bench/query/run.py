"""Query benchmark: load a site through the worker's own ingest code, then time the dashboard's queries.

    .venv/bin/python -m bench.query.run --events 1000000 --days 365 --runs 20

Loads into the development database and Redis (``make run``'s embedded servers, or
DATABASE_URL / REDIS_URL), on a site of its own (``bench-query-<n>.test``), calling
``analytics.tasks.ingest`` in process with historical timestamps. Then runs each query
``--runs`` times through ``run_query`` (the planner picks Redis or SQL) and reports p50/p95,
plus the unfiltered queries forced through SQL for comparison, and the site's Redis memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import random
import statistics
import time
import uuid
from typing import Any

import django

from spinnakr import embedded

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")
embedded.acquire()
django.setup()

from accounts.models import Account, Site  # noqa: E402
from analytics import rollups  # noqa: E402
from analytics.payloads import EnrichedEvent  # noqa: E402
from analytics.query import run_query  # noqa: E402
from analytics.query import sql as sql_path  # noqa: E402
from analytics.query.engine import site_goals  # noqa: E402
from analytics.query.model import parse_query  # noqa: E402
from analytics.store import EPOCH  # noqa: E402
from analytics.tasks import ingest  # noqa: E402

PAGES = ["/", "/pricing", "/docs", "/blog", "/about", "/signup", "/login"] + [f"/blog/post-{i}" for i in range(200)]
SOURCES = (
    [("", "Direct")] * 5
    + [("Google", "Organic Search")] * 4
    + [("Twitter", "Organic Social"), ("Hacker News", "Referral"), ("Bing", "Organic Search"), ("Newsletter", "Email")]
)
COUNTRIES = ["US", "DE", "GB", "FR", "IN", "CA", "NL", "BR", "JP", "AU", "ES", "IT", "PL", "SE", ""]
BROWSERS = [
    ("Chrome", "Windows", "Desktop", "desktop"),
    ("Safari", "iOS", "Mobile", "mobile"),
    ("Firefox", "GNU/Linux", "Desktop", "laptop"),
    ("Chrome", "Android", "Mobile", "mobile"),
    ("Edge", "Windows", "Desktop", "desktop"),
    ("Safari", "Mac", "Desktop", "laptop"),
]


def _event(
    site: Site, ts: dt.datetime, visitor: int, name: str, page: str, attrs: dict[str, str], **extra: Any
) -> EnrichedEvent:
    event: dict[str, Any] = {
        "site_id": site.pk,
        "ts": (ts - EPOCH) // dt.timedelta(microseconds=1),
        "event_id": str(uuid.uuid4()),
        "name": name,
        "visitor_id": visitor,
        "hostname": site.domain,
        "pathname": page,
        "referrer": "",
        "utm_source": "",
        "utm_medium": "",
        "utm_campaign": "",
        "utm_content": "",
        "utm_term": "",
        "browser_version": "1",
        "os_version": "",
        "props": {},
        "revenue_amount": None,
        "revenue_currency": "",
        "interactive": True,
        "scroll_depth": None,
        "engagement_ms": None,
        **attrs,
        **extra,
    }
    return event  # type: ignore[return-value]


def load(site: Site, events: int, days: int, seed: int) -> float:
    rng = random.Random(seed)
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    per_day = events // days
    visitors = max(1000, events // 8)
    batch: list[EnrichedEvent] = []
    total = 0
    began = time.perf_counter()
    for day in range(days):
        day_start = start + dt.timedelta(days=day)
        produced = 0
        while produced < per_day:
            visitor = rng.randrange(1, visitors)
            vrng = random.Random(visitor)
            browser, os_name, device, screen = vrng.choice(BROWSERS)
            source, channel = rng.choice(SOURCES)
            attrs = {
                "referrer_source": source,
                "channel": channel,
                "country": vrng.choice(COUNTRIES),
                "browser": browser,
                "os": os_name,
                "device": device,
                "screen": screen,
            }
            moment = day_start + dt.timedelta(seconds=rng.randrange(0, 86_000))
            for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4, 6])):
                page = rng.choice(PAGES[:7]) if rng.random() < 0.6 else rng.choice(PAGES)
                batch.append(_event(site, moment, visitor, "pageview", page, attrs))
                if rng.random() < 0.3:
                    batch.append(
                        _event(
                            site,
                            moment + dt.timedelta(seconds=20),
                            visitor,
                            "engagement",
                            page,
                            attrs,
                            engagement_ms=rng.randrange(1000, 120_000),
                            scroll_depth=rng.randrange(0, 101),
                        )
                    )
                if rng.random() < 0.05:
                    batch.append(
                        _event(
                            site,
                            moment + dt.timedelta(seconds=25),
                            visitor,
                            "Signup",
                            page,
                            attrs,
                            props={"plan": rng.choice(["free", "pro"])},
                        )
                    )
                moment += dt.timedelta(seconds=rng.randrange(5, 300))
                produced += 1
            if len(batch) >= 1000:
                ingest(uuid.uuid4().hex, batch)
                total += len(batch)
                batch = []
    if batch:
        ingest(uuid.uuid4().hex, batch)
        total += len(batch)
    seconds = time.perf_counter() - began
    print(f"loaded {total} events over {days} days in {seconds:.0f} s ({total / seconds:.0f} events/s)")
    return seconds


DASHBOARD: list[tuple[str, dict[str, Any]]] = [
    (
        "aggregate 30d + previous period",
        {
            "metrics": ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration", "views_per_visit"],
            "date_range": "30d",
            "include": {"comparisons": {"mode": "previous_period"}},
        },
    ),
    (
        "timeseries 30d by day",
        {"metrics": ["visitors", "visits", "pageviews"], "date_range": "30d", "dimensions": ["time:day"]},
    ),
    (
        "top pages 30d",
        {
            "metrics": ["visitors", "pageviews"],
            "date_range": "30d",
            "dimensions": ["event:page"],
            "pagination": {"limit": 10},
        },
    ),
    (
        "top sources 30d (visits)",
        {
            "metrics": ["visits", "bounce_rate", "visit_duration"],
            "date_range": "30d",
            "dimensions": ["visit:source"],
            "pagination": {"limit": 10},
        },
    ),
    (
        "entry pages 30d",
        {
            "metrics": ["visits", "bounce_rate"],
            "date_range": "30d",
            "dimensions": ["visit:entry_page"],
            "pagination": {"limit": 10},
        },
    ),
    (
        "countries 30d",
        {
            "metrics": ["visitors", "percentage"],
            "date_range": "30d",
            "dimensions": ["visit:country"],
            "pagination": {"limit": 10},
        },
    ),
    (
        "browsers 30d",
        {"metrics": ["visitors"], "date_range": "30d", "dimensions": ["visit:browser"], "pagination": {"limit": 10}},
    ),
    (
        "devices 30d",
        {"metrics": ["visitors"], "date_range": "30d", "dimensions": ["visit:device"], "pagination": {"limit": 10}},
    ),
    ("aggregate 12mo", {"metrics": ["visitors", "visits", "pageviews", "bounce_rate"], "date_range": "12mo"}),
    (
        "timeseries 12mo by month",
        {"metrics": ["visitors", "pageviews"], "date_range": "12mo", "dimensions": ["time:month"]},
    ),
]
FILTERED: list[tuple[str, dict[str, Any]]] = [
    (
        "aggregate 30d, country = DE",
        {
            "metrics": ["visitors", "visits", "pageviews", "bounce_rate"],
            "date_range": "30d",
            "filters": [["is", "visit:country", ["DE"]]],
        },
    ),
    (
        "top pages 30d, source = Google",
        {
            "metrics": ["visitors", "pageviews"],
            "date_range": "30d",
            "dimensions": ["event:page"],
            "filters": [["is", "visit:source", ["Google"]]],
            "pagination": {"limit": 10},
        },
    ),
    (
        "timeseries 30d, page = /pricing",
        {
            "metrics": ["visitors", "pageviews"],
            "date_range": "30d",
            "dimensions": ["time:day"],
            "filters": [["is", "event:page", ["/pricing"]]],
        },
    ),
    (
        "top sources 30d with visitors",
        {
            "metrics": ["visitors", "visits"],
            "date_range": "30d",
            "dimensions": ["visit:source"],
            "pagination": {"limit": 10},
        },
    ),
    (
        "goal conversions 30d",
        {"metrics": ["visitors", "events", "conversion_rate"], "date_range": "30d", "dimensions": ["event:goal"]},
    ),
    (
        "time on page 30d, page contains /blog",
        {
            "metrics": ["visitors", "time_on_page", "scroll_depth"],
            "date_range": "30d",
            "dimensions": ["event:page"],
            "filters": [["contains", "event:page", ["/blog"]]],
            "pagination": {"limit": 10},
        },
    ),
]


class Sources(logging.Handler):
    """Collects which path (redis, sql) answered each query."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "query.answered":
            self.seen.append(record.source)  # type: ignore[attr-defined]


def _time(fn: Any, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95


def redis_bytes(site_id: int) -> tuple[int, int]:
    client = rollups.client()
    total = 0
    keys = 0
    for key in client.scan_iter(match=f"{rollups.prefix(site_id)}*", count=2000):
        total += int(client.memory_usage(key) or 0)
        keys += 1
    return total, keys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--domain", default="")
    args = parser.parse_args()
    domain = args.domain or f"bench-query-{args.events}.test"
    site = Site.objects.filter(domain=domain).first()
    if site is None:
        account = Account.objects.create(name="Query benchmark", monthly_event_quota=10**10)
        site = Site.objects.create(
            account=account,
            domain=domain,
            timezone="Europe/Berlin",
            created=dt.datetime.now(dt.UTC) - dt.timedelta(days=args.days + 1),
        )
        from analytics.models import Goal

        Goal.objects.create(site=site, display_name="Signup", event_name="Signup")
        Goal.objects.create(site=site, display_name="Visit /pricing", page_path="/pricing")
        load(site, args.events, args.days, args.seed)
    print(f"site {site.domain} (id {site.pk})")
    print("| query | source | p50 ms | p95 ms |")
    print("| --- | --- | ---: | ---: |")
    goals = site_goals(site)
    handler = Sources()
    logger = logging.getLogger("analytics.query.engine")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    for label, body in DASHBOARD + FILTERED:
        handler.seen.clear()
        p50, p95 = _time(lambda b=body: run_query(site, b), args.runs)
        seen = handler.seen
        print(f"| {label} | {'/'.join(sorted(set(seen)))} | {p50:.1f} | {p95:.1f} |")
        if "redis" in seen:
            query = parse_query(
                site, body, goals={g.name for g in goals}, now=dt.datetime.now(dt.UTC), first_event_day=None
            )
            p50, p95 = _time(lambda q=query: sql_path.execute(q, goals), max(3, args.runs // 4))
            print(f"| {label} (forced SQL) | sql | {p50:.1f} | {p95:.1f} |")
    used, keys = redis_bytes(site.pk)
    print(
        f"Redis: {keys} keys, {used / 1e6:.1f} MB for {args.days} days = {used / args.days / 1e3:.0f} kB per site-day"
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        embedded.release()
