"""Per-key request limits of the API: a fixed hourly window counted in Redis.

The limit is ``settings.API_RATE_LIMIT_PER_HOUR`` unless the key's account has an
``APIRateLimit`` override. Counting is one INCR (plus EXPIRE on the first hit),
so every web process shares the count. One counter per key covers every API a
key reaches (Stats, goals, Sites): their views call ``count_request`` once the
key is authenticated and ``add_headers`` on the way out.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django_redis import get_redis_connection
from rest_framework import exceptions, status
from rest_framework.request import Request

from accounts.models import APIKey
from analytics.models import APIRateLimit

logger = logging.getLogger(__name__)

WINDOW = 3600


class RateLimited(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = "Too many requests: the API key's hourly limit is used up."
    default_code = "rate_limited"


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


def count_request(request: Request) -> None:
    """Count a key-authenticated request; ``RateLimited`` past the key's hourly limit.

    Session requests (the dashboard) are not counted.
    """
    if not isinstance(request.auth, APIKey):
        return
    verdict = hit(request.auth)
    request._ratelimit = verdict  # type: ignore[attr-defined]
    if not verdict.allowed:
        logger.info("api.rate_limited", extra={"api_key_id": request.auth.pk, "limit": verdict.limit})
        raise RateLimited()


def add_headers(request: Request, response: Any) -> None:
    """The ``X-RateLimit-*`` headers of a counted request, and ``Retry-After`` on a 429."""
    verdict = getattr(request, "_ratelimit", None)
    if verdict is None:
        return
    for name, value in verdict.headers().items():
        response[name] = value
    if response.status_code == status.HTTP_429_TOO_MANY_REQUESTS:
        response["Retry-After"] = str(max(1, verdict.reset - int(time.time())))
