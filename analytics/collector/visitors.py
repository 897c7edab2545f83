"""Visitor ids and the daily salts they are keyed with.

The salts live in Redis (hash ``salts``: UTC date → hex salt) and are cached in process memory
with their date, so a request never waits on Redis: the cache is refreshed only when the UTC
day changes (``ensure_salts``), and the beat task ``analytics.rotate_salts`` (``rotate``)
creates the day's salt and deletes those older than yesterday, so yesterday's visitor ids can
no longer be recomputed. The client address and the raw user agent go into the keyed BLAKE2b
hash and nowhere else.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
import threading

import redis
from django.conf import settings

from spinnakr import redis_clients

SALTS_KEY = "salts"


def visitor_id(salt: bytes, site_id: int, address: str, user_agent: str) -> int:
    """A signed 64-bit keyed hash: stable for one visitor on one site for one UTC day."""
    # BLAKE2b(key=salt) of site_id (8 bytes, big-endian, signed) ‖ address ‖ 0x00 ‖ user agent.
    digest = _site_hasher(salt, site_id).copy()
    digest.update(f"{address}\x00{user_agent}".encode("utf-8", "replace"))
    return int.from_bytes(digest.digest(), "big", signed=True)


@functools.lru_cache(maxsize=4096)
def _site_hasher(salt: bytes, site_id: int) -> hashlib.blake2b:
    """The keyed hash state after the site id, copied per event (keying costs a compression)."""
    digest = hashlib.blake2b(key=salt, digest_size=8)
    digest.update(site_id.to_bytes(8, "big", signed=True))
    return digest


def client_visitor_id(site_id: int, client_id: str) -> int:
    """A server sender's own visitor id, mapped to 64 bits with a key only this service knows."""
    digest = _client_hasher(settings.SECRET_KEY, site_id).copy()
    digest.update(client_id.encode("utf-8", "replace"))
    return int.from_bytes(digest.digest(), "big", signed=True)


@functools.lru_cache(maxsize=4096)
def _client_hasher(secret: str, site_id: int) -> hashlib.blake2b:
    key = hashlib.blake2b(secret.encode(), digest_size=32, person=b"spinnakr-vid").digest()
    digest = hashlib.blake2b(key=key, digest_size=8)
    digest.update(site_id.to_bytes(8, "big", signed=True))
    return digest


def utc_day(epoch_seconds: float) -> dt.date:
    return _day(int(epoch_seconds // 86_400))


def utc_day_us(epoch_us: int) -> dt.date:
    return _day(epoch_us // 86_400_000_000)


@functools.lru_cache(maxsize=64)
def _day(days: int) -> dt.date:
    return _EPOCH_DAY + dt.timedelta(days=days)


_EPOCH_DAY = dt.date(1970, 1, 1)


# Salts are read on the collector's request path: a Redis that does not answer fails it quickly.
SALTS_TIMEOUT = 5.0


def data_redis() -> redis.Redis:
    return redis_clients.data(timeout=SALTS_TIMEOUT)


def _str(value: bytes | str | None) -> str:
    if value is None:
        raise LookupError("salt missing")
    return value.decode() if isinstance(value, bytes) else value


class Salts:
    """The salts of today and yesterday (UTC), cached with the day they were read on."""

    def __init__(self) -> None:
        self._day: dt.date | None = None
        self._by_day: dict[dt.date, bytes] = {}
        self._lock = threading.Lock()

    def fresh(self, today: dt.date) -> bool:
        return self._day == today

    def load(self, today: dt.date) -> None:
        """Read (creating when missing) today's salt and yesterday's; blocking: call off the event loop."""
        yesterday = today - dt.timedelta(days=1)
        client = data_redis()
        client.hsetnx(SALTS_KEY, today.isoformat(), secrets.token_hex(32))
        values = client.hmget(SALTS_KEY, [today.isoformat(), yesterday.isoformat()])
        by_day = {today: bytes.fromhex(_str(values[0]))}
        if values[1] is not None:
            by_day[yesterday] = bytes.fromhex(_str(values[1]))
        with self._lock:
            if set(by_day.values()) != set(self._by_day.values()):
                _site_hasher.cache_clear()  # no state keyed by a deleted salt stays in memory
            self._by_day = by_day
            self._day = today

    def for_day(self, day: dt.date) -> bytes | None:
        """The salt of ``day`` if it is still kept (today or yesterday), else None."""
        return self._by_day.get(day)

    def clear(self) -> None:
        with self._lock:
            self._by_day = {}
            self._day = None
            _site_hasher.cache_clear()


SALTS = Salts()


def rotate(today: dt.date | None = None) -> list[str]:
    """Create today's salt and delete every salt older than yesterday; returns the deleted days."""
    today = today or dt.datetime.now(dt.UTC).date()
    keep = {today.isoformat(), (today - dt.timedelta(days=1)).isoformat()}
    client = data_redis()
    client.hsetnx(SALTS_KEY, today.isoformat(), secrets.token_hex(32))
    old = [_str(field) for field in client.hkeys(SALTS_KEY) if _str(field) not in keep]
    if old:
        client.hdel(SALTS_KEY, *old)
    return old
