"""``make run``: migrate, ensure the demo customer, then supervise web, worker and beat.

Each child runs in its own session with its output prefixed by its name. The
worker runs at a lower CPU priority (``WORKER_NICE``, default 10): on a box it
shares with the web process, a backlog drains with the CPU the collector leaves,
instead of slowing the answers to the sites that send events. On
SIGINT or SIGTERM (or when any child dies) every child gets SIGTERM, then
SIGKILL after a grace period, and the embedded servers are stopped once no
other process of the checkout uses them.
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
from dataclasses import dataclass
from types import FrameType

GRACE_SECONDS = 10.0
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


def start_children(port: int) -> list[Child]:
    children = []
    for name, argv in commands(port).items():
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=_pump, args=(name, process.stdout), daemon=True).start()
        children.append(Child(name, process))
    return children


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


def prepare() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    call_command("ensure_demo")


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")
    import django

    from spinnakr import embedded

    django.setup()
    embedded.acquire()
    prepare()
    from django.conf import settings

    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    children = start_children(settings.PORT)
    print(f"supervisor: web, worker and beat started; serving on http://127.0.0.1:{settings.PORT}/", flush=True)
    exit_code = 0
    try:
        while not stopping.is_set():
            dead = [child for child in children if child.process.poll() is not None]
            if dead:
                print(f"supervisor: {dead[0].name} exited with {dead[0].process.returncode}; stopping", flush=True)
                exit_code = 1
                break
            stopping.wait(0.5)
    finally:
        print("supervisor: stopping", flush=True)
        stop_children(children)
        embedded.release()
        print("supervisor: stopped", flush=True)
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
