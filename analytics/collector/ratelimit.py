"""In-process token buckets: per client address and per site, with no Redis on the request path.

Each web process keeps its own buckets, so with N processes the effective limit
is up to N times the configured one; the load balancer spreads a client over
processes, which keeps that factor honest in practice.
"""

from __future__ import annotations

import math
import time


class TokenBuckets:
    """``take(key, n)`` returns 0.0 when allowed, else the seconds until ``n`` tokens are available."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 200_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[object, list[float]] = {}

    def take(
        self,
        key: object,
        n: float = 1.0,
        *,
        rate: float | None = None,
        burst: float | None = None,
        now: float | None = None,
    ) -> float:
        rate = self.rate if rate is None else rate
        burst = self.burst if burst is None else burst
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = [burst, now]
        else:
            bucket[0] = min(burst, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
        if bucket[0] >= n:
            bucket[0] -= n
            return 0.0
        return (n - bucket[0]) / rate if rate > 0 else math.inf

    def _prune(self, now: float) -> None:
        # Buckets that have refilled completely carry no information: drop them.
        full = [key for key, (tokens, last) in self._buckets.items() if tokens + (now - last) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()

    def clear(self) -> None:
        self._buckets.clear()


def retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
