"""kombu's Redis transport with owner leases: a lost worker's messages come back in seconds.

kombu emulates acknowledgements on Redis: a delivered message waits in the hash ``unacked``
(with the time it was taken in the sorted set ``unacked_index``) until it is acknowledged, and
any consumer puts back those taken longer than the visibility timeout ago. That timeout must
exceed the longest task (an hour here), so a worker lost to SIGKILL, the OOM killer or a dead host
left its messages out of the queue for an hour. RabbitMQ hands them back as soon as the
connection drops.

Here every consuming process holds a lease: the key ``unacked_lease.<owner>``, set to expire
``BROKER_LEASE_SECONDS`` after its last renewal and renewed by a thread of the process three
times within that time. Every message the process takes is entered in the hash
``unacked_owner`` (delivery tag → owner) in the same transaction as kombu's own bookkeeping, and
leaves it with them. kombu's periodic restore (``restore_visible``, every
``unacked_restore_interval`` seconds in every worker) also puts back, at once, each message whose
owner's lease has expired. A process that lives on keeps its lease, so its messages stay where
they are however long its tasks run; a process that dies has its messages back in the queue
within ``BROKER_LEASE_SECONDS`` plus one restore interval; one that exits cleanly gives its lease
up. Messages without an owner (taken by a worker that ran without this transport) still come
back after the visibility timeout.

A lease can expire under a live process only if it cannot reach the broker for
``BROKER_LEASE_SECONDS``; its messages then run twice, which ingestion's batch markers make
harmless.

A broker outage must not strand what a live process holds either: an acknowledgement or a
hand-back that fails for want of the broker (kombu's own, or the bulk take's in
analytics/tasks.py) is left to the lease's thread, which retries it every second until the broker
answers. A hand-back is retried as a release: the message's owner entry is changed to an owner
that holds no lease, so the next sweep of any consumer puts it back. And a channel whose
connection Celery dropped after losing the broker keeps the address it had (kombu rebuilt its
pool from the dropped connection, and the worker died of ``'NoneType' object has no attribute
'hostname'`` while restoring that channel's messages).

The transport is registered under kombu's ``redis`` and ``rediss`` names (which
``redis+socket://`` addresses use too) when ``spinnakr.celery`` is imported, so
``CELERY_BROKER_URL`` stays a plain Redis address. kombu's ``global_keyprefix`` option is not
supported (Spinnakr does not set it).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any, Literal

import redis
from django.conf import settings
from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps

logger = logging.getLogger(__name__)

OWNER_KEY = "unacked_owner"
LEASE_PREFIX = "unacked_lease."

# The tags of messages whose owner's lease is gone. Reads keys it is not given (the leases),
# which a single Redis server allows; kombu's Redis transport does not run on Redis Cluster.
_ORPHANS_SCRIPT = """
-- KEYS[1] the owner hash   ARGV[1] the lease keys' prefix
local entries = redis.call('HGETALL', KEYS[1])
local alive = {}
local orphans = {}
for i = 1, #entries, 2 do
  local owner = entries[i + 1]
  if alive[owner] == nil then
    alive[owner] = redis.call('EXISTS', ARGV[1] .. owner) == 1
  end
  if not alive[owner] then orphans[#orphans + 1] = entries[i] end
end
return orphans
"""

# Hands messages back through the sweep: each tag still held by ARGV[1] gets an owner that
# holds no lease (ARGV[2]), so the next restore_orphans of any consumer puts it back.
_RELEASE_SCRIPT = """
-- KEYS[1] the owner hash   ARGV[1] this owner   ARGV[2] the leaseless owner   ARGV[3..] tags
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then redis.call('HSET', KEYS[1], ARGV[i], ARGV[2]) end
end
return 0
"""

# A message taken off its queue whose bookkeeping may not have been written (the broker went
# away between kombu's pop and the bookkeeping, or took the bookkeeping and lost the answer):
# kombu's unacknowledged entry is written if missing, and the message given to an owner that
# holds no lease, so the next sweep puts it back like any other.
_RESTORE_SCRIPT = """
-- KEYS[1] kombu's unacked hash   KEYS[2] its index   KEYS[3] the owner hash
-- ARGV[1] the tag   ARGV[2] the leaseless owner   ARGV[3] kombu's unacked entry   ARGV[4] now
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 0
"""

# The messages a bulk take (spinnakr.queue.take) took, recorded by its script for a while: a
# take whose answer was lost with the connection hands them back once the broker answers.
TAKE_RECORD_PREFIX = "unacked_take."
_RECOVER_SCRIPT = """
-- KEYS[1] the owner hash   KEYS[2] the take's record   ARGV[1] this owner   ARGV[2] the leaseless owner
local raw = redis.call('GET', KEYS[2])
if not raw then return 0 end
for _, tag in ipairs(cjson.decode(raw)) do
  if redis.call('HGET', KEYS[1], tag) == ARGV[1] then redis.call('HSET', KEYS[1], tag, ARGV[2]) end
end
redis.call('DEL', KEYS[2])
return 0
"""

Settlement = Literal["ack", "release", "restore", "recover"]
# How often the lease's thread retries what it was left to settle.
SETTLE_RETRY_SECONDS = 1.0


class Lease:
    """This process's lease on the broker, renewed by a daemon thread while the process lives."""

    def __init__(self, channel: Any) -> None:
        self.pid = os.getpid()
        self.owner = f"{socket.gethostname()}:{self.pid}:{secrets.token_hex(4)}"
        self.key = LEASE_PREFIX + self.owner
        self.seconds: int = settings.BROKER_LEASE_SECONDS
        # A client of its own: the channel's may be closed and replaced on a reconnect, and
        # a renewal must not hang on a broker that does not answer.
        params = channel._connparams() | {"socket_timeout": 5}
        self.client = redis.Redis(connection_pool=redis.ConnectionPool(**params))
        self.unacked_key: str = channel.unacked_key
        self.unacked_index_key: str = channel.unacked_index_key
        self._release = self.client.register_script(_RELEASE_SCRIPT)
        self._restore = self.client.register_script(_RESTORE_SCRIPT)
        self._recover = self.client.register_script(_RECOVER_SCRIPT)
        self._pending: dict[str, Settlement] = {}  # delivery tag -> what is still to be done
        self._entries: dict[str, str] = {}  # delivery tag -> kombu's unacked entry, to restore
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="broker-lease", daemon=True)
        self._thread.start()
        atexit.register(self.stop)

    def _renew(self) -> None:
        failures = 0
        attempted = time.monotonic()
        while not self._stop.wait(SETTLE_RETRY_SECONDS if self._pending else self.seconds / 3):
            if self._pending:
                self._settle_pending()
            if time.monotonic() - attempted < self.seconds / 3:
                continue
            attempted = time.monotonic()
            try:
                self.client.set(self.key, self.owner, ex=self.seconds)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the broker is away: try again at the next tick
                failures += 1
                # One miss leaves two thirds of the lease; the second puts its messages at risk.
                level = logging.WARNING if failures > 1 else logging.INFO
                logger.log(level, "broker.lease_renew_failed", extra={"owner": self.owner, "error": repr(exc)})

    def settle_later(self, tags: Iterable[str], settlement: Settlement, error: BaseException, entry: str = "") -> None:
        """Leave the acknowledgement (``ack``) or hand-back (``release``) of messages this process
        holds to the lease's thread, which retries it until the broker answers; ``restore`` hands
        back one message whose bookkeeping may be missing (``entry``: kombu's unacked entry),
        ``recover`` the messages of a take whose answer was lost (its record's key for a tag)."""
        tags = list(tags)
        if not tags:
            return
        with self._pending_lock:
            if settlement == "restore":
                self._entries.update(dict.fromkeys(tags, entry))
            for tag in tags:
                # An acknowledgement wins: the message was applied.
                if self._pending.get(tag) != "ack":
                    self._pending[tag] = settlement
        logger.warning(
            "broker.settle_deferred", extra={"messages": len(tags), "settlement": settlement, "error": repr(error)}
        )

    def pending(self) -> dict[str, Settlement]:
        with self._pending_lock:
            return dict(self._pending)

    def _settle_pending(self) -> None:
        pending = self.pending()
        acks = [tag for tag, settlement in pending.items() if settlement == "ack"]
        releases = [tag for tag, settlement in pending.items() if settlement == "release"]
        restores = {tag: self._entries[tag] for tag, settlement in pending.items() if settlement == "restore"}
        records = [tag for tag, settlement in pending.items() if settlement == "recover"]
        leaseless = f"{self.owner}:released"
        try:
            pipe = self.client.pipeline()
            for tag, entry in restores.items():
                keys = [self.unacked_key, self.unacked_index_key, OWNER_KEY]
                self._restore(keys=keys, args=[tag, leaseless, entry, time.time()], client=pipe)
            for record in records:
                self._recover(keys=[OWNER_KEY, record], args=[self.owner, leaseless], client=pipe)
            if acks:
                pipe.zrem(self.unacked_index_key, *acks)
                pipe.hdel(self.unacked_key, *acks)
                pipe.hdel(OWNER_KEY, *acks)
            if releases:
                self._release(keys=[OWNER_KEY], args=[self.owner, leaseless, *releases], client=pipe)
            pipe.execute()
        except Exception:  # noqa: BLE001 - still away: the next tick tries again
            return
        with self._pending_lock:
            for tag, settlement in pending.items():
                if self._pending.get(tag) == settlement:
                    del self._pending[tag]
                    self._entries.pop(tag, None)
        logger.info(
            "broker.settled",
            extra={
                "acknowledged": len(acks),
                "released": len(releases),
                "restored": len(restores),
                "takes_recovered": len(records),
            },
        )

    def stop(self) -> None:
        """Stop renewing and give the lease up: what the process still holds goes back at once."""
        self._stop.set()
        if os.getpid() == self.pid:  # not a forked child's copy
            with contextlib.suppress(Exception):
                self.client.delete(self.key)


_leases: dict[tuple[object, ...], Lease] = {}
_lease_lock = threading.Lock()


def lease(channel: Any) -> Lease:
    """This process's lease on ``channel``'s broker (a forked child gets a lease of its own)."""
    held: Lease | None = channel.__dict__.get("_lease")
    if held is not None and held.pid == os.getpid():
        return held
    params = channel._connparams()
    # The server, not the client: a process holds one lease on each broker it consumes from.
    key = (params.get("path"), params.get("host"), params.get("port"), params.get("db"))
    with _lease_lock:
        held = _leases.get(key)
        if held is None or held.pid != os.getpid():
            held = _leases[key] = Lease(channel)
    channel.__dict__["_lease"] = held
    return held


class QoS(kombu_redis.QoS):
    """kombu's acknowledgement emulation, with each taken message's owner recorded."""

    def append(self, message: Any, delivery_tag: str) -> None:
        # kombu's append with the owner entered in the same transaction.
        delivery = message.delivery_info
        entry = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        channel: Any = self.channel
        held = lease(channel)
        try:
            with self.pipe_or_acquire() as pipe:
                pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()})
                pipe.hset(self.unacked_key, delivery_tag, entry)
                pipe.set(held.key, held.owner, ex=held.seconds)  # it exists before a message names it
                pipe.hset(OWNER_KEY, delivery_tag, held.owner)
                pipe.execute()
        except channel.connection_errors as exc:
            # The message is off its queue and will never reach a task; its bookkeeping may be
            # written (an answer lost) or not. Either way it would be lost, or held for the
            # visibility timeout by this live owner: the fault suite's broker outage lost
            # accepted events so. The lease's thread hands it back once the broker answers.
            held.settle_later([delivery_tag], "restore", exc, entry)
            raise
        virtual.QoS.append(self, message, delivery_tag)

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        pipe = super()._remove_from_indices(delivery_tag, pipe)  # type: ignore[misc]  # not in kombu's stubs
        return pipe.hdel(OWNER_KEY, delivery_tag)

    # kombu's acknowledgement, rejection and restore at close, with a failure for want of the
    # broker left to the lease's thread: kombu gives up on them, and the messages stayed in the
    # unacknowledged hash, owned by a live process, until the visibility timeout.

    def ack(self, delivery_tag: str) -> None:
        channel: Any = self.channel
        try:
            self._remove_from_indices(delivery_tag).execute()
        except channel.connection_errors as exc:
            lease(channel).settle_later([delivery_tag], "ack", exc)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        channel: Any = self.channel
        try:
            super().reject(delivery_tag, requeue)
        except channel.connection_errors as exc:
            lease(channel).settle_later([delivery_tag], "release" if requeue else "ack", exc)
            virtual.QoS.ack(self, delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        channel: Any = self.channel
        try:
            super().restore_unacked(client)
        except channel.connection_errors as exc:
            delivered: Any = self._delivered
            lease(channel).settle_later(list(delivered), "release", exc)
            delivered.clear()

    _orphans_swept = 0.0

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        # Orphans first, at most once a second (the event loop calls this every
        # unacked_restore_interval, a blocking consumer after every empty poll); then kombu's
        # throttled restore of messages past the visibility timeout.
        if time.monotonic() - self._orphans_swept >= 1:
            self._orphans_swept = time.monotonic()
            channel: Any = self.channel
            with contextlib.suppress(*channel.connection_errors):
                self.restore_orphans()
        super().restore_visible(start, num, interval)

    def restore_orphans(self) -> list[str]:
        """Put back every message whose owner's lease has expired; their tags."""
        channel: Any = self.channel
        with channel.conn_or_acquire() as client:
            tags = [bytes_to_str(tag) for tag in client.eval(_ORPHANS_SCRIPT, 1, OWNER_KEY, LEASE_PREFIX)]
            for tag in tags:
                # A WATCH transaction: a message acknowledged meanwhile is only forgotten, and
                # two workers restoring the same message put it back once.
                self.restore_by_tag(tag, client)
        if tags:
            logger.warning("broker.orphans_restored", extra={"messages": len(tags)})
        return tags


class Channel(kombu_redis.Channel):
    QoS = QoS

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        # Celery drops the transport's client (kombu.Connection) when it closes a connection
        # it lost, yet a channel of it still acknowledges and restores messages afterwards and
        # rebuilds its dropped pool from here: the parameters it had serve again.
        saved: dict[bool, dict[str, Any]] = self.__dict__.setdefault("_saved_connparams", {})
        transport = self.connection
        if transport is not None and transport.client is not None:
            saved[asynchronous] = super()._connparams(asynchronous)  # type: ignore[misc]  # not in kombu's stubs
        if asynchronous not in saved:
            raise redis.ConnectionError("the channel's connection is closed")
        return dict(saved[asynchronous])


class Transport(kombu_redis.Transport):
    Channel = Channel


def register() -> None:
    """Make kombu's Redis names load this transport."""
    for name in ("redis", "rediss"):
        TRANSPORT_ALIASES[name] = f"{__name__}:Transport"
