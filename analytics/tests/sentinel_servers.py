"""A rollup server behind Sentinel on loopback: a master, its replica and three Sentinels (quorum 2).

All are the ``valkey-server`` the embedded default ships (``--sentinel`` for the Sentinels), with
short timeouts so a failover takes a few seconds.
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import redis

from analytics.tests.outage_servers import free_port
from spinnakr.embedded import valkey as embedded_valkey
from spinnakr.tests.waiting import wait_for

DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


class SentinelGroup:
    """The master ``name`` at first on ``ports[0]``, its replica on ``ports[1]``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # A name of its own: a process keeps one client per REDIS_URLS entry.
        self.name = f"rollups-{uuid.uuid4().hex[:8]}"
        self.ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The ``REDIS_URLS`` entry of the group (database 0: settings add the tests' 8)."""
        return f"redis+sentinel://{self.name}/0"

    @property
    def sentinels(self) -> str:
        """``REDIS_SENTINELS``."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def addresses(self) -> tuple[tuple[str, int], ...]:
        return tuple(("127.0.0.1", port) for port in self.sentinel_ports)

    def _run(self, port: int, *args: str) -> None:
        self.processes[port] = subprocess.Popen(
            [
                str(embedded_valkey.binary()),
                *args,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        master, replica = self.ports
        self._run(master, "--save", "", "--appendonly", "no")
        self._run(replica, "--save", "", "--appendonly", "no", "--replicaof", f"127.0.0.1 {master}")
        for port in self.sentinel_ports:
            config = self.directory / f"sentinel-{port}.conf"
            config.write_text(
                f"sentinel monitor {self.name} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {self.name} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {self.name} {FAILOVER_TIMEOUT_MS}\n"
            )
            self._run(port, str(config), "--sentinel")
        wait_for(self._ready, timeout=60)

    def _ready(self) -> bool:
        """Every Sentinel knows the two others and the replica, and the replica is in sync."""
        try:
            views = [
                cast(dict[str, Any], self.sentinel(port).sentinel_master(self.name)) for port in self.sentinel_ports
            ]
            link = self.client(self.ports[1]).info("replication").get("master_link_status")
        except redis.RedisError:
            return False
        return link == "up" and all(v["num-other-sentinels"] == 2 and v["num-slaves"] == 1 for v in views)

    def sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=5, decode_responses=True)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=5, decode_responses=True)

    def master_port(self) -> int:
        """The master's port as the Sentinels' quorum sees it."""
        return self.named_by(self.sentinel_ports[0])

    def named_by(self, sentinel_port: int) -> int:
        """The master's port as one Sentinel sees it."""
        address = cast(tuple[str, int], self.sentinel(sentinel_port).sentinel_get_master_addr_by_name(self.name))
        return int(address[1])

    def replicated(self) -> None:
        """Return once the replica holds every write the master took so far."""
        master = self.client(self.master_port())
        master.set("test:probe", "1")
        assert master.execute_command("WAIT", 1, 10_000) == 1

    def kill(self, port: int) -> None:
        """SIGKILL: the server dies with whatever it had not yet sent its replica."""
        self.processes[port].send_signal(signal.SIGKILL)
        self.processes[port].wait(timeout=10)

    def wait_for_failover(self, away_from: int) -> int:
        """The new master's port, once every Sentinel names it and it answers as a master."""

        def promoted() -> bool:
            try:
                named = {self.named_by(port) for port in self.sentinel_ports}
                port = named.pop() if len(named) == 1 else away_from
                return port != away_from and self.client(port).info("replication")["role"] == "master"
            except redis.RedisError:
                return False

        wait_for(promoted, timeout=60)
        return self.master_port()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=15)


def sentinel_group(directory: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(directory)
    try:
        group.start()
        yield group
    finally:
        group.stop()
