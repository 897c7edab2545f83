"""Group commit: requests arriving within a few milliseconds share one broker message.

``PUBLISHER.submit(events)`` adds a request's events to the open batch and
waits. The batch is published as soon as it holds ``TARGET_EVENTS`` (20)
events, or a linger after its first event arrived if fewer come; while a
publish is in flight the next batch keeps filling and goes out when it
completes (then with all it gathered, at most ``MAX_EVENTS`` (500) a message).
The linger follows the process's arrival rate: the time ``TARGET_EVENTS``
events take to arrive, between ``LINGER`` (5 ms) and ``MAX_LINGER`` (20 ms, at
a few hundred events a second), so a message carries about 20 events at any
rate. A batch that is full does not wait out the linger: under load nothing
waits but for the broker, and a closed loop of clients is not held back by
the timer. A message carries whole requests (a request is never split across
messages). Each message is one Celery task ``analytics.ingest_batch`` (kwargs ``batch_id`` and
``events``, protocol 2, persistent) on ``settings.EVENTS_QUEUE``, sent with
``app.send_task`` so a real Celery worker consumes it. Every waiting request is
released only after the broker confirmed its message: publisher confirms on
RabbitMQ (``confirm_publish``), the returned LPUSH on Redis. On failure each
waiter gets ``PublishError`` (the collector answers 503 with Retry-After), so
no client is told 202 for an event the broker does not hold.

kombu is blocking: its publishes run in one dedicated thread that owns the
process's producer connection, so the event loop never blocks and publishes
never interleave on the connection.

On a Redis broker the message goes onto the queue's list with one LPUSH of the
envelope kombu's Redis transport would write (``RedisListSender``): Celery's
``send_task`` and kombu's ``publish`` around it cost about 1.1 ms of CPU a
message on the slow VM of bench/README, the LPUSH about 0.2 ms. The headers are
Celery's own (made by ``app.amqp.as_task_v2`` once and copied per message), the
body is serialized by kombu's registry and encoded by the channel, so the
worker sees the message ``send_task`` would have sent. The event loop pushes it
with a ``redis.asyncio`` client of the same server and database (no hand-off to
the thread: about 12 µs of CPU an event less); the thread still connects kombu, which
decides whether the push applies. RabbitMQ keeps kombu's publish with publisher
confirms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
from django.conf import settings
from kombu.serialization import dumps as serialize
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from analytics.payloads import EVENTS_SERIALIZER, INGEST_TASK, EnrichedEvent

logger = logging.getLogger(__name__)

# A batch is published as soon as it holds TARGET_EVENTS, else a linger after its
# first event: one message per ~20 events instead of one per request, because a
# message costs the worker more than its events do (bench/README). The linger is
# the time TARGET_EVENTS take to arrive at the rate measured over the last
# RATE_WINDOW, kept between LINGER and MAX_LINGER; MAX_EVENTS caps a message.
LINGER = 0.005
MAX_LINGER = 0.02
TARGET_EVENTS = 20
RATE_WINDOW = 0.25
MAX_EVENTS = 500
# Beyond this many events waiting for the broker, new requests get 503 at once
# instead of queueing without bound in memory.
MAX_BACKLOG = 50_000
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.05, "interval_step": 0.2, "interval_max": 0.5}
# A push the broker does not answer within this many seconds fails (the waiters get 503).
PUSH_TIMEOUT = 5.0


class PublishError(Exception):
    """The broker did not take the batch; nothing of it was acknowledged to a client."""


def _kwargsrepr(batch_id: str, count: int) -> str:
    """The task's kwargs as monitoring shows them: a summary, not every event (Celery would
    otherwise saferepr() them all into the headers, two thirds of a publish's CPU)."""
    return f"{{'batch_id': '{batch_id}', 'events': <{count} events>}}"


class RedisListSender:
    """Pushes ``analytics.ingest_batch`` messages straight onto a Redis broker's queue list.

    Used only where it writes what kombu would: the ``redis`` transport without a
    ``global_keyprefix`` (kombu would prefix the list's name; ``applies()`` tells). The
    message has priority 0, so the list is the queue's own name, and the events queue is
    declared without ``x-expires`` (settings), so kombu would set no expiry on it either.
    """

    def __init__(self, app: Any, connection: Any, queue: str) -> None:
        self.queue = queue
        self.channel = connection.default_channel
        with self.channel.conn_or_acquire() as client:  # one client, not one per message
            self.client = client
        # Celery's protocol-2 headers for this task, made by Celery itself once, with the
        # task's time limits (send_task puts them in when the task is registered in the process).
        from analytics.tasks import ingest_batch as task

        template = app.amqp.as_task_v2(
            "0",
            INGEST_TASK,
            args=(),
            kwargs={},
            argsrepr="()",
            kwargsrepr="",
            ignore_result=True,
            reply_to=app.thread_oid,
            time_limit=task.time_limit,
            soft_time_limit=task.soft_time_limit,
        )
        self.headers: dict[str, Any] = dict(template.headers)
        self.reply_to = template.properties.get("reply_to") or ""
        self.callbacks = template.body[2]
        # The event loop's client of the same server (it connects on its first push), if any.
        self.pusher = self._async_client()

    @staticmethod
    def applies(connection: Any) -> bool:
        options = connection.transport_options or {}
        return getattr(connection.transport, "driver_type", "") == "redis" and not options.get("global_keyprefix")

    def message(self, batch_id: str, events: list[EnrichedEvent]) -> bytes:
        """The envelope kombu's Redis transport writes for this task (anonymous exchange)."""
        content_type, content_encoding, body = serialize(
            ((), {"batch_id": batch_id, "events": events}, self.callbacks), serializer=EVENTS_SERIALIZER
        )
        encoded, body_encoding = self.channel.encode_body(body, self.channel.body_encoding)
        headers = dict(self.headers)
        headers["id"] = headers["root_id"] = batch_id
        headers["kwargsrepr"] = _kwargsrepr(batch_id, len(events))
        envelope = {
            "body": encoded,
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": headers,
            "properties": {
                "correlation_id": batch_id,
                "reply_to": self.reply_to,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": self.queue},
                "priority": 0,
                "body_encoding": body_encoding,
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return orjson.dumps(envelope)

    def send(self, batch_id: str, events: list[EnrichedEvent]) -> None:
        self.client.lpush(self.queue, self.message(batch_id, events))  # answered: Redis holds it

    def _async_client(self) -> aioredis.Redis | None:
        """A redis.asyncio client of kombu's server and database, for pushing from the event loop
        (no thread hand-off per message); None for a TLS broker (kombu's thread sends there)."""
        pool = self.client.connection_pool
        kwargs = pool.connection_kwargs
        options: dict[str, Any] = {
            name: kwargs[name] for name in ("db", "username", "password", "client_name") if kwargs.get(name) is not None
        }
        options |= {"socket_timeout": PUSH_TIMEOUT, "socket_connect_timeout": PUSH_TIMEOUT}
        # One retry on a fresh connection: the server may have closed an idle one.
        options["retry"] = Retry(NoBackoff(), 1)
        if issubclass(pool.connection_class, redis.UnixDomainSocketConnection):
            connection_class: type[AbstractConnection] = aioredis.UnixDomainSocketConnection
            options["path"] = kwargs["path"]
        elif pool.connection_class is redis.Connection:
            connection_class = aioredis.Connection
            options |= {"host": kwargs.get("host", "localhost"), "port": kwargs.get("port", 6379)}
        else:
            return None
        return aioredis.Redis(
            connection_pool=aioredis.ConnectionPool(connection_class=connection_class, max_connections=4, **options)
        )

    async def push(self, batch_id: str, events: list[EnrichedEvent]) -> None:
        assert self.pusher is not None
        await self.pusher.lpush(self.queue, self.message(batch_id, events))  # answered: Redis holds it


class Publisher:
    def __init__(
        self,
        *,
        linger: float = LINGER,
        max_linger: float = MAX_LINGER,
        target_events: int = TARGET_EVENTS,
        max_events: int = MAX_EVENTS,
    ) -> None:
        self.linger = linger
        self.max_linger = max(linger, max_linger)
        self.target_events = target_events
        self.max_events = max_events
        self._rate = 0.0  # events a second arriving at this process (smoothed)
        self._window_start = time.monotonic()
        self._window_events = 0
        self._pending: list[tuple[Sequence[EnrichedEvent], asyncio.Future[None]]] = []
        self._pending_events = 0
        self._inflight_events = 0
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False  # a publish is in flight (one at a time: one connection)
        self._due = False  # the linger ran out while busy
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish")
        self._connection: Any = None
        self._producer: Any = None
        self._list_sender: RedisListSender | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self.messages = 0  # messages confirmed, for tests and logs

    async def submit(self, events: Sequence[EnrichedEvent]) -> None:
        """Wait until ``events`` are confirmed by the broker; raises PublishError otherwise."""
        if not events:
            return
        if self._pending_events + self._inflight_events + len(events) > MAX_BACKLOG:
            raise PublishError("publish backlog full")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((events, future))
        self._pending_events += len(events)
        self._count_arrivals(len(events))
        if self._pending_events >= self.target_events and not self._busy:
            self._flush()
        elif self._timer is None and not self._due:
            self._timer = loop.call_later(self.current_linger(), self._on_timer)
        await future

    def _count_arrivals(self, count: int) -> None:
        self._window_events += count
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed >= RATE_WINDOW:
            self._rate = 0.5 * self._rate + 0.5 * self._window_events / elapsed
            self._window_start = now
            self._window_events = 0

    def current_linger(self) -> float:
        """How long a new batch waits for more events: about ``target_events`` at the current rate."""
        if self._rate <= 0:
            return self.max_linger
        return min(self.max_linger, max(self.linger, self.target_events / self._rate))

    def _on_timer(self) -> None:
        self._timer = None
        if self._busy:
            self._due = True  # published the moment the current publish completes
        else:
            self._flush()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due = False
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        count, self._pending_events = self._pending_events, 0
        self._inflight_events += count
        self._busy = True
        task = asyncio.get_running_loop().create_task(self._publish(pending, count))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _publish(self, pending: list[tuple[Sequence[EnrichedEvent], asyncio.Future[None]]], count: int) -> None:
        # Whole requests go into one message each: a request is never split
        # across messages, so it is either fully confirmed or fully refused.
        messages: list[tuple[list[EnrichedEvent], list[asyncio.Future[None]]]] = []
        for events, future in pending:
            if not messages or (messages[-1][0] and len(messages[-1][0]) + len(events) > self.max_events):
                messages.append(([], []))
            messages[-1][0].extend(events)
            messages[-1][1].append(future)
        loop = asyncio.get_running_loop()
        try:
            for events, futures in messages:
                batch_id = uuid.uuid4().hex
                try:
                    await self._deliver(loop, batch_id, events)
                except Exception as exc:  # noqa: BLE001 - every failure becomes a 503 for its waiters
                    logger.warning(
                        "collector.publish_failed",
                        extra={"batch_id": batch_id, "events": len(events), "error": repr(exc)},
                    )
                    for future in futures:
                        if not future.done():
                            future.set_exception(PublishError(repr(exc)))
                    continue
                self.messages += 1
                for future in futures:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._inflight_events -= count
            self._busy = False
            if self._pending and (self._due or self._pending_events >= self.target_events):
                self._flush()

    async def _deliver(self, loop: asyncio.AbstractEventLoop, batch_id: str, events: list[EnrichedEvent]) -> None:
        """One message to the broker: pushed from the event loop onto a Redis broker's list,
        else published by the publishing thread."""
        if self._producer is None:
            await loop.run_in_executor(self._executor, self._connect)
        sender = self._list_sender
        if sender is None or sender.pusher is None:
            await loop.run_in_executor(self._executor, self._send, batch_id, events)
            return
        try:
            await sender.push(batch_id, events)
        except Exception:
            await self._drop_connections(loop)
            raise
        logger.debug("collector.published", extra={"batch_id": batch_id, "events": len(events)})

    async def _drop_connections(self, loop: asyncio.AbstractEventLoop) -> None:
        """Forget both connections; the next message connects again (and looks at the broker anew)."""
        sender = self._list_sender
        if sender is not None and sender.pusher is not None:
            with contextlib.suppress(Exception):
                await sender.pusher.aclose(close_connection_pool=True)
        await loop.run_in_executor(self._executor, self._close)

    # The publishing thread ----------------------------------------------------

    def _connect(self) -> None:
        from spinnakr.celery import app

        if self._producer is None:
            self._connection = app.connection_for_write()
            self._connection.ensure_connection(max_retries=1, timeout=2)
            self._producer = app.amqp.Producer(self._connection)
            self._list_sender = None
            if settings.PUBLISH_REDIS_LIST and RedisListSender.applies(self._connection):
                self._list_sender = RedisListSender(app, self._connection, settings.EVENTS_QUEUE)

    def _send(self, batch_id: str, events: list[EnrichedEvent]) -> None:
        from spinnakr.celery import app

        started = time.perf_counter()
        try:
            self._connect()
            if self._list_sender is not None:
                self._list_sender.send(batch_id, events)
            else:
                app.send_task(
                    INGEST_TASK,
                    kwargs={"batch_id": batch_id, "events": events},
                    task_id=batch_id,
                    queue=settings.EVENTS_QUEUE,
                    producer=self._producer,
                    delivery_mode=2,
                    retry=True,
                    retry_policy=RETRY_POLICY,
                    ignore_result=True,
                    serializer=EVENTS_SERIALIZER,
                    argsrepr="()",
                    kwargsrepr=_kwargsrepr(batch_id, len(events)),
                )
        except Exception:
            self._close()
            raise
        logger.debug(
            "collector.published",
            extra={"batch_id": batch_id, "events": len(events), "ms": round((time.perf_counter() - started) * 1e3, 2)},
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
        self._flush()
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await self._drop_connections(asyncio.get_running_loop())


PUBLISHER = Publisher()
