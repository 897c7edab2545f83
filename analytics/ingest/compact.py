"""Compaction of closed days: HyperLogLogs rewritten sparse, breakdowns moved into strings.

Late events reach a day for 24 hours after it ends; a closed day then holds two costly kinds of
key, and a beat task (every 6 hours, the days ``CLOSED_AFTER_DAYS`` back) compacts both:

- Unique-visitor HyperLogLogs (the day's ``uv:d:<day>``, each member's ``uvm:<dim>:d:<day>:…``)
  turn dense, 12 kB, once their sparse form would pass Redis's ``hll-sparse-max-bytes`` (3,000
  bytes by default), which keeps PFADD cheap while the day takes events. A member with a few
  thousand visitors a day holds the same registers in 3 to 10 kB of sparse form, and Redis
  reads a sparse HyperLogLog of any length, so the rewrite changes no count; a PFADD that still
  comes turns the key dense again when it must. Each rewrite is a compare-and-set on the value
  read (its SHA-1), so an event applied in between is never lost.
- Breakdowns: a sorted set of more than 128 members (``zset-max-listpack-entries``) costs about
  85 bytes a member; a page dimension keeps ten of them a day. ``lua/compact_breakdowns.lua``
  moves a day's sorted sets of a dimension into one string ``topc:<dim>:d:<day>`` (members once,
  a list of values per metric), atomically; readers add the string to the sorted sets
  (``compacted_values``), so a late event after the move, which writes a new sorted set, counts.

The members come from the day's breakdowns of the event dimensions and event names; custom
property values' HyperLogLogs and sorted sets stay as they are (their keys cannot be listed
without scanning the keyspace, and they are few). Figures: bench/README.md, "Redis memory per
site-day".
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from redis.client import NEVER_DECODE

from accounts.models import Site
from analytics.fields import (
    ROLLUP_ACQUISITION,
    ROLLUP_ENGAGEMENT,
    ROLLUP_EVENT_DIMENSIONS,
    ROLLUP_NAME,
    ROLLUP_VISIT_DIMENSIONS,
)
from analytics.ingest import rollups
from analytics.ingest.siteinfo import load_sites
from spinnakr import redis_clients

logger = logging.getLogger(__name__)

REGISTERS = 16384
HEADER = 16
DENSE_SIZE = HEADER + REGISTERS * 6 // 8
SPARSE_VAL_MAX = 32
# Days after a day ends before it is compacted: late events reach it for 24 hours.
CLOSED_AFTER_DAYS = 2
# Seconds of one beat run (within the tasks' 240 s soft time limit).
BUDGET_SECONDS = 180.0
# Keys per compare-and-set call (the script holds the server while it compares and writes).
CHUNK = 64

_SET_IF_UNCHANGED = """
local done = 0
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if current and redis.sha1hex(current) == ARGV[2 * i - 1] then
    redis.call('SET', key, ARGV[2 * i], 'KEEPTTL')
    done = done + 1
  end
end
return done
"""


def _breakdown_metrics() -> dict[str, list[str]]:
    """Each rollup dimension's sorted-set metrics (the key model in ``analytics.ingest.rollups``)."""
    metrics: dict[str, list[str]] = {}

    def add(dim: str, *names: str) -> None:
        metrics.setdefault(dim, [])
        metrics[dim] += [name for name in names if name not in metrics[dim]]

    for dim, _ in ROLLUP_EVENT_DIMENSIONS:
        add(dim, "pageviews", "events")
    add(ROLLUP_NAME, "events")
    for dim, source in ROLLUP_VISIT_DIMENSIONS:
        add(dim, "visits", *(() if source == "x" else ("bounces", "duration")))
        if dim in ROLLUP_ACQUISITION:
            add(dim, "pageviews", "events")
    add(ROLLUP_ENGAGEMENT, "engagements", "time_ms", "scroll_sum", "scroll_n")
    return metrics


BREAKDOWN_METRICS = _breakdown_metrics()
BREAKDOWN_SPEC = json.dumps(BREAKDOWN_METRICS, separators=(",", ":"))


@dataclass
class Compacted:
    keys: int = 0  # dense HyperLogLogs found
    rewritten: int = 0
    bytes_saved: int = 0
    breakdowns: int = 0  # sorted sets moved into compact strings


def dense_registers(raw: bytes) -> list[int]:
    """The 16,384 six-bit registers of a dense HyperLogLog (packed little-endian)."""
    body = raw[HEADER:DENSE_SIZE]
    registers: list[int] = []
    for n in range(0, len(body), 3):
        b0, b1, b2 = body[n], body[n + 1], body[n + 2]
        registers += (b0 & 63, ((b0 >> 6) | (b1 << 2)) & 63, ((b1 >> 4) | (b2 << 4)) & 63, b2 >> 2)
    return registers


def sparse_form(raw: bytes) -> bytes | None:
    """The sparse HyperLogLog with the registers of the dense ``raw``, or None when it would be
    no smaller (or a register is above what the sparse form holds)."""
    if len(raw) != DENSE_SIZE or raw[:4] != b"HYLL" or raw[4] != 0:
        return None
    registers = dense_registers(raw)
    out = bytearray(raw[:HEADER])
    out[4] = 1  # sparse; the cached cardinality stays right, the registers being the same
    i = 0
    while i < REGISTERS:
        value = registers[i]
        j = i + 1
        if value == 0:
            while j < REGISTERS and registers[j] == 0:
                j += 1
            run = j - i
            # ZERO (1 byte, up to 64 registers) or XZERO (2 bytes, up to 16,384).
            out += bytes([run - 1]) if run <= 64 else bytes([0x40 | ((run - 1) >> 8), (run - 1) & 0xFF])
        else:
            if value > SPARSE_VAL_MAX:
                return None
            while j < REGISTERS and j - i < 4 and registers[j] == value:
                j += 1
            out.append(0x80 | ((value - 1) << 2) | (j - i - 1))  # VAL: value, run of up to 4
        i = j
        if len(out) >= DENSE_SIZE:
            return None
    return bytes(out)


@cache
def _script() -> Any:
    return redis_clients.data().register_script(_SET_IF_UNCHANGED)


@cache
def _move_script() -> Any:
    source = (Path(__file__).parent / "lua" / "compact_breakdowns.lua").read_text()
    return redis_clients.data().register_script(source)


def _hll_keys(site_id: int, day: str) -> list[str]:
    """The day's unique-visitor HyperLogLogs: the day's, and each member's of the event
    dimensions and event names (their members read from the day's breakdowns)."""
    prefix = rollups.prefix(site_id)
    dims = [dim for dim, _ in ROLLUP_EVENT_DIMENSIONS] + [ROLLUP_NAME]
    pipe = redis_clients.site_pipeline(site_id)
    for dim in dims:
        pipe.zrange(f"{prefix}top:{dim}:d:{day}:events", 0, -1)
        pipe.get(f"{prefix}topc:{dim}:d:{day}")
    replies = pipe.execute()
    keys = [f"{prefix}uv:d:{day}"]
    for n, dim in enumerate(dims):
        members = set(replies[2 * n])
        if replies[2 * n + 1]:
            members.update(json.loads(replies[2 * n + 1])["m"])
        keys += [f"{prefix}uvm:{dim}:d:{day}:{member}" for member in sorted(members)]
    return keys


def compact_day(site_id: int, day: str) -> Compacted:
    """Compact a closed day (YYYYMMDD): its dense HyperLogLogs rewritten sparse where smaller,
    its breakdowns moved into one string per dimension."""
    result = compact_hyperloglogs(site_id, day)
    result.breakdowns = int(
        _move_script()(
            keys=[f"{rollups.prefix(site_id)}meta"],
            args=[rollups.prefix(site_id), day, BREAKDOWN_SPEC],
            client=redis_clients.for_site(site_id),
        )
    )
    return result


def compact_hyperloglogs(site_id: int, day: str) -> Compacted:
    """Rewrite the day's dense HyperLogLogs whose sparse form is smaller."""
    keys = _hll_keys(site_id, day)
    pipe = redis_clients.site_pipeline(site_id)
    for key in keys:
        pipe.execute_command("STRLEN", key)
    dense = [key for key, size in zip(keys, pipe.execute(), strict=True) if size == DENSE_SIZE]
    result = Compacted(keys=len(dense))
    for start in range(0, len(dense), CHUNK):
        chunk = dense[start : start + CHUNK]
        pipe = redis_clients.site_pipeline(site_id)
        for key in chunk:
            pipe.execute_command("GET", key, **{NEVER_DECODE: True})
        rewrites: list[tuple[str, bytes, bytes]] = []
        for key, raw in zip(chunk, pipe.execute(), strict=True):
            sparse = sparse_form(raw) if isinstance(raw, bytes) else None
            if sparse is not None:
                rewrites.append((key, raw, sparse))
        if rewrites:
            result.rewritten += rewrite_if_unchanged(site_id, rewrites)
            result.bytes_saved += sum(len(raw) - len(sparse) for _, raw, sparse in rewrites)
    return result


def rewrite_if_unchanged(site_id: int, rewrites: list[tuple[str, bytes, bytes]]) -> int:
    """Set each (key, value read, new value) whose key still holds the value read; answers how
    many were set (an event applied since the read keeps its key as it is)."""
    args: list[Any] = []
    for _, raw, new in rewrites:
        args += [hashlib.sha1(raw).hexdigest(), new]  # noqa: S324 - a content check, not a secret
    keys = [key for key, _, _ in rewrites]
    return int(_script()(keys=keys, args=args, client=redis_clients.for_site(site_id)))


def compact_site(site_id: int, first: date, last: date) -> Compacted:
    """Compact each day from ``first`` to ``last`` (the site's local days)."""
    total = Compacted()
    for day in rollups.days_between(first, last):
        done = compact_day(site_id, day)
        total.keys += done.keys
        total.rewritten += done.rewritten
        total.bytes_saved += done.bytes_saved
        total.breakdowns += done.breakdowns
    return total


def compact_closed_days(now: datetime, budget_seconds: float = BUDGET_SECONDS) -> None:
    """Beat (every 6 hours): compact each site's closed days not compacted yet, from the day
    after its meta's ``compacted_until`` (else from the oldest day its retention keeps, or its
    creation) to ``CLOSED_AFTER_DAYS`` before today in its timezone, recording each day done.
    A rebuild's swap clears ``compacted_until``, so the rebuilt days are compacted again; a site
    being rebuilt waits. A run stops after ``budget_seconds`` (the first run after an upgrade
    has every stored day to do) and the next one goes on from there."""
    stop_at = time.monotonic() + budget_seconds
    site_ids = list(Site.objects.values_list("id", flat=True))
    for site_id, info in load_sites(site_ids).items():
        last = now.astimezone(info.tz).date() - timedelta(days=CLOSED_AFTER_DAYS)
        meta = rollups.meta(site_id)
        if meta.get("rebuilding") == "1":
            continue
        done_until = meta.get("compacted_until")
        if done_until:
            first = datetime.strptime(done_until, "%Y%m%d").date() + timedelta(days=1)
        else:
            first = max(info.created_day, last + timedelta(days=CLOSED_AFTER_DAYS - info.retention_days))
        total = Compacted()
        for day in rollups.days_between(first, last):
            if time.monotonic() > stop_at:
                logger.info("rollups.compaction_paused", extra={"site_id": site_id, "day": day})
                return
            done = compact_day(site_id, day)
            redis_clients.for_site(site_id).hset(f"{rollups.prefix(site_id)}meta", "compacted_until", day)
            total.rewritten += done.rewritten
            total.breakdowns += done.breakdowns
            total.bytes_saved += done.bytes_saved
        if first <= last:
            logger.info(
                "rollups.compacted",
                extra={
                    "site_id": site_id,
                    "days": (last - first).days + 1,
                    "rewritten": total.rewritten,
                    "breakdowns": total.breakdowns,
                    "bytes_saved": total.bytes_saved,
                },
            )


def compacted_values(site_id: int, dim: str, days: Sequence[str], metric: str) -> dict[str, int]:
    """``metric`` of each member of a dimension summed over the days' compact strings (a day
    not compacted has none: its sorted sets hold everything)."""
    client = redis_clients.for_site(site_id)
    prefix = rollups.prefix(site_id)
    totals: dict[str, int] = {}
    for raw in client.mget([f"{prefix}topc:{dim}:d:{day}" for day in days]) if days else []:
        if not raw:
            continue
        data = json.loads(raw)
        for member, value in zip(data["m"], data.get(metric) or [], strict=False):
            totals[member] = totals.get(member, 0) + int(value)
    return totals
