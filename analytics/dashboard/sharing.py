"""Who may look at a site's dashboard: members, anyone for a public site, holders of a shared link.

Members are checked by ``accounts.access`` (the one tenancy module). A
non-member may still view read-only when the site is public or when the
session has unlocked one of the site's shared links; anyone else gets 404,
exactly like an unknown domain. The same function decides for page views, the
dashboard's query endpoint and the live WebSocket.

Password guesses on a shared link are throttled as log-ins are
(``accounts.throttle``): per link and per client IP, counted in Redis.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

from django.db import transaction
from django.http import Http404, HttpRequest

from accounts import throttle
from accounts.access import get_site_for_user
from accounts.models import Site, User
from analytics.models import SharedLink
from spinnakr.untrusted import unstorable

logger = logging.getLogger(__name__)

SESSION_KEY = "spinnakr_shared_links"
Via = Literal["member", "public", "link"]


@dataclass(frozen=True)
class DashboardAccess:
    site: Site
    via: Via

    @property
    def read_only(self) -> bool:
        return self.via != "member"


def _unlock_token(link: SharedLink) -> str:
    # Changing or setting the password changes the token, so sessions that
    # unlocked the link before lose access.
    return hashlib.sha256(f"{link.slug}:{link.password_hash}".encode()).hexdigest()[:32]


def unlock(session: MutableMapping[str, Any], link: SharedLink) -> None:
    """Remember in the session that this browser may view through ``link``."""
    unlocked = dict(session.get(SESSION_KEY) or {})
    unlocked[link.slug] = _unlock_token(link)
    session[SESSION_KEY] = unlocked


def is_unlocked(session: Mapping[str, Any] | None, link: SharedLink) -> bool:
    unlocked = (session or {}).get(SESSION_KEY) or {}
    return isinstance(unlocked, dict) and unlocked.get(link.slug) == _unlock_token(link)


def _unlocked_link(session: Mapping[str, Any] | None, site: Site) -> SharedLink | None:
    unlocked = (session or {}).get(SESSION_KEY) or {}
    if not isinstance(unlocked, dict) or not unlocked:
        return None
    for link in SharedLink.objects.filter(site=site, slug__in=list(unlocked)):
        if unlocked.get(link.slug) == _unlock_token(link):
            return link
    return None


def dashboard_access(user: Any, session: Mapping[str, Any] | None, domain: str) -> DashboardAccess:
    """How ``user`` (with ``session``) may view ``domain``'s dashboard; ``Http404`` if not at all."""
    # The live WebSocket's path reaches here without spinnakr.middleware's check.
    if unstorable(domain):
        raise Http404("not found")
    try:
        return DashboardAccess(get_site_for_user(user, domain), "member")
    except Http404:
        pass
    site = Site.objects.select_related("account").filter(domain=domain.lower()).first()
    if site is None or site.account.suspended:
        raise Http404("not found")
    if site.public:
        return DashboardAccess(site, "public")
    if _unlocked_link(session, site) is not None:
        return DashboardAccess(site, "link")
    raise Http404("not found")


class PasswordThrottled(Exception):
    """Too many wrong passwords for the link or from the client; try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"throttled for {retry_after} s")
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        minutes = -(-self.retry_after // 60)
        return f"Too many wrong passwords. Wait {minutes} minute{'s' if minutes > 1 else ''} and try again."


def check_link_password(request: HttpRequest, link: SharedLink, password: str) -> bool:
    """Whether ``password`` opens ``link``; ``PasswordThrottled`` while guesses are locked out.

    A locked-out client is refused even with the right password, so guessing
    faster than the window allows learns nothing.
    """
    retry_after = throttle.SHARED_LINK.retry_after(request, link.slug)
    if retry_after:
        logger.info("shared_link.throttled", extra={"site_id": link.site_id, "ip": throttle.client_ip(request)})
        raise PasswordThrottled(retry_after)
    if link.check_password(password):
        return True
    throttle.SHARED_LINK.record_failure(request, link.slug)
    return False


def link_for_slug(slug: str) -> SharedLink:
    if unstorable(slug):
        raise Http404("not found")
    link = SharedLink.objects.select_related("site", "site__account").filter(slug=slug).first()
    if link is None or link.site.account.suspended:
        raise Http404("not found")
    return link


@transaction.atomic
def create_shared_link(
    site: Site, name: str, password: str | None = None, created_by: User | None = None
) -> SharedLink:
    link = SharedLink(site=site, name=name.strip()[:100] or "Shared link", created_by=created_by)
    link.set_password(password)
    link.save()
    return link


@transaction.atomic
def delete_shared_link(site: Site, slug: str) -> None:
    deleted, _ = SharedLink.objects.filter(site=site, slug=slug).delete()
    if not deleted:
        raise Http404("not found")


@transaction.atomic
def set_site_public(site: Site, public: bool) -> None:
    Site.objects.filter(pk=site.pk).update(public=public)
    site.public = public
