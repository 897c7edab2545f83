"""Retention: raw events older than each account keeps, and the partitions no account keeps."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from accounts.models import Account, Site
from analytics.ingest import store

logger = logging.getLogger(__name__)


def apply_retention() -> None:
    """Beat: delete raw events older than each account's retention; drop partitions none keeps.

    Day rollups expire by themselves (their TTL is the retention when written).
    """
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
