"""The embedded PostgreSQL and Redis: one per checkout, shared, crash-safe."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from spinnakr.tests.waiting import wait_for

pytestmark = pytest.mark.slow


def checkout_env(var: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    }
    return {**env, "SPINNAKR_VAR_DIR": str(var), **extra}


def embedded_cli(var: Path, command: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "spinnakr.embedded", command],
        env=checkout_env(var),
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def server_pids(var: Path) -> tuple[int, int, int]:
    """The pids of PostgreSQL, the rollups' Valkey and the broker's Valkey."""
    postmaster = int((var / "pg" / "data" / "postmaster.pid").read_text().splitlines()[0])
    valkey = int((var / "redis" / "valkey.pid").read_text().strip())
    broker = int((var / "broker" / "valkey.pid").read_text().strip())
    return postmaster, valkey, broker


def processes_using(var: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        try:
            text = " ".join(process.info["cmdline"] or []) + " ".join(
                f"{k}={v}" for k, v in (process.info["environ"] or {}).items()
            )
        except (psutil.Error, TypeError):
            continue
        if str(var) in text and process.pid != os.getpid():
            found.append(process)
    return found


@pytest.fixture
def var_dir() -> Iterator[Path]:
    # Not under pytest's 0700 tmp_path: the PostgreSQL user must reach it.
    path = Path(tempfile.mkdtemp(prefix="spinnakr-var-"))
    path.chmod(0o755)
    yield path
    subprocess.run(
        [sys.executable, "-m", "spinnakr.embedded", "stop"],
        env=checkout_env(path),
        cwd=settings.BASE_DIR,
        capture_output=True,
        timeout=120,
    )
    shutil.rmtree(path, ignore_errors=True)


def test_servers_are_started_once_and_reused(var_dir: Path) -> None:
    embedded_cli(var_dir, "start")
    first = server_pids(var_dir)

    embedded_cli(var_dir, "start")

    assert server_pids(var_dir) == first
    assert len(set(first)) == 3
    status = embedded_cli(var_dir, "status")
    assert "postgres: running" in status
    assert "redis: running" in status
    assert "broker: running" in status


def test_two_checkouts_run_side_by_side(var_dir: Path) -> None:
    other = Path(tempfile.mkdtemp(prefix="spinnakr-var-"))
    other.chmod(0o755)
    try:
        embedded_cli(var_dir, "start")
        embedded_cli(other, "start")

        assert set(server_pids(var_dir)).isdisjoint(server_pids(other))
        for var in (var_dir, other):
            assert (var / "run" / "redis.sock").exists()
            assert (var / "run" / "broker.sock").exists()
    finally:
        embedded_cli(other, "stop")
        shutil.rmtree(other, ignore_errors=True)


def test_data_survives_a_restart(var_dir: Path) -> None:
    import psycopg
    import redis

    embedded_cli(var_dir, "start")
    pg_host = str(var_dir / "run" / "pg")
    with psycopg.connect(host=pg_host, user="postgres", dbname="spinnakr", autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    redis.Redis(unix_socket_path=str(var_dir / "run" / "redis.sock")).set("kept", "42")

    embedded_cli(var_dir, "stop")
    embedded_cli(var_dir, "start")

    with psycopg.connect(host=pg_host, user="postgres", dbname="spinnakr") as conn:
        assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
    assert redis.Redis(unix_socket_path=str(var_dir / "run" / "redis.sock")).get("kept") == b"42"


def test_each_valkey_persists_as_documented(var_dir: Path) -> None:
    import redis

    embedded_cli(var_dir, "start")
    rollups = redis.Redis(unix_socket_path=str(var_dir / "run" / "redis.sock"), decode_responses=True)
    broker = redis.Redis(unix_socket_path=str(var_dir / "run" / "broker.sock"), decode_responses=True)

    for server in (rollups, broker):
        assert server.config_get("appendonly") == {"appendonly": "yes"}
        assert server.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert rollups.config_get("save") == {"save": "3600 1"}
    assert rollups.config_get("auto-aof-rewrite-percentage") == {"auto-aof-rewrite-percentage": "400"}
    assert broker.config_get("save") == {"save": ""}


def test_it_recovers_from_a_crash_that_left_pid_files_and_sockets(var_dir: Path) -> None:
    embedded_cli(var_dir, "start")
    killed = server_pids(var_dir)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    assert (var_dir / "pg" / "data" / "postmaster.pid").exists()
    assert (var_dir / "redis" / "valkey.pid").exists()
    assert (var_dir / "broker" / "valkey.pid").exists()

    output = embedded_cli(var_dir, "start")

    assert "postgres: running" in output
    assert "redis: running" in output
    assert "broker: running" in output
    assert set(server_pids(var_dir)).isdisjoint(killed)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health(port: int) -> int:
    """The status of ``/healthz``, 0 while nothing answers it."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return int(response.status)
    except OSError:
        return 0


def wait_for_health(port: int, seconds: float) -> int:
    return wait_for(lambda: health(port), timeout=seconds, interval=0.3, message=f"/healthz on port {port}")


def running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``processes`` still running (a zombie has exited; only its parent has yet to reap it)."""
    found = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


def start_supervisor(var: Path, port: int, output: int) -> subprocess.Popen[bytes]:
    """``make run``'s supervisor for a checkout whose embedded servers live in ``var``."""
    return subprocess.Popen(
        [sys.executable, "-m", "spinnakr.run"],
        env=checkout_env(var, PORT=str(port), SPINNAKR_TESTING="0", SITE_URL=f"http://127.0.0.1:{port}"),
        cwd=settings.BASE_DIR,
        stdout=output,
        stderr=subprocess.STDOUT if output == subprocess.PIPE else output,
        start_new_session=True,
    )


def test_make_run_stops_every_process_it_started_on_sigint(var_dir: Path) -> None:
    port = free_port()
    supervisor = start_supervisor(var_dir, port, subprocess.PIPE)
    try:
        assert wait_for_health(port, 90) == 200
        started = processes_using(var_dir)
        assert len(started) >= 5  # supervisor, web, worker (+ pool), beat, postgres, 2 valkeys

        supervisor.send_signal(signal.SIGINT)
        output = supervisor.communicate(timeout=60)[0].decode()
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)

    assert supervisor.returncode == 0, output
    assert "supervisor: stopped" in output
    assert wait_for(lambda: running(started) == [], timeout=10, message="every process make run started to exit")


def test_children_stop_when_the_supervisor_is_killed(var_dir: Path) -> None:
    port = free_port()
    supervisor = start_supervisor(var_dir, port, subprocess.DEVNULL)
    assert wait_for_health(port, 90) == 200
    children = [p for p in psutil.Process(supervisor.pid).children() if p.is_running()]
    assert len(children) == 3  # web, worker, beat
    # The worker drains with the CPU the web process leaves (settings.WORKER_NICE).
    base = psutil.Process().nice()
    assert sorted(child.nice() for child in children) == [base, base, min(19, base + settings.WORKER_NICE)]

    supervisor.kill()
    supervisor.wait(10)

    _gone, alive = psutil.wait_procs(children, timeout=20)
    assert alive == []


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


# About 3 s of pure Lua on these machines (0.3 s per 10^8 empty iterations).
BUSY_SCRIPT = "for i = 1, 1000000000 do end return 1"


def test_a_busy_redis_is_not_taken_for_dead(var_dir: Path) -> None:
    embedded_cli(var_dir, "start")
    _, valkey, _ = server_pids(var_dir)
    sock = str(var_dir / "run" / "redis.sock")
    # One EVAL on a bare socket, exit status 0 when its answer comes back: a client library
    # that retried on a new connection would get BUSY from its own script.
    command = f"*3\r\n$4\r\nEVAL\r\n${len(BUSY_SCRIPT)}\r\n{BUSY_SCRIPT}\r\n$1\r\n0\r\n".encode()
    blocker_code = (
        "import socket, sys; s = socket.socket(socket.AF_UNIX); "
        f"s.connect({sock!r}); s.sendall({command!r}); sys.exit(0 if s.recv(64) == b':1\\r\\n' else 1)"
    )
    before = cpu_seconds(valkey)
    blocker = subprocess.Popen([sys.executable, "-c", blocker_code])
    # An idle Valkey burns next to no CPU: a fifth of a second means the script is running.
    wait_for(lambda: cpu_seconds(valkey) - before > 0.2, timeout=10, interval=0.02, message="Valkey to run the script")

    output = embedded_cli(var_dir, "start")
    blocker.wait(60)

    assert "redis: running" in output
    assert server_pids(var_dir)[1] == valkey
    assert blocker.returncode == 0
