"""bench/soak: a long steady load on the whole service, with one fault of each kind injected.

Usage (bounded by ``--duration`` plus at most ``--drain-timeout`` seconds; loopback only):

    .venv/bin/python -m bench.soak.run --rate 2000 --duration 1800 [--servers 3] [--json]
    .venv/bin/python -m bench.soak.run --rate 1000 --duration 480 --faults broker-down,web-killed

On this checkout's embedded PostgreSQL and data Redis (or those the URLs name), the bench starts
``--servers`` rollup Valkeys (``REDIS_URLS``) and a broker Valkey of its own (``bench/soak/servers.py``),
the real collector and the real worker as bench/e2e does, ``--sites`` sites spread over the rollup
servers, and one load generator per site (``bench/e2e/load.py``, pageviews at ``--rate`` /
``--sites`` each). The faults of ``bench/soak/faults.py`` are injected one at a time at evenly
spaced moments. Every 100 ms it samples each site's stored events (PostgreSQL) and counted
pageviews (Redis) as bench/e2e does, and every few seconds it asks the planner whether each site's
rollups are complete, as a dashboard would, which queues the rebuild of a lost server's sites.

It reports, for the whole run and per fault: accepted = counted = stored with no duplicate, the
lag p95 outside the fault windows, and how long each fault took to recover (from its injection
until every site had stored and counted everything accepted up to a second before).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from django import db
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from accounts.models import Account, Site
from analytics.ingest.cleanup import purge_site
from analytics.query import planner
from bench.e2e.harness import cpu_between, cpu_seconds, free_port, purge_queues, server_cpu, start, stop
from bench.e2e.load import CONNECTION_ERROR, TIMED_OUT
from bench.e2e.run import arrays
from bench.e2e.sampling import (
    SAMPLE_SECONDS,
    Counts,
    Sampler,
    batches,
    lag_figures,
    lags_in_order,
    loss_figures,
    machine_figures,
    print_table,
)
from bench.soak.faults import FAULTS, Service, Skipped
from bench.soak.servers import Fleet
from spinnakr import embedded, redis_clients, rendezvous
from spinnakr.celery import app

DOMAIN = "soak.bench.spinnakr.test"
# Caught up: every event accepted more than this long ago is stored and counted.
CAUGHT_UP_SECONDS = 1.0
PLANNER_EVERY = 5.0


class Resilient(Counts):
    """``Counts`` that reconnects to PostgreSQL after an outage instead of failing for good."""

    stale = False

    def _count(self, sql: str, params: list[int | dt.datetime | None]) -> int:
        try:
            if self.stale:
                self.cursor = connection.cursor()
                self.stale = False
            return super()._count(sql, params)
        except db.Error:
            self.stale = True
            connection.close()
            raise

    def pathnames(self) -> list[str]:
        if self.stale:
            self.cursor = connection.cursor()
            self.stale = False
        return super().pathnames()


def make_sites(count: int) -> tuple[list[Site], Site]:
    """``count`` load sites spread evenly over the rollup servers, and one for the duplicated
    group, on one enterprise account."""
    delete_sites()
    account = Account.objects.create(name="bench soak", plan="enterprise", monthly_event_quota=10**12)
    urls = redis_clients.rollup_urls()
    most = -(-count // len(urls))
    sites: list[Site] = []
    n = 0
    while len(sites) < count:
        site = Site.objects.create(account=account, domain=f"s{n}.{DOMAIN}", timezone="UTC")
        n += 1
        server = rendezvous.choose(urls, site.id)
        if sum(rendezvous.choose(urls, other.id) == server for other in sites) < most:
            sites.append(site)
        else:
            site.delete()  # its server has its share: the next id may land elsewhere
    return sites, Site.objects.create(account=account, domain=f"dup.{DOMAIN}", timezone="UTC")


def delete_sites() -> None:
    for site in Site.objects.filter(domain__endswith=f".{DOMAIN}").select_related("account"):
        purge_site(site.id)
        account = site.account
        site.delete()
        if not account.sites.exists():
            account.delete()


def ask_planner(sites: list[Site]) -> None:
    """What a dashboard's query does first: a site whose rollups are gone gets a rebuild queued."""
    today = dt.datetime.now(dt.UTC).date()
    for site in sites:
        # A site whose server is down: the dashboard would answer from SQL.
        with contextlib.suppress(redis.RedisError):
            planner.rollups_ready(site.id, today)


def sample_all(samplers: list[Sampler]) -> None:
    for sampler in samplers:
        # A server of the fault being injected: no sample this time.
        with contextlib.suppress(db.Error, redis.RedisError):
            sampler.sample()


def cpu_now(service: Service) -> dict[str, float]:
    """CPU seconds so far of the web, the worker, PostgreSQL and the data Redis, each rollup server and the broker."""
    fleet = service.fleet
    valkeys = {f"rollups{n}": server for n, server in enumerate(fleet.rollups)} | {"broker": fleet.broker}
    readings = {"web": cpu_seconds(service.processes()[0]), "worker": cpu_seconds(service.processes()[1])}
    readings |= {name: value for name, value in server_cpu().items() if name != "broker"}
    for name, server in valkeys.items():
        if server.process is not None:
            readings[name] = cpu_seconds(server.process)
    return readings


def caught_up_at(after: float, accepted: list[list[float]], samples: list[list[tuple[float, int]]]) -> float | None:
    """The first moment after ``after`` when every site had stored and counted every event it
    accepted ``CAUGHT_UP_SECONDS`` before (None: never during the run)."""
    latest = after
    for accepted_at, site_samples in zip(accepted, samples, strict=True):
        for moment, count in site_samples:
            if moment >= after and count >= bisect.bisect_right(accepted_at, moment - CAUGHT_UP_SECONDS):
                latest = max(latest, moment)
                break
        else:
            return None
    return latest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000, help="events a second, over all sites")
    parser.add_argument("--duration", type=float, default=1800)
    parser.add_argument("--servers", type=int, default=3, help="rollup servers (REDIS_URLS)")
    parser.add_argument("--sites", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma list of: " + ", ".join(FAULTS))
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    options = parser.parse_args()
    names = [name for name in options.faults.split(",") if name]
    unknown = set(names) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")

    fleet = Fleet(options.servers)
    fleet.start()
    # The web and the worker take the servers from their environment; this process reads the
    # same ones through its settings.
    os.environ["REDIS_URLS"] = ",".join(fleet.rollup_urls)
    os.environ["CELERY_BROKER_URL"] = fleet.broker.url
    settings.ROLLUP_REDIS_URLS = tuple(fleet.rollup_urls)
    app.conf.update(broker_url=fleet.broker.url)
    embedded.acquire()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    service: Service | None = None
    loads: list[Any] = []
    try:
        call_command("migrate", verbosity=0)
        sites, dup_site = make_sites(options.sites)
        service = Service(fleet, free_port(), options.concurrency, log_dir, sites, dup_site)
        purge_queues()
        service.start_web()
        service.start_worker()
        figures = soak(options, names, service, sites, dup_site, loads)
        report(figures)
        if options.json:
            print(json.dumps(figures))
    finally:
        for load in loads:
            stop(load)
        if service is not None:
            for process in reversed(service.processes()):
                stop(process)
        try:
            purge_queues()
            delete_sites()
        finally:
            embedded.release()
            fleet.stop()
            print(f"the worker's logs are in {log_dir}", file=sys.stderr)


def soak(
    options: argparse.Namespace, names: list[str], service: Service, sites: list[Site], dup_site: Site, loads: list[Any]
) -> dict[str, Any]:
    urls = redis_clients.rollup_urls()
    placement = [urls.index(rendezvous.choose(urls, site.id)) for site in sites]
    began = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    samplers = [Sampler(Resilient(site.id, site.timezone, began - dt.timedelta(seconds=1))) for site in sites]
    outs = [Path(log) for log in (service.log_dir / f"load-{n}.json" for n in range(len(sites)))]
    for site, out in zip(sites, outs, strict=True):
        loads.append(start([sys.executable, "-m", "bench.e2e.load", "--port", str(service.port), "--domain",
                            site.domain, "--rate", str(options.rate / len(sites)), "--duration",
                            str(options.duration), "--out", str(out)]))  # fmt: skip
    cpu_before = cpu_now(service)
    t0 = time.monotonic()
    schedule = [(t0 + options.duration * (k + 1) / (len(names) + 1), name) for k, name in enumerate(names)]
    faults: list[dict[str, Any]] = []
    threads: list[threading.Thread] = []
    next_at = t0
    last_planner = last_progress = t0
    while any(load.poll() is None for load in loads) or any(thread.is_alive() for thread in threads):
        sample_all(samplers)
        now = time.monotonic()
        if now - last_planner >= PLANNER_EVERY:
            ask_planner([*sites, dup_site])
            last_planner = now
        if schedule and now >= schedule[0][0] and not any(thread.is_alive() for thread in threads):
            _, name = schedule.pop(0)
            record: dict[str, Any] = {"fault": name, "at_s": round(now - t0, 1), "started": now}
            faults.append(record)
            threads.append(threading.Thread(target=_inject, args=(name, service, record), daemon=True))
            threads[-1].start()
            print(f"  {now - t0:5.0f} s  fault {name}", flush=True)
        if now - last_progress >= 30:
            stored = sum(s.samples[-1][1] for s in samplers if s.samples)
            print(f"  {now - t0:5.0f} s  stored and counted {stored:,}", flush=True)
            last_progress = now
        next_at += SAMPLE_SECONDS
        time.sleep(max(0.0, next_at - time.monotonic()))
    for load in loads:
        if load.returncode != 0:
            raise RuntimeError(f"a load generator failed ({load.returncode})")

    results = [arrays(json.loads(out.read_text())) for out in outs]
    accepted_at = [sorted(r["answered"][i] for i, code in enumerate(r["status"]) if code == 202) for r in results]
    expected = [{f"/e2e/{i}" for i, code in enumerate(r["status"]) if code == 202} for r in results]
    rejected: dict[str, int] = {}
    for r in results:
        for code in r["status"]:
            if code != 202:
                rejected[str(code)] = rejected.get(str(code), 0) + 1
    drain_began = time.monotonic()
    while time.monotonic() - drain_began < options.drain_timeout:
        sample_all(samplers)
        if all(s.samples and s.samples[-1][1] >= len(a) for s, a in zip(samplers, accepted_at, strict=True)):
            break
        if time.monotonic() - last_planner >= PLANNER_EVERY:
            ask_planner([*sites, dup_site])
            last_planner = time.monotonic()
        time.sleep(SAMPLE_SECONDS)
    drain_s = time.monotonic() - drain_began
    # A fault that replaces a process or server loses its CPU time: only a run without faults has it.
    cpu = cpu_between(cpu_before, cpu_now(service)) if not faults else {}
    samples = [s.samples for s in samplers]

    for record in faults:
        ended = record.pop("ended")
        recovered = caught_up_at(ended, accepted_at, samples)
        record["action_s"] = round(ended - record.pop("started") + 0.0, 1)
        record["recovered_after_s"] = None if recovered is None else round(recovered - (t0 + record["at_s"]), 1)
    windows = [
        (t0 + f["at_s"], t0 + f["at_s"] + (f["recovered_after_s"] if f["recovered_after_s"] is not None else 1e9))
        for f in faults
    ]
    outside: list[float] = []
    for site_accepted, site_samples in zip(accepted_at, samples, strict=True):
        for at, lag in zip(site_accepted, lags_in_order(site_accepted, site_samples), strict=True):
            if not any(start_at <= at <= end_at for start_at, end_at in windows):
                outside.append(lag)
    per_site = [loss_figures(s.counts, e) for s, e in zip(samplers, expected, strict=True)]
    # An event stored without a 202 is one whose request was cut (the web killed) or timed out: the
    # client never heard, so either outcome is right. One the collector refused must not be stored.
    refused_stored = 0
    for sampler, r, site_expected in zip(samplers, results, expected, strict=True):
        for path in set(sampler.counts.pathnames()) - site_expected:
            index = int(path.rsplit("/", 1)[1])
            refused_stored += r["status"][index] not in (TIMED_OUT, CONNECTION_ERROR)
    dup_counts = Resilient(dup_site.id, dup_site.timezone, began - dt.timedelta(seconds=1))
    dup = loss_figures(dup_counts, set(service.extra.get(dup_site.id, [])))
    total = {key: sum(int(f[key]) for f in [*per_site, dup]) for key in per_site[0] if key != "zero_loss"}
    sizes = [size for log in service.worker_logs if log.exists() for size in batches(log)]
    figures: dict[str, Any] = machine_figures(began, load_before) | {
        "rate": options.rate,
        "duration_s": options.duration,
        "rollup_servers": options.servers,
        "sites": len(sites),
        "sites_per_server": [placement.count(n) for n in range(options.servers)],
        "accepted": sum(len(a) for a in accepted_at) + len(service.extra.get(dup_site.id, [])),
        "rejected": rejected,
        "drain_s": round(drain_s, 1),
        "groups_applied": len(sizes),
        "stored_though_refused": refused_stored,
        "faults": faults,
    }
    if cpu:
        events = max(1, figures["accepted"])
        figures["cpu_us_per_event"] = {name: round(seconds / events * 1e6) for name, seconds in cpu.items()}
    figures |= total | {f"outside_faults_{k}": v for k, v in lag_figures(sorted(outside)).items()}
    figures["zero_loss"] = (
        total["missing_from_postgresql"] == 0 and total["duplicate_rows"] == 0 and refused_stored == 0
        and total["counted_redis"] == total["stored_postgresql"]
    )  # fmt: skip
    return figures


def _inject(name: str, service: Service, record: dict[str, Any]) -> None:
    try:
        record["what"] = FAULTS[name](service)
    except Skipped as skipped:
        record["what"] = f"skipped: {skipped}"
    except Exception as exc:  # noqa: BLE001 - the report names a fault that could not be injected
        record["what"] = f"failed: {exc!r}"
    record["ended"] = time.monotonic()


def report(figures: dict[str, Any]) -> None:
    rejected = ", ".join(f"{key}: {value}" for key, value in sorted(figures["rejected"].items())) or "none"
    rows = [
        ("date", f"{figures['date']}, {figures['cores']} cores, load {figures['load_average_before']} → "
                 f"{figures['load_average_after']}"),
        ("offered", f"{figures['rate']:,.0f} events/s for {figures['duration_s']:,.0f} s over {figures['sites']} sites "
                    f"on {figures['rollup_servers']} rollup servers (sites per server {figures['sites_per_server']})"),
        ("accepted (202, plus the duplicated group's events)", f"{figures['accepted']:,}"),
        ("rejected or unanswered requests", rejected),
        ("counted in Redis / stored in PostgreSQL", f"{figures['counted_redis']:,} / {figures['stored_postgresql']:,}"),
        ("accepted not stored / duplicates", f"{figures['missing_from_postgresql']} / {figures['duplicate_rows']}"),
        ("stored without a 202: request cut or timed out / refused",
         f"{figures['stored_not_accepted'] - figures['stored_though_refused']} / {figures['stored_though_refused']}"),
        ("zero loss (accepted = counted = stored, nothing refused stored, no duplicate)",
         "yes" if figures["zero_loss"] else "NO"),
        ("lag 202 → Redis and PostgreSQL outside the fault windows",
         f"p50 {figures['outside_faults_lag_p50_ms']} ms, p95 {figures['outside_faults_lag_p95_ms']} ms, "
         f"p99 {figures['outside_faults_lag_p99_ms']} ms"),
        ("drain after the load", f"{figures['drain_s']} s"),
    ]  # fmt: skip
    if "cpu_us_per_event" in figures:
        parts = ", ".join(f"{name} {value} µs" for name, value in figures["cpu_us_per_event"].items())
        rows.append(("CPU per event (PostgreSQL includes the sampling)", parts))
    print_table(rows)
    print("\n| fault | at | action took | recovered after | what |\n| --- | ---: | ---: | ---: | --- |")
    for fault in figures["faults"]:
        recovered = "never" if fault["recovered_after_s"] is None else f"{fault['recovered_after_s']} s"
        print(f"| {fault['fault']} | {fault['at_s']} s | {fault['action_s']} s | {recovered} | {fault['what']} |")


if __name__ == "__main__":
    main()
