"""Running many Lua script calls in one round trip per server, on one server or a Redis Cluster,
and a site's pipeline on a cluster.

On a plain server the calls share one pipeline, which loads a script the server lacks before it
runs (``SCRIPT EXISTS``, then ``SCRIPT LOAD``). redis-py's cluster pipeline refuses ``EVALSHA``
outright, so on a cluster the calls go to one plain pipeline per master, each call to the master
holding the slot of its first key, with the same loading. A call answered ``MOVED``, ``ASK`` or
``TRYAGAIN`` (its slot moved since the client last read the slot map) did not run: it is sent
again through the cluster client, which follows the redirection and refreshes the map. A master
that does not answer makes the client read the slot map again before the error goes up, so the
caller's retry reaches the replica that took over.

A site's other pipelines (``SitePipeline``) go to the master owning the site's slot for the same
reason; one whose master does not answer or no longer owns the slot reads the slot map again and
runs once more, on the master that holds the slot now.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import AskError, ClusterDownError, MovedError, RedisClusterException, TryAgainError

# (script, keys, args): one call. Every key a call touches shares the slot of its first key.
Call = tuple[Script, Sequence[str], Sequence[Any]]
_REDIRECTED = (MovedError, AskError, TryAgainError)
_MOVED_OR_LOST = (*_REDIRECTED, ClusterDownError, redis.ConnectionError, redis.TimeoutError)


def run(client: redis.Redis | RedisCluster, calls: Sequence[Call]) -> list[Any]:
    """The answers of ``calls`` in order; the first error of a call is raised."""
    if not isinstance(client, RedisCluster):
        return _pipeline(client, calls)
    by_node: dict[str, tuple[Any, list[int]]] = {}
    for n, (_, keys, _) in enumerate(calls):
        node = client.get_node_from_key(keys[0])
        by_node.setdefault(node.name, (node, []))[1].append(n)
    results: list[Any] = [None] * len(calls)
    errors: list[Exception] = []  # raised once every master has run its calls, as one pipeline would
    for node, indexes in by_node.values():
        try:
            answers = _pipeline(client.get_redis_connection(node), [calls[n] for n in indexes], raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError):
            # The master may have failed over to its replica: the caller's retry finds the new one.
            _read_slots(client)
            raise
        for n, answer in zip(indexes, answers, strict=True):
            if isinstance(answer, _REDIRECTED):
                script, keys, args = calls[n]
                answer = script(keys=keys, args=args, client=client)
            elif isinstance(answer, Exception):
                errors.append(answer)
            results[n] = answer
    if errors:
        raise errors[0]
    return results


def _pipeline(client: redis.Redis, calls: Sequence[Call], *, raise_on_error: bool = True) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for script, keys, args in calls:
        script(keys=keys, args=args, client=pipe)
    return pipe.execute(raise_on_error=raise_on_error)


class SitePipeline(redis.client.Pipeline):
    """A plain pipeline (no transaction) to the master of a cluster that owns ``key``'s slot.

    Its commands must be safe to run twice: after a failover or a resharding it runs them again.
    """

    def __init__(self, cluster: RedisCluster, key: str) -> None:
        node = cluster.get_redis_connection(cluster.get_node_from_key(key))
        super().__init__(node.connection_pool, node.response_callbacks, False, None)
        self.cluster_client = cluster
        self.key = key

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = list(self.command_stack)
        try:
            return super().execute(raise_on_error)
        except _MOVED_OR_LOST:
            _read_slots(self.cluster_client)
        node = self.cluster_client.get_redis_connection(self.cluster_client.get_node_from_key(self.key))
        again = node.pipeline(transaction=False)
        for args, options in stack:
            again.pipeline_execute_command(*args, **options)
        return again.execute(raise_on_error)


def _read_slots(cluster: RedisCluster) -> None:
    """Read the cluster's nodes and slot map again; a failure leaves the old map for the next try."""
    with contextlib.suppress(redis.RedisError, RedisClusterException):
        cluster.nodes_manager.initialize()
