"""Moving sites between rollups servers when one is added or removed, while ingestion goes on.

``rebalance(servers)`` takes the placement (``spinnakr.placement``) from the servers in use to
``servers`` in four steps, each visible to every web and worker process within
``placement.TTL`` seconds:

1. Announce the move: the placement names both sets. A site whose server differs between them
   (rendezvous hashing moves only those) is *moving*: its batches wait in the broker
   (``analytics.ingest.held``) and its queries go to SQL, marked not live. The other sites go on.
2. Wait ``settle`` seconds: longer than a process keeps its copy of the placement plus a batch in
   flight, so no process writes a moving site's rollups any more.
3. Copy each moving site's keys (``DUMP`` / ``RESTORE`` with their TTLs, batch markers included)
   to its new server, over whatever an earlier move left there.
4. Switch: the placement names the new set alone, and the waiting batches are applied there. After
   another ``settle`` (no process reads the old copies any more), the old copies are deleted.

Interrupted, the move is resumed by running it again with the same servers: until the switch the
old copies are the authority, and the copy starts over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from accounts.models import Site
from analytics.ingest import rollups
from spinnakr import breaker, placement, redis_clients

logger = logging.getLogger(__name__)

LOCK_KEY = "rollups:rebalance"
LOCK_SECONDS = 6 * 3600
SETTLE_SECONDS = placement.TTL + 3.0
CHUNK = 500


class RebalanceError(Exception):
    pass


@dataclass
class Report:
    moved: int = 0
    keys: int = 0
    seconds: float = 0.0


def rebalance(
    servers: tuple[str, ...], *, settle: float = SETTLE_SECONDS, say: Callable[[str], None] = lambda _: None
) -> Report:
    """Move the sites whose server differs under ``servers`` (see the module docstring)."""
    started = time.monotonic()
    data = redis_clients.data()
    if not data.set(LOCK_KEY, "1", nx=True, ex=LOCK_SECONDS):
        raise RebalanceError(f"another rebalance is running (or died: delete {LOCK_KEY} in the data Redis)")
    try:
        placement.forget()
        before = redis_clients.rollup_placement()
        if before.next and set(before.next) != set(servers):
            raise RebalanceError("a move to other servers was interrupted: run it again with its servers first")
        report = Report()
        if set(before.servers) == set(servers) and not before.next:
            say("those servers are in use already: nothing to move")
            return report
        moving_set = placement.Placement(before.servers, servers)
        _answering(moving_set.every_server())  # before anything changes
        _carry_epoch(before.servers, servers)
        data.set(placement.KEY, moving_set.dumps())
        say(f"announced the move to {len(servers)} servers; waiting {settle:.0f} s")
        time.sleep(settle)
        sites = [site for site in Site.objects.order_by("pk").values_list("pk", flat=True) if moving_set.moving(site)]
        try:
            for site in sites:
                report.keys += _copy(site, moving_set.server_of(site), moving_set.destination(site))
        except redis.ConnectionError as exc:
            raise RebalanceError(
                f"a server stopped answering during the copy ({exc}); the moving sites' batches wait: "
                "run the command again with the same servers once it answers"
            ) from exc
        report.moved = len(sites)
        data.set(placement.KEY, placement.Placement(servers).dumps())
        say(f"copied {report.moved} sites ({report.keys} keys); switched; waiting {settle:.0f} s")
        time.sleep(settle)
        for site in sites:
            _unlink(redis_clients.raw(moving_set.server_of(site)), site)
        placement.forget()
    finally:
        data.delete(LOCK_KEY)
    report.seconds = time.monotonic() - started
    logger.info("rebalance.done", extra={"sites": report.moved, "keys": report.keys, "seconds": report.seconds})
    return report


def _answering(urls: tuple[str, ...]) -> None:
    for url in urls:
        try:
            redis_clients.raw(url).ping()
        except redis.RedisError as exc:
            raise RebalanceError(f"{breaker.safe(url)} does not answer ({exc}); nothing was changed") from exc


def _carry_epoch(before: tuple[str, ...], after: tuple[str, ...]) -> None:
    """A new server has seen every batch its sites had (their keys are copied to it): it takes
    the latest ``rollups:epoch`` of the servers in use, not the moment of its first batch."""
    epochs = [int(raw) for url in before if (raw := redis_clients.raw(url).get(rollups.EPOCH_KEY)) is not None]
    for url in after:
        redis_clients.raw(url).set(rollups.EPOCH_KEY, max(epochs, default=0), nx=True)


def _copy(site_id: int, source_url: str, target_url: str) -> int:
    source, target = redis_clients.raw(source_url), redis_clients.raw(target_url)
    _unlink(target, site_id)
    keys = list(source.scan_iter(match=f"{rollups.prefix(site_id)}*", count=1000))
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        read = source.pipeline(transaction=False)
        for key in chunk:
            read.dump(key)
            read.pttl(key)
        values = read.execute()
        write = target.pipeline(transaction=False)
        for key, dumped, ttl in zip(chunk, values[::2], values[1::2], strict=True):
            if dumped is not None:  # expired meanwhile
                write.restore(key, max(int(ttl), 0), dumped, replace=True)
        write.execute()
    logger.info("rebalance.site_copied", extra={"site_id": site_id, "keys": len(keys)})
    return len(keys)


def _unlink(client: redis.Redis, site_id: int) -> None:
    keys = list(client.scan_iter(match=f"{rollups.prefix(site_id)}*", count=1000))
    for start in range(0, len(keys), CHUNK):
        client.unlink(*keys[start : start + CHUNK])
