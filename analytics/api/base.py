"""The one base of every API view: authentication, scopes, tenancy, rate limit, errors, CSV.

A request authenticates with an API key (``Authorization: Bearer …``) or, for the
dashboard, with a session. Keys need the view's scope and reach only their
account's sites; users need a role on the site's account. Every site lookup goes
through ``site_for_request``, which answers 404 to outsiders.
"""

from __future__ import annotations

import csv
import io
import logging
from typing import Any, ClassVar

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from accounts.access import get_site_for_user
from accounts.api_auth import APIKeyAuthentication, site_for_key
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


def _message(data: Any) -> str:
    if isinstance(data, dict):
        if "detail" in data:
            return str(data["detail"])
        parts = [f"{k}: {_message(v)}" for k, v in data.items()]
        return "; ".join(parts)
    if isinstance(data, list):
        return "; ".join(_message(v) for v in data)
    return str(data)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, QueryError):
        return Response({"error": exc.message}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        return Response(
            {"error": "Site or object not found, or not in this account."}, status=status.HTTP_404_NOT_FOUND
        )
    response = exception_handler(exc, context)
    if response is not None:
        response.data = {"error": _message(response.data)}
    return response


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
        if not isinstance(domain, str) or not domain:
            raise QueryError("site_id: is required (the site's domain)")
        if isinstance(request.auth, APIKey):
            return site_for_key(request, domain)
        role = self.roles.get(request.method or "GET", Role.VIEWER)
        return get_site_for_user(request.user, domain, role=role)

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
