"""Compaction of closed days: their dense HyperLogLogs rewritten in Redis's sparse form.

A unique-visitor HyperLogLog (the day's ``uv:d:<day>``, each member's ``uvm:<dim>:d:<day>:…``)
turns dense, 12 kB, once its sparse form would pass Redis's ``hll-sparse-max-bytes`` (3,000 bytes
by default): that keeps PFADD cheap while the day takes events. A closed day takes none (late
events arrive up to 24 hours after the fact), and a member with a few thousand visitors a day
holds the same registers in 3 to 10 kB of sparse form. Redis reads a sparse HyperLogLog of any
length, so the rewrite changes no count; a PFADD that still comes (an import) turns the key
dense again when it must. Each rewrite is a compare-and-set on the value read (its SHA-1), so
an event applied in between is never lost.

The members come from the day's breakdowns (``top:<dim>:d:<day>:events``) of the event
dimensions and event names; custom property values are left as they are (their keys cannot be
listed without scanning the keyspace, and they are few and small).
Figures: bench/README.md, "Redis memory per site-day".
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from redis.client import NEVER_DECODE

from accounts.models import Site
from analytics.fields import ROLLUP_EVENT_DIMENSIONS, ROLLUP_NAME
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


@dataclass
class Compacted:
    keys: int = 0  # dense HyperLogLogs found
    rewritten: int = 0
    bytes_saved: int = 0


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


def _hll_keys(site_id: int, day: str) -> list[str]:
    """The day's unique-visitor HyperLogLogs: the day's, and each member's of the event
    dimensions and event names (their members read from the day's breakdowns)."""
    client = redis_clients.for_site(site_id)
    prefix = rollups.prefix(site_id)
    dims = [dim for dim, _ in ROLLUP_EVENT_DIMENSIONS] + [ROLLUP_NAME]
    pipe = client.pipeline(transaction=False)
    for dim in dims:
        pipe.zrange(f"{prefix}top:{dim}:d:{day}:events", 0, -1)
    keys = [f"{prefix}uv:d:{day}"]
    for dim, members in zip(dims, pipe.execute(), strict=True):
        keys += [f"{prefix}uvm:{dim}:d:{day}:{member}" for member in members]
    return keys


def compact_day(site_id: int, day: str) -> Compacted:
    """Rewrite the day's dense HyperLogLogs that are smaller sparse (``day`` is YYYYMMDD)."""
    client = redis_clients.for_site(site_id)
    keys = _hll_keys(site_id, day)
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("STRLEN", key)
    dense = [key for key, size in zip(keys, pipe.execute(), strict=True) if size == DENSE_SIZE]
    result = Compacted(keys=len(dense))
    for start in range(0, len(dense), CHUNK):
        chunk = dense[start : start + CHUNK]
        pipe = client.pipeline(transaction=False)
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
    return total


def compact_closed_days(now: datetime) -> None:
    """Beat (every 6 hours): compact each site's day ``CLOSED_AFTER_DAYS`` before today (in its
    timezone) and the day before that (a day missed while beat was down is caught up)."""
    site_ids = list(Site.objects.values_list("id", flat=True))
    for site_id, info in load_sites(site_ids).items():
        last = now.astimezone(info.tz).date() - timedelta(days=CLOSED_AFTER_DAYS)
        done = compact_site(site_id, last - timedelta(days=1), last)
        if done.rewritten:
            logger.info(
                "rollups.compacted",
                extra={"site_id": site_id, "rewritten": done.rewritten, "bytes_saved": done.bytes_saved},
            )
