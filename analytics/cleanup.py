"""Removing what a deleted site or account leaves outside the accounts tables.

Receivers of ``accounts.signals.site_deleted`` / ``account_deleted`` (sent after the deleting
transaction commits) queue a task on the default queue that deletes the raw events
(``DELETE … WHERE site_id`` across all partitions), every Redis key of the site
(``SCAN {s:<id>}:*`` + ``UNLINK``) and the account's quota counters (``{a:<id>}:*``). The tasks
are idempotent; deleting twice finds nothing the second time.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db.models.signals import post_init, post_save

from accounts.models import Site
from accounts.signals import account_deleted, site_deleted
from analytics import quota, rollups, siteinfo, store
from analytics.tasks import TRANSIENT

logger = logging.getLogger(__name__)


def _unlink_pattern(pattern: str) -> int:
    client = rollups.client()
    removed = 0
    batch: list[str] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            removed += int(client.unlink(*batch))
            batch = []
    if batch:
        removed += int(client.unlink(*batch))
    return removed


def purge_site(site_id: int) -> tuple[int, int]:
    """Delete a site's raw events and Redis keys; answers (events, keys) removed."""
    events = store.delete_site_events(site_id)
    keys = _unlink_pattern(f"{rollups.prefix(site_id)}*")
    siteinfo.forget(site_id)
    logger.info("cleanup.site_purged", extra={"site_id": site_id, "events": events, "keys": keys})
    return events, keys


def purge_account(account_id: int, site_ids: list[int]) -> None:
    for site_id in site_ids:
        purge_site(site_id)
    keys = _unlink_pattern(f"{{a:{account_id}}}:*")
    rollups.client().srem(quota.OVER_SET, str(account_id))
    logger.info("cleanup.account_purged", extra={"account_id": account_id, "sites": site_ids, "keys": keys})


@shared_task(
    name="analytics.delete_site_data", ignore_result=True, acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True
)
def delete_site_data(site_id: int) -> None:
    purge_site(site_id)


@shared_task(
    name="analytics.delete_account_data",
    ignore_result=True,
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
)
def delete_account_data(account_id: int, site_ids: list[int]) -> None:
    purge_account(account_id, site_ids)


@shared_task(
    name="analytics.rebuild_rollups",
    ignore_result=True,
    acks_late=True,
    time_limit=6 * 3600,
    soft_time_limit=6 * 3600 - 60,
)
def rebuild_rollups(site_id: int, since: str | None = None) -> None:
    from datetime import date

    from analytics.rebuild import RebuildRunning, rebuild_site

    site = Site.objects.select_related("account").filter(id=site_id).first()
    if site is None:
        return
    try:
        rebuild_site(site, date.fromisoformat(since) if since else None)
    except RebuildRunning:
        # The running rebuild started before this change saw the old timezone: go again later.
        rebuild_rollups.apply_async((site_id, since), countdown=60)


def _on_site_deleted(sender: Any, site_id: int, **kwargs: Any) -> None:
    delete_site_data.delay(site_id)


def _on_account_deleted(sender: Any, account_id: int, site_ids: list[int] | None = None, **kwargs: Any) -> None:
    delete_account_data.delay(account_id, list(site_ids or []))


def _remember_timezone(sender: Any, instance: Site, **kwargs: Any) -> None:
    instance._loaded_timezone = instance.__dict__.get("timezone")  # type: ignore[attr-defined]


def _on_site_saved(sender: Any, instance: Site, created: bool, **kwargs: Any) -> None:
    before = getattr(instance, "_loaded_timezone", None)
    instance._loaded_timezone = instance.timezone  # type: ignore[attr-defined]
    siteinfo.forget(instance.id)
    if created or before is None or before == instance.timezone:
        return
    logger.info("rebuild.timezone_changed", extra={"site_id": instance.id, "old": before, "new": instance.timezone})
    from django.db import transaction

    site_id = instance.id
    transaction.on_commit(lambda: rebuild_rollups.delay(site_id))


def connect() -> None:
    site_deleted.connect(_on_site_deleted, dispatch_uid="analytics.cleanup.site_deleted")
    account_deleted.connect(_on_account_deleted, dispatch_uid="analytics.cleanup.account_deleted")
    post_init.connect(_remember_timezone, sender=Site, dispatch_uid="analytics.cleanup.remember_tz")
    post_save.connect(_on_site_saved, sender=Site, dispatch_uid="analytics.cleanup.site_saved")
