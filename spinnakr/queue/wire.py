"""The events queue's message, as kombu's Redis transport writes it, and its sender.

On a Redis broker a batch goes onto the queue's list with one LPUSH of the envelope kombu's
Redis transport would write (``RedisListSender``): Celery's ``send_task`` and kombu's
``publish`` around it cost about five times the CPU of the LPUSH (bench/HISTORY.md). The
headers are Celery's own (made by ``app.amqp.as_task_v2`` once and
copied per message), the body joins the requests' events as the publisher encoded them (orjson,
the events' serializer in kombu's registry) and is encoded by the channel, so the worker sees
the message ``send_task`` would have sent. The task's name, serializer and time limits come as
a ``TaskSpec``: this module does not import the tasks.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
from kombu.serialization import dumps as serialize
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

# A push the broker does not answer within this many seconds fails (the waiters get 503).
PUSH_TIMEOUT = 5.0


@dataclass(frozen=True)
class TaskSpec:
    """What a message's headers say of its task."""

    name: str
    serializer: str
    time_limit: int | None = None
    soft_time_limit: int | None = None


def join_events(encoded: Sequence[bytes]) -> bytes:
    """One JSON array of the events of several JSON arrays (none of them empty)."""
    return b"[" + b",".join(array[1:-1] for array in encoded) + b"]"


def kwargsrepr(batch_id: str, count: int) -> str:
    """The task's kwargs as monitoring shows them: a summary, not every event (Celery would
    otherwise saferepr() them all into the headers, two thirds of a publish's CPU)."""
    return f"{{'batch_id': '{batch_id}', 'events': <{count} events>}}"


class RedisListSender:
    """Pushes one task's messages (kwargs ``batch_id`` and ``events``) straight onto a Redis
    broker's queue list.

    Used only where it writes what kombu would: the ``redis`` transport without a
    ``global_keyprefix`` (kombu would prefix the list's name; ``applies()`` tells). The
    message has priority 0, so the list is the queue's own name, and the events queue is
    declared without ``x-expires`` (settings), so kombu would set no expiry on it either.
    """

    def __init__(self, app: Any, connection: Any, queue: str, task: TaskSpec) -> None:
        self.queue = queue
        self.channel = connection.default_channel
        with self.channel.conn_or_acquire() as client:  # one client, not one per message
            self.client = client
        # Celery's protocol-2 headers for this task, made by Celery itself once, with the
        # task's time limits (send_task puts them in when the task is registered in the process).
        template = app.amqp.as_task_v2(
            "0",
            task.name,
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
        self.embed = orjson.dumps(template.body[2])  # the callbacks part of the body
        # The content type and encoding kombu's registry gives the events' serializer.
        self.content_type, self.content_encoding, _ = serialize([], serializer=task.serializer)
        # The event loop's client of the same server (it connects on its first push), if any.
        self.pusher = self._async_client()

    @staticmethod
    def applies(connection: Any) -> bool:
        options = connection.transport_options or {}
        return getattr(connection.transport, "driver_type", "") == "redis" and not options.get("global_keyprefix")

    def message(self, batch_id: str, encoded: Sequence[bytes], count: int) -> bytes:
        """The envelope kombu's Redis transport writes for this task (anonymous exchange), for
        ``count`` events encoded by ``encode_events`` in one or more arrays."""
        # The body orjson would write for ((), {"batch_id": ..., "events": [...]}, callbacks),
        # put together from the arrays so that no event is encoded twice.
        body = b'[[],{"batch_id":%b,"events":%b},%b]' % (orjson.dumps(batch_id), join_events(encoded), self.embed)
        encoded_body, body_encoding = self.channel.encode_body(body, self.channel.body_encoding)
        headers = dict(self.headers)
        headers["id"] = headers["root_id"] = batch_id
        headers["kwargsrepr"] = kwargsrepr(batch_id, count)
        envelope = {
            "body": encoded_body,
            "content-encoding": self.content_encoding,
            "content-type": self.content_type,
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

    def send(self, batch_id: str, encoded: Sequence[bytes], count: int) -> None:
        self.client.lpush(self.queue, self.message(batch_id, encoded, count))  # answered: Redis holds it

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

    async def push(self, batch_id: str, encoded: Sequence[bytes], count: int) -> None:
        assert self.pusher is not None
        await self.pusher.lpush(self.queue, self.message(batch_id, encoded, count))  # answered: Redis holds it
