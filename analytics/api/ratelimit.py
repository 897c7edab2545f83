"""Per-key request limits of the API: a fixed hourly window counted in Redis.

The limit is ``settings.API_RATE_LIMIT_PER_HOUR`` unless the key's account has an
``APIRateLimit`` override. Counting is one INCR (plus EXPIRE on the first hit),
so every web process shares the count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django_redis import get_redis_connection

from accounts.models import APIKey
from analytics.models import APIRateLimit

WINDOW = 3600


@dataclass(frozen=True)
class Verdict:
    limit: int
    remaining: int
    reset: int  # epoch seconds when the window ends
    allowed: bool

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


def limit_for(key: APIKey) -> int:
    override = (
        APIRateLimit.objects.filter(account_id=key.account_id).values_list("requests_per_hour", flat=True).first()
    )
    return int(override) if override is not None else int(settings.API_RATE_LIMIT_PER_HOUR)


def hit(key: APIKey) -> Verdict:
    limit = limit_for(key)
    now = int(time.time())
    window = now - now % WINDOW
    redis_key = f"ratelimit:api:{key.pk}:{window}"
    conn = get_redis_connection("default")
    pipe = conn.pipeline()
    pipe.incr(redis_key)
    pipe.expire(redis_key, WINDOW + 60, nx=True)
    count = int(pipe.execute()[0])
    return Verdict(limit=limit, remaining=max(0, limit - count), reset=window + WINDOW, allowed=count <= limit)
