"""The one base of every API view, Stats API and Sites API: authentication, scopes, tenancy, rate limit, errors, CSV.

A request authenticates with an API key (``Authorization: Bearer …``) or, for the
dashboard, with a session. Keys need the view's scope and reach only their
account's sites; users need a role on the site's account. Every site lookup goes
through ``site_for_request`` and every list of sites through ``scoped_sites``
(both decided in ``accounts.access``), which answer 404 to outsiders and cannot
be overridden; reading across accounts needs a method named ``dangerously_…``.
"""

from __future__ import annotations

import csv
import io
import logging
from typing import Any, ClassVar

from django.db.models import QuerySet
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import access
from accounts.api_auth import APIKeyAuthentication, site_for_key
from accounts.api_errors import exception_handler as plausible_exception_handler
from accounts.models import APIKey, Role, Site
from analytics.api import ratelimit
from analytics.query import QueryError
from spinnakr.untrusted import BoundedJSONParser

logger = logging.getLogger(__name__)


class CSVRenderer(BaseRenderer):
    """Renders the table a view attached to the response (``response.csv_table``)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        response = (renderer_context or {}).get("response")
        table = getattr(response, "csv_table", None)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if table is None:
            writer.writerow(["error"])
            writer.writerow([data.get("error", "") if isinstance(data, dict) else ""])
        else:
            header, rows = table
            writer.writerow(header)
            writer.writerows(rows)
        return buffer.getvalue().encode("utf-8")


class ZipRenderer(BaseRenderer):
    """Lets clients ask for the export with ``Accept: application/zip`` (the view builds the bytes)."""

    media_type = "application/zip"
    format = "zip"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return data if isinstance(data, bytes) else b""


class ScopedAccess(BasePermission):
    """API keys need one of the view's scopes; sessions need a logged-in user (roles: per site)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        auth = request.auth
        if isinstance(auth, APIKey):
            scopes = view.scopes_for(request)
            if not any(scope in auth.scopes for scope in scopes):
                raise exceptions.PermissionDenied(f"This API key lacks the {scopes[0]!s} scope.")
            return True
        user = request.user
        return bool(user is not None and user.is_authenticated)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Plausible's ``{"error": "…"}`` shape for every API view."""
    if isinstance(exc, QueryError):
        return Response({"error": exc.message}, status=status.HTTP_400_BAD_REQUEST)
    view = context.get("view")
    not_found = getattr(view, "not_found_error", None)
    if isinstance(exc, Http404) and not_found:
        return Response({"error": not_found}, status=status.HTTP_404_NOT_FOUND)
    return plausible_exception_handler(exc, context)


class APIBaseView(APIView):
    authentication_classes: ClassVar[list[Any]] = [APIKeyAuthentication, SessionAuthentication]  # type: ignore[misc]
    permission_classes: ClassVar[list[Any]] = [ScopedAccess]  # type: ignore[misc]
    renderer_classes: ClassVar[list[Any]] = [JSONRenderer, CSVRenderer]  # type: ignore[misc]
    # NUL and unpaired surrogates in the path, query string and forms: spinnakr.middleware.
    parser_classes: ClassVar[list[Any]] = [BoundedJSONParser, FormParser, MultiPartParser]  # type: ignore[misc]
    # Acceptable scopes per HTTP method; any one suffices.
    scopes: ClassVar[dict[str, tuple[str, ...]]] = {}
    # The role a session user needs on the site's account, per HTTP method.
    roles: ClassVar[dict[str, Role]] = {}
    # The 404 message; ``None`` shows the ``Http404``'s own.
    not_found_error: ClassVar[str | None] = "Site or object not found, or not in this account."
    # Tenancy: subclasses narrow with their own querysets built on these, never replace them.
    _sealed: ClassVar[tuple[str, ...]] = ("site_for_request", "scoped_sites", "get_exception_handler")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls._sealed:
            if name in cls.__dict__:
                raise TypeError(f"{cls.__name__} overrides {name}: tenancy is decided in APIBaseView")

    def scopes_for(self, request: Request) -> tuple[str, ...]:
        return self.scopes.get(request.method or "GET", ("stats:read",))

    def get_exception_handler(self) -> Any:
        return api_exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        ratelimit.count_request(request)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        ratelimit.add_headers(request, response)
        if response.status_code >= 400 and getattr(response, "accepted_renderer", None) is not None:
            # Errors stay JSON whatever the client accepts.
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = "application/json"
        return response

    def site_for_request(self, request: Request, domain: Any) -> Site:
        """The site ``domain`` if the request's principal may reach it; ``Http404`` for outsiders."""
        if not isinstance(domain, str) or not domain:
            raise QueryError("site_id: is required (the site's domain)")
        if isinstance(request.auth, APIKey):
            return site_for_key(request, domain)
        role = self.roles.get(request.method or "GET", Role.VIEWER)
        return access.get_site_for_user(request.user, domain, role=role)

    def scoped_sites(self) -> QuerySet[Site]:
        """Every site the request's principal may reach: the key's account's, or the user's accounts'."""
        auth = self.request.auth
        if isinstance(auth, APIKey):
            return access.sites_for_key(auth)
        return access.sites_for_user(self.request.user)

    def dangerously_unscoped_sites(self) -> QuerySet[Site]:
        """Every tenant's sites: only for code that must cross accounts, and says why."""
        return Site.objects.all()

    def wants_csv(self, request: Request) -> bool:
        renderer = getattr(request, "accepted_renderer", None)
        return isinstance(renderer, CSVRenderer)


def csv_response(data: Any, header: list[str], rows: list[list[Any]]) -> Response:
    response = Response(data)
    response.csv_table = (header, rows)  # type: ignore[attr-defined]
    return response


def csv_cell(value: Any) -> Any:
    if isinstance(value, dict) and "value" in value:
        return value["value"]
    return "" if value is None else value
