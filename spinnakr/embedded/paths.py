"""Where the embedded servers keep their data and sockets, and the process checks they share."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent
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


def package_dir(name: str) -> Path:
    # find_spec, not import: importing pgserver starts its own server machinery.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(f"the {name} package is not installed; run `make run` or `make test`")
    return Path(next(iter(spec.submodule_search_locations)))


@contextlib.contextmanager
def lock() -> Iterator[None]:
    """The checkout's lock around starting and stopping its servers."""
    var_dir().mkdir(parents=True, exist_ok=True)
    with (var_dir() / "embedded.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
