"""Coalescing: a pool process applies the waiting messages of the events queue with its own."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from analytics.ingest.pipeline import (
    TRANSIENT,
    TRANSIENT_PAUSE_SECONDS,
    ingest,
    ingest_delivered,
    ingest_many,
    park_failed_batch,
)
from analytics.payloads import EVENTS_SERIALIZER, INGEST_TASK, EnrichedEvent
from spinnakr.celery import app
from spinnakr.queue.take import RedisTake
from spinnakr.queue.wire import RedisListSender

logger = logging.getLogger(__name__)

COALESCE_MAX_MESSAGES = 200


# Coalescing ---------------------------------------------------------------------
#
# The collector publishes a message every few milliseconds per web process, so under load the
# queue holds many small messages, and a message costs the worker a fixed price (script call,
# COPY, commit, quota, live push) whatever its size (bench/HISTORY.md). A pool process that starts a message
# therefore first takes up to INGEST_COALESCE_EVENTS more events' worth of waiting messages
# from the events queue on a connection of its own (basic_get, unacknowledged), applies them
# all with ``ingest_many``, and acknowledges them after; Celery acknowledges the message it
# delivered (acks_late). A process lost meanwhile leaves them unacknowledged: the broker
# delivers them again (RabbitMQ at once, Redis once the process's lease has expired: see
# spinnakr/queue/leases.py), and the batch markers make that harmless.
#
# On a Redis broker the waiting messages come TAKE_CHUNK at a time through one script
# (``spinnakr.queue.take.RedisTake``), which keeps kombu's bookkeeping and names this process
# as their owner.
#
# A message that carries an ETA (a batch deferred or retried with a countdown) is left to
# Celery's own consumer, which holds it until it is due: taken here it was applied at once, and
# a batch deferred for PostgreSQL's outage came back five times in under two seconds.
# An acknowledgement or a hand-back that fails for want of the broker is left to this process's
# lease (spinnakr.queue.leases), which retries it until the broker answers.

TAKE_CHUNK = 25


@dataclass
class _Taken:
    message: Any
    batch_id: str
    events: list[EnrichedEvent]
    retries: int
    bulk: RedisTake | None = None  # taken by the bulk path: settled through it


class _Drainer:
    """A pool process's own consumer of the events queue (one connection per process)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.connection: Any = None
        self.queue: Any = None
        self.bulk: RedisTake | None = None

    def take(self, max_events: int, max_messages: int) -> list[_Taken]:
        taken: list[_Taken] = []
        events = 0
        try:
            if self.queue is None:
                self.connection = app.connection_for_read()
                self.queue = app.amqp.queues[settings.EVENTS_QUEUE].bind(self.connection.default_channel)
                if RedisListSender.applies(self.connection):
                    self.bulk = RedisTake(self.connection.default_channel, settings.EVENTS_QUEUE, INGEST_TASK)
            while self.bulk is not None and len(taken) < max_messages and events < max_events:
                # One message first, then as many as the events still wanted fill at the size
                # seen so far (at most TAKE_CHUNK), so a group ends near max_events.
                room = (max_events - events) * len(taken) // events if events else 1
                want = max(1, min(TAKE_CHUNK, max_messages - len(taken), room))
                messages = self.bulk.take(want)
                undecodable = False
                for message in messages:
                    item = _parse(message)
                    if item is None:  # handed back (to the end of the line): Celery's consumer says what is wrong
                        self.bulk.requeue(message.delivery_tag)
                        undecodable = True
                        continue
                    item.bulk = self.bulk
                    taken.append(item)
                    events += len(item.events)
                if undecodable or len(messages) < want:  # the queue is empty or another task is next
                    return taken
            while self.bulk is None and len(taken) < max_messages and events < max_events:
                message = self.queue.get(no_ack=False, accept=settings.CELERY_ACCEPT_CONTENT)
                if message is None:
                    break
                item = _parse(message)
                if item is None or (message.headers or {}).get("eta"):
                    # Not an ingest batch (nothing else is routed here), or one with an ETA:
                    # Celery's consumer takes it, and holds it until its ETA.
                    message.requeue()
                    break
                taken.append(item)
                events += len(item.events)
        except Exception as exc:  # noqa: BLE001 - the broker redelivers what was taken unacknowledged
            logger.warning("ingest.coalesce_failed", extra={"error": repr(exc), "taken": len(taken)})
            self.close()
        return taken

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.release()
        self.connection = None
        self.queue = None
        self.bulk = None


def _parse(message: Any) -> _Taken | None:
    headers = message.headers or {}
    if headers.get("task") != INGEST_TASK:
        return None
    try:
        _args, kwargs, _embed = message.decode()
        return _Taken(message, str(kwargs["batch_id"]), list(kwargs["events"]), int(headers.get("retries") or 0))
    except (TypeError, ValueError, KeyError):
        return None


_drainer: _Drainer | None = None


def _take_waiting() -> list[_Taken]:
    global _drainer
    if settings.INGEST_COALESCE_EVENTS <= 0:
        return []
    if _drainer is None or _drainer.pid != os.getpid():  # a forked pool process gets its own
        _drainer = _Drainer()
    return _drainer.take(settings.INGEST_COALESCE_EVENTS, COALESCE_MAX_MESSAGES)


def _settle(item: _Taken, action: str) -> None:
    """Acknowledge a taken message, or hand it back (a failure here means redelivery, which
    is harmless)."""
    try:
        if item.bulk is not None:
            if action == "ack":
                item.bulk.ack([item.message.delivery_tag])
            else:
                item.bulk.requeue(item.message.delivery_tag)
        elif action == "ack":
            item.message.ack()
        else:
            item.message.requeue()
    except Exception as exc:  # noqa: BLE001
        logger.warning("ingest.settle_failed", extra={"batch_id": item.batch_id, "error": repr(exc)})


def _ack_all(taken: Sequence[_Taken]) -> None:
    """Acknowledge taken messages: those of the bulk path with one round trip."""
    by_take: dict[RedisTake, list[_Taken]] = defaultdict(list)
    for item in taken:
        if item.bulk is None:
            _settle(item, "ack")
        else:
            by_take[item.bulk].append(item)
    for take, items in by_take.items():
        try:
            take.ack([item.message.delivery_tag for item in items])
        except Exception as exc:  # noqa: BLE001 - redelivered (spinnakr.queue.leases): harmless
            logger.warning("ingest.settle_failed", extra={"batch_id": items[0].batch_id, "error": repr(exc)})


# The longest wait before a batch that failed for a transient cause (PostgreSQL or Redis away)
# is tried again. The batch waits in the queue, durable, so a short wait costs a few failed
# attempts during an outage and buys a catch-up within seconds of the server's return; at five
# minutes, the last batch was stored minutes after PostgreSQL came back.
RETRY_BACKOFF_MAX = 5


def _defer(item: _Taken, exc: BaseException) -> None:
    """A transient failure: publish the batch again later, as Celery's autoretry does."""
    countdown = min(RETRY_BACKOFF_MAX, 2 ** min(item.retries + 1, 8))
    try:
        app.send_task(
            INGEST_TASK,
            kwargs={"batch_id": item.batch_id, "events": item.events},
            serializer=EVENTS_SERIALIZER,
            queue=settings.EVENTS_QUEUE,
            task_id=item.batch_id,
            countdown=countdown,
            retries=item.retries + 1,
        )
    except Exception:  # noqa: BLE001 - the broker is down as well: hand the message back
        _settle(item, "requeue")
        return
    logger.warning("ingest.batch_deferred", extra={"batch_id": item.batch_id, "error": repr(exc)[:500]})
    _settle(item, "ack")


def _ingest_alone(item: _Taken) -> None:
    try:
        ingest(item.batch_id, item.events)
    except TRANSIENT as exc:
        _defer(item, exc)
        return
    except Exception as exc:  # noqa: BLE001 - kept for an operator, as for a delivered batch
        park_failed_batch(item.batch_id, item.events, exc)
    _settle(item, "ack")


def apply_message(batch_id: str, events: list[EnrichedEvent], *, delivered: bool) -> None:
    """The task ``analytics.ingest_batch``: ``batch_id`` with the waiting messages it can take
    (``delivered`` by the broker, not called directly), each acknowledged once applied."""
    taken = _take_waiting() if delivered else []
    if not taken:
        ingest_delivered(batch_id, events)
        return
    try:
        ingest_many([(batch_id, events), *((item.batch_id, item.events) for item in taken)])
    except TRANSIENT as exc:
        # Handed back, not deferred each with a countdown of its own: they wait in the queue,
        # where one group takes them all again once the server is back.
        logger.warning(
            "ingest.group_handed_back", extra={"batch_id": batch_id, "messages": len(taken), "error": repr(exc)[:500]}
        )
        for item in taken:
            _settle(item, "requeue")
        time.sleep(TRANSIENT_PAUSE_SECONDS)
        raise  # the delivered batch is retried with backoff by autoretry_for
    except Exception:  # one bad batch must not hold back the others: apply them one by one
        logger.warning("ingest.group_failed", extra={"batch_id": batch_id, "messages": len(taken) + 1}, exc_info=True)
        for item in taken:
            _ingest_alone(item)
        ingest_delivered(batch_id, events)
        return
    _ack_all(taken)
