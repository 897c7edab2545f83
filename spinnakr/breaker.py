"""A per-process circuit breaker per rollups server: a server that failed is skipped for a while.

Without it every request and every batch of a site whose rollups server is down would pay a
connection attempt (up to ``redis_clients.CONNECT_TIMEOUT`` to a host that does not answer)
before falling back. A server that failed is "open" for ``OPEN_SECONDS``: callers skip it at no
cost (queries go to SQL, batches wait, ``analytics.ingest.held``); the first call after that tries
it again and closes the breaker if it answers, or opens it for another while.
"""

from __future__ import annotations

import logging
import time

import redis

logger = logging.getLogger(__name__)

# The errors that say the server is not there (refused, timed out, or still loading its AOF),
# as opposed to an error of the call itself.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)

# Long enough that a dashboard's burst of queries pays at most one failed attempt, short enough
# that a server back is used again within seconds.
OPEN_SECONDS = 5.0

_open_until: dict[str, float] = {}
_failing_since: dict[str, float] = {}


def is_open(url: str) -> bool:
    """Whether ``url`` failed less than ``OPEN_SECONDS`` ago in this process."""
    return _open_until.get(url, 0.0) > time.monotonic()


def trip(url: str, error: BaseException | None = None) -> None:
    """``url`` did not answer: skip it for ``OPEN_SECONDS``."""
    if not is_open(url):
        logger.warning("breaker.opened", extra={"server": safe(url), "error": repr(error)[:300]})
    now = time.monotonic()
    _open_until[url] = now + OPEN_SECONDS
    _failing_since.setdefault(url, now)


def close(url: str) -> None:
    """``url`` answered."""
    if _open_until.pop(url, None) is not None:
        logger.info("breaker.closed", extra={"server": safe(url)})
    _failing_since.pop(url, None)


def failing_for(url: str) -> float:
    """Seconds since ``url`` first failed without answering since (0 when it answers)."""
    since = _failing_since.get(url)
    return 0.0 if since is None else time.monotonic() - since


def reset() -> None:
    """Forget every failure (tests, and a process that learns of a new server set)."""
    _open_until.clear()
    _failing_since.clear()


def safe(url: str) -> str:
    """The address without a password, for logs."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"
