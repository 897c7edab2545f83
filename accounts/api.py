"""The Sites API (Plausible's site provisioning shape) under ``/api/v1/sites``.

Reads need ``stats:read`` or ``sites:write``; writes need ``sites:write``. A
site outside the key's account answers 404, never 401 (Plausible answers 401).
Every request counts against the key's hourly limit, shared with the Stats API.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, ClassVar

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api_auth import APIKeyAuthentication, request_key
from accounts.models import APIKey, Scope, Site
from accounts.sites import SiteError, create_site, delete_site, update_site
from analytics.api.base import APIBaseView
from spinnakr.untrusted import unstorable

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

_READ: tuple[str, ...] = (Scope.STATS_READ, Scope.SITES_WRITE)
_WRITE: tuple[str, ...] = (Scope.SITES_WRITE,)

SiteSchema = inline_serializer(
    "Site",
    {
        "domain": serializers.CharField(),
        "timezone": serializers.CharField(),
        "site_key": serializers.CharField(),
        "allowed_origins": serializers.ListField(child=serializers.CharField()),
        "public": serializers.BooleanField(),
        "created": serializers.DateTimeField(),
        "updated": serializers.DateTimeField(),
    },
)
SiteInput = inline_serializer(
    "SiteInput",
    {
        "domain": serializers.CharField(),
        "timezone": serializers.CharField(required=False),
        "allowed_origins": serializers.ListField(child=serializers.CharField(), required=False),
        "public": serializers.BooleanField(required=False),
    },
)


def site_json(site: Site) -> dict[str, Any]:
    return {
        "domain": site.domain,
        "timezone": site.timezone,
        "site_key": site.site_key,
        "allowed_origins": list(site.allowed_origins),
        "public": site.public,
        "created": site.created.isoformat(),
        "updated": site.updated.isoformat(),
    }


def _cursor(domain: str) -> str:
    return base64.urlsafe_b64encode(domain.encode()).decode().rstrip("=")


def _uncursor(raw: str, name: str) -> str:
    try:
        value = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError({name: "is not a cursor from a previous response"}) from None
    # A forged cursor may decode to text no domain holds and PostgreSQL cannot compare.
    if not value or unstorable(value):
        raise ValidationError({name: "is not a cursor from a previous response"})
    return value


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationError({"limit": f"must be a whole number from 1 to {MAX_LIMIT}"})
    return int(raw)


def _body(request: Request) -> dict[str, Any]:
    data = request.data
    if hasattr(data, "dict"):
        data = data.dict()
    if not isinstance(data, dict):
        raise ValidationError("the body must be a JSON object")
    return data


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise ValidationError({field: "must be true or false"})


def _check_team(request: Request, team_id: Any) -> None:
    """Plausible's optional ``team_id`` is the account's public id; any other account is 404."""
    if team_id in (None, "") or str(team_id) == str(_key(request).account.public_id):
        return
    raise Http404("team not found")


def _key(request: Request) -> APIKey:
    key = request_key(request)
    assert key is not None  # the permission classes let no request without a key through
    return key


class _SitesBase(APIBaseView):
    # Plausible's Sites API takes API keys only, answers JSON only, and shows each 404's own message.
    authentication_classes: ClassVar[list[Any]] = [APIKeyAuthentication]  # type: ignore[misc]
    renderer_classes: ClassVar[list[Any]] = [JSONRenderer]  # type: ignore[misc]
    scopes: ClassVar[dict[str, tuple[str, ...]]] = {
        "GET": _READ,
        "HEAD": _READ,
        "OPTIONS": _READ,
        "POST": _WRITE,
        "PUT": _WRITE,
        "DELETE": _WRITE,
    }
    not_found_error = None


class SiteListView(_SitesBase):
    @extend_schema(
        parameters=[
            OpenApiParameter("after", str, required=False),
            OpenApiParameter("before", str, required=False),
            OpenApiParameter("limit", int, required=False),
            OpenApiParameter("team_id", str, required=False, description="the account's public id"),
        ],
        operation_id="sites_list",
        responses={200: inline_serializer("SiteList", {"sites": SiteSchema, "meta": serializers.DictField()})},
    )
    def get(self, request: Request) -> Response:
        _check_team(request, request.query_params.get("team_id"))
        limit = _limit(request.query_params.get("limit"))
        after, before = request.query_params.get("after"), request.query_params.get("before")
        if after and before:
            raise ValidationError("pass either after or before, not both")
        sites = self.scoped_sites()
        if before:
            page = list(sites.filter(domain__lt=_uncursor(before, "before")).order_by("-domain")[: limit + 1])
            more = len(page) > limit
            page = list(reversed(page[:limit]))
            has_before, has_after = more, True
        else:
            if after:
                sites = sites.filter(domain__gt=_uncursor(after, "after"))
            page = list(sites.order_by("domain")[: limit + 1])
            more = len(page) > limit
            page = page[:limit]
            has_before, has_after = bool(after), more
        return Response(
            {
                "sites": [site_json(site) for site in page],
                "meta": {
                    "after": _cursor(page[-1].domain) if page and has_after else None,
                    "before": _cursor(page[0].domain) if page and has_before else None,
                    "limit": limit,
                },
            }
        )

    @extend_schema(operation_id="sites_create", request=SiteInput, responses={201: SiteSchema})
    def post(self, request: Request) -> Response:
        body = _body(request)
        _check_team(request, body.get("team_id"))
        try:
            site = create_site(
                _key(request).account,
                body.get("domain"),
                body.get("timezone") or "UTC",
                allowed_origins=body.get("allowed_origins"),
                public=_bool(body.get("public", False), "public"),
            )
        except SiteError as error:
            raise ValidationError({error.field: error.message}) from None
        return Response(site_json(site), status=status.HTTP_201_CREATED)


class SiteDetailView(_SitesBase):
    @extend_schema(operation_id="sites_retrieve", responses={200: SiteSchema})
    def get(self, request: Request, domain: str) -> Response:
        return Response(site_json(self.site_for_request(request, domain)))

    @extend_schema(operation_id="sites_update", request=SiteInput, responses={200: SiteSchema})
    def put(self, request: Request, domain: str) -> Response:
        site = self.site_for_request(request, domain)
        body = _body(request)
        changes = {name: body[name] for name in ("domain", "timezone", "allowed_origins", "public") if name in body}
        if not changes:
            raise ValidationError("nothing to change: send domain, timezone, allowed_origins or public")
        if "public" in changes:
            changes["public"] = _bool(changes["public"], "public")
        try:
            update_site(site, **changes)
        except SiteError as error:
            raise ValidationError({error.field: error.message}) from None
        return Response(site_json(site))

    @extend_schema(
        operation_id="sites_destroy",
        responses={200: inline_serializer("Deleted", {"deleted": serializers.CharField()})},
    )
    def delete(self, request: Request, domain: str) -> Response:
        delete_site(self.site_for_request(request, domain))
        return Response({"deleted": "true"})


class TeamListView(_SitesBase):
    """Plausible's ``GET /api/v1/sites/teams``: a key sees its own account."""

    @extend_schema(
        operation_id="sites_teams_list",
        responses={
            200: inline_serializer("TeamList", {"teams": serializers.ListField(), "meta": serializers.DictField()})
        },
    )
    def get(self, request: Request) -> Response:
        account = _key(request).account
        team = {"id": str(account.public_id), "name": account.name, "api_available": True}
        return Response({"teams": [team], "meta": {"after": None, "before": None, "limit": DEFAULT_LIMIT}})
