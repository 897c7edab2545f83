"""The one place that decides who may see or change a tenant's objects.

Every request-time lookup of an account or a site goes through here. An
outsider (no membership in the owning account) gets ``Http404`` so the
existence of another tenant's object never leaks; a member whose role is
too low gets ``PermissionDenied`` (403).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest

from accounts.models import ROLE_RANK, Account, Membership, Role, Site, User

SESSION_ACCOUNT_KEY = "spinnakr_account"


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


def get_site_for_reader(user: Any, domain: str) -> tuple[Site, Role | None]:
    """A site to read: members of its account, or anyone when the site is public.

    Returns the site with the user's role (``None`` for a non-member reading a
    public site, who must get a read-only view). ``Http404`` otherwise.
    """
    site = Site.objects.select_related("account").filter(domain=domain.lower()).first()
    if site is None:
        raise Http404("not found")
    role = user_role(user, site.account)
    if role is None and not site.public:
        raise Http404("not found")
    return site, role


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


def request_user(request: HttpRequest) -> User:
    """The logged-in user of a view behind ``login_required``."""
    user = request.user
    if not isinstance(user, User):
        raise Http404("not found")
    return user


def set_current_account(request: HttpRequest, account: Account) -> None:
    request.session[SESSION_ACCOUNT_KEY] = str(account.public_id)
