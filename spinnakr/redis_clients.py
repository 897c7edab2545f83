"""The clients of the data Redis (salts, site cache, quota flags) and of the rollups: built here only.

Sync clients are one per process, address and timeout (thread-safe, pooled); an async client is made
per call, because it belongs to the event loop that first uses it, and its caller closes it.
``for_site`` is the client of the server holding a site's rollups: with ``REDIS_URLS`` one of
those servers, chosen by rendezvous hashing on the site id (``spinnakr.rendezvous``); without it
the data Redis; with one ``redis-cluster://`` entry, the Redis Cluster it seeds (one client for
every site: the hash tag ``{s:<id>}`` picks the slot). ``rollup_servers`` lists them all, for what
concerns every site's rollups.
"""

from __future__ import annotations

import functools

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from spinnakr import redis_scripts, rendezvous

# A connection attempt fails after at most this long even where calls may wait longer.
CONNECT_TIMEOUT = 2.0
# A server of the rollups: a plain Redis, or every master of a Redis Cluster as one.
Rollups = redis.Redis | RedisCluster


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
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=connect)


def for_site(site_id: int) -> Rollups:
    """The client of the server holding ``site_id``'s rollups."""
    urls: tuple[str, ...] = settings.ROLLUP_REDIS_URLS
    if not urls:
        return data()
    return _server(urls[0], None) if len(urls) == 1 else _data(rendezvous.choose(urls, site_id), None)


def site_pipeline(site_id: int) -> redis.client.Pipeline:
    """A pipeline (no transaction) to the server holding ``site_id``'s rollups. On a cluster, a plain
    one to the master owning the site's slot (``redis_scripts.SitePipeline``): redis-py's cluster
    pipeline refuses multi-key commands (PFCOUNT, MGET, …) and EVALSHA even within one slot."""
    server = for_site(site_id)
    if isinstance(server, RedisCluster):
        # The site's hash tag (analytics.ingest.rollups.prefix) decides its slot.
        return redis_scripts.SitePipeline(server, f"{{s:{site_id}}}")
    return server.pipeline(transaction=False)


def rollup_urls() -> tuple[str, ...]:
    """The addresses of the servers holding rollups (the data Redis's alone without ``REDIS_URLS``)."""
    urls: tuple[str, ...] = settings.ROLLUP_REDIS_URLS
    return urls or (settings.REDIS_DATA_URL,)


def rollup_servers(*, timeout: float | None = None) -> list[Rollups]:
    """A client of each server holding rollups, in the order of ``REDIS_URLS``; with ``timeout``,
    as ``data`` takes it. A cluster's client reads the slot map when built: unreachable, it raises
    ``RedisClusterException``."""
    return [_server(url, timeout) for url in rollup_urls()]


def _server(url: str, timeout: float | None) -> Rollups:
    return _cluster(url, timeout) if rendezvous.is_cluster(url) else _data(url, timeout)


@functools.cache
def _cluster(url: str, timeout: float | None) -> RedisCluster:
    # Any node seeds the client, which learns the others and the slot map from it.
    scheme, _, rest = url.partition("://")
    connect = CONNECT_TIMEOUT if timeout is None else min(timeout, CONNECT_TIMEOUT)
    return RedisCluster.from_url(
        f"{scheme.removesuffix('-cluster')}://{rest}",
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=connect,
    )


def ping_rollups(url: str, *, timeout: float) -> None:
    """Raise ``redis.ConnectionError`` unless the server of ``url`` answers a PING, or, for a
    cluster, unless each master does and the cluster's state is ``ok`` (it serves every slot)."""
    try:
        server = _server(url, timeout)
        if not isinstance(server, RedisCluster):
            server.ping()
            return
        server.ping(target_nodes=RedisCluster.PRIMARIES)
        state = server.cluster_info().get("cluster_state")
    except RedisClusterException as exc:
        raise redis.ConnectionError(str(exc)) from exc
    if state != "ok":
        raise redis.ConnectionError(f"cluster_state is {state}")


def data_async(*, timeout: float | None = None) -> aioredis.Redis:
    """A new client of the data Redis for the running event loop, answering bytes; the caller
    closes it (``aclose``)."""
    connect = CONNECT_TIMEOUT if timeout is None else min(timeout, CONNECT_TIMEOUT)
    return aioredis.Redis.from_url(settings.REDIS_DATA_URL, socket_timeout=timeout, socket_connect_timeout=connect)
