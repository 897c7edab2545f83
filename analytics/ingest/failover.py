"""After a rollup server's failover: find the batches its new master missed and rebuild their sites.

A master watched by Sentinel replicates to its replica asynchronously: a master that dies may take
its last writes with it after the worker committed their batches to PostgreSQL and acknowledged
them. No redelivery brings those back; the raw events do.

The worker's part (``mark_applied`` then ``record``): once the rollup scripts of a group of
batches have answered, it adds a new token to the server's ``rollups:applied`` (a sorted set by
time, a quarter of an hour of tokens), and records the token with the group's sites in
PostgreSQL in the raw events' transaction (``RollupMark``, kept as long). A replica applies its
master's writes in the order the master ran them, so a replica that holds a token holds every
script the group ran before it.

The beat's part (``check_masters``, every 10 s): for each server behind Sentinel it compares the
master's address and run id with those it saw last (``rollups:master:<server>`` in the data Redis).
When they differ, every token recorded since the previous check (less a margin for the
transactions still open then) must be on the master. Each site of a token the master lacks is
flagged ``rebuilding`` at once, so the planner answers it from SQL, and gets a ``RollupRebuild``
that the ``analytics.rebuild_lost_rollups`` task carries out: the site's rollups are recomputed
from PostgreSQL while ingestion goes on (``analytics.ingest.rebuild``). The record, in the
admin, says why, which window of events was missed, and when the rebuild started and finished.

A batch whose scripts failed in the switch is retried (a transient error), and its markers make
the retry change nothing where the first attempt did reach the new master. Sites whose server has
no Sentinel cost nothing here: no token, no row.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
import redis.exceptions
import redis.sentinel
from django.db import transaction
from django.utils import timezone

from accounts.models import Site
from analytics import jobs
from analytics.ingest import rollups
from analytics.ingest.rebuild import rebuild_site
from analytics.ingest.store import EPOCH
from analytics.models import RollupMark, RollupRebuild
from analytics.payloads import EnrichedEvent
from spinnakr import redis_clients, rendezvous

logger = logging.getLogger(__name__)

APPLIED_KEY = "rollups:applied"
# Tokens and their rows: the beat checks every 10 s, so a quarter of an hour spans many missed
# checks; after longer without one, a failover rebuilds more sites than it must, never fewer.
KEEP = timedelta(minutes=15)
# A group's row commits a moment after its token is written: a check looks back this much further.
MARGIN = timedelta(minutes=1)
STATE_KEY = "rollups:master:"
CHECK_LOCK = "rollups:failover:check"
CHECK_LOCK_SECONDS = 120
REQUEUE_AFTER = timedelta(minutes=10)
ZMSCORE_CHUNK = 1000


def sentinel_servers() -> list[tuple[str, redis.Redis]]:
    """(identity, client) of each rollup server behind Sentinel."""
    urls = redis_clients.rollup_urls()
    return [
        (rendezvous.identity(url), client)
        for url, client in zip(urls, redis_clients.rollup_servers(), strict=True)
        if rendezvous.is_sentinel(url) and isinstance(client, redis.Redis)  # never a cluster
    ]


def mark_applied(parts: Sequence[tuple[int, Sequence[EnrichedEvent]]]) -> list[RollupMark]:
    """Leave a token on each server behind Sentinel holding a site of ``parts`` (site, its events in
    ``event_order``), once their scripts have answered; answers the rows for ``record``."""
    servers = {id(client): server for server, client in sentinel_servers()}
    if not servers:
        return []
    groups: dict[str, tuple[redis.Redis, list[tuple[int, Sequence[EnrichedEvent]]]]] = {}
    for site_id, events in parts:
        client = redis_clients.for_site(site_id)
        if events and id(client) in servers and isinstance(client, redis.Redis):
            groups.setdefault(servers[id(client)], (client, []))[1].append((site_id, events))
    now_ms = int(time.time() * 1000)
    rows: list[RollupMark] = []
    for server, (client, items) in groups.items():
        token = uuid.uuid4().hex
        pool = client.connection_pool
        assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
        # The master the scripts ran on; if the token's connection had to find another (its retries
        # can outlast a failover), the token would vouch for writes that new master may lack.
        ran_on = pool.master_address
        pipe = client.pipeline(transaction=False)
        pipe.zadd(APPLIED_KEY, {token: now_ms})
        pipe.zremrangebyscore(APPLIED_KEY, "-inf", now_ms - KEEP.total_seconds() * 1000)
        pipe.execute()
        if pool.master_address != ran_on:
            raise redis.ConnectionError(f"{server}: the master changed while a group was applied")
        rows.extend(
            RollupMark(
                server=server,
                token=token,
                site_id=site_id,
                first_event=_moment(events[0]["ts"]),
                last_event=_moment(events[-1]["ts"]),
                events=len(events),
            )
            for site_id, events in items
        )
    return rows


def record(rows: list[RollupMark]) -> None:
    """Store ``mark_applied``'s rows: call it inside the raw events' transaction."""
    if rows:
        RollupMark.objects.bulk_create(rows)


def _moment(ts_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=ts_us)


@dataclass
class _Lost:
    first: datetime
    last: datetime
    events: int = 0
    tokens: set[str] = field(default_factory=set)


def check_masters() -> list[RollupRebuild]:
    """Beat: for each server behind Sentinel whose master changed, the rebuilds of the sites whose
    batches the new master lacks, created and queued (see the module docstring)."""
    servers = sentinel_servers()
    if not servers:
        return []
    lock = redis_clients.data().lock(CHECK_LOCK, timeout=CHECK_LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        return []
    created: list[RollupRebuild] = []
    try:
        for server, client in servers:
            try:
                created.extend(_check(server, client))
            except redis.ConnectionError:
                # Sentinel has no master to offer yet (a failover in progress): the next beat asks again.
                logger.warning("failover.master_unknown", extra={"server": server}, exc_info=True)
        RollupMark.objects.filter(applied__lt=timezone.now() - KEEP).delete()
        # A rebuild whose task never started (lost with a broker, say) is queued again; one that
        # did start is its task's to finish or retry.
        unstarted = RollupRebuild.objects.filter(
            finished__isnull=True, started__isnull=True, created__lt=timezone.now() - REQUEUE_AFTER
        )
        for rebuild_id in unstarted.values_list("id", flat=True):
            jobs.rebuild_lost_rollups(rebuild_id)
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            logger.warning("failover.check_overran", extra={"seconds": CHECK_LOCK_SECONDS})
    for rebuild in created:
        transaction.on_commit(functools.partial(jobs.rebuild_lost_rollups, rebuild.pk))
    return created


def _master(client: redis.Redis) -> str:
    """The address and run id of the master ``client`` reaches (asking Sentinel for the address)."""
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    host, port = pool.get_master_address()
    return f"{host}:{port} {client.info('server')['run_id']}"


def _check(server: str, client: redis.Redis) -> list[RollupRebuild]:
    data = redis_clients.data()
    now = timezone.now()
    master = _master(client)
    seen = {str(k): str(v) for k, v in data.hgetall(f"{STATE_KEY}{server}").items()}
    if seen.get("master") == master:
        data.hset(f"{STATE_KEY}{server}", "checked", now.isoformat())
        return []
    since = datetime.fromisoformat(seen["checked"]) - MARGIN if seen.get("checked") else now - KEEP
    lost = _lost(server, client, since)
    rebuilds = []
    pending = set(RollupRebuild.objects.filter(server=server, finished__isnull=True).values_list("site_id", flat=True))
    for site in Site.objects.filter(id__in=set(lost) - pending).order_by("id"):
        missed = lost[site.id]
        # Until the rebuild swaps its keys in, the planner answers the site from SQL.
        client.hset(f"{rollups.prefix(site.id)}meta", "rebuilding", "1")
        rebuilds.append(
            RollupRebuild.objects.create(
                site=site,
                server=server,
                reason=f"failover to {master.split()[0]}: the new master lacks {len(missed.tokens)} applied group(s)",
                window_start=missed.first,
                window_end=missed.last,
                missed_events=missed.events,
            )
        )
    logger.warning(
        "failover.master_changed",
        extra={"server": server, "master": master, "previous": seen.get("master", ""), "rebuilds": len(rebuilds)},
    )
    data.hset(f"{STATE_KEY}{server}", mapping={"master": master, "checked": now.isoformat()})
    return rebuilds


def _lost(server: str, client: redis.Redis, since: datetime) -> dict[int, _Lost]:
    """The sites of the tokens recorded for ``server`` since ``since`` that its master lacks."""
    marks = list(
        RollupMark.objects.filter(server=server, applied__gte=since).values_list(
            "token", "site_id", "first_event", "last_event", "events"
        )
    )
    tokens = sorted({mark[0] for mark in marks})
    missing: set[str] = set()
    for start in range(0, len(tokens), ZMSCORE_CHUNK):
        chunk = tokens[start : start + ZMSCORE_CHUNK]
        scores = client.zmscore(APPLIED_KEY, chunk)
        missing.update(token for token, score in zip(chunk, scores, strict=True) if score is None)
    lost: dict[int, _Lost] = {}
    for token, site_id, first, last, events in marks:
        if token in missing:
            entry = lost.setdefault(site_id, _Lost(first, last))
            entry.first, entry.last = min(entry.first, first), max(entry.last, last)
            entry.events += events
            entry.tokens.add(token)
    return lost


def carry_out(rebuild_id: int) -> None:
    """Run a ``RollupRebuild`` not yet finished (``analytics.rebuild_lost_rollups``); a rebuild that
    fails leaves the site flagged, so the planner keeps answering it from SQL."""
    rebuild = RollupRebuild.objects.select_related("site").filter(id=rebuild_id, finished__isnull=True).first()
    if rebuild is None:
        return
    RollupRebuild.objects.filter(id=rebuild_id).update(started=timezone.now(), error="")
    try:
        report = rebuild_site(rebuild.site)
    except Exception as exc:
        RollupRebuild.objects.filter(id=rebuild_id).update(error=repr(exc)[:2000])
        redis_clients.for_site(rebuild.site_id).hset(f"{rollups.prefix(rebuild.site_id)}meta", "rebuilding", "1")
        raise
    RollupRebuild.objects.filter(id=rebuild_id).update(finished=timezone.now(), replayed_events=report.events)
    logger.info(
        "failover.rebuilt", extra={"site_id": rebuild.site_id, "server": rebuild.server, "events": report.events}
    )
