"""Signal receivers of the analytics app, connected in ``AnalyticsConfig.ready``.

They queue tasks by name (``analytics.jobs``): importing the task module would register its
shared tasks with every Celery app of the process, which a foreign app set up by Django (a test
probe) must not get.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_init, post_save

from accounts.models import Site
from accounts.signals import account_deleted, site_deleted
from analytics import jobs
from analytics.ingest import siteinfo

logger = logging.getLogger(__name__)


def _on_site_deleted(sender: Any, site_id: int, **kwargs: Any) -> None:
    jobs.delete_site_data(site_id)


def _on_account_deleted(sender: Any, account_id: int, site_ids: list[int] | None = None, **kwargs: Any) -> None:
    jobs.delete_account_data(account_id, list(site_ids or []))


def _remember_timezone(sender: Any, instance: Site, **kwargs: Any) -> None:
    instance._loaded_timezone = instance.__dict__.get("timezone")  # type: ignore[attr-defined]


def _on_site_saved(sender: Any, instance: Site, created: bool, **kwargs: Any) -> None:
    """A changed timezone re-buckets every rollup: rebuild them after the change commits."""
    before = getattr(instance, "_loaded_timezone", None)
    instance._loaded_timezone = instance.timezone  # type: ignore[attr-defined]
    siteinfo.forget(instance.id)
    if created or before is None or before == instance.timezone:
        return
    logger.info("rebuild.timezone_changed", extra={"site_id": instance.id, "old": before, "new": instance.timezone})
    site_id = instance.id

    def queue() -> None:
        jobs.rebuild_rollups(site_id)

    transaction.on_commit(queue)


def connect() -> None:
    site_deleted.connect(_on_site_deleted, dispatch_uid="analytics.receivers.site_deleted")
    account_deleted.connect(_on_account_deleted, dispatch_uid="analytics.receivers.account_deleted")
    post_init.connect(_remember_timezone, sender=Site, dispatch_uid="analytics.receivers.remember_tz")
    post_save.connect(_on_site_saved, sender=Site, dispatch_uid="analytics.receivers.site_saved")
