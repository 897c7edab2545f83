"""Which rollups servers are in use, as every web and worker process learns it from the data Redis.

``REDIS_URLS`` names the servers a fresh deployment starts with. ``manage.py rebalance_rollups``
changes the set while the processes run: it writes the placement to the data Redis (``KEY``), and
each process reads it again when its copy is older than ``TTL`` seconds, so no process needs a
restart, let alone all at once. Without the key, the servers are those of ``REDIS_URLS``.

During a move the placement names the servers in use and the servers to come (``next``). A site
whose server differs between the two is *moving*: its batches wait (``analytics.ingest.held``)
and its queries go to SQL, so nothing writes its rollups while they are copied. The other sites
are where both sets put them, and go on. See docs/operations.md, "Adding or removing a rollups
server".
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import redis

from spinnakr import rendezvous

logger = logging.getLogger(__name__)

KEY = "rollups:placement"

# How stale a process's copy of the placement may be: the rebalance waits longer than this
# between its steps, so no process acts on a placement two steps old.
TTL = 2.0


@dataclass(frozen=True)
class Placement:
    servers: tuple[str, ...]
    next: tuple[str, ...] = ()

    def server_of(self, site_id: int) -> str:
        return self.servers[0] if len(self.servers) == 1 else rendezvous.choose(self.servers, site_id)

    def destination(self, site_id: int) -> str:
        """Where the site will be once the move ends (where it is, outside a move)."""
        return Placement(self.next).server_of(site_id) if self.next else self.server_of(site_id)

    def moving(self, site_id: int) -> bool:
        return bool(self.next) and self.destination(site_id) != self.server_of(site_id)

    def every_server(self) -> tuple[str, ...]:
        return self.servers + tuple(url for url in self.next if url not in self.servers)

    def dumps(self) -> str:
        return json.dumps({"servers": list(self.servers), "next": list(self.next)})


_cached: dict[tuple[str, ...], tuple[float, Placement]] = {}


def current(data: redis.Redis, configured: tuple[str, ...]) -> Placement:
    """The placement (at most ``TTL`` seconds old); ``configured`` is ``REDIS_URLS``'s servers."""
    now = time.monotonic()
    held = _cached.get(configured)
    if held is not None and held[0] > now:
        return held[1]
    try:
        raw = data.get(KEY)
    except redis.RedisError as exc:
        # The data Redis away: keep what was known (the collector and the quota are away too).
        logger.warning("placement.unread", extra={"error": repr(exc)[:300]})
        return held[1] if held is not None else Placement(configured)
    placement = parse(raw) if raw else Placement(configured)
    if held is not None and held[1] != placement:
        logger.info("placement.changed", extra={"servers": len(placement.servers), "next": len(placement.next)})
    _cached[configured] = (now + TTL, placement)
    return placement


def parse(raw: str | bytes) -> Placement:
    value = json.loads(raw)
    return Placement(tuple(value["servers"]), tuple(value.get("next") or ()))


def forget() -> None:
    """Read the placement again on next use (tests, and the rebalance's own process)."""
    _cached.clear()
