from __future__ import annotations

from typing import Any, ClassVar

import pytest
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory

from accounts.api_auth import APIKeyAuthentication
from accounts.apikeys import revoke_api_key
from analytics.api.base import APIBaseView


class SiteProbe(APIBaseView):
    """A minimal endpoint on the base of every API view, with API keys only."""

    authentication_classes: ClassVar[list[Any]] = [APIKeyAuthentication]  # type: ignore[misc]
    scopes: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("stats:read",)}

    def get(self, request: Request, domain: str) -> Response:
        return Response({"domain": self.site_for_request(request, domain).domain})


def call(domain: str = "shop.example", authorization: str | None = None):
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    request = APIRequestFactory().get(f"/probe/{domain}", **headers)
    response = SiteProbe.as_view()(request, domain=domain)
    response.render()
    return response


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer spk_nope", "Bearer a b", "Bearer spk_AAAAAAAAAAAA_" + "x" * 40],
)
def test_it_answers_401_with_a_bearer_challenge_without_a_valid_key(site, authorization):
    response = call(authorization=authorization)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert set(response.data) == {"error"}


def test_it_answers_401_for_a_revoked_key(site, read_key):
    key, raw = read_key
    revoke_api_key(key)
    assert call(authorization=f"Bearer {raw}").status_code == 401


def test_it_answers_403_for_a_key_without_the_scope(site, account):
    from accounts.apikeys import create_api_key

    _, raw = create_api_key(account, "Events only", ["events:write"])
    response = call(authorization=f"Bearer {raw}")
    assert response.status_code == 403
    assert "stats:read" in response.data["error"]


def test_it_answers_200_for_a_key_with_the_scope(site, read_key):
    response = call(authorization=f"Bearer {read_key[1]}")
    assert (response.status_code, response.data) == (200, {"domain": "shop.example"})


def test_it_answers_404_for_a_site_of_another_account(site, other_site, read_key):
    response = call("mallory.example", authorization=f"Bearer {read_key[1]}")
    assert response.status_code == 404
    assert set(response.data) == {"error"}


def test_it_answers_403_for_a_suspended_account(site, account, read_key):
    account.suspended = True
    account.save()
    assert call(authorization=f"Bearer {read_key[1]}").status_code == 403
