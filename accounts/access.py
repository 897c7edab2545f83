"""The one place that decides who may see or change a tenant's objects.

Every request-time lookup of an account or a site goes through here, for
every kind of principal: session users (``get_site_for_user``), API keys
(``key_for_bearer``, ``site_for_key``, ``feed_site``), public and shared-link
viewers (``dashboard_access``, ``link_for_slug``). An outsider gets ``Http404``
so the existence of another tenant's object never leaks; a member whose role
is too low gets ``PermissionDenied`` (403); a bad API key gets ``BadKey`` (401).

A suspended account (``Account.suspended``; sites have no flag of their own)
keeps its members, who see a notice, and refuses everyone else: its API keys
(``AccountSuspended``, 403) and its public and shared-link viewers (404).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest

from accounts.apikeys import authenticate_key
from accounts.models import ROLE_RANK, Account, APIKey, Membership, Role, Site, User
from analytics.models import SharedLink
from spinnakr.untrusted import unstorable

SESSION_ACCOUNT_KEY = "spinnakr_account"
SHARED_LINKS_SESSION_KEY = "spinnakr_shared_links"


def _is_user(user: Any) -> bool:
    # Only a person: an API key's principal (accounts.api_auth.APIKeyUser) has no memberships.
    return isinstance(user, User) and user.is_authenticated and user.is_active


def user_role(user: Any, account: Account) -> Role | None:
    """The role of ``user`` in ``account``, or ``None`` for an outsider."""
    if not _is_user(user):
        return None
    role = Membership.objects.filter(account=account, user=user).values_list("role", flat=True).first()
    return Role(role) if role is not None else None


def has_role(role: Role | None, needed: Role) -> bool:
    return role is not None and ROLE_RANK[Role(role)] >= ROLE_RANK[Role(needed)]


def _check(role: Role | None, needed: Role) -> None:
    if role is None:
        raise Http404("not found")
    if not has_role(role, needed):
        raise PermissionDenied("your role in this account does not allow this")


def get_account_for_user(user: Any, public_id: str | uuid.UUID, role: Role = Role.VIEWER) -> Account:
    """The account with ``public_id`` if ``user`` is a member with at least ``role``."""
    try:
        key = public_id if isinstance(public_id, uuid.UUID) else uuid.UUID(str(public_id))
    except ValueError:
        raise Http404("not found") from None
    if not _is_user(user):
        raise Http404("not found")
    membership = Membership.objects.select_related("account").filter(account__public_id=key, user=user).first()
    if membership is None:
        raise Http404("not found")
    _check(Role(membership.role), role)
    return membership.account


def get_site_for_user(user: Any, domain: str, role: Role = Role.VIEWER) -> Site:
    """The site called ``domain`` if ``user`` is a member of its account with at least ``role``."""
    if not _is_user(user):
        raise Http404("not found")
    # One query: the site with the user's role in its account.
    member_role = Membership.objects.filter(account=OuterRef("account_id"), user=user).values("role")[:1]
    site = (
        Site.objects.select_related("account")
        .filter(domain=domain.lower())
        .annotate(member_role=Subquery(member_role))
        .first()
    )
    if site is None:
        raise Http404("not found")
    found: str | None = getattr(site, "member_role", None)
    _check(Role(found) if found is not None else None, role)
    return site


def sites_for_user(user: Any) -> QuerySet[Site]:
    """Every site of every account ``user`` belongs to."""
    if not _is_user(user):
        return Site.objects.none()
    return Site.objects.filter(account__memberships__user=user).select_related("account").order_by("domain")


def accounts_for_user(user: Any) -> QuerySet[Account]:
    if not _is_user(user):
        return Account.objects.none()
    return Account.objects.filter(memberships__user=user).order_by("name", "id")


def current_account(request: HttpRequest) -> Account | None:
    """The account the user works in: the one chosen in the switcher, else their first."""
    user = getattr(request, "user", None)
    if not _is_user(user):
        return None
    accounts = accounts_for_user(user)
    chosen = request.session.get(SESSION_ACCOUNT_KEY) if hasattr(request, "session") else None
    if chosen:
        account = accounts.filter(public_id=chosen).first()
        if account is not None:
            return account
    return accounts.first()


def overview_sites(user: Any, session: Mapping[str, Any] | None) -> dict[int, str]:
    """The sites (id → domain) of the account the overview shows: the one chosen in the switcher, else the first."""
    accounts = accounts_for_user(user)
    chosen = session.get(SESSION_ACCOUNT_KEY) if session is not None else None
    account = (accounts.filter(public_id=chosen).first() if chosen else None) or accounts.first()
    return dict(sites_for_user(user).filter(account=account).values_list("pk", "domain"))


def request_user(request: HttpRequest) -> User:
    """The logged-in user of a view behind ``login_required``."""
    user = request.user
    if not isinstance(user, User):
        raise Http404("not found")
    return user


def set_current_account(request: HttpRequest, account: Account) -> None:
    request.session[SESSION_ACCOUNT_KEY] = str(account.public_id)


# API keys ---------------------------------------------------------------------


class BadKey(Exception):
    """No valid key: missing, malformed, unknown, revoked or expired (401)."""


class AccountSuspended(Exception):
    """A valid key of a suspended account (403)."""


class ScopeMissing(Exception):
    """A valid key without the scope asked for (403)."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"the key lacks the {scope} scope")
        self.scope = scope


def authenticate_bearer(raw: str) -> APIKey | None:
    """The live key ``raw`` stands for, or ``None``: the 401 decision alone.

    The collector calls only this (and caches the answer): it refuses a
    suspended account per site from ``analytics.sitecache``, off the ORM.
    """
    return authenticate_key(raw)


def key_for_bearer(raw: str, *scopes: str) -> APIKey:
    """The key ``raw`` if it is live, its account not suspended, and it holds one of ``scopes``.

    ``BadKey``, ``AccountSuspended`` or ``ScopeMissing`` otherwise, in that order.
    """
    key = authenticate_key(raw)
    if key is None:
        raise BadKey("invalid API key")
    if key.account.suspended:
        raise AccountSuspended("this account is suspended")
    if scopes and not any(scope in key.scopes for scope in scopes):
        raise ScopeMissing(scopes[0])
    return key


def site_for_key(key: APIKey, domain: str) -> Site:
    """The site ``domain`` if it belongs to the key's account; ``Http404`` otherwise."""
    if key.account.suspended:
        raise AccountSuspended("this account is suspended")
    if unstorable(domain):
        raise Http404("site not found")
    site = Site.objects.select_related("account").filter(account_id=key.account_id, domain=domain.lower()).first()
    if site is None:
        raise Http404("site not found")
    return site


def sites_for_key(key: APIKey) -> QuerySet[Site]:
    """The sites of the key's account."""
    return Site.objects.filter(account_id=key.account_id).select_related("account")


def feed_site(raw_key: str, domain: str) -> tuple[APIKey, Site]:
    """The key and the site a live feed socket may follow (needs ``feed:read``)."""
    key = key_for_bearer(raw_key, "feed:read")
    return key, site_for_key(key, domain)


# Public and shared-link viewers -------------------------------------------------

Via = Literal["member", "public", "link"]


@dataclass(frozen=True)
class DashboardAccess:
    site: Site
    via: Via

    @property
    def read_only(self) -> bool:
        return self.via != "member"


def unlock_token(slug: str, password_hash: str) -> str:
    """What a session stores for an unlocked shared link.

    Changing or setting the password changes the token, so sessions that
    unlocked the link before lose access.
    """
    return hashlib.sha256(f"{slug}:{password_hash}".encode()).hexdigest()[:32]


def _has_unlocked_link(session: Mapping[str, Any] | None, site: Site) -> bool:
    unlocked = (session or {}).get(SHARED_LINKS_SESSION_KEY) or {}
    if not isinstance(unlocked, dict) or not unlocked:
        return False
    links = SharedLink.objects.filter(site=site, slug__in=list(unlocked)).values_list("slug", "password_hash")
    return any(unlocked.get(slug) == unlock_token(slug, password_hash) for slug, password_hash in links)


def _site_for_non_member(domain: str) -> Site:
    if unstorable(domain):
        raise Http404("not found")
    site = Site.objects.select_related("account").filter(domain=domain.lower()).first()
    if site is None or site.account.suspended:
        raise Http404("not found")
    return site


def dashboard_access(user: Any, session: Mapping[str, Any] | None, domain: str) -> DashboardAccess:
    """How ``user`` (with ``session``) may view ``domain``'s dashboard; ``Http404`` if not at all.

    Members first, then anyone on a public site, then a session that unlocked
    one of the site's shared links. Page views, the dashboard's query endpoint
    and the live WebSocket all decide here.
    """
    # The live WebSocket's path reaches here without spinnakr.middleware's check.
    if unstorable(domain):
        raise Http404("not found")
    try:
        return DashboardAccess(get_site_for_user(user, domain), "member")
    except Http404:
        pass
    site = _site_for_non_member(domain)
    if site.public:
        return DashboardAccess(site, "public")
    if _has_unlocked_link(session, site):
        return DashboardAccess(site, "link")
    raise Http404("not found")


def link_for_slug(slug: str) -> SharedLink:
    """The shared link ``slug`` unless its account is suspended; ``Http404`` otherwise."""
    if unstorable(slug):
        raise Http404("not found")
    link = SharedLink.objects.select_related("site", "site__account").filter(slug=slug).first()
    if link is None or link.site.account.suspended:
        raise Http404("not found")
    return link
