"""The parts of a batch whose rollups server is down: published again to wait in the broker.

A batch (one broker message) may carry sites of several rollups servers. When one server does
not answer, the sites of the others go on (rollups, raw store, quota, live delta) and the parts
of the silent server are published again, each batch's under its own id (the per-site marker
makes a second application of a part harmless), with a delay. The publish is confirmed before
``ingest_many`` returns, so before the original message is acknowledged: nothing accepted is lost
between the two. The raw store takes those parts only once their rollups are applied, because
each row keeps the visit id the rollups script answers.

A held message comes back after a delay (``delay``: a few seconds, growing with the outage up to
``HOLD_DELAY_MAX_SECONDS``) and is tried again; while the server's breaker is open
(``spinnakr.breaker``) it is held again at the cost of one publish, with no connection attempt,
until the server answers.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from analytics.payloads import EVENTS_SERIALIZER, INGEST_TASK, EnrichedEvent
from spinnakr import breaker
from spinnakr.celery import app

logger = logging.getLogger(__name__)

# A held batch comes back after HOLD_DELAY_SECONDS, then after a quarter of the time its server
# has been failing, up to HOLD_DELAY_MAX_SECONDS: a long outage then costs each waiting batch one
# publish per HOLD_DELAY_MAX_SECONDS instead of one every few seconds, and a server back after
# a short one is caught up with within seconds. A moving site's batches wait HOLD_DELAY_SECONDS.
HOLD_DELAY_SECONDS = 3
HOLD_DELAY_MAX_SECONDS = 30


def delay(url: str) -> int:
    """How long a batch held for the server ``url`` waits before it is tried again."""
    return int(min(HOLD_DELAY_MAX_SECONDS, max(HOLD_DELAY_SECONDS, breaker.failing_for(url) / 4)))


class BrokerUnavailable(Exception):
    """The held parts could not be published: the whole message must be retried."""


def hold(
    parts: Sequence[tuple[str, int, list[EnrichedEvent]]],
    server: dict[int, str],
    rejected: Sequence[tuple[str, Any]] = (),
) -> None:
    """Publish each batch's held parts (batch, site, events) as one delayed message, confirmed,
    with the events set aside that could not be recorded (batch, event): the screen sets them
    aside again when the message comes back, and records them then."""
    by_batch: dict[str, list[Any]] = defaultdict(list)
    countdown: dict[str, int] = defaultdict(lambda: HOLD_DELAY_SECONDS)
    for batch_id, site_id, events in parts:
        by_batch[batch_id].extend(events)
        countdown[batch_id] = max(countdown[batch_id], delay(server[site_id]))
    for batch_id, event in rejected:
        by_batch[batch_id].append(event)
    for batch_id, events in by_batch.items():
        try:
            app.send_task(
                INGEST_TASK,
                kwargs={"batch_id": batch_id, "events": events},
                serializer=EVENTS_SERIALIZER,
                queue=settings.EVENTS_QUEUE,
                task_id=batch_id,
                countdown=countdown[batch_id],
            )
        except Exception as exc:
            raise BrokerUnavailable(repr(exc)) from exc
    logger.warning(
        "ingest.parts_held",
        extra={
            "batches": len(by_batch),
            "events": sum(len(events) for _, _, events in parts),
            "set_aside": len(rejected),
            "sites": sorted({site_id for _, site_id, _ in parts}),
            "servers": len({server[site_id] for _, site_id, _ in parts}),
        },
    )
