"""API keys of ``POST /api/events``: a key's grant, cached for a short while per process."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time

from django.db import InterfaceError, OperationalError, connection

from accounts.access import authenticate_bearer
from analytics.collector.http import SERVICE_RETRY_AFTER, Reject

logger = logging.getLogger(__name__)

KEY_CACHE_TTL = 30.0
KEY_NEGATIVE_TTL = 5.0


@dataclasses.dataclass(frozen=True)
class KeyGrant:
    account_id: int
    scopes: frozenset[str]


_key_cache: dict[str, tuple[KeyGrant | None, float]] = {}


def _authenticate(raw: str) -> KeyGrant | None:
    try:
        key = authenticate_bearer(raw)
        return None if key is None else KeyGrant(key.account_id, frozenset(key.scopes))
    finally:
        # Once per key per KEY_CACHE_TTL: no idle connection left in the executor's threads.
        connection.close()


async def authorize(headers: dict[bytes, bytes]) -> KeyGrant:
    scheme, _, raw = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    unauthorized = [(b"www-authenticate", b"Bearer")]
    if scheme.lower() != "bearer" or not raw.strip():
        raise Reject(401, "API key required: Authorization: Bearer <key>", unauthorized)
    raw = raw.strip()
    digest = hashlib.sha256(raw.encode()).hexdigest()
    now = time.monotonic()
    cached = _key_cache.get(digest)
    if cached is not None and cached[1] > now:
        grant = cached[0]
    else:
        try:
            grant = await asyncio.get_running_loop().run_in_executor(None, _authenticate, raw)
        except (OperationalError, InterfaceError):
            logger.warning("collector.keys_unavailable", exc_info=True)
            raise Reject(
                503, "service unavailable, retry later", [(b"retry-after", SERVICE_RETRY_AFTER.encode())]
            ) from None
        if len(_key_cache) > 10_000:
            _key_cache.clear()
        _key_cache[digest] = (grant, now + (KEY_CACHE_TTL if grant else KEY_NEGATIVE_TTL))
    if grant is None:
        raise Reject(401, "invalid, revoked or expired API key", unauthorized)
    if "events:write" not in grant.scopes:
        raise Reject(403, "the API key lacks the events:write scope", reason="scope")
    return grant
