from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from accounts.apikeys import authenticate_key, create_api_key, revoke_api_key
from accounts.models import APIKey


def test_it_returns_the_plaintext_once_and_stores_only_a_hash(account, owner):
    key, raw = create_api_key(account, "CI", ["stats:read"], created_by=owner)
    assert raw.startswith(f"spk_{key.prefix}_")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        rows = cursor.fetchall()
    assert rows
    secret = raw.removeprefix(f"spk_{key.prefix}_")
    assert len(secret) >= 40
    assert all(raw not in str(row) and secret not in str(row) for row in rows)


def test_it_authenticates_a_valid_key(write_key):
    key, raw = write_key
    assert authenticate_key(raw) == key


def test_it_rejects_a_key_with_a_wrong_secret(write_key):
    key, _raw = write_key
    assert authenticate_key(f"spk_{key.prefix}_" + "A" * 43) is None


def test_it_rejects_malformed_keys(write_key):
    assert [authenticate_key(raw) for raw in ["", "spk_", "Bearer x", "spk_short_secret", "x" * 5000]] == [None] * 5


def test_it_rejects_a_revoked_key(write_key):
    key, raw = write_key
    revoke_api_key(key)
    assert authenticate_key(raw) is None


def test_it_rejects_an_expired_key(account):
    key, raw = create_api_key(account, "Short", ["stats:read"], expires_at=timezone.now() + timedelta(hours=1))
    assert authenticate_key(raw) == key
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        assert authenticate_key(raw) is None


def test_it_updates_last_used_at_most_once_a_minute(write_key):
    key, raw = write_key
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        authenticate_key(raw)
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        authenticate_key(raw)
    assert APIKey.objects.get(pk=key.pk).last_used == start
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        authenticate_key(raw)
    assert APIKey.objects.get(pk=key.pk).last_used == start + timedelta(seconds=61)


def test_it_refuses_unknown_scopes(account):
    with pytest.raises(ValueError, match="unknown scope"):
        create_api_key(account, "Bad", ["stats:read", "root"])


def test_it_refuses_a_key_without_scopes(account):
    with pytest.raises(ValueError, match="at least one scope"):
        create_api_key(account, "Empty", [])
