"""Query benchmark: load a site through the worker's own ingest code, then time the dashboard's queries.

    nice -n 10 .venv/bin/python -m bench.query.run --events 10000000 --days 365 --batch 5000 --load-only
    .venv/bin/python -m bench.query.run --events 10000000 --skip-load --runs 20 --plain-runs 5

Loads into the development database and Redis (``make run``'s embedded servers, or
DATABASE_URL / REDIS_URL), on a site of its own (``bench-query-<n>.test``), calling
``analytics.ingest.pipeline.ingest`` in process with historical timestamps, ``--batch`` events a call, day
after day in time order (``--workers`` processes on disjoint visitors if wanted; the loader's
own database session commits with ``synchronous_commit = off``). Then runs each query
``--runs`` times through ``run_query`` (the planner picks Redis or SQL) and reports p50/p95,
after an untimed warm-up. Each Redis-served query is also forced through the SQL path, and each
SQL-path query also run as its plain statement (``sql.execute(..., plain=True)``: without the
shortcuts), ``--forced-runs`` / ``--plain-runs`` times (the plain statement in turn with the query). Last, the site's Redis
memory (``MEMORY USAGE`` of each of its keys).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import multiprocessing
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
from analytics.fields import EVENT_FIELDS  # noqa: E402
from analytics.ingest.pipeline import ingest  # noqa: E402
from analytics.ingest.store import EPOCH  # noqa: E402
from analytics.payloads import EnrichedEvent  # noqa: E402
from analytics.query import run_query  # noqa: E402
from analytics.query import sql as sql_path  # noqa: E402
from analytics.query.engine import site_goals  # noqa: E402
from analytics.query.errors import QueryError  # noqa: E402
from analytics.query.model import parse_query  # noqa: E402
from bench.query import memory  # noqa: E402

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


# Every text field empty, then the rest of an event that sets no revenue, engagement or props.
_BASE: dict[str, Any] = {
    **{f.name: "" for f in EVENT_FIELDS if f.kind == "text"},
    "browser_version": "1",
    "props": {},
    "revenue_amount": None,
    "interactive": True,
    "scroll_depth": None,
    "engagement_ms": None,
}


def _event(
    site: Site, ts: dt.datetime, visitor: int, name: str, page: str, attrs: dict[str, str], **extra: Any
) -> EnrichedEvent:
    event: dict[str, Any] = {
        **_BASE,
        "site_id": site.pk,
        "ts": (ts - EPOCH) // dt.timedelta(microseconds=1),
        "event_id": str(uuid.uuid4()),
        "name": name,
        "visitor_id": visitor,
        "hostname": site.domain,
        "pathname": page,
        **attrs,
        **extra,
    }
    return event  # type: ignore[return-value]


def day_events(
    site: Site, rng: random.Random, day_start: dt.datetime, target: int, visitors: int, workers: int, worker: int
) -> list[EnrichedEvent]:
    """About ``target`` events (pageviews, engagement and custom events) of one day, in time order.

    Visitors come from a pool of ``visitors`` ids (so the same visitor returns on other days);
    worker ``k`` of ``n`` only draws ids with ``id % n == k`` (disjoint visitors, so each
    visitor's events stay in time order within one process). A visitor's attributes (country,
    browser…) are fixed per visitor; the source is drawn per visit; a visit has one to six
    pageviews a few seconds to minutes apart, some engagement events and a few signups.
    """
    out: list[EnrichedEvent] = []
    slots = visitors // workers
    while len(out) < target:
        visitor = rng.randrange(0, slots) * workers + worker + workers
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
            out.append(_event(site, moment, visitor, "pageview", page, attrs))
            if rng.random() < 0.3:
                out.append(
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
                out.append(
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
    out.sort(key=lambda e: e["ts"])
    return out


def load_slice(
    site_id: int, events: int, days: int, seed: int, batch_size: int, workers: int, worker: int, visitors: int
) -> int:
    """One loader process: its share of every day, in day order, through ``ingest``."""
    from django.db import connection

    if workers > 1:
        connection.close()  # the parent's connection is not ours to use
    with connection.cursor() as cur:
        # Only this loader's own session: commits do not wait for the WAL flush.
        cur.execute("SET synchronous_commit = off")
    logging.getLogger("analytics.tasks").setLevel(logging.WARNING)  # not a line per batch
    site = Site.objects.get(pk=site_id)
    rng = random.Random(seed * 1000 + worker)
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    per_day = events // days // workers
    total = 0
    began = time.perf_counter()
    pending: list[EnrichedEvent] = []
    for day in range(days):
        pending.extend(day_events(site, rng, start + dt.timedelta(days=day), per_day, visitors, workers, worker))
        while len(pending) >= batch_size or (day == days - 1 and pending):
            chunk, pending = pending[:batch_size], pending[batch_size:]
            ingest(uuid.uuid4().hex, chunk)
            total += len(chunk)
        if day % 5 == 4 or day == days - 1:
            seconds = time.perf_counter() - began
            print(
                f"worker {worker}: day {day + 1}/{days}, {total} events, {seconds:.0f} s, {total / seconds:.0f} events/s",
                flush=True,
            )
    return total


def _load_slice_star(args: tuple[int, int, int, int, int, int, int, int]) -> int:
    return load_slice(*args)


def load(
    site: Site, events: int, days: int, seed: int, batch_size: int = 5000, workers: int = 1, visitors: int = 0
) -> float:
    began = time.perf_counter()
    visitor_pool = visitors or max(1000, events // 8)
    jobs = [(site.pk, events, days, seed, batch_size, workers, w, visitor_pool) for w in range(workers)]
    if workers == 1:
        total = load_slice(*jobs[0])
    else:
        from django.db import connections

        connections.close_all()
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            total = sum(pool.map(_load_slice_star, jobs))
    seconds = time.perf_counter() - began
    print(
        f"loaded {total} events over {days} days in {seconds:.0f} s ({total / seconds:.0f} events/s, "
        f"{workers} process(es), batches of {batch_size})",
        flush=True,
    )
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


def _once(fn: Any) -> float:
    began = time.perf_counter()
    fn()
    return (time.perf_counter() - began) * 1000


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def site_events(site_id: int) -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM analytics_event WHERE site_id = %s", [site_id])
        row = cur.fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--domain", default="")
    parser.add_argument("--batch", type=int, default=5000, help="events per ingest call")
    parser.add_argument("--workers", type=int, default=1, help="loader processes (disjoint visitors)")
    parser.add_argument("--load-only", action="store_true", help="load, then stop (no timings)")
    parser.add_argument("--forced-runs", type=int, default=3, help="runs of Redis-served queries forced through SQL")
    parser.add_argument("--plain-runs", type=int, default=3, help="runs of SQL-path queries' plain statements")
    parser.add_argument("--skip-load", action="store_true", help="time the queries of an already loaded site")
    parser.add_argument("--visitors", type=int, default=0, help="visitor pool (default: events / 8)")
    parser.add_argument("--memory-only", action="store_true", help="report the site's Redis memory, no timings")
    parser.add_argument("--compact", action="store_true", help="compact the closed days first (as the daily beat)")
    args = parser.parse_args()
    domain = args.domain or f"bench-query-{args.events}.test"
    site = Site.objects.filter(domain=domain).first()
    if site is None and args.skip_load:
        raise SystemExit(f"no site {domain}: load it first")
    if site is not None and not args.skip_load:
        raise SystemExit(f"site {domain} exists: pass --skip-load to time it, or another --domain")
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
        load(site, args.events, args.days, args.seed, args.batch, args.workers, args.visitors)
    if args.load_only:
        return
    if args.compact:
        memory.compact_closed(site, args.days)
    if args.memory_only:
        memory.report(site.pk, args.days, site_events(site.pk))
        return
    print(f"site {site.domain} (id {site.pk}), {site_events(site.pk)} events")
    print("| query | path | p50 ms | p95 ms |")
    print("| --- | --- | ---: | ---: |")
    goals = site_goals(site)
    handler = Sources()
    logger = logging.getLogger("analytics.query.engine")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    for label, body in DASHBOARD + FILTERED:
        query = parse_query(
            site, body, goals={g.name for g in goals}, now=dt.datetime.now(dt.UTC), first_event_day=None
        )
        handler.seen.clear()
        run_query(site, body)  # a warm-up, untimed; tells which path answers
        path = "/".join(sorted(set(handler.seen)))
        # Its counterpart: a Redis-served query forced through SQL (the main period only: a
        # comparison's previous period would be a second statement), or an SQL-path query's
        # plain statement (without the shortcuts).
        if path == "redis":
            other_label, other_runs = "… forced through SQL", args.forced_runs
            other = lambda q=query: sql_path.execute(q, goals)  # noqa: E731
        else:
            other_label, other_runs = "… plain SQL statement (before the shortcuts)", args.plain_runs
            other = lambda q=query: sql_path.execute(q, goals, plain=True)  # noqa: E731
        # A Redis-served query's runs come first, alone (a multi-second SQL statement between
        # two would time the box's recovery too); an SQL-path query's alternate with its plain
        # statement's, so that both see the same load.
        interleave = path != "redis"
        samples: list[float] = []
        other_samples: list[float] = []
        failed = ""
        for i in range(args.runs + (0 if interleave else other_runs)):
            if i < args.runs:
                samples.append(_once(lambda b=body: run_query(site, b)))
            if (i < other_runs if interleave else i >= args.runs) and not failed:
                try:
                    other_samples.append(_once(other))
                except QueryError as exc:
                    failed = str(exc)
        p50, p95 = _percentiles(samples)
        print(f"| {label} | {path} | {p50:.1f} | {p95:.1f} |", flush=True)
        if failed:
            print(f"| {other_label} | sql | {failed} | — |", flush=True)
        elif other_samples:
            p50, p95 = _percentiles(other_samples)
            print(f"| {other_label} | sql | {p50:.1f} | {p95:.1f} |", flush=True)
    memory.report(site.pk, args.days, site_events(site.pk))


if __name__ == "__main__":
    try:
        main()
    finally:
        embedded.release()
