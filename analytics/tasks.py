"""Celery tasks of the analytics app: ingestion and its periodic housekeeping.

``analytics.ingest_batch`` applies one broker message (a batch of enriched events, possibly of
several sites) in this order, each step idempotent so a redelivery after a crash anywhere
changes nothing that was done:

1. Redis rollups, one atomic script per site guarded by the batch marker; the script
   sessionises the events and stores its answer (each event's visit start) at the marker, so a
   redelivered batch gets the same visits without counting again.
2. PostgreSQL: the raw events with their visit ids (COPY into staging, ``INSERT … ON CONFLICT
   DO NOTHING``) and the renames of visits that late events merged or moved, in one transaction.
3. The account's monthly quota counter (its own per-batch marker).
4. One live delta per site to the channel group ``site.<id>``, after the commit.
5. Acknowledgement (``acks_late``): a worker lost before it redelivers the message.

Before step 1, ``analytics.screen`` sets aside the events the store could not take (a wrong
shape, a NUL), counted per site and reason, so one bad event costs no other.

A pool process applies the waiting messages of the events queue together with the one it was
given (see "Coalescing" below): ``ingest_many`` does the steps above once for the group, each
batch keeping its own markers.

Redis comes before PostgreSQL (ARCHITECTURE.md orders them the other way) because the visit id
each raw row keeps is the sessionisation's answer, and only the script can give it atomically
with the counters; see docs/ingestion.md, "Ingestion pipeline".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis
from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from kombu.serialization import prepare_accept_content

from analytics import livepush, quota, rollups, screen, store
from analytics.payloads import EVENTS_SERIALIZER, INGEST_TASK, EnrichedEvent
from analytics.publish import RedisListSender
from analytics.sessions import visit_id
from analytics.siteinfo import SiteInfo, load_sites
from spinnakr import broker

logger = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
PAUSE_ENV = "SPINNAKR_TEST_INGEST_PAUSE"
COALESCE_MAX_MESSAGES = 200


def _test_pause(stage: str) -> None:
    """Tests only: sleep at a named stage so a test can kill the worker there."""
    if not settings.TESTING:
        return
    wanted = os.environ.get(PAUSE_ENV, "")
    name, _, seconds = wanted.partition(":")
    if name == stage:
        logger.info("ingest.test_pause", extra={"stage": stage, "seconds": seconds})
        time.sleep(float(seconds or "1"))


def _dedupe(events: list[EnrichedEvent]) -> list[EnrichedEvent]:
    seen: set[tuple[int, int, str]] = set()
    unique = []
    for event in events:
        key = (event["site_id"], event["ts"], event["event_id"])
        if key not in seen:
            seen.add(key)
            unique.append(event)
    return unique


def ingest(batch_id: str, events: list[EnrichedEvent]) -> dict[int, rollups.BatchResult]:
    """Apply one batch (see the module docstring); answers each site's rollup result."""
    return ingest_many([(batch_id, events)]).get(batch_id, {})


def ingest_many(batches: Sequence[tuple[str, list[EnrichedEvent]]]) -> dict[str, dict[int, rollups.BatchResult]]:
    """Apply several batches together: one round trip per store instead of one per batch.

    Every batch keeps its own markers (rollups, quota), so the result is the same as applying
    them one by one in this order, and a batch delivered again alone or in another group
    changes nothing. An event the store could not take (``analytics.screen``) is set aside and
    counted before anything is applied, so it costs no other event. Answers each batch's rollup
    result per site.
    """
    parts: list[tuple[str, int, list[EnrichedEvent]]] = []  # (batch, site, events), in order
    seen: set[str] = set()
    rejected: list[screen.Rejected] = []
    for batch_id, events in batches:
        if batch_id in seen:  # a copy of a message the group holds already (a redelivery)
            continue
        seen.add(batch_id)
        kept, set_aside = screen.screen(batch_id, events)
        rejected.extend(set_aside)
        by_site: dict[int, list[EnrichedEvent]] = defaultdict(list)
        for event in _dedupe(kept):
            by_site[event["site_id"]].append(event)
        parts.extend((batch_id, site_id, site_events) for site_id, site_events in by_site.items())
    screen.record(rejected)
    sites = load_sites({site_id for _, site_id, _ in parts})
    for site_id in {site_id for _, site_id, _ in parts} - set(sites):
        dropped = sum(len(evs) for _, s, evs in parts if s == site_id)
        logger.warning("ingest.unknown_site", extra={"site_id": site_id, "events": dropped})
    parts = [part for part in parts if part[1] in sites]

    for _, _, site_events in parts:
        site_events.sort(key=rollups.event_order)
    results = rollups.apply_batches(
        [(sites[site_id], batch_id, rollups.prepare(sites[site_id], evs)) for batch_id, site_id, evs in parts]
    )
    _test_pause("after_rollups")

    store.ensure_partitions({store.month_of(e["ts"]) for _, _, evs in parts for e in evs})
    inserted = 0
    with transaction.atomic():
        # Rows go in with one COPY; a part that renames visits (late events merged or moved
        # them) is applied in order: the rows before it first, then its renames.
        rows: list[tuple[EnrichedEvent, int]] = []
        for (_, site_id, site_events), result in zip(parts, results, strict=True):
            rows.extend(
                (event, visit_id(event["visitor_id"], start))
                for event, start in zip(site_events, result.starts, strict=True)
            )
            if result.renames:
                inserted += store.insert_events(rows)
                rows = []
                store.rename_visits(
                    site_id, [(v, visit_id(v, old), visit_id(v, new)) for v, old, new in result.renames]
                )
        inserted += store.insert_events(rows)
    _test_pause("after_store")

    _count_quota(parts, sites)
    _push_live(parts, results)
    answer: dict[str, dict[int, rollups.BatchResult]] = defaultdict(dict)
    for (batch_id, site_id, _), result in zip(parts, results, strict=True):
        answer[batch_id][site_id] = result
    logger.info(
        "ingest.batch_done",
        extra={
            "batch_id": batches[0][0] if batches else "",
            "messages": len(batches),
            "events": sum(len(events) for _, events in batches),
            "inserted": inserted,
            "rejected": len(rejected),
            "sites": len({site_id for _, site_id, _ in parts}),
            "duplicate": any(r.duplicate for r in results),
        },
    )
    return dict(answer)


def _count_quota(parts: Sequence[tuple[str, int, list[EnrichedEvent]]], sites: dict[int, SiteInfo]) -> None:
    per_batch: dict[tuple[str, int], dict[date, int]] = defaultdict(lambda: defaultdict(int))
    quotas: dict[int, int] = {}
    for batch_id, site_id, site_events in parts:
        info = sites[site_id]
        quotas[info.account_id] = info.monthly_event_quota
        counts = per_batch[(batch_id, info.account_id)]
        for event in site_events:
            if event["name"] != "engagement":
                counts[store.month_of(event["ts"])] += 1
    quota.record_batches(
        [
            (account_id, quotas[account_id], batch_id, {month.strftime("%Y%m"): n for month, n in counts.items()})
            for (batch_id, account_id), counts in per_batch.items()
        ]
    )


def _push_live(parts: Sequence[tuple[str, int, list[EnrichedEvent]]], results: Sequence[rollups.BatchResult]) -> None:
    """One delta per site for the group's new batches, and one of its own for each batch applied
    before (a redelivery).

    A delta names every batch it covers (``batch_ids``), and a consumer drops a delta naming a
    batch it has seen. A batch the rollups take for the first time was never pushed, so the
    group's delta overlaps no earlier one; a batch applied before may have been pushed, alone or
    in another group, so it goes alone: dropped where it was seen, applied where its first
    delivery died between the rollups and the push.
    """
    fresh: dict[int, tuple[list[str], list[EnrichedEvent], list[rollups.BatchResult]]] = {}
    applied_before: list[tuple[int, tuple[list[str], list[EnrichedEvent], list[rollups.BatchResult]]]] = []
    for (batch_id, site_id, site_events), result in zip(parts, results, strict=True):
        if result.duplicate:
            applied_before.append((site_id, ([batch_id], site_events, [result])))
            continue
        ids, events, site_results = fresh.setdefault(site_id, ([], [], []))
        ids.append(batch_id)
        events.extend(site_events)
        site_results.append(result)
    for site_id, (ids, events, site_results) in [*fresh.items(), *applied_before]:
        group_id = ids[0] if len(ids) == 1 else "g" + hashlib.sha1("".join(sorted(ids)).encode()).hexdigest()[:31]  # noqa: S324 - an id, not a secret
        livepush.send(
            site_id,
            livepush.build_delta(
                site_id,
                group_id,
                events,
                sum(r.new_visits for r in site_results),
                site_results[-1].visitors_now,
                ids,
            ),
        )


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
# spinnakr/broker.py), and the batch markers make that harmless.
#
# On a Redis broker kombu's basic_get costs three round trips a message (RPOP, then the
# unacknowledged hash and index, then their removal on ack) and is not atomic (a process lost
# between the RPOP and the bookkeeping loses the message). ``_RedisTake`` takes up to
# TAKE_CHUNK messages per call of one script that pops them and enters them in kombu's
# unacknowledged hash and index at once, in the format kombu's own restore reads, with this
# process as their owner (spinnakr.broker), and acknowledges a group with one pipeline.
#
# A message that carries an ETA (a batch deferred or retried with a countdown) is left to
# Celery's own consumer, which holds it until it is due: taken here it was applied at once, and
# a batch deferred for PostgreSQL's outage came back five times in under two seconds.
# An acknowledgement or a hand-back that fails for want of the broker is left to this process's
# lease (spinnakr.broker), which retries it until the broker answers.

TAKE_CHUNK = 25
_TAKE_SCRIPT = """
-- KEYS[1] the queue's list   KEYS[2] kombu's unacked hash   KEYS[3] kombu's unacked index
-- KEYS[4] the owner hash   KEYS[5] this process's lease (spinnakr.broker)
-- ARGV[1] most messages   ARGV[2] now (epoch seconds)   ARGV[3] the ingest task's name
-- ARGV[4] this process's owner name   ARGV[5] the lease's seconds
redis.call('SET', KEYS[5], ARGV[4], 'EX', ARGV[5])
local taken = {}
for n = 1, tonumber(ARGV[1]) do
  local raw = redis.call('RPOP', KEYS[1])
  if not raw then break end
  local ok, message = pcall(cjson.decode, raw)
  local headers = ok and type(message) == 'table' and message.headers
  local props = ok and type(message) == 'table' and message.properties
  if type(headers) ~= 'table' or headers.task ~= ARGV[3] or type(headers.eta) == 'string'
      or type(props) ~= 'table' or type(props.delivery_tag) ~= 'string' or type(props.delivery_info) ~= 'table' then
    -- Not an ingest batch, or one with an ETA: back where it was, next in line for Celery's own
    -- consumer (which holds a message until its ETA).
    redis.call('RPUSH', KEYS[1], raw)
    break
  end
  local info = props.delivery_info
  redis.call('ZADD', KEYS[3], ARGV[2], props.delivery_tag)
  redis.call('HSET', KEYS[2], props.delivery_tag,
    '[' .. raw .. ',' .. cjson.encode(info.exchange or '') .. ',' .. cjson.encode(info.routing_key or '') .. ']')
  redis.call('HSET', KEYS[4], props.delivery_tag, ARGV[4])
  taken[#taken + 1] = raw
end
return taken
"""


class _RedisTake:
    """Bulk take and acknowledgement on a Redis broker, keeping kombu's bookkeeping."""

    def __init__(self, channel: Any, queue: str) -> None:
        self.channel = channel
        self.queue = queue
        with channel.conn_or_acquire() as client:
            self.client = client
        self.script = self.client.register_script(_TAKE_SCRIPT)
        self.lease = broker.lease(channel)  # a _RedisTake lives in one process (see _Drainer)

    def take(self, count: int) -> list[Any]:
        """Up to ``count`` waiting ingest messages as kombu messages, each unacknowledged."""
        raws = self.script(
            keys=[
                self.queue,
                self.channel.unacked_key,
                self.channel.unacked_index_key,
                broker.OWNER_KEY,
                self.lease.key,
            ],
            args=[count, time.time(), INGEST_TASK, self.lease.owner, self.lease.seconds],
        )
        accept = prepare_accept_content(settings.CELERY_ACCEPT_CONTENT)
        messages = []
        for raw in raws:
            message = self.channel.message_to_python(json.loads(raw))
            message.accept = accept
            messages.append(message)
        return messages

    def ack(self, tags: Sequence[str]) -> None:
        if not tags:
            return
        pipe = self.client.pipeline()
        pipe.zrem(self.channel.unacked_index_key, *tags)
        pipe.hdel(self.channel.unacked_key, *tags)
        pipe.hdel(broker.OWNER_KEY, *tags)
        try:
            pipe.execute()
        except self.channel.connection_errors as exc:
            self.lease.settle_later(tags, "ack", exc)

    def requeue(self, tag: str) -> None:
        try:
            self.channel.qos.restore_by_tag(tag, leftmost=True)
        except self.channel.connection_errors as exc:
            self.lease.settle_later([tag], "release", exc)


@dataclass
class _Taken:
    message: Any
    batch_id: str
    events: list[EnrichedEvent]
    retries: int
    bulk: _RedisTake | None = None  # taken by the bulk path: settled through it


class _Drainer:
    """A pool process's own consumer of the events queue (one connection per process)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.connection: Any = None
        self.queue: Any = None
        self.bulk: _RedisTake | None = None

    def take(self, max_events: int, max_messages: int) -> list[_Taken]:
        from spinnakr.celery import app

        taken: list[_Taken] = []
        events = 0
        try:
            if self.queue is None:
                self.connection = app.connection_for_read()
                self.queue = app.amqp.queues[settings.EVENTS_QUEUE].bind(self.connection.default_channel)
                if RedisListSender.applies(self.connection):
                    self.bulk = _RedisTake(self.connection.default_channel, settings.EVENTS_QUEUE)
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
    by_take: dict[_RedisTake, list[_Taken]] = defaultdict(list)
    for item in taken:
        if item.bulk is None:
            _settle(item, "ack")
        else:
            by_take[item.bulk].append(item)
    for take, items in by_take.items():
        try:
            take.ack([item.message.delivery_tag for item in items])
        except Exception as exc:  # noqa: BLE001 - redelivered (spinnakr.broker): harmless
            logger.warning("ingest.settle_failed", extra={"batch_id": items[0].batch_id, "error": repr(exc)})


# The longest wait before a batch that failed for a transient cause (PostgreSQL or Redis away)
# is tried again. The batch waits in the queue, durable, so a short wait costs a few failed
# attempts during an outage and buys a catch-up within seconds of the server's return; at five
# minutes, the last batch was stored minutes after PostgreSQL came back.
RETRY_BACKOFF_MAX = 5
# After a transient failure a pool process waits this long before its task goes back for a
# retry: every batch fails the same way meanwhile, and without the pause the worker cycled
# through the queue, turning batch after batch into a retry of its own.
TRANSIENT_PAUSE_SECONDS = 1.0


def _defer(item: _Taken, exc: BaseException) -> None:
    """A transient failure: publish the batch again later, as Celery's autoretry does."""
    countdown = min(RETRY_BACKOFF_MAX, 2 ** min(item.retries + 1, 8))
    try:
        from spinnakr.celery import app

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


@shared_task(
    name="analytics.ingest_batch",
    bind=True,
    serializer=EVENTS_SERIALIZER,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    # Full jitter could bring the wait down to nothing: 2 s, 4 s, then RETRY_BACKOFF_MAX.
    retry_jitter=False,
    # However long the outage: the batch is durable in the queue, and given up it would be lost.
    max_retries=None,
    soft_time_limit=240,
    time_limit=300,
)
def ingest_batch(self: Any, batch_id: str, events: list[EnrichedEvent]) -> None:
    delivered = not (self.request.called_directly or self.request.is_eager)
    taken = _take_waiting() if delivered else []
    if not taken:
        _ingest_delivered(batch_id, events)
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
        _ingest_delivered(batch_id, events)
        return
    _ack_all(taken)


def _ingest_delivered(batch_id: str, events: list[EnrichedEvent]) -> None:
    try:
        ingest(batch_id, events)
    except TRANSIENT:
        time.sleep(TRANSIENT_PAUSE_SECONDS)
        raise  # retried with backoff by autoretry_for
    except Exception as exc:
        # Anything else would be acknowledged and lost: keep the batch for an operator, who
        # replays it with `manage.py replay_failed_batches` once the cause is fixed.
        park_failed_batch(batch_id, events, exc)
        raise


FAILED_BATCHES = "ingest:failed"
FAILED_BATCHES_MAX = 100_000


def park_failed_batch(batch_id: str, events: list[EnrichedEvent], exc: BaseException) -> None:
    record = {"batch_id": batch_id, "events": events, "error": repr(exc)[:2000], "at": time.time()}
    pipe = rollups.client().pipeline(transaction=True)
    pipe.lpush(FAILED_BATCHES, json.dumps(record, separators=(",", ":")))
    pipe.ltrim(FAILED_BATCHES, 0, FAILED_BATCHES_MAX - 1)
    pipe.execute()
    logger.error("ingest.batch_failed", extra={"batch_id": batch_id, "events": len(events), "error": repr(exc)[:500]})


@shared_task(name="analytics.ensure_partitions", ignore_result=True, autoretry_for=TRANSIENT, retry_backoff=True)
def ensure_partitions() -> None:
    """Beat: the partitions of last, this and the next two months exist."""
    store.forget_partitions()
    store.ensure_partitions_around(datetime.now(UTC).date(), before=1, after=2)


@shared_task(name="analytics.apply_retention", ignore_result=True, autoretry_for=TRANSIENT, retry_backoff=True)
def apply_retention() -> None:
    """Beat: delete raw events older than each account's retention; drop partitions none keeps.

    Day rollups expire by themselves (their TTL is the retention when written).
    """
    from accounts.models import Account, Site

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


@shared_task(name="analytics.refresh_quota_flags", ignore_result=True, autoretry_for=TRANSIENT, retry_backoff=True)
def refresh_quota_flags() -> None:
    """Beat: recompute the set of accounts past quota plus grace (see ``analytics.quota``)."""
    quota.refresh_flags()


@shared_task(
    name="analytics.delete_site_data", ignore_result=True, acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True
)
def delete_site_data(site_id: int) -> None:
    """A deleted site's raw events and Redis keys (``analytics.cleanup``)."""
    from analytics.cleanup import purge_site

    purge_site(site_id)


@shared_task(
    name="analytics.delete_account_data",
    ignore_result=True,
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
)
def delete_account_data(account_id: int, site_ids: list[int]) -> None:
    """A deleted account's sites' data and its quota counters (``analytics.cleanup``)."""
    from analytics.cleanup import purge_account

    purge_account(account_id, site_ids)


@shared_task(
    name="analytics.rebuild_rollups",
    ignore_result=True,
    acks_late=True,
    time_limit=6 * 3600,
    soft_time_limit=6 * 3600 - 60,
)
def rebuild_rollups(site_id: int, since: str | None = None) -> None:
    """Recompute a site's rollups from PostgreSQL (``analytics.rebuild``)."""
    from datetime import date

    from accounts.models import Site
    from analytics.rebuild import RebuildRunning, rebuild_site

    site = Site.objects.select_related("account").filter(id=site_id).first()
    if site is None:
        return
    try:
        rebuild_site(site, date.fromisoformat(since) if since else None)
    except RebuildRunning:
        # The running rebuild may have started before this request's change: go again later.
        rebuild_rollups.apply_async((site_id, since), countdown=60)
