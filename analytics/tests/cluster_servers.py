"""A throwaway Redis Cluster for the tests: three Valkey masters on loopback ports.

The ``valkey-server`` of the embedded default, started with ``cluster-enabled yes``; the slots are
split evenly between the masters with ``CLUSTER ADDSLOTSRANGE`` and the masters meet with
``CLUSTER MEET`` (both through redis-py: ``valkey-cli`` need not be shipped). Without replicas a
test that stops a master sees the cluster go down, as a real one would; with one replica per
master (``replicas=True``) the replica takes over within seconds (a node timeout of one second).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from analytics.tests.outage_servers import free_port
from spinnakr.embedded import valkey as embedded_valkey
from spinnakr.tests.waiting import wait_for

SLOTS = 16384
# The nodes' cluster file: its name marks a cluster the tests started, the only kind they flush.
CONFIG_FILE = "spinnakr-test-nodes.conf"


class ThrowawayCluster:
    """``masters`` Valkeys in cluster mode under ``directory``, each owning an even share of the
    slots, and with ``replicas`` one replica each (``ports[masters:]``, in the masters' order)."""

    def __init__(self, directory: Path, masters: int = 3, *, replicas: bool = False) -> None:
        self.directory = directory
        self.masters = masters
        self.ports = [free_port() for _ in range(masters * (2 if replicas else 1))]
        self.bus_ports = [free_port() for _ in self.ports]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The address ``REDIS_URLS`` takes: the first master seeds the client."""
        return f"redis-cluster://127.0.0.1:{self.ports[0]}"

    def node(self, n: int) -> redis.Redis:
        return redis.Redis(port=self.ports[n], decode_responses=True, socket_timeout=5)

    def start(self) -> None:
        for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
            directory = self.directory / str(port)
            directory.mkdir(parents=True)
            args = [
                str(embedded_valkey.binary()),
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(directory),
                "--cluster-enabled", "yes",
                "--cluster-port", str(bus_port),
                "--cluster-config-file", CONFIG_FILE,
                "--cluster-node-timeout", "1000",
                "--appendonly", "no",
                "--save", "",
            ]  # fmt: skip
            self.processes.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        nodes = [self.node(n) for n in range(len(self.ports))]
        wait_for(lambda: all(_answers(node) for node in nodes), timeout=30)
        bounds = [SLOTS * n // self.masters for n in range(self.masters + 1)]
        for n, node in enumerate(nodes[: self.masters]):
            node.execute_command("CLUSTER ADDSLOTSRANGE", bounds[n], bounds[n + 1] - 1)
        for port, bus_port in zip(self.ports[1:], self.bus_ports[1:], strict=True):
            nodes[0].execute_command("CLUSTER MEET", "127.0.0.1", port, bus_port)
        wait_for(lambda: all(_serves_every_slot(node, len(nodes)) for node in nodes), timeout=60)
        for n, replica in enumerate(nodes[self.masters :]):
            replica.execute_command("CLUSTER REPLICATE", nodes[n].execute_command("CLUSTER MYID"))
        wait_for(lambda: all(_replicates(replica) for replica in nodes[self.masters :]), timeout=60)

    def master_of(self, key: str) -> int:
        """The index of the master owning ``key``'s slot, as the first node still running says."""
        node = self.node(next(n for n, process in enumerate(self.processes) if process.poll() is None))
        slot = int(node.execute_command("CLUSTER KEYSLOT", key))
        owner = next(master for start, end, master, *_ in node.cluster("slots") if start <= slot <= end)
        return self.ports.index(int(owner[1]))

    def holders(self, pattern: str) -> set[int]:
        """The indexes of the masters holding a key that matches ``pattern``, asked one by one."""
        return {n for n in range(self.masters) if next(self.node(n).scan_iter(match=pattern, count=1000), None)}

    def serves_every_slot(self, n: int) -> bool:
        """Whether node ``n`` sees the cluster's state ``ok``."""
        return _serves_every_slot(self.node(n), None)

    def stop_master(self, n: int) -> None:
        self.processes[n].terminate()
        self.processes[n].wait(timeout=30)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            process.wait(timeout=30)


def _answers(node: redis.Redis) -> bool:
    try:
        return bool(node.ping())
    except redis.ConnectionError:
        return False


def _serves_every_slot(node: redis.Redis, known: int | None) -> bool:
    info = node.cluster("info")
    return bool(info["cluster_state"] == "ok" and known in {None, int(info["cluster_known_nodes"])})


def _replicates(replica: redis.Redis) -> bool:
    info = replica.info("replication")
    return bool(info["role"] == "slave" and info.get("master_link_status") == "up")


def assert_throwaway(cluster: RedisCluster) -> None:
    """Fail unless ``cluster`` is one the tests started: they flush it."""
    started = cluster.config_get("cluster-config-file").get("cluster-config-file")
    assert started == CONFIG_FILE, "REDIS_URLS names a Redis Cluster the tests did not start: refusing to flush it"


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayCluster]:
    """One cluster for the session: tests empty it (``data_redis``), none stops it."""
    cluster = ThrowawayCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
