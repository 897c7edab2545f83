"""Celery tasks of the analytics app: ingestion and its periodic housekeeping.

``analytics.ingest_batch`` applies one broker message (a batch of enriched events, possibly of
several sites) in this order, each step idempotent so a redelivery after a crash anywhere
changes nothing that was done:

1. Redis rollups, one atomic script per site guarded by the batch marker; the script
   sessionises the events and stores its answer (each event's visit start) at the marker, so a
   redelivered batch gets the same visits without counting again.
2. PostgreSQL: the raw events with their visit ids (COPY into staging, ``INSERT … ON CONFLICT
   DO NOTHING``) and the renames of visits that late events merged or moved, in one transaction.
3. The account's monthly quota counter (its own per-batch marker).
4. One live delta per site to the channel group ``site.<id>``, after the commit.
5. Acknowledgement (``acks_late``): a worker lost before it redelivers the message.

Redis comes before PostgreSQL (ARCHITECTURE.md orders them the other way) because the visit id
each raw row keeps is the sessionisation's answer, and only the script can give it atomically
with the counters; see README, "Ingestion pipeline".
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import redis
from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction

from analytics import livepush, quota, rollups, store
from analytics.payloads import EnrichedEvent
from analytics.sessions import visit_id
from analytics.siteinfo import SiteInfo, load_sites

logger = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
PAUSE_ENV = "SPINNAKR_TEST_INGEST_PAUSE"


def _test_pause(stage: str) -> None:
    """Tests only: sleep at a named stage so a test can kill the worker there."""
    if not settings.TESTING:
        return
    wanted = os.environ.get(PAUSE_ENV, "")
    name, _, seconds = wanted.partition(":")
    if name == stage:
        logger.info("ingest.test_pause", extra={"stage": stage, "seconds": seconds})
        time.sleep(float(seconds or "1"))


def _dedupe(events: list[EnrichedEvent]) -> list[EnrichedEvent]:
    seen: set[tuple[int, int, str]] = set()
    unique = []
    for event in events:
        key = (event["site_id"], event["ts"], event["event_id"])
        if key not in seen:
            seen.add(key)
            unique.append(event)
    return unique


def ingest(batch_id: str, events: list[EnrichedEvent]) -> dict[int, rollups.BatchResult]:
    """Apply one batch (see the module docstring); answers each site's rollup result."""
    by_site: dict[int, list[EnrichedEvent]] = defaultdict(list)
    for event in _dedupe(events):
        by_site[event["site_id"]].append(event)
    sites = load_sites(by_site)
    for site_id in set(by_site) - set(sites):
        logger.warning("ingest.unknown_site", extra={"site_id": site_id, "events": len(by_site[site_id])})
        del by_site[site_id]

    results: dict[int, rollups.BatchResult] = {}
    for site_id, site_events in by_site.items():
        site_events.sort(key=rollups.event_order)
        prepared = rollups.prepare(sites[site_id], site_events)
        results[site_id] = rollups.apply_batch(sites[site_id], batch_id, prepared)
    _test_pause("after_rollups")

    store.ensure_partitions(
        store.month_start(store.EPOCH + timedelta(microseconds=e["ts"])) for evs in by_site.values() for e in evs
    )
    inserted = 0
    with transaction.atomic():
        for site_id, site_events in by_site.items():
            result = results[site_id]
            rows = [
                (event, visit_id(event["visitor_id"], start))
                for event, start in zip(site_events, result.starts, strict=True)
            ]
            inserted += store.insert_events(rows)
            store.rename_visits(
                site_id,
                [(v, visit_id(v, old), visit_id(v, new)) for v, old, new in result.renames],
            )
    _test_pause("after_store")

    _count_quota(batch_id, sites, by_site)
    for site_id, site_events in by_site.items():
        result = results[site_id]
        livepush.send(
            site_id,
            livepush.build_delta(site_id, batch_id, site_events, result.new_visits, result.visitors_now),
        )
    logger.info(
        "ingest.batch_done",
        extra={
            "batch_id": batch_id,
            "events": len(events),
            "inserted": inserted,
            "sites": len(by_site),
            "duplicate": any(r.duplicate for r in results.values()),
        },
    )
    return results


def _count_quota(batch_id: str, sites: dict[int, SiteInfo], by_site: dict[int, list[EnrichedEvent]]) -> None:
    per_account: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    quotas: dict[int, int] = {}
    for site_id, site_events in by_site.items():
        info = sites[site_id]
        quotas[info.account_id] = info.monthly_event_quota
        for event in site_events:
            if event["name"] != "engagement":
                month = (store.EPOCH + timedelta(microseconds=event["ts"])).strftime("%Y%m")
                per_account[info.account_id][month] += 1
    for account_id, counts in per_account.items():
        quota.record_batch(account_id, quotas[account_id], batch_id, counts)


@shared_task(
    name="analytics.ingest_batch",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=100,
    soft_time_limit=240,
    time_limit=300,
)
def ingest_batch(self: object, batch_id: str, events: list[EnrichedEvent]) -> None:
    try:
        ingest(batch_id, events)
    except TRANSIENT:
        raise  # retried with backoff by autoretry_for
    except Exception as exc:
        # Anything else would be acknowledged and lost: keep the batch for an operator, who
        # replays it with `manage.py replay_failed_batches` once the cause is fixed.
        park_failed_batch(batch_id, events, exc)
        raise


FAILED_BATCHES = "ingest:failed"
FAILED_BATCHES_MAX = 100_000


def park_failed_batch(batch_id: str, events: list[EnrichedEvent], exc: BaseException) -> None:
    record = {"batch_id": batch_id, "events": events, "error": repr(exc)[:2000], "at": time.time()}
    pipe = rollups.client().pipeline(transaction=True)
    pipe.lpush(FAILED_BATCHES, json.dumps(record, separators=(",", ":")))
    pipe.ltrim(FAILED_BATCHES, 0, FAILED_BATCHES_MAX - 1)
    pipe.execute()
    logger.error("ingest.batch_failed", extra={"batch_id": batch_id, "events": len(events), "error": repr(exc)[:500]})


@shared_task(name="analytics.ensure_partitions", ignore_result=True, autoretry_for=TRANSIENT, retry_backoff=True)
def ensure_partitions() -> None:
    """Beat: the partitions of last, this and the next two months exist."""
    store.forget_partitions()
    store.ensure_partitions_around(datetime.now(UTC).date(), before=1, after=2)


@shared_task(name="analytics.apply_retention", ignore_result=True, autoretry_for=TRANSIENT, retry_backoff=True)
def apply_retention() -> None:
    """Beat: delete raw events older than each account's retention; drop partitions none keeps.

    Day rollups expire by themselves (their TTL is the retention when written).
    """
    from accounts.models import Account, Site

    now = datetime.now(UTC)
    longest = 0
    for account_id, days in Account.objects.values_list("id", "retention_days"):
        longest = max(longest, days)
        site_ids = list(Site.objects.filter(account_id=account_id).values_list("id", flat=True))
        deleted = store.delete_older_than(site_ids, now - timedelta(days=days))
        if deleted:
            logger.info("retention.deleted", extra={"account_id": account_id, "events": deleted})
    if longest:
        dropped = store.drop_partitions_before((now - timedelta(days=longest)).date())
        if dropped:
            logger.info("retention.dropped_partitions", extra={"partitions": dropped})


@shared_task(name="analytics.refresh_quota_flags", ignore_result=True, autoretry_for=TRANSIENT, retry_backoff=True)
def refresh_quota_flags() -> None:
    """Beat: recompute the set of accounts past quota plus grace (see ``analytics.quota``)."""
    quota.refresh_flags()


@shared_task(
    name="analytics.delete_site_data", ignore_result=True, acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True
)
def delete_site_data(site_id: int) -> None:
    """A deleted site's raw events and Redis keys (``analytics.cleanup``)."""
    from analytics.cleanup import purge_site

    purge_site(site_id)


@shared_task(
    name="analytics.delete_account_data",
    ignore_result=True,
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
)
def delete_account_data(account_id: int, site_ids: list[int]) -> None:
    """A deleted account's sites' data and its quota counters (``analytics.cleanup``)."""
    from analytics.cleanup import purge_account

    purge_account(account_id, site_ids)


@shared_task(
    name="analytics.rebuild_rollups",
    ignore_result=True,
    acks_late=True,
    time_limit=6 * 3600,
    soft_time_limit=6 * 3600 - 60,
)
def rebuild_rollups(site_id: int, since: str | None = None) -> None:
    """Recompute a site's rollups from PostgreSQL (``analytics.rebuild``)."""
    from datetime import date

    from accounts.models import Site
    from analytics.rebuild import RebuildRunning, rebuild_site

    site = Site.objects.select_related("account").filter(id=site_id).first()
    if site is None:
        return
    try:
        rebuild_site(site, date.fromisoformat(since) if since else None)
    except RebuildRunning:
        # The running rebuild may have started before this request's change: go again later.
        rebuild_rollups.apply_async((site_id, since), countdown=60)
