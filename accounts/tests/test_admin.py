from __future__ import annotations

import time

import pytest
from django.db import connection

from accounts.models import Account, APIKey, Site
from accounts.tests.conftest import PASSWORD
from analytics.ingest import freshness
from analytics.ingest.quota import events_this_month, month_stamp, quota_key
from spinnakr import redis_clients

ADMIN_PAGES = [
    "/admin/",
    "/admin/accounts/account/",
    "/admin/accounts/site/",
    "/admin/accounts/apikey/",
    "/admin/accounts/user/",
    "/admin/accounts/invitation/",
    "/admin/accounts/site/add/",
    "/admin/accounts/user/add/",
]


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_load_for_staff(staff_client, site, write_key, path):
    assert staff_client.get(path).status_code == 200


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_send_customers_to_the_admin_login(owner_client, path):
    response = owner_client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_change_pages_load(staff_client, account, site, write_key, owner):
    key, _ = write_key
    paths = [
        f"/admin/accounts/account/{account.pk}/change/",
        f"/admin/accounts/site/{site.pk}/change/",
        f"/admin/accounts/apikey/{key.pk}/change/",
        f"/admin/accounts/user/{owner.pk}/change/",
    ]
    assert [staff_client.get(p).status_code for p in paths] == [200] * 4


def test_the_api_key_pages_never_show_the_secret_or_its_hash(staff_client, write_key):
    key, raw = write_key
    pages = (
        staff_client.get("/admin/accounts/apikey/").content.decode()
        + staff_client.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()
    )
    assert f"spk_{key.prefix}_" in pages
    assert raw not in pages
    assert key.key_hash not in pages


def test_accounts_search_and_filter(staff_client, account, other_account, site, owner):
    by_email = staff_client.get("/admin/accounts/account/", {"q": owner.email}).context["cl"].result_list
    by_domain = staff_client.get("/admin/accounts/account/", {"q": "shop.example"}).context["cl"].result_list
    suspended = staff_client.get("/admin/accounts/account/", {"suspended__exact": "1"}).context["cl"].result_list
    assert (list(by_email), list(by_domain), list(suspended)) == ([account], [account], [])


def test_suspend_and_unsuspend_actions(staff_client, account):
    staff_client.post("/admin/accounts/account/", {"action": "suspend", "_selected_action": [account.pk]})
    assert Account.objects.get(pk=account.pk).suspended
    staff_client.post("/admin/accounts/account/", {"action": "unsuspend", "_selected_action": [account.pk]})
    assert not Account.objects.get(pk=account.pk).suspended


def test_the_rotate_key_action(staff_client, site):
    old = site.site_key
    staff_client.post("/admin/accounts/site/", {"action": "rotate_keys", "_selected_action": [site.pk]})
    assert Site.objects.get(pk=site.pk).site_key != old


def test_adding_a_site_in_the_admin_validates_the_domain(staff_client, account):
    bad = staff_client.post(
        "/admin/accounts/site/add/",
        {"account": account.pk, "domain": "bad domain", "timezone": "UTC", "allowed_origins": ""},
    )
    assert bad.status_code == 200
    good = staff_client.post(
        "/admin/accounts/site/add/",
        {"account": account.pk, "domain": "Admin.Example", "timezone": "UTC", "allowed_origins": ""},
    )
    assert good.status_code == 302
    assert Site.objects.get(domain="admin.example").site_key.startswith("pk_")


def test_the_revoke_action(staff_client, write_key):
    key, _ = write_key
    staff_client.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert APIKey.objects.get(pk=key.pk).revoked_at is not None


def test_accounts_show_their_events_this_month(staff_client, account):
    redis_clients.data().set(quota_key(account.pk, month_stamp()), 1234)
    try:
        response = staff_client.get("/admin/accounts/account/")
        assert events_this_month(account.pk) == 1234
        assert "1234" in response.content.decode()
    finally:
        redis_clients.data().delete(quota_key(account.pk, month_stamp()))


def test_deleting_an_account_in_the_admin_removes_its_sites(staff_client, account, site):
    staff_client.post(f"/admin/accounts/account/{account.pk}/delete/", {"post": "yes"})
    assert not Account.objects.filter(pk=account.pk).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM accounts_site WHERE id = %s", [site.pk])
        assert cursor.fetchone() == (0,)


def test_the_admin_login_sends_staff_to_the_service_login(client, db):
    response = client.get("/admin/login/?next=/admin/accounts/site/")
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2Faccounts%2Fsite%2F"


def test_the_admin_login_refuses_an_outside_next(client, db):
    response = client.get("/admin/login/?next=https://evil.example/")
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2F"


def test_the_admin_login_answers_403_to_a_logged_in_customer(owner_client):
    assert owner_client.get("/admin/login/").status_code == 403


def test_staff_log_in_through_the_service_login_and_reach_the_admin(client, staff):
    response = client.post("/accounts/login/", {"username": staff.email, "password": PASSWORD, "next": "/admin/"})
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize("page", ["config", "qrcode"])
def test_an_unknown_two_factor_device_is_404_for_staff(staff_client, page):
    assert staff_client.get(f"/admin/otp_totp/totpdevice/0/{page}/").status_code == 404


def test_the_site_list_and_page_show_when_its_last_events_were_applied_and_their_lag(staff_client, site):
    applied = int(time.time() * 1000) - 90_000
    redis_clients.data().hset(freshness.KEY, str(site.pk), f"{applied} {applied - 1250}")
    try:
        listing = staff_client.get("/admin/accounts/site/").content.decode()
        page = staff_client.get(f"/admin/accounts/site/{site.pk}/change/").content.decode()
    finally:
        freshness.forget([site.pk])

    for html in (listing, page):
        assert "1\xa0minute ago" in html
        assert "1.25 s" in html


def test_a_site_without_applied_events_says_never(staff_client, site):
    freshness.forget([site.pk])

    assert "never" in staff_client.get(f"/admin/accounts/site/{site.pk}/change/").content.decode()
