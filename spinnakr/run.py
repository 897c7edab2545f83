"""``make run``: migrate, ensure the demo customer, then supervise web, worker and beat.

Each child runs in its own session with its output prefixed by its name. The
worker runs at a lower CPU priority (``WORKER_NICE``, default 10): on a box it
shares with the web process, a backlog drains with the CPU the collector leaves,
instead of slowing the answers to the sites that send events.

A child that exits is started again, and so is an embedded server (PostgreSQL,
the rollups' Valkey, the broker's Valkey) that dies, after a wait that doubles
with each failure (1 s, 2 s, 4 s … at most 30 s). Only SIGINT or SIGTERM, or a
process that failed 5 times within 120 s (``RestartPolicy``), stops everything:
every child gets SIGTERM, then SIGKILL after a grace period, and the embedded
servers are stopped once no other process of the checkout uses them. The
supervisor says which it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType

import redis

from spinnakr import embedded, metrics, redis_clients, rendezvous
from spinnakr.embedded.paths import EmbeddedError

GRACE_SECONDS = 10.0
POLL_SECONDS = 0.5
SERVERS = ("postgres", "redis", "broker")
PR_SET_PDEATHSIG = 1
COLOURS = {"web": "\033[36m", "worker": "\033[33m", "beat": "\033[35m"}
RESET = "\033[0m"


def niced(argv: list[str]) -> list[str]:
    """``argv`` run at the worker's CPU priority (settings.WORKER_NICE), as ``make run`` runs it."""
    from django.conf import settings

    return ["nice", "-n", str(settings.WORKER_NICE), *argv]


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def commands(port: int) -> dict[str, list[str]]:
    python = sys.executable
    web_workers = os.environ.get("WEB_CONCURRENCY", "1")
    worker_concurrency = os.environ.get("WORKER_CONCURRENCY", "2")
    from django.conf import settings

    return {
        "web": [
            python, "-m", "uvicorn", "spinnakr.asgi:application",
            "--host", os.environ.get("HOST", "127.0.0.1"), "--port", str(port),
            "--workers", web_workers, "--loop", "uvloop", "--http", "httptools",
            "--lifespan", "on", "--no-access-log", "--no-proxy-headers",  # spinnakr.asgi applies them
        ],
        "worker": niced([
            python, "-m", "celery", "-A", "spinnakr", "worker",
            "-Q", f"{settings.EVENTS_QUEUE},{settings.DEFAULT_QUEUE}",
            "--concurrency", worker_concurrency, "--loglevel", "INFO", "--without-gossip", "--without-mingle",
        ]),
        "beat": [
            python, "-m", "celery", "-A", "spinnakr", "beat", "--loglevel", "INFO",
            "--schedule", str(settings.BASE_DIR / "var" / "celerybeat-schedule"),
        ],
    }  # fmt: skip


def _pump(name: str, stream: object) -> None:
    colour = COLOURS.get(name, "") if sys.stdout.isatty() else ""
    reset = RESET if colour else ""
    prefix = f"{colour}{name:>6} |{reset} "
    for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
        line = raw.decode(errors="replace").rstrip("\n")
        sys.stdout.write(f"{prefix}{line}\n")
        sys.stdout.flush()


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the supervisor dies, even by SIGKILL."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_child(name: str, argv: list[str]) -> Child:
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    threading.Thread(target=_pump, args=(name, process.stdout), daemon=True).start()
    return Child(name, process)


def stop_children(children: list[Child]) -> None:
    for child in children:
        if child.process.poll() is None:
            _signal_group(child.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for child in children:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            child.process.wait(remaining)
        except subprocess.TimeoutExpired:
            print(f"supervisor: {child.name} did not stop in {GRACE_SECONDS:.0f} s; killing it", flush=True)
        # The group may hold grandchildren (uvicorn and Celery pool workers).
        _signal_group(child.process.pid, signal.SIGKILL)
        child.process.wait()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


@dataclass
class RestartPolicy:
    """How long to wait before starting a failed process again, and when to give up."""

    first_wait: float = 1.0
    longest_wait: float = 30.0
    # A process that fails this often within this many seconds is not coming back by itself.
    failure_limit: int = 5
    failure_window: float = 120.0


@dataclass
class Failures:
    policy: RestartPolicy
    times: list[float] = field(default_factory=list)

    def record(self, now: float) -> float | None:
        """Count a failure; the wait before the next start, or None to give up."""
        self.times = [t for t in self.times if now - t < self.policy.failure_window] + [now]
        if len(self.times) >= self.policy.failure_limit:
            return None
        return min(self.policy.longest_wait, self.policy.first_wait * 2 ** (len(self.times) - 1))


class Supervisor:
    """Keeps the children of ``commands`` and, with ``servers``, the embedded servers running."""

    def __init__(
        self, commands: dict[str, list[str]], *, servers: bool = True, policy: RestartPolicy | None = None
    ) -> None:
        self.commands = commands
        self.servers = servers
        self.policy = policy or RestartPolicy()
        self.children: dict[str, Child] = {}
        self.due: dict[str, float] = {}  # process name -> when it is started again (monotonic)
        self.failures = {name: Failures(self.policy) for name in [*commands, *SERVERS]}

    def run(self, stopping: threading.Event) -> str:
        """Supervise until ``stopping`` is set or a process keeps failing; why it stopped."""
        for name, argv in self.commands.items():
            self.children[name] = start_child(name, argv)
        reason = "asked to stop"
        try:
            while not stopping.wait(POLL_SECONDS):
                failed = self.check(time.monotonic())
                if failed:
                    reason = failed
                    break
        finally:
            print(f"supervisor: stopping ({reason})", flush=True)
            stop_children(list(self.children.values()))
        return reason

    def check(self, now: float) -> str | None:
        """Schedule the restart of what died and start what is due; a reason to give up, if any."""
        down = [
            (name, f"exited with {child.process.returncode}")
            for name, child in self.children.items()
            if child.process.poll() is not None
        ]
        if self.servers:
            wanted, running = embedded.wanted(), embedded.status()
            down += [
                (name, "is down")
                for name in SERVERS
                if getattr(wanted, name) and not getattr(running, name) and name not in self.due
            ]
        for name, how in down:
            self.children.pop(name, None)
            reason = self._failed(name, how, now)
            if reason:
                return reason
        for name, at in list(self.due.items()):
            if at <= now:
                del self.due[name]
                reason = self._start(name, now)
                if reason:
                    return reason
        return None

    def _failed(self, name: str, how: str, now: float) -> str | None:
        wait = self.failures[name].record(now)
        if wait is None:
            limit, window = self.policy.failure_limit, self.policy.failure_window
            return f"{name} {how}: {limit} failures within {window:.0f} s"
        print(f"supervisor: {name} {how}; starting it again in {wait:g} s", flush=True)
        self.due[name] = now + wait
        return None

    def _start(self, name: str, now: float) -> str | None:
        if name in self.commands:
            self.children[name] = start_child(name, self.commands[name])
            return None
        try:
            embedded.start()
        except (EmbeddedError, OSError, subprocess.SubprocessError) as exc:
            return self._failed(name, f"did not start ({exc})", now)
        print(f"supervisor: embedded {name} started again", flush=True)
        return None


def unanswered_rollup_servers() -> list[str]:
    """The servers of ``REDIS_URLS`` that do not answer a ping, each with why."""
    from django.conf import settings

    if not settings.ROLLUP_REDIS_URLS:
        return []  # the rollups stay on the data Redis, embedded or named by REDIS_URL
    problems = []
    for url in redis_clients.rollup_urls():
        try:
            redis_clients.ping_rollups(url, timeout=2.0)
        except redis.RedisError as exc:
            problems.append(f"{rendezvous.identity(url)} ({exc})")
    return problems


def prepare() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    call_command("ensure_demo")


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")
    import django

    django.setup()
    # Servers of its own are the operator's to start: say which is missing before anything runs.
    unanswered = unanswered_rollup_servers()
    if unanswered:
        print(f"supervisor: REDIS_URLS names servers that do not answer: {'; '.join(unanswered)}", flush=True)
        return 1
    embedded.acquire()
    prepare()
    from django.conf import settings

    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    # The children write their metrics into PROMETHEUS_MULTIPROC_DIR (spinnakr.metrics), inherited:
    # an earlier run's values go first.
    metrics.empty_directory()
    supervisor = Supervisor(commands(settings.PORT))
    print(f"supervisor: web, worker and beat starting; serving on http://127.0.0.1:{settings.PORT}/", flush=True)
    try:
        reason = supervisor.run(stopping)
    finally:
        embedded.release()
    print("supervisor: stopped", flush=True)
    return 0 if reason == "asked to stop" else 1


if __name__ == "__main__":
    raise SystemExit(main())
