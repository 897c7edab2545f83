"""Signal receivers of the analytics app, connected in ``AnalyticsConfig.ready``.

They queue tasks by name (``analytics.jobs``): importing the task module would register its
shared tasks with every Celery app of the process, which a foreign app set up by Django (a test
probe) must not get.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.models.signals import post_save

from accounts.models import Site
from accounts.signals import account_deleted, site_deleted, site_timezone_changed
from analytics import jobs
from analytics.ingest import siteinfo

logger = logging.getLogger(__name__)


def _on_site_deleted(sender: Any, site_id: int, **kwargs: Any) -> None:
    jobs.delete_site_data(site_id)


def _on_account_deleted(sender: Any, account_id: int, site_ids: list[int] | None = None, **kwargs: Any) -> None:
    jobs.delete_account_data(account_id, list(site_ids or []))


def _on_site_timezone_changed(sender: Any, site_id: int, old: str, new: str, **kwargs: Any) -> None:
    """A changed timezone re-buckets every rollup: rebuild them (sent after the change commits)."""
    logger.info("rebuild.timezone_changed", extra={"site_id": site_id, "old": old, "new": new})
    jobs.rebuild_rollups(site_id)


def _on_site_saved(sender: Any, instance: Site, **kwargs: Any) -> None:
    """This process's own change of a site reaches its worker-side cache at once."""
    siteinfo.forget(instance.id)


def connect() -> None:
    site_deleted.connect(_on_site_deleted, dispatch_uid="analytics.receivers.site_deleted")
    account_deleted.connect(_on_account_deleted, dispatch_uid="analytics.receivers.account_deleted")
    site_timezone_changed.connect(_on_site_timezone_changed, dispatch_uid="analytics.receivers.site_timezone_changed")
    post_save.connect(_on_site_saved, sender=Site, dispatch_uid="analytics.receivers.site_saved")
