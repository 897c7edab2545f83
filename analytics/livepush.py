"""The live delta a batch sends to its site's channel group (contracts, interface 2).

Sent once per site per delivery of a batch, after the data is committed. A redelivered batch
sends its delta again with the same ``batch_id``: consumers drop a ``batch_id`` they have seen.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypedDict

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from analytics.payloads import EnrichedEvent

logger = logging.getLogger(__name__)
MAX_EVENTS = 50
_FEED_FIELDS = ("name", "pathname", "hostname", "referrer_source", "country", "browser", "os", "device")


class LiveCounts(TypedDict):
    pageviews: int
    events: int
    visits: int
    visitors: int


def group_name(site_id: int) -> str:
    return f"site.{site_id}"


def build_delta(
    site_id: int, batch_id: str, events: Sequence[EnrichedEvent], new_visits: int, visitors_now: int
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
        "newest_ts": max((e["ts"] for e in events), default=0) // 1000,
        "counts": counts,
        "visitors_now": visitors_now,
        "events": feed,
    }


def send(site_id: int, delta: dict[str, Any]) -> None:
    """Best effort: the data is committed already; a lost delta only delays the dashboard."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group_name(site_id), delta)
    except (redis.RedisError, OSError) as exc:
        logger.warning("livepush.failed", extra={"site_id": site_id, "error": str(exc)})
