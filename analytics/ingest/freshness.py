"""Each site's freshness, and the worker's timing metrics, recorded once per group it applied.

A site's freshness is when the worker last applied events of it and the lag they had then: the
time from the collector's receipt of the newest of them to their application. It lives in one
hash of the data Redis, ``ingest:freshness`` (field: the site id; value: ``"<applied ms>
<received ms>"``), written with one HSET per group for all of its sites, and read by the
dashboard and the admin with one HMGET.

The time of receipt is the batch id's: the collector names each message with a UUIDv7
(``analytics.collector.publish``). A batch id of another kind (a test's, a replayed batch's) falls
back to its newest event's timestamp.

A batch applied before (a redelivery) changes no site's freshness and adds no lag sample: it
applied nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from analytics.ingest.rollups import BatchResult
from analytics.payloads import EnrichedEvent
from spinnakr import metrics, redis_clients

logger = logging.getLogger(__name__)

KEY = "ingest:freshness"
READ_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Freshness:
    applied_ms: int
    received_ms: int

    @property
    def applied(self) -> datetime:
        return datetime.fromtimestamp(self.applied_ms / 1000, UTC)

    @property
    def lag_seconds(self) -> float:
        """The lag of the newest events when they were applied."""
        return max(0, self.applied_ms - self.received_ms) / 1000

    def age_seconds(self, now: float | None = None) -> float:
        """Seconds since the site's last events were applied."""
        return max(0.0, (time.time() if now is None else now) - self.applied_ms / 1000)


def received_ms(batch_id: str, events: Sequence[EnrichedEvent]) -> int:
    """When the collector received the batch's events (see the module docstring)."""
    try:
        named = uuid.UUID(hex=batch_id)
    except ValueError:
        named = None
    if named is not None and named.version == 7:
        return named.int >> 80  # the first 48 bits: Unix milliseconds
    return max((event["ts"] for event in events), default=0) // 1000


def applied(
    parts: Sequence[tuple[str, int, list[EnrichedEvent]]],
    results: Sequence[BatchResult],
    seconds: float,
    now_ms: int | None = None,
) -> None:
    """Record a group the pipeline applied in ``seconds``: its time, each new batch's lag, and
    the freshness of each site it brought events of."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    metrics.INGEST_GROUP_SECONDS.observe(seconds)
    received: dict[str, int] = {}
    newest: dict[int, int] = {}
    events = 0
    for (batch_id, site_id, site_events), result in zip(parts, results, strict=True):
        if result.duplicate:
            continue
        events += len(site_events)
        if batch_id not in received:
            received[batch_id] = received_ms(batch_id, site_events)
        newest[site_id] = max(newest.get(site_id, 0), received[batch_id])
    metrics.INGEST_EVENTS.inc(events)
    for moment in received.values():
        metrics.INGEST_LAG_SECONDS.observe(max(0, now - moment) / 1000)
    if not newest:
        return
    try:
        redis_clients.data().hset(KEY, mapping={site_id: f"{now} {moment}" for site_id, moment in newest.items()})
    except redis.RedisError as exc:
        # Everything else of the group is applied: a missed update shows until the next group.
        logger.warning("ingest.freshness_unrecorded", extra={"sites": len(newest), "error": repr(exc)[:300]})


def of_sites(site_ids: Iterable[int]) -> dict[int, Freshness]:
    """The freshness of each of ``site_ids`` that has had events applied; none when Redis does not
    answer (the pages that show it still render)."""
    ids = list(site_ids)
    if not ids:
        return {}
    try:
        values = redis_clients.data(timeout=READ_TIMEOUT_SECONDS).hmget(KEY, [str(site_id) for site_id in ids])
    except redis.RedisError:
        logger.warning("ingest.freshness_unavailable", extra={"sites": len(ids)})
        return {}
    found = {}
    for site_id, value in zip(ids, values, strict=True):
        applied_ms, _, received = str(value or "").partition(" ")
        if applied_ms.isdigit() and received.isdigit():
            found[site_id] = Freshness(int(applied_ms), int(received))
    return found


def forget(site_ids: Iterable[int]) -> None:
    """A deleted site's entry."""
    ids = [str(site_id) for site_id in site_ids]
    if ids:
        redis_clients.data().hdel(KEY, *ids)
