"""API authentication for DRF views: ``Authorization: Bearer <key>``, decided by ``accounts.access``.

A missing, malformed, unknown, revoked or expired key answers 401 with
``WWW-Authenticate: Bearer``; a key of a suspended account 403; a site outside
the key's account 404. Scopes are checked by ``analytics.api.base.ScopedAccess``.
Errors are JSON ``{"error": "…"}`` (see ``accounts.api_errors``).
"""

from __future__ import annotations

import logging

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from accounts import access
from accounts.models import Account, APIKey, Site

logger = logging.getLogger(__name__)


class APIKeyUser:
    """The principal of a request authenticated by an API key (not a person)."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = False
    pk = None

    def __init__(self, key: APIKey) -> None:
        self.key = key
        self.account: Account = key.account

    def __str__(self) -> str:
        return f"API key {self.key.prefix}"


class APIKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[APIKeyUser, APIKey] | None:
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != self.keyword.lower().encode():
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <API key>'")
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <API key>'")
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("invalid API key") from None
        try:
            key = access.key_for_bearer(raw)
        except access.BadKey:
            logger.info("api.auth_failed", extra={"path": request.path})
            raise exceptions.AuthenticationFailed("invalid API key") from None
        except access.AccountSuspended:
            raise exceptions.PermissionDenied("this account is suspended") from None
        return APIKeyUser(key), key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def request_key(request: Request) -> APIKey | None:
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, APIKey) else None


def site_for_key(request: Request, domain: str) -> Site:
    """The site ``domain`` if it belongs to the key's account; ``Http404`` otherwise."""
    key = request_key(request)
    if key is None:
        raise exceptions.NotAuthenticated("an API key is required")
    try:
        return access.site_for_key(key, domain)
    except access.AccountSuspended:
        raise exceptions.PermissionDenied("this account is suspended") from None
