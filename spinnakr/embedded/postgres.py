"""The embedded PostgreSQL: the ``pgserver`` wheel's binaries, data in ``var/pg``, a Unix socket only."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg

from spinnakr.embedded.paths import EmbeddedError, cmdline, package_dir, pid_alive, run_dir, var_dir

DATABASE = "spinnakr"
USER = "postgres"
# PostgreSQL refuses to run as root; as root the server runs as this system user.
SYSTEM_USER = "spinnakr-pg"


def socket_dir() -> Path:
    return run_dir() / "pg"


def database_url() -> str:
    return f"postgres://{USER}@/{DATABASE}?host={socket_dir()}"


def bin_path(name: str) -> Path:
    return package_dir("pgserver") / "pginstall" / "bin" / name


def data_dir() -> Path:
    return var_dir() / "pg" / "data"


def run_as_pg(args: list[str], *, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool, dropping root to the PostgreSQL system user."""
    uid, gid = _identity()
    return subprocess.run(
        args,
        check=check,
        capture_output=True,
        text=True,
        user=uid,
        group=gid,
        extra_groups=[] if uid is not None else None,
    )


def _identity() -> tuple[int | None, int | None]:
    if os.geteuid() != 0:
        return None, None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def chown_for_pg(path: Path) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def server_pid() -> int | None:
    pid_file = data_dir() / "postmaster.pid"
    try:
        first = pid_file.read_text().splitlines()[0]
        return int(first)
    except (OSError, ValueError, IndexError):
        return None


def running() -> bool:
    pid = server_pid()
    if pid is None or not pid_alive(pid) or "postgres" not in cmdline(pid):
        return False
    return (socket_dir() / ".s.PGSQL.5432").exists()


def start() -> None:
    _identity()  # creates the system user before anything is chowned to it
    data = data_dir()
    sockets = socket_dir()
    for directory in (var_dir(), data.parent, run_dir()):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
    sockets.mkdir(parents=True, exist_ok=True)
    chown_for_pg(sockets)
    chown_for_pg(data.parent)
    log = data.parent / "postgres.log"
    if not (data / "PG_VERSION").exists():
        if data.exists():
            shutil.rmtree(data)
        run_as_pg(
            [str(bin_path("initdb")), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C"],
            check=True,
        )
    # A postmaster.pid left by a crash names a dead pid, or a pid reused by an
    # unrelated process that the postmaster's own check would mistake for itself.
    pid = server_pid()
    if pid is not None and (not pid_alive(pid) or "postgres" not in cmdline(pid)):
        (data / "postmaster.pid").unlink(missing_ok=True)
    for stale in sockets.glob(".s.PGSQL.*"):
        stale.unlink(missing_ok=True)
    options = (
        f"-c listen_addresses='' -c unix_socket_directories='{sockets}' "
        "-c max_connections=300 -c shared_buffers=256MB -c synchronous_commit=on"
    )
    if log.exists():
        chown_for_pg(log)
    result = run_as_pg(
        [str(bin_path("pg_ctl")), "start", "-w", "-t", "60", "-D", str(data), "-l", str(log), "-o", options]
    )
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise EmbeddedError(f"embedded PostgreSQL did not start: {result.stderr.strip()}\n{tail}")
    _ensure_database()


def _ensure_database() -> None:
    with psycopg.connect(host=str(socket_dir()), user=USER, dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')


def stop() -> None:
    if not running():
        return
    run_as_pg([str(bin_path("pg_ctl")), "stop", "-w", "-t", "60", "-m", "fast", "-D", str(data_dir())])
