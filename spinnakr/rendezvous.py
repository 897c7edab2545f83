"""Which of several Redis servers holds a site's rollups: rendezvous (highest-random-weight) hashing.

Each server gets a weight per site, a 64-bit BLAKE2b hash of (the server's identity, the site id),
and the site lives on the server of the highest weight. The choice depends on the set of servers
only, never on their order, and removing a server moves only the sites it held (each to the server
of its next-highest weight). Python's ``hash()`` would not do: it is salted per process, and every
web and worker process must agree.

A server's identity is its address without scheme or credentials (``host:port/db``, or
``unix:path/db``): turning on TLS or changing a password does not move sites. A server behind
Sentinel (``redis+sentinel://<master name>/<db>``) is known by its master's name
(``sentinel:<name>/<db>``): a failover, which changes the address, moves no site.

A ``redis-cluster://`` (or ``rediss-cluster://``) address names a Redis Cluster, which places each
site itself: the slot of its hash tag ``{s:<id>}``. It is then the only address.
"""

from __future__ import annotations

import functools
import hashlib
from urllib.parse import parse_qsl, urlsplit

DEFAULT_PORT = 6379
SENTINEL = "redis+sentinel"


def is_sentinel(url: str) -> bool:
    """Whether ``url`` names a master watched by Sentinel rather than an address."""
    return url.startswith(f"{SENTINEL}://")


CLUSTER_SCHEMES = ("redis-cluster", "rediss-cluster")
# What a REDIS_URLS entry may start with.
SCHEMES = ("redis", "rediss", "unix", SENTINEL, *CLUSTER_SCHEMES)


def is_cluster(url: str) -> bool:
    """Whether ``url`` seeds a Redis Cluster rather than naming one server."""
    return url.startswith(tuple(f"{scheme}://" for scheme in CLUSTER_SCHEMES))


def cluster_problem(urls: list[str]) -> str | None:
    """Why the list ``urls`` cannot be, for a cluster address in it, or None."""
    clusters = [url for url in urls if is_cluster(url)]
    if clusters and len(urls) > 1:
        return "a redis-cluster:// entry must be the only one (the cluster spreads the sites over its nodes itself)"
    if clusters and urlsplit(clusters[0]).path.strip("/") not in {"", "0"}:
        return "a Redis Cluster has database 0 only: give the redis-cluster:// entry no database"
    return None


@functools.cache
def identity(url: str) -> str:
    """The server and database ``url`` names, without scheme or credentials."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    db = query.get("db") or (parts.path.strip("/") if parts.scheme != "unix" else "") or "0"
    if parts.scheme == "unix":
        return f"unix:{parts.path}/{db}"
    if parts.scheme == SENTINEL:
        return f"sentinel:{parts.netloc.rpartition('@')[2]}/{db}"
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port or DEFAULT_PORT}/{db}"


def weight(server: str, site_id: int) -> int:
    """The 64-bit weight of the server of identity ``server`` for ``site_id``."""
    digest = hashlib.blake2b(f"{server}\n{site_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


# Keyed by the list too: tests point the settings at servers of their own. A process holds one
# entry per site it has seen (a few hundred bytes each).
@functools.lru_cache(maxsize=1 << 17)
def choose(urls: tuple[str, ...], site_id: int) -> str:
    """The URL among ``urls`` of the server holding ``site_id``."""
    return max(urls, key=lambda url: (weight(identity(url), site_id), identity(url)))
