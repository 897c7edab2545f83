from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.apikeys import authenticate_key
from accounts.models import Membership, Role, User


def test_create_customer_makes_a_verified_owner_who_can_log_in(db, client):
    out = StringIO()
    call_command(
        "create_customer",
        "--email",
        "New@Example.com",
        "--password",
        "a long pass phrase 9",
        "--account",
        "Acme",
        stdout=out,
    )
    user = User.objects.get(email="new@example.com")
    assert user.email_verified
    assert user.is_active
    assert Membership.objects.get(user=user).role == Role.OWNER
    assert Membership.objects.get(user=user).account.name == "Acme"
    assert client.login(username="new@example.com", password="a long pass phrase 9")
    assert "Acme" in out.getvalue()


def test_create_customer_refuses_a_taken_email(owner):
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_customer", "--email", owner.email, "--password", "a long pass phrase 9", "--account", "X")


def test_create_customer_refuses_a_weak_password(db):
    with pytest.raises(CommandError, match="password"):
        call_command("create_customer", "--email", "weak@example.com", "--password", "123", "--account", "X")
    assert not User.objects.filter(email="weak@example.com").exists()


def test_create_api_key_prints_only_the_key(account, owner):
    out = StringIO()
    call_command(
        "create_api_key",
        "--email",
        owner.email,
        "--account",
        account.name,
        "--name",
        "CI",
        "--scopes",
        "stats:read,sites:write",
        stdout=out,
    )
    raw = out.getvalue().strip()
    assert out.getvalue() == raw + "\n"
    key = authenticate_key(raw)
    assert key is not None
    assert (key.account, key.scopes, key.created_by) == (account, ["stats:read", "sites:write"], owner)


def test_create_api_key_refuses_an_unknown_scope(account, owner):
    with pytest.raises(CommandError, match="unknown scope"):
        call_command(
            "create_api_key", "--email", owner.email, "--account", account.name, "--name", "CI", "--scopes", "god"
        )


def test_create_api_key_refuses_an_account_the_user_is_not_in(account, outsider):
    with pytest.raises(CommandError, match="not a member"):
        call_command(
            "create_api_key",
            "--email",
            outsider.email,
            "--account",
            account.name,
            "--name",
            "CI",
            "--scopes",
            "stats:read",
        )


def test_create_api_key_refuses_a_viewer(account, viewer):
    with pytest.raises(CommandError, match="viewer"):
        call_command(
            "create_api_key",
            "--email",
            viewer.email,
            "--account",
            account.name,
            "--name",
            "CI",
            "--scopes",
            "stats:read",
        )
