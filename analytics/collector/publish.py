"""Group commit: the requests that arrive while a message is in flight share the next one.

``PUBLISHER.submit(events)`` encodes a request's events, adds them to the
pending requests and waits. When no publish is in flight, a publish starts at
once (at the event loop's next turn, so requests submitted in the same turn go
together); what arrives while it is in flight goes out when it returns, all of
it (at most ``MAX_EVENTS`` (500) events a message, whole requests only: a
request is never split across messages). No timer holds a request back: a lone
request waits for its own broker round trip and nothing else, and under load a
message carries what gathered during the previous one. Each message is one
Celery task ``analytics.ingest_batch`` (kwargs ``batch_id`` and ``events``,
protocol 2, persistent) on ``settings.EVENTS_QUEUE``, sent with
``app.send_task`` so a real Celery worker consumes it. Every waiting request is
released only after the broker confirmed its message: publisher confirms on
RabbitMQ (``confirm_publish``), the returned LPUSH on Redis. On failure each
waiter of that message gets ``PublishError`` (the collector answers 503 with
Retry-After), so no client is told 202 for an event the broker does not hold.
A request whose events cannot be encoded (a lone surrogate in a string) gets
``UnpublishableEvents`` at once and never joins a message, so it cannot fail
the requests it would have shared one with.

kombu is blocking: its publishes run in one dedicated thread that owns the
process's producer connection, so the event loop never blocks and publishes
never interleave on the connection.

On a Redis broker the message goes onto the queue's list with one LPUSH of the envelope
kombu's Redis transport would write (``spinnakr.queue.wire.RedisListSender``), pushed by the
event loop with a ``redis.asyncio`` client of the same server and database (a hand-off to the
thread costs CPU on every message); the thread still connects kombu, which decides
whether the push applies. RabbitMQ keeps kombu's publish with publisher confirms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
import uuid_utils
from django.conf import settings

from analytics.payloads import (
    EVENTS_SERIALIZER,
    INGEST_SOFT_TIME_LIMIT,
    INGEST_TASK,
    INGEST_TIME_LIMIT,
    EnrichedEvent,
)
from spinnakr.celery import app
from spinnakr.queue.wire import RedisListSender, TaskSpec, kwargsrepr

logger = logging.getLogger(__name__)

# A message carries at most this many events (whole requests: a larger request goes alone).
MAX_EVENTS = 500
# Beyond this many events waiting for the broker, new requests get 503 at once
# instead of queueing without bound in memory.
MAX_BACKLOG = 50_000
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.05, "interval_step": 0.2, "interval_max": 0.5}
# What the headers of a message of the ingest task say of it.
INGEST_TASK_SPEC = TaskSpec(INGEST_TASK, EVENTS_SERIALIZER, INGEST_TIME_LIMIT, INGEST_SOFT_TIME_LIMIT)


class PublishError(Exception):
    """The broker did not take the batch; nothing of it was acknowledged to a client."""


class UnpublishableEvents(PublishError):
    """A request's events cannot be encoded; refused before they join a message."""


def encode_events(events: Sequence[EnrichedEvent]) -> bytes:
    """The JSON array of ``events`` as the events' serializer writes it (orjson, spinnakr.celery)."""
    try:
        return orjson.dumps(events)
    except orjson.JSONEncodeError as exc:
        raise UnpublishableEvents(repr(exc)) from None


@dataclass
class _Message:
    """Whole requests' events bound for one message, and their waiters."""

    requests: list[Sequence[EnrichedEvent]] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    futures: list[asyncio.Future[None]] = field(default_factory=list)
    count: int = 0

    def events(self) -> list[EnrichedEvent]:
        return [event for request in self.requests for event in request]


class Publisher:
    def __init__(self, *, max_events: int = MAX_EVENTS) -> None:
        self.max_events = max_events
        self._pending: list[tuple[Sequence[EnrichedEvent], bytes, asyncio.Future[None]]] = []
        self._pending_events = 0
        self._inflight_events = 0
        # The publish in flight, if any: one at a time, so what arrives meanwhile gathers for the
        # next message. Two in flight did better in most runs but within a shared box's spread,
        # and one holds the figures (bench/HISTORY.md, 2026-12-07, 16:59 UTC).
        self._publishing: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish")
        self._connection: Any = None
        self._producer: Any = None
        self._list_sender: RedisListSender | None = None
        self.messages = 0  # messages confirmed, for tests and logs

    @property
    def publishing(self) -> bool:
        """A publish is in flight."""
        return self._publishing is not None

    @property
    def pending_requests(self) -> int:
        """Requests waiting for the publish in flight to return before theirs goes out."""
        return len(self._pending)

    async def submit(self, events: Sequence[EnrichedEvent]) -> None:
        """Wait until ``events`` are confirmed by the broker; raises PublishError otherwise
        (``UnpublishableEvents`` at once for events that cannot be encoded)."""
        if not events:
            return
        if self._pending_events + self._inflight_events + len(events) > MAX_BACKLOG:
            raise PublishError("publish backlog full")
        try:
            encoded = encode_events(events)
        except UnpublishableEvents as exc:
            logger.warning("collector.unpublishable_events", extra={"events": len(events), "error": str(exc)})
            raise
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((events, encoded, future))
        self._pending_events += len(events)
        if self._publishing is None:
            # Starts at the loop's next turn: requests submitted in this turn go with this one.
            self._publishing = loop.create_task(self._publish_pending())
        await future

    async def _publish_pending(self) -> None:
        """Publish what is pending, then what gathered meanwhile, until nothing is left."""
        try:
            while self._pending:
                pending, self._pending = self._pending, []
                count, self._pending_events = self._pending_events, 0
                self._inflight_events += count
                try:
                    await self._publish(pending)
                finally:
                    self._inflight_events -= count
        finally:
            self._publishing = None

    async def _publish(self, pending: list[tuple[Sequence[EnrichedEvent], bytes, asyncio.Future[None]]]) -> None:
        # Whole requests go into one message each: a request is never split
        # across messages, so it is either fully confirmed or fully refused.
        messages: list[_Message] = []
        for events, encoded, future in pending:
            if not messages or (messages[-1].count and messages[-1].count + len(events) > self.max_events):
                messages.append(_Message())
            message = messages[-1]
            message.requests.append(events)
            message.encoded.append(encoded)
            message.futures.append(future)
            message.count += len(events)
        loop = asyncio.get_running_loop()
        try:
            for message in messages:
                # A UUIDv7: the worker reads the time of receipt from it (the ingestion lag).
                batch_id = uuid_utils.uuid7().hex
                try:
                    await self._deliver(loop, batch_id, message)
                except Exception as exc:  # noqa: BLE001 - every failure becomes a 503 for its waiters
                    logger.warning(
                        "collector.publish_failed",
                        extra={"batch_id": batch_id, "events": message.count, "error": repr(exc)},
                    )
                    for future in message.futures:
                        if not future.done():
                            future.set_exception(PublishError(repr(exc)))
                    continue
                self.messages += 1
                for future in message.futures:
                    if not future.done():
                        future.set_result(None)
        finally:
            # Cancelled at shutdown: no waiter is left hanging.
            for message in messages:
                for future in message.futures:
                    if not future.done():
                        future.set_exception(PublishError("publish interrupted"))

    async def _deliver(self, loop: asyncio.AbstractEventLoop, batch_id: str, message: _Message) -> None:
        """One message to the broker: pushed from the event loop onto a Redis broker's list,
        else published by the publishing thread."""
        if self._producer is None:
            await loop.run_in_executor(self._executor, self._connect)
        sender = self._list_sender
        if sender is None or sender.pusher is None:
            await loop.run_in_executor(self._executor, self._send, batch_id, message)
            return
        try:
            await sender.push(batch_id, message.encoded, message.count)
        except Exception:
            await self._drop_connections(loop)
            raise
        logger.debug("collector.published", extra={"batch_id": batch_id, "events": message.count})

    async def _drop_connections(self, loop: asyncio.AbstractEventLoop) -> None:
        """Forget both connections; the next message connects again (and looks at the broker anew)."""
        sender = self._list_sender
        if sender is not None and sender.pusher is not None:
            with contextlib.suppress(Exception):
                await sender.pusher.aclose(close_connection_pool=True)
        await loop.run_in_executor(self._executor, self._close)

    # The publishing thread ----------------------------------------------------

    def _connect(self) -> None:
        if self._producer is None:
            self._connection = app.connection_for_write()
            self._connection.ensure_connection(max_retries=1, timeout=2)
            self._producer = app.amqp.Producer(self._connection)
            self._list_sender = None
            if settings.PUBLISH_REDIS_LIST and RedisListSender.applies(self._connection):
                self._list_sender = RedisListSender(app, self._connection, settings.EVENTS_QUEUE, INGEST_TASK_SPEC)

    def _send(self, batch_id: str, message: _Message) -> None:
        started = time.perf_counter()
        try:
            self._connect()
            if self._list_sender is not None:
                self._list_sender.send(batch_id, message.encoded, message.count)
            else:
                app.send_task(
                    INGEST_TASK,
                    kwargs={"batch_id": batch_id, "events": message.events()},
                    task_id=batch_id,
                    queue=settings.EVENTS_QUEUE,
                    producer=self._producer,
                    delivery_mode=2,
                    retry=True,
                    retry_policy=RETRY_POLICY,
                    ignore_result=True,
                    serializer=EVENTS_SERIALIZER,
                    argsrepr="()",
                    kwargsrepr=kwargsrepr(batch_id, message.count),
                )
        except Exception:
            self._close()
            raise
        logger.debug(
            "collector.published",
            extra={
                "batch_id": batch_id,
                "events": message.count,
                "ms": round((time.perf_counter() - started) * 1e3, 2),
            },
        )

    def _close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.release()
        self._connection = None
        self._producer = None
        self._list_sender = None

    async def start(self) -> None:
        """Open the producer connection ahead of the first request (a failure is retried per batch)."""

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
        except Exception:
            logger.warning("collector.broker_unavailable_at_start", exc_info=True)
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close)

    async def stop(self) -> None:
        """Publish what is pending, wait for it, and close the connection."""
        while self._publishing is not None:
            await asyncio.gather(self._publishing, return_exceptions=True)
        await self._drop_connections(asyncio.get_running_loop())


PUBLISHER = Publisher()
