"""Removing what a deleted site or account leaves outside the accounts tables.

Receivers of ``accounts.signals.site_deleted`` / ``account_deleted`` (sent after the deleting
transaction commits) queue a task on the default queue that deletes the raw events
(``DELETE … WHERE site_id`` across all partitions), every Redis key of the site
(``SCAN {s:<id>}:*`` + ``UNLINK`` on the data Redis and on each rollups server, every master of
a Redis Cluster) and the account's quota counters (``{a:<id>}:*``). The tasks are idempotent;
deleting twice finds nothing the second time. The receivers live in ``analytics.receivers``, the tasks in
``analytics.tasks``; both queue them by name (``analytics.jobs``).
"""

from __future__ import annotations

import logging

from analytics.ingest import freshness, quota, rollups, siteinfo, store
from spinnakr import redis_clients

logger = logging.getLogger(__name__)


def _unlink_pattern(client: redis_clients.Rollups, pattern: str) -> int:
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
    # The rollups on their server, the collector's keys of the site (client ids, bot counts) on the
    # data Redis, and what a site moved by a change of REDIS_URLS left on its former server.
    servers = {id(client): client for client in [redis_clients.data(), *redis_clients.rollup_servers()]}
    keys = sum(_unlink_pattern(client, f"{rollups.prefix(site_id)}*") for client in servers.values())
    siteinfo.forget(site_id)
    freshness.forget([site_id])
    logger.info("cleanup.site_purged", extra={"site_id": site_id, "events": events, "keys": keys})
    return events, keys


def purge_account(account_id: int, site_ids: list[int]) -> None:
    for site_id in site_ids:
        purge_site(site_id)
    keys = _unlink_pattern(redis_clients.data(), f"{{a:{account_id}}}:*")
    redis_clients.data().srem(quota.OVER_SET, str(account_id))
    logger.info("cleanup.account_purged", extra={"account_id": account_id, "sites": site_ids, "keys": keys})
