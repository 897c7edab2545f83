"""The Redis memory of one site, by part: ``MEMORY USAGE`` of each of its keys, grouped by kind.

Parts: day keys (kept for the plan's retention; split into per-member unique-visitor
HyperLogLogs, dense or sparse, breakdown sorted sets and the compacted days' breakdown strings,
the day's unique visitors and counters),
batch markers (48 h), visitor sessions (25.5 h), hour keys (90 days), minute keys (48 h).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

from accounts.models import Site
from analytics.ingest import compact, rollups
from spinnakr import redis_clients

DAY_PARTS = ("day: uvm dense", "day: uvm sparse", "day: top", "day: top (compacted)", "day: uv", "day: counters")


def _kind(rest: str) -> str:
    parts = rest.split(":")
    if parts[0] == "batch":
        return "batch markers (48 h)"
    if parts[0] == "sess":
        return "visitor sessions (25.5 h)"
    if "d" in parts:
        if parts[0] == "uvm":
            return "day: uvm"
        if parts[0] == "top":
            return "day: top"
        if parts[0] == "topc":
            return "day: top (compacted)"
        return "day: uv" if parts[0] == "uv" else "day: counters"
    if "h" in parts:
        return "hour keys (90 days)"
    if "m" in parts:
        return "minute keys (48 h)"
    return "other"


def _chunks(keys: Iterator[Any], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for key in keys:
        chunk.append(key.decode() if isinstance(key, bytes) else key)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def redis_bytes(site_id: int) -> dict[str, tuple[int, int]]:
    """The site's Redis memory by kind of key: kind → (keys, bytes)."""
    client = redis_clients.for_site(site_id)
    prefix = rollups.prefix(site_id)
    found: dict[str, tuple[int, int]] = {}
    for chunk in _chunks(client.scan_iter(match=f"{prefix}*", count=2000), 500):
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.memory_usage(key)
            pipe.getrange(key, 4, 4) if key.startswith(f"{prefix}uvm:") else pipe.echo("")
        replies = pipe.execute()
        for n, key in enumerate(chunk):
            kind = _kind(key[len(prefix) :])
            if kind == "day: uvm":
                kind = "day: uvm dense" if replies[2 * n + 1] in ("\x00", b"\x00") else "day: uvm sparse"
            keys, used = found.get(kind, (0, 0))
            found[kind] = (keys + 1, used + int(replies[2 * n] or 0))
    return found


def report(site_id: int, days: int, events: int) -> None:
    """Print the site's memory by part, per site-day for the day keys and per event for markers."""
    found = redis_bytes(site_id)
    day_keys = [found[k] for k in DAY_PARTS if k in found]
    found["day keys (retention)"] = (sum(k for k, _ in day_keys), sum(b for _, b in day_keys))
    total = sum(found[k][1] for k in found if not k.startswith("day: "))
    print(f"Redis: {total / 1e6:.1f} MB ({events} events over {days} days)")
    print("| kind of key | keys | MB | kB per site-day |")
    print("| --- | ---: | ---: | ---: |")
    for kind, (keys, used) in sorted(found.items(), key=lambda item: -item[1][1]):
        print(f"| {kind} | {keys} | {used / 1e6:.1f} | {used / days / 1e3:.1f} |")
    markers = found.get("batch markers (48 h)", (0, 0))[1]
    print(f"batch markers: {markers / max(events, 1):.2f} bytes per event")


def compact_closed(site: Site, days: int) -> None:
    """Compact the site's closed days, as the daily beat task (``analytics.ingest.compact``) does."""
    today = dt.datetime.now(ZoneInfo(site.timezone)).date()
    began = time.perf_counter()
    done = compact.compact_site(
        site.pk, today - dt.timedelta(days=days + 1), today - dt.timedelta(days=compact.CLOSED_AFTER_DAYS)
    )
    seconds = time.perf_counter() - began
    print(
        f"compacted: {done.rewritten} of {done.keys} dense HyperLogLogs rewritten sparse, "
        f"{done.bytes_saved / 1e6:.1f} MB saved, {seconds:.1f} s",
        flush=True,
    )
