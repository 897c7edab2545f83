"""The fixed cast of the dashboard tests: an owner, a teammate (viewer) and an outsider.

Imported explicitly by the dashboard's test modules. The rows are committed
(``transactional_db``) because WebSocket consumers and the live app read them
from other threads and processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from accounts.models import Account, Membership, Role, Site, User

PASSWORD = "correct horse battery staple 42"


@dataclass
class Cast:
    owner: User
    teammate: User
    outsider: User
    account: Account
    site: Site
    other_site: Site
    outsider_site: Site


def make_user(email: str) -> User:
    return User.objects.create_user(email, PASSWORD, name=email.split("@")[0], email_verified=True)


@pytest.fixture
def cast(transactional_db: None) -> Cast:
    owner = make_user("owner@dash.test")
    teammate = make_user("teammate@dash.test")
    outsider = make_user("outsider@elsewhere.test")
    account = Account.objects.create(name="Dash Co")
    Membership.objects.create(account=account, user=owner, role=Role.OWNER)
    Membership.objects.create(account=account, user=teammate, role=Role.VIEWER)
    site = Site.objects.create(account=account, domain="dash.example", timezone="Europe/Berlin")
    other_site = Site.objects.create(account=account, domain="blog.dash.example", timezone="UTC")
    elsewhere = Account.objects.create(name="Elsewhere Ltd")
    Membership.objects.create(account=elsewhere, user=outsider, role=Role.OWNER)
    outsider_site = Site.objects.create(account=elsewhere, domain="elsewhere.example", timezone="UTC")
    return Cast(owner, teammate, outsider, account, site, other_site, outsider_site)


def session_cookie(user: User | None = None, session: SessionStore | None = None) -> str:
    """A ``Cookie`` header value carrying a real session (logged in as ``user`` when given)."""
    if user is not None:
        client = Client()
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}"
    assert session is not None
    session.save()
    return f"sessionid={session.session_key}"
