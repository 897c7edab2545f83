from __future__ import annotations

import pytest
from django.test import Client

from accounts.apikeys import create_api_key
from accounts.models import Site


def bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@pytest.fixture
def api(client) -> Client:
    return client


@pytest.mark.parametrize("path", ["/api/v1/sites", "/api/v1/sites/"])
def test_it_lists_the_accounts_sites_with_or_without_slash(api, site, other_site, read_key, path):
    response = api.get(path, **bearer(read_key[1]))
    assert response.status_code == 200
    body = response.json()
    assert [s["domain"] for s in body["sites"]] == ["shop.example"]
    assert body["sites"][0]["timezone"] == "Europe/Berlin"
    assert body["meta"] == {"after": None, "before": None, "limit": 100}


def test_it_paginates_with_cursors(api, account, write_key):
    for name in ["a", "b", "c", "d", "e"]:
        Site.objects.create(account=account, domain=f"{name}.example")
    first = api.get("/api/v1/sites?limit=2", **bearer(write_key[1])).json()
    second = api.get(f"/api/v1/sites?limit=2&after={first['meta']['after']}", **bearer(write_key[1])).json()
    third = api.get(f"/api/v1/sites?limit=2&after={second['meta']['after']}", **bearer(write_key[1])).json()
    back = api.get(f"/api/v1/sites?limit=2&before={second['meta']['before']}", **bearer(write_key[1])).json()
    assert [[s["domain"] for s in page["sites"]] for page in (first, second, third, back)] == [
        ["a.example", "b.example"],
        ["c.example", "d.example"],
        ["e.example"],
        ["a.example", "b.example"],
    ]
    assert (first["meta"]["before"], third["meta"]["after"], back["meta"]["before"]) == (None, None, None)


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "limit=5000", "after=%%%", "after=a&before=b"])
def test_it_rejects_bad_pagination(api, site, read_key, query):
    response = api.get(f"/api/v1/sites?{query}", **bearer(read_key[1]))
    assert response.status_code == 400
    assert "error" in response.json()


@pytest.mark.parametrize("path", ["/api/v1/sites/shop.example", "/api/v1/sites/shop.example/"])
def test_it_shows_a_site_with_or_without_slash(api, site, read_key, path):
    response = api.get(path, **bearer(read_key[1]))
    assert response.status_code == 200
    assert response.json()["domain"] == "shop.example"
    assert response.json()["site_key"] == site.site_key


def test_it_shows_a_site_with_a_path_prefix(api, account, read_key):
    Site.objects.create(account=account, domain="example.com/blog")
    response = api.get("/api/v1/sites/example.com/blog/", **bearer(read_key[1]))
    assert response.json()["domain"] == "example.com/blog"


def test_it_creates_a_site_from_json(api, account, write_key):
    response = api.post(
        "/api/v1/sites",
        {"domain": "New.Example", "timezone": "Europe/London"},
        content_type="application/json",
        **bearer(write_key[1]),
    )
    assert response.status_code == 201
    assert response.json()["domain"] == "new.example"
    assert Site.objects.get(domain="new.example").account == account


def test_it_creates_a_site_from_a_form_like_plausible(api, account, write_key):
    response = api.post("/api/v1/sites/", {"domain": "form.example"}, **bearer(write_key[1]))
    assert response.status_code == 201
    assert response.json()["timezone"] == "UTC"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "domain"),
        ({"domain": "bad domain"}, "domain"),
        ({"domain": "ok.example", "timezone": "Nowhere/City"}, "timezone"),
        ({"domain": "ok.example", "allowed_origins": "not a url"}, "allowed_origins"),
        ({"domain": "ok.example", "public": "maybe"}, "public"),
        ({"domain": "shop.example"}, "domain"),
    ],
)
def test_it_rejects_invalid_sites_with_a_json_error(api, site, write_key, body, field):
    response = api.post("/api/v1/sites", body, content_type="application/json", **bearer(write_key[1]))
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{field}:")
    assert Site.objects.count() == 1


def test_it_rejects_malformed_json(api, write_key):
    response = api.post("/api/v1/sites", "{nope", content_type="application/json", **bearer(write_key[1]))
    assert response.status_code == 400
    assert "error" in response.json()


def test_it_rejects_a_json_array_body(api, write_key):
    response = api.post("/api/v1/sites", "[1]", content_type="application/json", **bearer(write_key[1]))
    assert response.status_code == 400


def test_it_renames_a_site(api, site, write_key):
    response = api.put(
        "/api/v1/sites/shop.example/",
        {"domain": "store.example"},
        content_type="application/json",
        **bearer(write_key[1]),
    )
    assert response.status_code == 200
    assert response.json()["domain"] == "store.example"
    assert Site.objects.get(pk=site.pk).domain == "store.example"


def test_it_deletes_a_site(api, site, write_key):
    response = api.delete("/api/v1/sites/shop.example", **bearer(write_key[1]))
    assert (response.status_code, response.json()) == (200, {"deleted": "true"})
    assert not Site.objects.filter(pk=site.pk).exists()


def test_a_read_key_cannot_write(api, site, read_key):
    responses = [
        api.post("/api/v1/sites", {"domain": "x.example"}, content_type="application/json", **bearer(read_key[1])),
        api.put(
            "/api/v1/sites/shop.example", {"timezone": "UTC"}, content_type="application/json", **bearer(read_key[1])
        ),
        api.delete("/api/v1/sites/shop.example", **bearer(read_key[1])),
    ]
    assert [r.status_code for r in responses] == [403, 403, 403]
    assert Site.objects.filter(pk=site.pk, timezone="Europe/Berlin").exists()


def test_an_events_only_key_cannot_read(api, site, account):
    _, raw = create_api_key(account, "Events", ["events:write"])
    assert api.get("/api/v1/sites", **bearer(raw)).status_code == 403


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_an_outsider_key_gets_404_for_another_accounts_site(api, site, outsider_key, method):
    response = getattr(api, method)(
        "/api/v1/sites/shop.example",
        {"domain": "stolen.example"},
        content_type="application/json",
        **bearer(outsider_key[1]),
    )
    assert response.status_code == 404
    assert Site.objects.get(pk=site.pk).domain == "shop.example"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/sites"),
        ("post", "/api/v1/sites/"),
        ("get", "/api/v1/sites/shop.example"),
        ("delete", "/api/v1/sites/shop.example/"),
    ],
)
def test_it_answers_401_without_a_key(api, site, method, path):
    response = getattr(api, method)(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "error" in response.json()


def test_a_logged_in_session_is_not_an_api_key(api, site, owner):
    api.force_login(owner)
    assert api.get("/api/v1/sites").status_code == 401


def test_a_created_site_is_visible_at_once(api, write_key):
    api.post("/api/v1/sites", {"domain": "fresh.example"}, content_type="application/json", **bearer(write_key[1]))
    response = api.get("/api/v1/sites/fresh.example", **bearer(write_key[1]))
    assert response.status_code == 200


def test_it_answers_413_in_json_for_a_huge_body(api, write_key):
    body = '{"domain": "' + "a" * 3_000_000 + '"}'
    response = api.post("/api/v1/sites", body, content_type="application/json", **bearer(write_key[1]))
    assert response.status_code == 413
    assert response.json() == {"error": "the request body is too large"}
    assert not Site.objects.exists()


def test_it_answers_415_in_json_for_an_unknown_media_type(api, write_key):
    response = api.post("/api/v1/sites", "<site/>", content_type="application/xml", **bearer(write_key[1]))
    assert response.status_code == 415
    assert "error" in response.json()


def test_it_refuses_a_domain_that_is_not_a_string(api, write_key):
    response = api.post(
        "/api/v1/sites", {"domain": ["x.example"]}, content_type="application/json", **bearer(write_key[1])
    )
    assert response.json() == {"error": "domain: domain must be a string"}


def test_it_accepts_its_own_account_as_team_id(api, account, site, write_key):
    listed = api.get(f"/api/v1/sites?team_id={account.public_id}", **bearer(write_key[1]))
    created = api.post(
        "/api/v1/sites",
        {"domain": "team.example", "team_id": str(account.public_id)},
        content_type="application/json",
        **bearer(write_key[1]),
    )
    assert (listed.status_code, created.status_code) == (200, 201)


def test_another_accounts_team_id_is_404(api, other_account, site, write_key):
    listed = api.get(f"/api/v1/sites?team_id={other_account.public_id}", **bearer(write_key[1]))
    created = api.post(
        "/api/v1/sites",
        {"domain": "team.example", "team_id": str(other_account.public_id)},
        content_type="application/json",
        **bearer(write_key[1]),
    )
    assert (listed.status_code, created.status_code) == (404, 404)
    assert not Site.objects.filter(domain="team.example").exists()


@pytest.mark.parametrize("path", ["/api/v1/sites/teams", "/api/v1/sites/teams/"])
def test_teams_lists_the_keys_account_only(api, account, other_account, read_key, path):
    response = api.get(path, **bearer(read_key[1]))
    assert response.json()["teams"] == [{"id": str(account.public_id), "name": account.name, "api_available": True}]


def test_teams_needs_a_key(api, db):
    assert api.get("/api/v1/sites/teams").status_code == 401


@pytest.mark.parametrize("cursor", ["after=AA", "before=AA", "after=7b-A"])
def test_it_answers_400_for_a_cursor_that_decodes_to_text_no_domain_holds(api, site, read_key, cursor):
    # "AA" decodes to a NUL character, "7b-A" to an unpaired surrogate's bytes.
    response = api.get(f"/api/v1/sites?{cursor}", **bearer(read_key[1]))
    assert response.status_code == 400
    assert response.json()["error"].endswith("is not a cursor from a previous response")


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_a_nul_in_the_domain_is_404_in_json(api, site, write_key, method):
    response = getattr(api, method)("/api/v1/sites/shop%00.example", **bearer(write_key[1]))
    assert response.status_code == 404
    assert response.json() == {"error": "not found: the URL path holds a NUL character"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ('{"domain": ' + "[" * 1000 + "]" * 1000 + "}", "body: nested more than 64 levels deep"),
        ('{"domain": "fresh.example", "timezone": "\\ud800"}', "timezone: holds an unpaired surrogate"),
        (
            '{"domain": "fresh.example", "allowed_origins": ["https://a\\u0000"]}',
            "allowed_origins[0]: holds a NUL character",
        ),
    ],
)
def test_it_answers_400_for_a_body_no_site_can_hold(api, write_key, body, error):
    response = api.post("/api/v1/sites", body, content_type="application/json", **bearer(write_key[1]))
    assert response.status_code == 400
    assert response.json() == {"error": error}
    assert not Site.objects.exists()
