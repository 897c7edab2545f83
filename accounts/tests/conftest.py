"""The fixed cast of the accounts tests.

``owner`` owns ``account`` with ``site``; ``admin_user`` and ``viewer`` are
teammates in it; ``outsider`` owns another account with ``other_site``.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from django_redis import get_redis_connection

from accounts.apikeys import create_api_key
from accounts.models import Account, APIKey, Membership, Role, Site, User

PASSWORD = "correct horse battery staple 42"
ARGON2 = "django.contrib.auth.hashers.Argon2PasswordHasher"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Argon2 costs ~0.3 s a hash on a shared 2-core box; the cast needs many.
    test_security checks that the project itself hashes with argon2."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", ARGON2]


@pytest.fixture(autouse=True)
def fresh_login_throttle():
    """Failed log-ins are counted in Redis, which outlives a test's database transaction."""
    for pattern in ("login:fail:*", "signup:ip:*"):
        cache.delete_pattern(pattern)  # type: ignore[attr-defined]
    yield
    for pattern in ("login:fail:*", "signup:ip:*"):
        cache.delete_pattern(pattern)  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def fresh_api_rate_limits():
    """Key ids restart with each test database; their hourly API counters must not carry over."""
    redis_cache = get_redis_connection("default")
    for name in redis_cache.scan_iter("ratelimit:api:*"):
        redis_cache.delete(name)


def make_user(email: str, **extra) -> User:
    return User.objects.create_user(email, PASSWORD, email_verified=True, **extra)


@pytest.fixture
def account(db) -> Account:
    return Account.objects.create(name="Alice's Shop")


@pytest.fixture
def owner(account) -> User:
    user = make_user("alice@example.com", name="Alice")
    Membership.objects.create(account=account, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def admin_user(account) -> User:
    user = make_user("adam@example.com", name="Adam")
    Membership.objects.create(account=account, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def viewer(account) -> User:
    user = make_user("vera@example.com", name="Vera")
    Membership.objects.create(account=account, user=user, role=Role.VIEWER)
    return user


@pytest.fixture
def other_account(db) -> Account:
    return Account.objects.create(name="Mallory Inc")


@pytest.fixture
def outsider(other_account) -> User:
    user = make_user("mallory@example.net", name="Mallory")
    Membership.objects.create(account=other_account, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def site(account, owner) -> Site:
    return Site.objects.create(account=account, domain="shop.example", timezone="Europe/Berlin")


@pytest.fixture
def other_site(other_account, outsider) -> Site:
    return Site.objects.create(account=other_account, domain="mallory.example", timezone="UTC")


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_superuser("staff@spinnakr.test", PASSWORD)


def login(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def owner_client(client, owner) -> Client:
    return login(client, owner)


@pytest.fixture
def admin_client_(client, admin_user) -> Client:
    return login(client, admin_user)


@pytest.fixture
def viewer_client(client, viewer) -> Client:
    return login(client, viewer)


@pytest.fixture
def outsider_client(client, outsider) -> Client:
    return login(client, outsider)


@pytest.fixture
def write_key(account, owner) -> tuple[APIKey, str]:
    return create_api_key(account, "CI", ["sites:write", "stats:read"], created_by=owner)


@pytest.fixture
def read_key(account, owner) -> tuple[APIKey, str]:
    return create_api_key(account, "Reader", ["stats:read"], created_by=owner)


@pytest.fixture
def outsider_key(other_account, outsider) -> tuple[APIKey, str]:
    return create_api_key(other_account, "Theirs", ["sites:write", "stats:read"], created_by=outsider)
