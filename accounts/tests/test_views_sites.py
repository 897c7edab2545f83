from __future__ import annotations

import pytest
from django.conf import settings

from accounts.models import Membership, Role, Site


def test_home_redirects_anonymous_users_to_the_login_page(client):
    response = client.get("/")
    assert (response.status_code, response["Location"]) == (302, "/accounts/login/")


def test_home_redirects_logged_in_users_to_their_sites(owner_client):
    response = owner_client.get("/")
    assert (response.status_code, response["Location"]) == (302, "/sites/")


def test_the_add_site_page_creates_a_site_in_the_current_account(owner_client, account):
    assert owner_client.get("/sites/new/").status_code == 200
    response = owner_client.post("/sites/new/", {"domain": "https://New.Example/", "timezone": "Europe/Berlin"})
    assert response.status_code == 302
    assert response["Location"] == "/sites/new.example/snippet/"
    assert Site.objects.get(domain="new.example").account == account


def test_the_add_site_page_shows_a_taken_domain(owner_client, site):
    response = owner_client.post("/sites/new/", {"domain": "shop.example", "timezone": "UTC"})
    assert response.status_code == 200
    assert "already registered" in response.content.decode()


def test_a_viewer_cannot_add_sites(viewer_client, site):
    assert viewer_client.get("/sites/new/").status_code == 403
    assert viewer_client.post("/sites/new/", {"domain": "v.example", "timezone": "UTC"}).status_code == 403


def test_the_add_site_page_needs_a_login(client):
    assert client.get("/sites/new/")["Location"].startswith("/accounts/login/")


def test_the_snippet_page_shows_the_exact_tag(viewer_client, site):
    response = viewer_client.get("/sites/shop.example/snippet/")
    base = settings.SITE_URL
    tag = f'<script defer data-key="{site.site_key}" data-api="{base}/api/event" src="{base}/js/script.js"></script>'
    assert response.status_code == 200
    assert response.context["snippet"] == tag
    assert "&lt;script defer data-key=" in response.content.decode()


def test_the_snippet_page_is_404_for_an_outsider(outsider_client, site):
    assert outsider_client.get("/sites/shop.example/snippet/").status_code == 404


def test_the_settings_page_updates_the_site(admin_client_, site):
    assert admin_client_.get("/sites/shop.example/settings/").status_code == 200
    response = admin_client_.post(
        "/sites/shop.example/settings/",
        {
            "domain": "shop.example",
            "timezone": "Asia/Tokyo",
            "allowed_origins": "https://shop.example\nhttps://www.shop.example",
            "public": "on",
        },
    )
    assert response.status_code == 302
    site.refresh_from_db()
    assert (site.timezone, site.allowed_origins, site.public) == (
        "Asia/Tokyo",
        ["https://shop.example", "https://www.shop.example"],
        True,
    )


def test_the_settings_page_renames_the_site(owner_client, site):
    response = owner_client.post("/sites/shop.example/settings/", {"domain": "store.example", "timezone": "UTC"})
    assert response["Location"] == "/sites/store.example/settings/"
    assert Site.objects.get(pk=site.pk).domain == "store.example"


def test_the_settings_page_shows_a_bad_origin(owner_client, site):
    response = owner_client.post(
        "/sites/shop.example/settings/",
        {"domain": "shop.example", "timezone": "UTC", "allowed_origins": "javascript:alert(1)"},
    )
    assert response.status_code == 200
    assert "not an origin" in response.content.decode()


def test_a_viewer_gets_403_on_the_settings_pages(viewer_client, site):
    old_key = site.site_key
    responses = [
        viewer_client.get("/sites/shop.example/settings/"),
        viewer_client.post("/sites/shop.example/settings/", {"domain": "x.example", "timezone": "UTC"}),
        viewer_client.post("/sites/shop.example/settings/rotate-key/"),
        viewer_client.post("/sites/shop.example/settings/delete/", {"confirm": "shop.example"}),
    ]
    assert [r.status_code for r in responses] == [403, 403, 403, 403]
    assert Site.objects.get(pk=site.pk).site_key == old_key


def test_an_outsider_gets_404_on_the_settings_pages(outsider_client, site):
    responses = [
        outsider_client.get("/sites/shop.example/settings/"),
        outsider_client.post("/sites/shop.example/settings/", {"domain": "x.example", "timezone": "UTC"}),
        outsider_client.post("/sites/shop.example/settings/rotate-key/"),
        outsider_client.post("/sites/shop.example/settings/delete/", {"confirm": "shop.example"}),
    ]
    assert [r.status_code for r in responses] == [404, 404, 404, 404]
    assert Site.objects.filter(pk=site.pk, domain="shop.example").exists()


def test_rotating_the_key_changes_it(admin_client_, site):
    old_key = site.site_key
    response = admin_client_.post("/sites/shop.example/settings/rotate-key/")
    assert response.status_code == 302
    assert Site.objects.get(pk=site.pk).site_key != old_key


def test_rotating_the_key_refuses_get(admin_client_, site):
    assert admin_client_.get("/sites/shop.example/settings/rotate-key/").status_code == 405


def test_delete_needs_the_typed_domain(owner_client, site):
    response = owner_client.post("/sites/shop.example/settings/delete/", {"confirm": "shop"})
    assert response.status_code == 400
    assert Site.objects.filter(pk=site.pk).exists()


def test_delete_with_the_typed_domain_deletes(admin_client_, site):
    response = admin_client_.post("/sites/shop.example/settings/delete/", {"confirm": "shop.example"})
    assert (response.status_code, response["Location"]) == (302, "/sites/")
    assert not Site.objects.filter(pk=site.pk).exists()


@pytest.mark.parametrize("path", ["/sites/nowhere.example/settings/", "/sites/nowhere.example/snippet/"])
def test_an_unknown_site_is_404(owner_client, site, path):
    assert owner_client.get(path).status_code == 404


def test_pages_of_a_site_with_a_path_prefix_work(owner_client, account):
    Site.objects.create(account=account, domain="example.com/blog")
    assert owner_client.get("/sites/example.com/blog/settings/").status_code == 200
    assert owner_client.get("/sites/example.com/blog/snippet/").status_code == 200


def test_an_outsider_cannot_add_a_site_to_another_account(outsider_client, account, site):
    response = outsider_client.post(
        "/sites/new/", {"account": str(account.public_id), "domain": "x.example", "timezone": "UTC"}
    )
    assert response.status_code == 404
    assert not Site.objects.filter(domain="x.example").exists()


def test_a_viewer_cannot_add_a_site_by_naming_the_account(viewer, client, account, other_account):
    Membership.objects.create(account=other_account, user=viewer, role=Role.ADMIN)
    client.force_login(viewer)
    response = client.post("/sites/new/", {"account": str(account.public_id), "domain": "x.example", "timezone": "UTC"})
    assert response.status_code == 403
    assert not Site.objects.filter(domain="x.example").exists()


def test_a_user_without_any_account_gets_a_new_one_to_add_sites_to(client, viewer, account):
    Membership.objects.filter(user=viewer).delete()
    client.force_login(viewer)
    response = client.post("/sites/new/", {"domain": "mine.example", "timezone": "UTC"})
    assert response.status_code == 302
    site = Site.objects.get(domain="mine.example")
    assert site.account != account
    assert Membership.objects.get(user=viewer, account=site.account).role == Role.OWNER


def test_showing_the_add_site_form_creates_no_account(client, viewer, account):
    Membership.objects.filter(user=viewer).delete()
    client.force_login(viewer)
    assert client.get("/sites/new/").status_code == 200
    assert not Membership.objects.filter(user=viewer).exists()
