"""The clients of the data Redis (salts, site cache, quota flags) and of the rollups: built here only.

Sync clients are one per process, address and timeout (thread-safe, pooled); an async client is made
per call, because it belongs to the event loop that first uses it, and its caller closes it.
``for_site`` is the client of the server holding a site's rollups: with ``REDIS_URLS`` one of
the servers in use (``spinnakr.placement``), chosen by rendezvous hashing on the site id
(``spinnakr.rendezvous``); without it the data Redis; with one ``redis-cluster://`` entry, the
Redis Cluster it seeds (one client for every site: the hash tag ``{s:<id>}`` picks the slot).
``rollup_servers`` lists them all, for what concerns every site's rollups. A server of
``REDIS_URLS`` may be a master watched by Sentinel (``redis+sentinel://<name>/<db>``): its client
asks ``REDIS_SENTINELS`` for the master's address at each connection, so it follows a failover.
"""

from __future__ import annotations

import functools
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.sentinel
from django.conf import settings
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from spinnakr import placement, redis_scripts, rendezvous

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


@functools.cache
def raw(url: str) -> redis.Redis:
    """A client of ``url`` answering bytes: ``DUMP`` payloads, when sites move between servers."""
    return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT)


def for_site(site_id: int, *, timeout: float | None = None) -> Rollups:
    """The client of the server holding ``site_id``'s rollups; ``timeout`` as ``data`` takes it."""
    return _server(rollup_url(site_id), timeout)


def site_pipeline(site_id: int) -> redis.client.Pipeline:
    """A pipeline (no transaction) to the server holding ``site_id``'s rollups. On a cluster, a plain
    one to the master owning the site's slot (``redis_scripts.SitePipeline``): redis-py's cluster
    pipeline refuses multi-key commands (PFCOUNT, MGET, …) and EVALSHA even within one slot."""
    server = for_site(site_id)
    if isinstance(server, RedisCluster):
        # The site's hash tag (analytics.ingest.rollups.prefix) decides its slot.
        return redis_scripts.SitePipeline(server, f"{{s:{site_id}}}")
    return server.pipeline(transaction=False)


def rollup_url(site_id: int) -> str:
    """The address of the server holding ``site_id``'s rollups."""
    return rollup_placement().server_of(site_id)


def rollup_placement() -> placement.Placement:
    """The rollups servers in use, and those of a move in progress (``spinnakr.placement``); the
    data Redis alone without ``REDIS_URLS``. One answer for several decisions: it may change
    between two calls."""
    if not settings.ROLLUP_REDIS_URLS:
        return placement.Placement((settings.REDIS_DATA_URL,))
    return placement.current(data(), settings.ROLLUP_REDIS_URLS)


def rollup_urls() -> tuple[str, ...]:
    """The addresses of the servers holding rollups (the data Redis's alone without ``REDIS_URLS``);
    during a move, those of both sets."""
    return rollup_placement().every_server()


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
