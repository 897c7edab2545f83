"""NUL characters and unpaired surrogates in the path, query string and forms: 404 or 400, never 500."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.apikeys import create_api_key
from accounts.models import Account, Membership, Role, Site, User

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def owner() -> User:
    account = Account.objects.create(name="Nul Co")
    user = User.objects.create_user("owner@nul.test", email_verified=True)
    Membership.objects.create(account=account, user=user, role=Role.OWNER)
    Site.objects.create(account=account, domain="nul.example", timezone="UTC")
    return user


@pytest.fixture
def owner_client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def key(owner: User) -> str:
    account = Account.objects.get(name="Nul Co")
    return create_api_key(account, "nul", ["stats:read", "sites:write"], created_by=owner)[1]


@pytest.mark.parametrize(
    "path",
    [
        "/sites/%00/",
        "/share/%00/",
        "/sites/nul.example%00/settings/",
        "/sites/%00/snippet/",
        "/accounts/verify/%00/",
        "/accounts/invitations/a%00b/",
    ],
)
def test_a_nul_in_a_page_path_is_404_in_plain_text(owner_client: Client, path: str) -> None:
    for client in (Client(), owner_client):
        response = client.get(path)
        assert response.status_code == 404
        assert response["Content-Type"] == "text/plain; charset=utf-8"
        assert response.content == b"not found: the URL path holds a NUL character\n"


def test_a_nul_in_an_api_path_is_404_in_json(client: Client, key: str) -> None:
    response = client.get("/api/v1/sites/nul.example%00/export", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 404
    assert response.json() == {"error": "not found: the URL path holds a NUL character"}


def test_a_nul_in_the_query_string_is_400(owner_client: Client) -> None:
    response = owner_client.get("/sites/?q=a%00b")
    assert response.status_code == 400
    assert response.content == b"q: the query string parameter holds a NUL character\n"


def test_a_nul_in_a_query_string_name_is_400(client: Client, key: str) -> None:
    response = client.get("/api/v1/sites?a%00=1", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 400
    assert response.json() == {"error": "a\x00: the query string parameter holds a NUL character"}


def test_a_nul_in_the_resend_verification_form_is_400(client: Client) -> None:
    response = client.post(
        "/accounts/verify/resend/", "email=a%00%40nul.test", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400
    assert response.content == b"email: the form field holds a NUL character\n"


def test_a_nul_in_a_multipart_form_is_400(owner_client: Client) -> None:
    response = owner_client.post("/sites/nul.example/goals/", {"goal_type": "event", "value": "a\x00"})
    assert response.status_code == 400
    assert response.content == b"value: the form field holds a NUL character\n"


def test_a_nul_in_a_form_put_to_the_api_is_400_in_json(client: Client, key: str) -> None:
    response = client.put(
        "/api/v1/sites/goals",
        "site_id=nul.example&goal_type=event&event_name=a%00",
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 400
    assert response.json() == {"error": "event_name: the form field holds a NUL character"}


def test_a_view_still_reads_the_raw_body_of_a_multipart_post(owner_client: Client) -> None:
    # The check parses a copy of the body; the dashboard's endpoint then reads the raw bytes itself.
    response = owner_client.post("/sites/nul.example/query", {"metrics": "visitors"})
    assert response.status_code == 400
    assert response.json() == {"error": "the body is not valid JSON"}


def test_a_form_without_nul_reaches_the_view(owner_client: Client) -> None:
    response = owner_client.post("/sites/nul.example/goals/", {"goal_type": "event", "value": "Signup"})
    assert response.status_code == 302
    assert Site.objects.get(domain="nul.example").goals.get().event_name == "Signup"


@pytest.mark.parametrize(
    ("cookie", "name"),
    [('sessionid="abcdefgh\\000ijkl"', "sessionid"), ('csrftoken="a\\000b"', "csrftoken")],
)
def test_a_nul_spelled_in_a_quoted_cookie_is_400(client: Client, cookie: str, name: str) -> None:
    response = client.get("/sites/", headers={"Cookie": cookie})
    assert response.status_code == 400
    assert response.content == f"{name}: the cookie holds a NUL character\n".encode()
