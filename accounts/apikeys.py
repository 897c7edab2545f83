"""API keys: ``spk_<prefix>_<secret>``, stored as a SHA-256 of the whole key.

The prefix is unique and indexed, so a key is found with one lookup and its
hash compared in constant time. The plaintext exists only in the return
value of ``create_api_key`` and is never stored or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import Account, APIKey, Scope, User

logger = logging.getLogger(__name__)

KEY_TYPE = "spk"
PREFIX_LENGTH = 12
KEY_PATTERN = re.compile(r"^spk_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{20,100})$")
LAST_USED_RESOLUTION = timedelta(minutes=1)
_ALPHANUMERIC = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _new_prefix() -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(PREFIX_LENGTH))


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes in a stable order; ``ValueError`` names an unknown one."""
    known = {scope.value for scope in Scope}
    chosen = set()
    for scope in scopes:
        if scope not in known:
            raise ValueError(f"unknown scope {scope!r}; use {', '.join(sorted(known))}")
        chosen.add(scope)
    if not chosen:
        raise ValueError("an API key needs at least one scope")
    return [scope.value for scope in Scope if scope.value in chosen]


def create_api_key(
    account: Account,
    name: str,
    scopes: Iterable[str],
    created_by: User | None = None,
    expires_at: datetime | None = None,
) -> tuple[APIKey, str]:
    """Create a key and return it with its plaintext, which is never shown again."""
    clean_scopes = validate_scopes(scopes)
    name = name.strip()
    if not name:
        raise ValueError("an API key needs a name")
    with transaction.atomic():
        prefix = _new_prefix()
        while APIKey.objects.filter(prefix=prefix).exists():
            prefix = _new_prefix()
        raw = f"{KEY_TYPE}_{prefix}_{secrets.token_urlsafe(32)}"
        key = APIKey.objects.create(
            account=account,
            name=name[:100],
            prefix=prefix,
            key_hash=hash_key(raw),
            scopes=clean_scopes,
            created_by=created_by,
            expires_at=expires_at,
        )
    logger.info(
        "apikey.created",
        extra={"account_id": account.pk, "key_prefix": prefix, "scopes": clean_scopes},
    )
    return key, raw


def authenticate_key(raw: str) -> APIKey | None:
    """The live key ``raw`` stands for, or ``None`` (malformed, unknown, revoked, expired)."""
    match = KEY_PATTERN.match(raw or "")
    if match is None:
        return None
    key = APIKey.objects.select_related("account").filter(prefix=match.group(1)).first()
    if key is None:
        return None
    if not hmac.compare_digest(key.key_hash, hash_key(raw)):
        return None
    now = timezone.now()
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        return None
    if key.last_used is None or now - key.last_used >= LAST_USED_RESOLUTION:
        # A conditional update: concurrent requests write at most once a minute.
        APIKey.objects.filter(pk=key.pk, last_used=key.last_used).update(last_used=now)
        key.last_used = now
    return key


def revoke_api_key(key: APIKey) -> None:
    with transaction.atomic():
        APIKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    key.refresh_from_db()
    logger.info("apikey.revoked", extra={"account_id": key.account_id, "key_prefix": key.prefix})
