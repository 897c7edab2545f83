"""The clients of the data Redis (rollups, salts, site cache, quota flags): built here only.

Sync clients are one per process, address and timeout (thread-safe, pooled); an async client is made
per call, because it belongs to the event loop that first uses it, and its caller closes it.
``for_site`` is the client holding a site's rollups: the same server for every site today, the
place where sites will be spread over several servers.
"""

from __future__ import annotations

import functools

import redis
import redis.asyncio as aioredis
from django.conf import settings

# A connection attempt fails after at most this long even where calls may wait longer.
CONNECT_TIMEOUT = 2.0


def data(*, timeout: float | None = None) -> redis.Redis:
    """The process's client of the data Redis, answering text; with ``timeout``, one whose
    calls fail after that many seconds (for request paths and health checks, not for scripts
    that may run long)."""
    return _data(settings.REDIS_DATA_URL, timeout)


@functools.cache
def _data(url: str, timeout: float | None) -> redis.Redis:
    # Keyed by the address too: a test may point REDIS_DATA_URL at a server of its own.
    connect = CONNECT_TIMEOUT if timeout is None else min(timeout, CONNECT_TIMEOUT)
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=connect)


def for_site(site_id: int) -> redis.Redis:
    """The client of the server holding ``site_id``'s rollups and keys."""
    return data()


def data_async(*, timeout: float | None = None) -> aioredis.Redis:
    """A new client of the data Redis for the running event loop, answering bytes; the caller
    closes it (``aclose``)."""
    connect = CONNECT_TIMEOUT if timeout is None else min(timeout, CONNECT_TIMEOUT)
    return aioredis.Redis.from_url(settings.REDIS_DATA_URL, socket_timeout=timeout, socket_connect_timeout=connect)
