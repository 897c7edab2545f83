"""The worker's ingestion pipeline: one or several broker messages applied in order.

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

With ``REDIS_URLS`` naming several servers, step 1 goes server by server: the parts of a server
that does not answer, or of a site being moved to another server, wait in the broker
(``analytics.ingest.held``) and skip steps 2 to 4; the other sites go on.

Before step 1, ``analytics.ingest.screen`` sets aside the events the store could not take (a wrong
shape, a NUL), counted per site and reason, so one bad event costs no other.

A pool process applies the waiting messages of the events queue together with the one it was
given (``analytics.ingest.coalesce``): ``ingest_many`` does the steps above once for the group, each
batch keeping its own markers.

Redis comes before PostgreSQL (ARCHITECTURE.md orders them the other way) because the visit id
each raw row keeps is the sessionisation's answer, and only the script can give it atomically
with the counters; see docs/ingestion.md, "Ingestion pipeline".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction

from analytics.ingest import failover, freshness, held, quota, rollups, screen, store
from analytics.ingest.siteinfo import SiteSettings, load_sites
from analytics.ingest.visits import visit_id
from analytics.live import push
from analytics.payloads import EnrichedEvent
from spinnakr import breaker, metrics, redis_clients

logger = logging.getLogger(__name__)


# CLUSTERDOWN and TRYAGAIN: a Redis Cluster failing over a master, or moving a slot; a broker
# that cannot take a held part back.
TRANSIENT = (
    OperationalError,
    InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    held.BrokerUnavailable,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
)
PAUSE_ENV = "SPINNAKR_TEST_INGEST_PAUSE"


# After a transient failure a pool process waits this long before its task goes back for a
# retry: every batch fails the same way meanwhile, and without the pause the worker cycled
# through the queue, turning batch after batch into a retry of its own.
TRANSIENT_PAUSE_SECONDS = 1.0


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
    changes nothing. An event the store could not take (``analytics.ingest.screen``) is set aside and
    counted before anything is applied, so it costs no other event. Answers each batch's rollup
    result per site.
    """
    started = time.monotonic()
    parts: list[tuple[str, int, list[EnrichedEvent]]] = []  # (batch, site, events), in order
    seen: set[tuple[str, int]] = set()
    rejected: list[screen.Rejected] = []
    for batch_id, events in batches:
        kept, set_aside = screen.screen(batch_id, events)
        rejected.extend(set_aside)
        by_site: dict[int, list[EnrichedEvent]] = defaultdict(list)
        for event in _dedupe(kept):
            by_site[event["site_id"]].append(event)
        # A copy of a part the group holds already (a redelivery, or the held part of a
        # message that is also redelivered whole) is left out; the parts of a batch are the
        # same events in every copy.
        fresh = [(batch_id, site_id, evs) for site_id, evs in by_site.items() if (batch_id, site_id) not in seen]
        seen.update((batch_id, site_id) for _, site_id, _ in fresh)
        parts.extend(fresh)
    unrecorded = screen.record(rejected)
    sites = load_sites({site_id for _, site_id, _ in parts})
    for site_id in {site_id for _, site_id, _ in parts} - set(sites):
        dropped = sum(len(evs) for _, s, evs in parts if s == site_id)
        logger.warning("ingest.unknown_site", extra={"site_id": site_id, "events": dropped})
    parts = [part for part in parts if part[1] in sites]

    for _, _, site_events in parts:
        site_events.sort(key=rollups.event_order)
    parts, results = _apply_rollups(parts, sites, [(item.batch_id, item.event) for item in unrecorded])
    # Behind Sentinel: a token after the scripts, so a new master shows which groups it missed.
    marks = failover.mark_applied([(site_id, evs) for _, site_id, evs in parts])
    _test_pause("after_rollups")

    store.ensure_partitions({store.month_of(e["ts"]) for _, _, evs in parts for e in evs})
    inserted = 0
    stored = time.monotonic()
    with transaction.atomic():
        failover.record(marks)
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
    metrics.POSTGRES_CALL_SECONDS.labels(metrics.postgres_server()).observe(time.monotonic() - stored)
    _test_pause("after_store")

    _count_quota(parts, sites)
    _push_live(parts, results)
    freshness.applied(parts, results, time.monotonic() - started)
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


def _apply_rollups(
    parts: list[tuple[str, int, list[EnrichedEvent]]],
    sites: dict[int, SiteSettings],
    unrecorded: Sequence[tuple[str, Any]],
) -> tuple[list[tuple[str, int, list[EnrichedEvent]]], list[rollups.BatchResult]]:
    """Apply the rollups server by server; answers the parts applied, in order, and their results.

    With ``REDIS_URLS`` naming several servers, the parts of a server that does not answer (or
    whose breaker is open), and those of a site being moved to another server, are held
    (``analytics.ingest.held``) and left out of the rest of the pipeline, even when that is every
    part: the pool process goes on to the next message at once instead of pausing
    (``TRANSIENT_PAUSE_SECONDS``) on each; so are the events set aside that could not be recorded
    on such a server (``unrecorded``). With one server there is nothing
    else to go on with: the error is raised and the whole message retried, as for any transient
    failure.
    """
    # One reading of the placement for both decisions: read twice, a move's switch in between
    # could send a site that was moving to the server it just left.
    place = redis_clients.rollup_placement()
    server = {site_id: place.server_of(site_id) for site_id in {site_id for _, site_id, _ in parts}}
    moving = {site_id for site_id in server if place.moving(site_id)}
    by_server: dict[str, list[int]] = defaultdict(list)
    for n, (_, site_id, _) in enumerate(parts):
        if site_id not in moving:  # a moving site's parts wait for the move's end
            by_server[server[site_id]].append(n)
    results: dict[int, rollups.BatchResult] = {}
    failure: Exception | None = None
    for url, indexes in by_server.items():
        if breaker.is_open(url):
            failure = failure or redis.ConnectionError(
                f"rollups server {breaker.safe(url)} skipped: its breaker is open"
            )
            continue
        try:
            applied = rollups.apply_batches(
                [(sites[parts[n][1]], parts[n][0], rollups.prepare(sites[parts[n][1]], parts[n][2])) for n in indexes]
            )
        except breaker.UNREACHABLE as exc:
            breaker.trip(url, exc)
            failure = exc
            continue
        breaker.close(url)
        results.update(zip(indexes, applied, strict=True))
    if failure is not None and not results and len(place.every_server()) < 2:
        raise failure
    if len(results) < len(parts) or unrecorded:
        held.hold([part for n, part in enumerate(parts) if n not in results], server, unrecorded)
    kept = sorted(results)
    return [parts[n] for n in kept], [results[n] for n in kept]


def _count_quota(parts: Sequence[tuple[str, int, list[EnrichedEvent]]], sites: dict[int, SiteSettings]) -> None:
    # One marker per batch and site, not per batch and account: a batch's sites may be counted
    # at different times when one's rollups server was down (``analytics.ingest.held``).
    per_batch: dict[tuple[str, int], dict[date, int]] = defaultdict(lambda: defaultdict(int))
    quotas: dict[int, int] = {}
    for batch_id, site_id, site_events in parts:
        info = sites[site_id]
        quotas[info.account_id] = info.monthly_event_quota
        counts = per_batch[(f"{batch_id}:{site_id}", info.account_id)]
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
        push.send(
            site_id,
            push.build_delta(
                site_id,
                group_id,
                events,
                sum(r.new_visits for r in site_results),
                site_results[-1].visitors_now,
                ids,
            ),
        )


def ingest_delivered(batch_id: str, events: list[EnrichedEvent]) -> None:
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
    pipe = redis_clients.data().pipeline(transaction=True)
    pipe.lpush(FAILED_BATCHES, json.dumps(record, separators=(",", ":")))
    pipe.ltrim(FAILED_BATCHES, 0, FAILED_BATCHES_MAX - 1)
    pipe.execute()
    logger.error("ingest.batch_failed", extra={"batch_id": batch_id, "events": len(events), "error": repr(exc)[:500]})
