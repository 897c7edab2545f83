"""The clients of the data Redis (salts, site cache, quota flags) and of the rollups: built here only.

Sync clients are one per process, address and timeout (thread-safe, pooled); an async client is made
per call, because it belongs to the event loop that first uses it, and its caller closes it.
``for_site`` is the client of the server holding a site's rollups: with ``REDIS_URLS`` one of
those servers, chosen by rendezvous hashing on the site id (``spinnakr.rendezvous``); without it
the data Redis. ``rollup_servers`` lists them all, for what concerns every site's rollups. A
server of ``REDIS_URLS`` may be a master watched by Sentinel (``redis+sentinel://<name>/<db>``):
its client asks ``REDIS_SENTINELS`` for the master's address at each connection, so it follows a
failover.
"""

from __future__ import annotations

import functools
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.sentinel
from django.conf import settings

from spinnakr import rendezvous

# A connection attempt fails after at most this long even where calls may wait longer.
CONNECT_TIMEOUT = 2.0


def data(*, timeout: float | None = None) -> redis.Redis:
    """The process's client of the data Redis, answering text; with ``timeout``, one whose
    calls fail after that many seconds (for request paths and health checks, not for scripts
    that may run long)."""
    return _data(settings.REDIS_DATA_URL, timeout)


@functools.cache
def _data(url: str, timeout: float | None) -> redis.Redis:
    # One client per address, shared by the data Redis and a rollups server of the same address;
    # keyed by it, a test may point the settings at servers of its own.
    connect = CONNECT_TIMEOUT if timeout is None else min(timeout, CONNECT_TIMEOUT)
    if rendezvous.is_sentinel(url):
        return _sentinel_master(url, timeout, connect)
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=connect)


def _sentinel_master(url: str, timeout: float | None, connect: float) -> redis.Redis:
    """The client of the master ``redis+sentinel://[[user]:password@]<name>/<db>`` names."""
    parts = urlsplit(url)
    return _sentinels(settings.REDIS_SENTINELS).master_for(
        parts.netloc.rpartition("@")[2],
        db=int(parts.path.strip("/") or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=connect,
    )


@functools.cache
def _sentinels(addresses: tuple[tuple[str, int], ...]) -> redis.sentinel.Sentinel:
    # Asked where a master is at each new connection: a Sentinel that does not answer within the
    # connect timeout is passed over for the next.
    timeouts = {"socket_timeout": CONNECT_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT}
    return redis.sentinel.Sentinel(list(addresses), sentinel_kwargs=timeouts)


def for_site(site_id: int) -> redis.Redis:
    """The client of the server holding ``site_id``'s rollups."""
    urls: tuple[str, ...] = settings.ROLLUP_REDIS_URLS
    if not urls:
        return data()
    return _data(urls[0] if len(urls) == 1 else rendezvous.choose(urls, site_id), None)


def rollup_urls() -> tuple[str, ...]:
    """The addresses of the servers holding rollups (the data Redis's alone without ``REDIS_URLS``)."""
    urls: tuple[str, ...] = settings.ROLLUP_REDIS_URLS
    return urls or (settings.REDIS_DATA_URL,)


def rollup_servers(*, timeout: float | None = None) -> list[redis.Redis]:
    """A client of each server holding rollups, in the order of ``REDIS_URLS``; with ``timeout``,
    as ``data`` takes it."""
    return [_data(url, timeout) for url in rollup_urls()]


def data_async(*, timeout: float | None = None) -> aioredis.Redis:
    """A new client of the data Redis for the running event loop, answering bytes; the caller
    closes it (``aclose``)."""
    connect = CONNECT_TIMEOUT if timeout is None else min(timeout, CONNECT_TIMEOUT)
    return aioredis.Redis.from_url(settings.REDIS_DATA_URL, socket_timeout=timeout, socket_connect_timeout=connect)
