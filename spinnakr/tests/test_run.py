"""``make run``'s supervisor starts again what dies, and gives up only on what keeps dying."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from analytics.tests.outage_servers import free_port
from spinnakr.run import RestartPolicy, Supervisor
from spinnakr.tests.waiting import wait_for

pytestmark = pytest.mark.slow

QUICK = RestartPolicy(first_wait=0.1, longest_wait=0.4, failure_limit=3, failure_window=60)


def child(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


class Running:
    """A supervisor run in a thread: its answer once it returns."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.stopping = threading.Event()
        self.reason: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.reason = self.supervisor.run(self.stopping)

    def stop(self) -> str | None:
        self.stopping.set()
        self.thread.join(30)
        return self.reason


@pytest.fixture
def supervise() -> Iterator[Callable[[Supervisor], Running]]:
    runs: list[Running] = []

    def start(supervisor: Supervisor) -> Running:
        runs.append(Running(supervisor))
        return runs[-1]

    yield start
    for run in runs:
        run.stop()


def test_a_child_that_exits_is_started_again(tmp_path: Path, supervise: Callable[[Supervisor], Running]) -> None:
    starts = tmp_path / "starts"
    # Dies on its first start, then runs.
    flaky = child(f"""
        import pathlib, sys, time
        starts = pathlib.Path({str(starts)!r})
        starts.write_text(starts.read_text() + "x" if starts.exists() else "x")
        if starts.read_text() == "x":
            sys.exit(3)
        time.sleep(600)
    """)
    run = supervise(Supervisor({"flaky": flaky}, servers=False, policy=QUICK))

    wait_for(lambda: starts.exists() and starts.read_text() == "xx", timeout=30)
    again = run.supervisor.children["flaky"].process

    assert again.poll() is None
    assert run.thread.is_alive()
    assert run.stop() == "asked to stop"
    assert again.poll() is not None


def test_it_stops_everything_and_says_why_when_a_child_keeps_failing(
    supervise: Callable[[Supervisor], Running],
) -> None:
    steady = child("import time; time.sleep(600)")
    run = supervise(
        Supervisor({"broken": child("import sys; sys.exit(2)"), "steady": steady}, servers=False, policy=QUICK)
    )
    wait_for(lambda: "steady" in run.supervisor.children, timeout=10)
    steady_process = run.supervisor.children["steady"].process

    run.thread.join(30)

    assert run.reason == "broken exited with 2: 3 failures within 60 s"
    assert steady_process.poll() is not None  # stopped with the others


@pytest.fixture
def checkout() -> Iterator[Path]:
    """The var directory of a checkout of its own, whose embedded servers the test may kill."""
    path = Path(tempfile.mkdtemp(prefix="spinnakr-var-"))
    path.chmod(0o755)  # the PostgreSQL user must reach it
    yield path
    subprocess.run(
        [sys.executable, "-m", "spinnakr.embedded", "stop"],
        env=checkout_env(path),
        cwd=settings.BASE_DIR,
        capture_output=True,
        timeout=120,
    )
    shutil.rmtree(path, ignore_errors=True)


def checkout_env(var: Path) -> dict[str, str]:
    named = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    return {
        **{k: v for k, v in os.environ.items() if k not in named},
        "SPINNAKR_VAR_DIR": str(var),
        # make run empties its metrics directory: the checkout's own, never the test session's.
        "PROMETHEUS_MULTIPROC_DIR": str(var / "metrics"),
    }


# The supervisor of `make run` without its children: only the embedded servers to watch.
SERVERS_ONLY = """
import signal, threading
import django
django.setup()
from spinnakr import embedded
from analytics.tests.outage_servers import free_port
from spinnakr.run import RestartPolicy, Supervisor
embedded.acquire()
stopping = threading.Event()
signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
print("supervising", flush=True)
print(Supervisor({}, policy=RestartPolicy(first_wait=0.2)).run(stopping), flush=True)
embedded.release()
"""


def server_pid(var: Path, name: str) -> int:
    if name == "postgres":
        return int((var / "pg" / "data" / "postmaster.pid").read_text().splitlines()[0])
    return int((var / name / "valkey.pid").read_text().strip())


def a_new_live_server(var: Path, name: str, old: int) -> bool:
    try:
        pid = server_pid(var, name)
    except (OSError, ValueError, IndexError):
        return False
    return pid != old and psutil.pid_exists(pid)


def test_it_names_a_server_of_redis_urls_that_does_not_answer_and_starts_nothing(checkout: Path) -> None:
    port = free_port()

    result = subprocess.run(
        [sys.executable, "-m", "spinnakr.run"],
        env={**checkout_env(checkout), "REDIS_URLS": f"redis://127.0.0.1:{port}"},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    assert f"supervisor: REDIS_URLS names servers that do not answer: 127.0.0.1:{port}/" in result.stdout
    assert "starting" not in result.stdout


@pytest.mark.parametrize(
    ("name", "death"),
    [("broker", signal.SIGKILL), ("redis", signal.SIGKILL), ("postgres", signal.SIGQUIT)],
    ids=["broker", "redis", "postgres"],
)
def test_an_embedded_server_that_dies_is_started_again(checkout: Path, name: str, death: int) -> None:
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SERVERS_ONLY],
        env={**checkout_env(checkout), "DJANGO_SETTINGS_MODULE": "spinnakr.settings", "SPINNAKR_TESTING": "0"},
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert supervisor.stdout is not None
        assert supervisor.stdout.readline() == b"supervising\n"
        killed = server_pid(checkout, name)

        os.kill(killed, death)  # SIGQUIT: PostgreSQL's immediate stop, as after a crash

        wait_for(lambda: a_new_live_server(checkout, name, killed), timeout=90)
        supervisor.send_signal(signal.SIGTERM)
        output = supervisor.communicate(timeout=60)[0].decode()
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
    assert f"supervisor: {name} is down; starting it again in 0.2 s" in output
    assert f"supervisor: embedded {name} started again" in output
    assert output.rstrip().endswith("asked to stop")
