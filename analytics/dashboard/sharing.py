"""Who may look at a site's dashboard: members, anyone for a public site, holders of a shared link.

``accounts.access.dashboard_access`` (the one tenancy module) decides: members,
then anyone for a public site, then a session that unlocked one of the site's
shared links; anyone else gets 404, exactly like an unknown domain. This
module manages links and their passwords.

Password guesses on a shared link are throttled as log-ins are
(``accounts.throttle``): per link and per client IP, counted in Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

from django.db import transaction
from django.http import Http404, HttpRequest

from accounts import throttle
from accounts.access import (
    SHARED_LINKS_SESSION_KEY,
    DashboardAccess,
    dashboard_access,
    link_for_slug,
    unlock_token,
)
from accounts.models import Site, User
from analytics.models import SharedLink

logger = logging.getLogger(__name__)

SESSION_KEY = SHARED_LINKS_SESSION_KEY
__all__ = ["DashboardAccess", "dashboard_access", "link_for_slug"]


def _unlock_token(link: SharedLink) -> str:
    return unlock_token(link.slug, link.password_hash)


def unlock(session: MutableMapping[str, Any], link: SharedLink) -> None:
    """Remember in the session that this browser may view through ``link``."""
    unlocked = dict(session.get(SESSION_KEY) or {})
    unlocked[link.slug] = _unlock_token(link)
    session[SESSION_KEY] = unlocked


def is_unlocked(session: Mapping[str, Any] | None, link: SharedLink) -> bool:
    unlocked = (session or {}).get(SESSION_KEY) or {}
    return isinstance(unlocked, dict) and unlocked.get(link.slug) == _unlock_token(link)


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
