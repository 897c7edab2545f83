"""The soak's own Valkeys: the rollup servers (``REDIS_URLS``) and the broker, each a process the
faults may stop, restart or wipe. PostgreSQL and the data Redis stay the embedded ones (or those
``DATABASE_URL`` and ``REDIS_URL`` name)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from analytics.tests.outage_servers import ThrowawayValkey, free_port


class Fleet:
    """``rollups`` rollup Valkeys on loopback TCP ports and a broker Valkey on a Unix socket,
    each appending every write to its AOF (as the embedded servers do) in a directory of its own."""

    def __init__(self, rollups: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="spinnakr-soak-"))
        self.rollups = [ThrowawayValkey(self._directory(f"rollups{n}"), free_port()) for n in range(rollups)]
        self.broker = ThrowawayValkey(self._directory("broker"))

    def _directory(self, name: str) -> Path:
        path = self.root / name
        path.mkdir()
        return path

    @property
    def rollup_urls(self) -> list[str]:
        return [server.tcp_url for server in self.rollups]

    def start(self) -> None:
        for server in [*self.rollups, self.broker]:
            server.start()

    def wipe(self, server: ThrowawayValkey) -> None:
        """Kill ``server`` (SIGKILL: nothing written at exit) and delete its data, as a lost host."""
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait(30)
        for path in server.directory.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

    def stop(self) -> None:
        for server in [*self.rollups, self.broker]:
            with contextlib.suppress(Exception):
                server.stop()
        shutil.rmtree(self.root, ignore_errors=True)
