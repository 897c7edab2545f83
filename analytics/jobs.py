"""Queueing the analytics app's background tasks by name, without importing the task module.

Importing ``analytics.tasks`` registers its shared tasks with every Celery app of the process,
which a foreign app set up by Django (a test probe) must not get; and the task module imports
most of the worker, which the web process and the query planner do not need. The names and
queues are the tasks' own (``CELERY_TASK_ROUTES``).
"""

from __future__ import annotations

from spinnakr.celery import app

REBUILD_ROLLUPS = "analytics.rebuild_rollups"
REBUILD_LOST_ROLLUPS = "analytics.rebuild_lost_rollups"
DELETE_SITE_DATA = "analytics.delete_site_data"
DELETE_ACCOUNT_DATA = "analytics.delete_account_data"


def rebuild_rollups(site_id: int, since: str | None = None, *, countdown: float | None = None) -> None:
    """Recompute a site's rollups from PostgreSQL (``analytics.ingest.rebuild``)."""
    app.send_task(REBUILD_ROLLUPS, args=(site_id, since), countdown=countdown)


def rebuild_lost_rollups(rebuild_id: int, *, countdown: float | None = None) -> None:
    """Carry out a ``RollupRebuild`` after a failover (``analytics.ingest.failover``)."""
    app.send_task(REBUILD_LOST_ROLLUPS, args=(rebuild_id,), countdown=countdown)


def delete_site_data(site_id: int) -> None:
    """Delete a deleted site's raw events and Redis keys (``analytics.ingest.cleanup``)."""
    app.send_task(DELETE_SITE_DATA, args=(site_id,))


def delete_account_data(account_id: int, site_ids: list[int]) -> None:
    """Delete a deleted account's sites' data and its quota counters (``analytics.ingest.cleanup``)."""
    app.send_task(DELETE_ACCOUNT_DATA, args=(account_id, site_ids))
