"""The Celery tasks of the analytics app: declarations that call into ``analytics.ingest``.

The names (``analytics.ingest_batch`` …) are the messages' contract: they do not change.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

from celery import shared_task

from accounts.models import Site
from analytics import jobs
from analytics.collector import visitors
from analytics.ingest import cleanup, coalesce, compact, quota, retention, store
from analytics.ingest.coalesce import RETRY_BACKOFF_MAX
from analytics.ingest.pipeline import TRANSIENT
from analytics.ingest.rebuild import RebuildRunning, rebuild_site
from analytics.payloads import (
    EVENTS_SERIALIZER,
    INGEST_SOFT_TIME_LIMIT,
    INGEST_TIME_LIMIT,
    EnrichedEvent,
)

logger = logging.getLogger(__name__)


@shared_task(
    name="analytics.ingest_batch",
    bind=True,
    serializer=EVENTS_SERIALIZER,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    # Full jitter could bring the wait down to nothing: 2 s, 4 s, then RETRY_BACKOFF_MAX.
    retry_jitter=False,
    # However long the outage: the batch is durable in the queue, and given up it would be lost.
    max_retries=None,
    soft_time_limit=INGEST_SOFT_TIME_LIMIT,
    time_limit=INGEST_TIME_LIMIT,
)
def ingest_batch(self: Any, batch_id: str, events: list[EnrichedEvent]) -> None:
    coalesce.apply_message(batch_id, events, delivered=not (self.request.called_directly or self.request.is_eager))


@shared_task(name="analytics.ensure_partitions", ignore_result=True, autoretry_for=TRANSIENT, retry_backoff=True)
def ensure_partitions() -> None:
    """Beat: the partitions of last, this and the next two months exist."""
    store.forget_partitions()
    store.ensure_partitions_around(datetime.now(UTC).date(), before=1, after=2)


@shared_task(name="analytics.apply_retention", ignore_result=True, autoretry_for=TRANSIENT, retry_backoff=True)
def apply_retention() -> None:
    """Beat: delete raw events older than each account's retention; drop partitions none keeps."""
    retention.apply_retention()


@shared_task(name="analytics.compact_rollups", ignore_result=True, autoretry_for=TRANSIENT, retry_backoff=True)
def compact_rollups() -> None:
    """Beat: rewrite the closed days' dense HyperLogLogs sparse (``analytics.ingest.compact``)."""
    compact.compact_closed_days(datetime.now(UTC))


@shared_task(name="analytics.refresh_quota_flags", ignore_result=True, autoretry_for=TRANSIENT, retry_backoff=True)
def refresh_quota_flags() -> None:
    """Beat: recompute the set of accounts past quota plus grace (see ``analytics.ingest.quota``)."""
    quota.refresh_flags()


@shared_task(
    name="analytics.delete_site_data", ignore_result=True, acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True
)
def delete_site_data(site_id: int) -> None:
    """A deleted site's raw events and Redis keys (``analytics.ingest.cleanup``)."""
    cleanup.purge_site(site_id)


@shared_task(
    name="analytics.delete_account_data",
    ignore_result=True,
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
)
def delete_account_data(account_id: int, site_ids: list[int]) -> None:
    """A deleted account's sites' data and its quota counters (``analytics.ingest.cleanup``)."""
    cleanup.purge_account(account_id, site_ids)


@shared_task(
    name="analytics.rebuild_rollups",
    ignore_result=True,
    acks_late=True,
    time_limit=6 * 3600,
    soft_time_limit=6 * 3600 - 60,
)
def rebuild_rollups(site_id: int, since: str | None = None) -> None:
    """Recompute a site's rollups from PostgreSQL (``analytics.ingest.rebuild``)."""
    site = Site.objects.select_related("account").filter(id=site_id).first()
    if site is None:
        return
    try:
        rebuild_site(site, date.fromisoformat(since) if since else None)
    except RebuildRunning:
        # The running rebuild may have started before this request's change: go again later.
        jobs.rebuild_rollups(site_id, since, countdown=60)


@shared_task(name="analytics.rotate_salts", ignore_result=True)
def rotate_salts() -> None:
    """Beat: create today's visitor-id salt, delete those older than yesterday (``analytics.collector.enrich``)."""
    visitors.rotate()
