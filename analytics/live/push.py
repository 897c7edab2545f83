"""The live delta a batch sends to its site's channel group (docs/interfaces.md).

Sent once per site per delivery of a batch (or of a group of batches applied together), after
the data is committed. ``batch_ids`` names the batches a delta covers; a redelivered batch sends
its delta again, alone (``batch_id`` is then its own id): consumers drop a delta that names a
batch they have seen.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, TypedDict

import redis
from channels.layers import get_channel_layer

from analytics.fields import FEED_FIELDS
from analytics.payloads import EnrichedEvent

logger = logging.getLogger(__name__)
MAX_EVENTS = 50
_FEED_FIELDS = tuple(f for f in FEED_FIELDS if f != "props")


class LiveCounts(TypedDict):
    pageviews: int
    events: int
    visits: int
    visitors: int


def group_name(site_id: int) -> str:
    return f"site.{site_id}"


def build_delta(
    site_id: int,
    batch_id: str,
    events: Sequence[EnrichedEvent],
    new_visits: int,
    visitors_now: int,
    batch_ids: Sequence[str],
) -> dict[str, Any]:
    counted = [e for e in events if e["name"] != "engagement"]
    counted.sort(key=lambda e: (e["ts"], e["event_id"]))
    counts: LiveCounts = {
        "pageviews": sum(1 for e in counted if e["name"] == "pageview"),
        "events": len(counted),
        "visits": new_visits,
        "visitors": len({e["visitor_id"] for e in counted}),
    }
    feed = [
        {"ts": e["ts"] // 1000, **{f: e[f] for f in _FEED_FIELDS}, "props": dict(e["props"])}  # type: ignore[literal-required]
        for e in counted[-MAX_EVENTS:]
    ]
    return {
        "type": "live.delta",
        "site_id": site_id,
        "batch_id": batch_id,
        "batch_ids": list(batch_ids),
        "newest_ts": max((e["ts"] for e in events), default=0) // 1000,
        "counts": counts,
        "visitors_now": visitors_now,
        "events": feed,
    }


class _LoopThread:
    """One event loop per worker process, kept running in a daemon thread.

    ``async_to_sync`` runs each call on a fresh event loop, and channels-redis keeps its
    connections per loop, so every delta would pay for a new Redis connection.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="livepush", daemon=True)
        self.thread.start()


_runner: _LoopThread | None = None
_runner_lock = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    global _runner
    with _runner_lock:
        # A forked pool process inherits the object but not the thread: start its own.
        if _runner is None or _runner.pid != os.getpid():
            _runner = _LoopThread()
        return _runner.loop


def send(site_id: int, delta: dict[str, Any], timeout: float = 5.0) -> None:
    """Best effort: the data is committed already; a lost delta only delays the dashboard."""
    layer = get_channel_layer()
    if layer is None:
        return
    future = asyncio.run_coroutine_threadsafe(layer.group_send(group_name(site_id), delta), _loop())
    try:
        future.result(timeout)
    except (redis.RedisError, OSError, TimeoutError) as exc:
        future.cancel()
        logger.warning("livepush.failed", extra={"site_id": site_id, "error": repr(exc)})
