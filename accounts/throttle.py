"""Throttling of password guesses per subject and per client IP, counted in the Django cache (Redis).

Only failures count. A subject (an account's e-mail for log-in, a shared link
for its password) is locked for the rest of the window after
``LOGIN_FAILURES_PER_ACCOUNT`` failures, whatever IP they came from; an IP is
locked after ``LOGIN_FAILURES_PER_IP`` failures, whatever subjects it tried.
The window is ``LOGIN_THROTTLE_WINDOW`` seconds from the first failure. Each
kind of guess (``LOGIN``, ``SHARED_LINK``) counts in keys of its own.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR") or "unknown")


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


@dataclass(frozen=True)
class FailureThrottle:
    """Failed guesses of one kind (``name``), counted per subject and per client IP."""

    name: str
    subject_kind: str
    log_event: str

    def _subject_key(self, subject: str) -> str:
        return f"{self.name}:fail:{self.subject_kind}:" + hashlib.sha256(subject.encode()).hexdigest()[:32]

    def _ip_key(self, request: HttpRequest) -> str:
        return f"{self.name}:fail:ip:{client_ip(request)}"

    def retry_after(self, request: HttpRequest, subject: str) -> int:
        """Seconds until ``subject`` may be tried again from this client; 0 when it may now."""
        subject_key, ip_key = self._subject_key(subject), self._ip_key(request)
        counts = cache.get_many([subject_key, ip_key])
        locked = [
            key
            for key, limit in (
                (subject_key, settings.LOGIN_FAILURES_PER_ACCOUNT),
                (ip_key, settings.LOGIN_FAILURES_PER_IP),
            )
            if int(counts.get(key, 0)) >= limit
        ]
        if not locked:
            return 0
        # django-redis's ttl(): seconds left, None without expiry, 0 once gone.
        ttls = [cache.ttl(key) for key in locked]  # type: ignore[attr-defined]
        return max(1, *(int(ttl) if ttl is not None else settings.LOGIN_THROTTLE_WINDOW for ttl in ttls))

    def is_locked(self, request: HttpRequest, subject: str) -> bool:
        return self.retry_after(request, subject) > 0

    def record_failure(self, request: HttpRequest, subject: str) -> None:
        subject_count = _bump(self._subject_key(subject))
        ip_count = _bump(self._ip_key(request))
        logger.info(
            self.log_event,
            extra={"ip": client_ip(request), "subject_failures": subject_count, "ip_failures": ip_count},
        )

    def reset(self, subject: str) -> None:
        cache.delete(self._subject_key(subject))


LOGIN = FailureThrottle("login", "acct", "login.failed")
SHARED_LINK = FailureThrottle("share", "link", "shared_link.failed")


def _email(email: str) -> str:
    return email.strip().lower()


def is_locked(request: HttpRequest, email: str) -> bool:
    return LOGIN.is_locked(request, _email(email))


def record_failure(request: HttpRequest, email: str) -> None:
    LOGIN.record_failure(request, _email(email))


def reset_account(email: str) -> None:
    LOGIN.reset(_email(email))


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
