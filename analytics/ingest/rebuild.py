"""Rebuilding a site's rollups from the raw events while ingestion goes on.

1. Claim the site (``rebuild_token`` in ``{s:<id>}:meta``; one rebuild per site at a time),
   clear the rebuild namespace ``{s:<id>}:rb:`` and set ``rebuilding`` = "1".
2. From then on every batch the worker applies to the live keys it also applies to the
   rebuild namespace (first delivery or redelivery), recording each event id in
   ``{s:<id>}:rb:seen``.
3. After a short grace (batches already past their rollup step commit to PostgreSQL), replay the
   stored events in event-time order into the rebuild namespace, a chunk per script call.
   Events from 25 hours before the flag on (the window in which ingestion can still deliver
   them) are de-duplicated against ``rb:seen``; older ones can only come from the replay.
4. Give the rebuilt session keys their expiry, then one script drops the live rollup keys and
   renames the rebuilt ones into place, sets ``complete_since`` and clears the flag.

Sessionisation in event time does not depend on arrival order, so events double-written while
the replay is behind them give the same visits. Readers see the old rollups until the swap.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, cast

from django.db import connection

from accounts.models import Site
from analytics.fields import EVENT_FIELDS
from analytics.ingest import rollups
from analytics.ingest.siteinfo import SiteSettings, site_info
from analytics.ingest.store import COLUMNS, EPOCH
from analytics.payloads import EnrichedEvent
from spinnakr import redis_clients

logger = logging.getLogger(__name__)

CHUNK = 2000
GRACE_SECONDS = 2.0
DEDUPE_WINDOW_MS = 25 * 3600 * 1000
KEEP_MS = 88_200_000 + 3_600_000  # as apply_batch.lua: KEEP + SESS_SLACK
STALE_CLAIM_SECONDS = 6 * 3600
_KEPT_SUFFIXES = ("meta", "live")
# The enriched event's keys and the stored columns they come back from (the conversions below
# replace the few that are not stored as they are sent).
_AS_STORED = tuple((f.name, f.store_column) for f in EVENT_FIELDS)


class RebuildRunning(Exception):
    """Another rebuild of the site is in progress."""


@dataclass
class RebuildReport:
    events: int
    keys: int
    complete_since: str
    seconds: float


@cache
def _swap_script() -> Any:
    # Called with ``client=``: it runs on the server holding the site.
    return redis_clients.data().register_script((Path(__file__).parent / "lua" / "swap_rebuild.lua").read_text())


def _claim(site_id: int, token: str) -> None:
    meta = f"{rollups.prefix(site_id)}meta"
    client = redis_clients.for_site(site_id)
    if not client.hsetnx(meta, "rebuild_token", token):
        started = float(client.hget(meta, "rebuild_started") or 0)
        if time.time() - started < STALE_CLAIM_SECONDS:
            raise RebuildRunning(f"a rebuild of site {site_id} is running")
        client.hset(meta, "rebuild_token", token)
    client.hset(meta, "rebuild_started", str(time.time()))


def _scan(site_id: int, pattern: str) -> list[str]:
    return list(redis_clients.for_site(site_id).scan_iter(match=pattern, count=1000))


def _clear_namespace(site_id: int) -> None:
    keys = _scan(site_id, f"{rollups.rebuild_prefix(site_id)}*")
    for start in range(0, len(keys), 500):
        redis_clients.for_site(site_id).unlink(*keys[start : start + 500])


def _live_rollup_keys(site_id: int) -> list[str]:
    base = rollups.prefix(site_id)
    keys = []
    for key in _scan(site_id, f"{base}*"):
        rest = key[len(base) :]
        # rejected…: events the store never took (analytics.ingest.screen), which no rebuild recomputes.
        if rest in _KEPT_SUFFIXES or rest.startswith(("batch:", "rb:", "rejected")):
            continue
        keys.append(key)
    return keys


def _rows(site_id: int, since: datetime | None) -> Iterator[list[EnrichedEvent]]:
    """The site's stored events in (timestamp, event_id) order, a chunk at a time."""
    columns = ", ".join(f'"{c}"' for c in COLUMNS)
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        where = ["site_id = %s"]
        params: list[Any] = [site_id]
        if since is not None:
            where.append('"timestamp" >= %s')
            params.append(since)
        if after is not None:
            where.append('("timestamp", event_id) > (%s, %s)')
            params.extend(after)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {columns} FROM analytics_event WHERE {' AND '.join(where)} "  # noqa: S608 - constant SQL
                f'ORDER BY "timestamp", event_id LIMIT {CHUNK}',
                params,
            )
            rows = cursor.fetchall()
        if not rows:
            return
        chunk = []
        for row in rows:
            values = dict(zip(COLUMNS, row, strict=True))
            stamp: datetime = values["timestamp"]
            delta = stamp - EPOCH
            amount: Decimal | None = values["revenue_amount"]
            props = values["props"]
            event = {name: values[column] for name, column in _AS_STORED}
            event["ts"] = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
            event["event_id"] = str(values["event_id"])
            event["props"] = props if isinstance(props, dict) else json.loads(props)
            event["revenue_amount"] = None if amount is None else str(amount)
            chunk.append(cast(EnrichedEvent, event))
        yield chunk
        after = (rows[-1][1], rows[-1][2])


def _finalise_sessions(site_id: int) -> None:
    """Give each rebuilt session key the expiry ingestion would have given it."""
    client = redis_clients.for_site(site_id)
    rb = rollups.rebuild_prefix(site_id)
    keys = [str(k) for k in client.smembers(f"{rb}keys") if str(k).startswith(f"{rb}sess:")]
    now_ms = int(time.time() * 1000)
    for start in range(0, len(keys), 500):
        part = keys[start : start + 500]
        values = client.mget(part)
        pipe = redis_clients.site_pipeline(site_id)
        for key, raw in zip(part, values, strict=True):
            if raw is None:
                continue
            ttl = max(int(v["e"]) for v in json.loads(raw)) + KEEP_MS - now_ms
            if ttl > 0:
                pipe.pexpire(key, ttl)
            else:
                pipe.delete(key)
        pipe.execute()


def _since_moment(info: SiteSettings, since: date | None) -> datetime | None:
    if since is None:
        return None
    return datetime(since.year, since.month, since.day, tzinfo=info.tz).astimezone(UTC)


def rebuild_site(site: Site, since: date | None = None, grace_seconds: float = GRACE_SECONDS) -> RebuildReport:
    """Recompute a site's rollups from PostgreSQL and swap them in (see the module docstring)."""
    started = time.monotonic()
    info = site_info(site)
    site_id = site.id
    meta = f"{rollups.prefix(site_id)}meta"
    token = uuid.uuid4().hex
    _claim(site_id, token)
    client = redis_clients.for_site(site_id)
    try:
        _clear_namespace(site_id)
        client.hset(meta, "rebuilding", "1")
        flagged_ms = int(time.time() * 1000)
        time.sleep(grace_seconds)
        cutoff = flagged_ms - DEDUPE_WINDOW_MS
        count = 0
        for chunk in _rows(site_id, _since_moment(info, since)):
            chunk.sort(key=rollups.event_order)
            rollups.replay(info, rollups.prepare(info, chunk), cutoff)
            count += len(chunk)
        _finalise_sessions(site_id)
        complete_since = (since or info.created_day).isoformat()
        moved = int(
            _swap_script()(
                keys=[meta],
                args=[
                    token,
                    rollups.prefix(site_id),
                    rollups.rebuild_prefix(site_id),
                    complete_since,
                    *_live_rollup_keys(site_id),
                ],
                client=client,
            )
        )
        if moved < 0:
            raise RebuildRunning(f"site {site_id}: the rebuild lost its claim")
    except BaseException:
        if client.hget(meta, "rebuild_token") == token:
            client.hdel(meta, "rebuilding", "rebuild_token", "rebuild_started")
            _clear_namespace(site_id)
        raise
    report = RebuildReport(count, moved, complete_since, time.monotonic() - started)
    logger.info(
        "rebuild.done",
        extra={"site_id": site_id, "events": count, "keys": moved, "seconds": round(report.seconds, 3)},
    )
    return report
