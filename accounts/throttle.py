"""Log-in throttling per client IP and per account, counted in the Django cache (Redis).

Only failures count. An account is locked for the rest of the window after
``LOGIN_FAILURES_PER_ACCOUNT`` failures, whatever IP they came from; an IP is
locked after ``LOGIN_FAILURES_PER_IP`` failures, whatever accounts it tried.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def _account_key(email: str) -> str:
    return "login:fail:acct:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def _ip_key(ip: str) -> str:
    return f"login:fail:ip:{ip}"


def is_locked(request: HttpRequest, email: str) -> bool:
    counts = cache.get_many([_account_key(email), _ip_key(client_ip(request))])
    return (
        int(counts.get(_account_key(email), 0)) >= settings.LOGIN_FAILURES_PER_ACCOUNT
        or int(counts.get(_ip_key(client_ip(request)), 0)) >= settings.LOGIN_FAILURES_PER_IP
    )


def _bump(key: str) -> int:
    window = settings.LOGIN_THROTTLE_WINDOW
    # add() is atomic (SET NX): the first failure opens the window, later ones only count.
    if cache.add(key, 1, timeout=window):
        return 1
    try:
        return int(cache.incr(key))
    except ValueError:
        # The key expired between add() and incr(): start a new window.
        cache.add(key, 1, timeout=window)
        return 1


def record_failure(request: HttpRequest, email: str) -> None:
    account_count = _bump(_account_key(email))
    ip_count = _bump(_ip_key(client_ip(request)))
    logger.info(
        "login.failed",
        extra={"ip": client_ip(request), "account_failures": account_count, "ip_failures": ip_count},
    )


def allow_signup(request: HttpRequest) -> bool:
    """Count a sign-up from the client's IP; ``False`` past ``SIGNUPS_PER_IP_PER_HOUR``."""
    key = f"signup:ip:{client_ip(request)}"
    if cache.add(key, 1, timeout=3600):
        return True
    try:
        count = int(cache.incr(key))
    except ValueError:
        cache.add(key, 1, timeout=3600)
        return True
    if count > settings.SIGNUPS_PER_IP_PER_HOUR:
        logger.info("signup.throttled", extra={"ip": client_ip(request)})
        return False
    return True


def reset_account(email: str) -> None:
    cache.delete(_account_key(email))
