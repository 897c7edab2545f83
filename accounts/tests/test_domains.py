"""Site domains: one stored form, look-alikes refused, on every path that names a site."""

from __future__ import annotations

import pytest

from accounts.domains import DomainError, check_scripts, lookup_name, normalise_host, skeleton, to_unicode
from accounts.models import Site
from accounts.sites import create_site


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("a-site.test", "a-site.test"),
        ("A-Site.test", "a-site.test"),
        ("a-site.test.", "a-site.test"),
        ("M\u00fcnchen.example", "xn--mnchen-3ya.example"),
        ("xn--mnchen-3ya.example", "xn--mnchen-3ya.example"),
        ("\uff41-site.test", "a-site.test"),
    ],
)
def test_the_collector_looks_a_domain_up_under_its_stored_form(name, stored):
    assert lookup_name(name) == stored


def test_a_skeleton_reads_look_alike_letters_as_latin():
    cyrillic = normalise_host("\u0441\u043e\u0441\u043e.test")
    assert (cyrillic, to_unicode(cyrillic), skeleton(cyrillic)) == (
        "xn--n1aahb.test",
        "\u0441\u043e\u0441\u043e.test",
        "coco.test",
    )
    assert skeleton("m\u00fcnchen.example") == "m\u00fcnchen.example"


@pytest.mark.parametrize(
    "label",
    ["shop", "m\u00fcnchen", "\u043f\u0440\u0438\u043c\u0435\u0440", "abc\u30c6\u30b9\u30c8", "\u65e5\u672c\u3054"],
)
def test_a_label_may_keep_to_one_script_or_write_latin_beside_cjk(label):
    check_scripts(label)


@pytest.mark.parametrize(
    "label",
    ["a-sit\u0435", "p\u0430ypal", "\u03c1aypal", "\u0430\u03b2\u0441"],
)
def test_a_label_mixing_latin_cyrillic_or_greek_is_refused(label):
    with pytest.raises(DomainError, match="a label must keep to one script"):
        check_scripts(label)


def test_the_add_site_page_refuses_a_path_and_a_look_alike(owner_client, other_site):
    path = owner_client.post("/sites/new/", {"domain": "a-site.test/blog", "timezone": "UTC"})
    mixed = owner_client.post("/sites/new/", {"domain": "a-sit\u0435.test", "timezone": "UTC"})
    wide = owner_client.post("/sites/new/", {"domain": "\uff4d\uff41llory.example", "timezone": "UTC"})

    assert "without a path: a-site.test, not a-site.test/blog" in path.content.decode()
    assert "mixes Cyrillic and Latin letters" in mixed.content.decode()
    assert "mallory.example is already registered" in wide.content.decode()
    assert not Site.objects.filter(account__memberships__user__email="alice@example.com").exists()


def test_the_sites_api_refuses_a_path_and_a_look_alike(client, other_account, write_key):
    create_site(other_account, "coco.test")
    auth = {"Authorization": f"Bearer {write_key[1]}"}
    path = client.post("/api/v1/sites", {"domain": "a-site.test/blog"}, headers=auth)
    look_alike = client.post("/api/v1/sites", {"domain": "\u0441\u043e\u0441\u043e.test"}, headers=auth)

    assert (path.status_code, look_alike.status_code) == (400, 400)
    assert path.json() == {
        "error": "domain: domain must be a host name without a path: a-site.test, not a-site.test/blog"
    }
    assert look_alike.json() == {
        "error": "domain: \u0441\u043e\u0441\u043e.test looks like coco.test, which is already registered: choose another"
    }


def test_the_sites_api_stores_a_unicode_domain_in_its_idna_form(client, write_key):
    auth = {"Authorization": f"Bearer {write_key[1]}"}
    created = client.post("/api/v1/sites", {"domain": "https://M\u00fcnchen.example/"}, headers=auth)

    assert (created.status_code, created.json()["domain"]) == (201, "xn--mnchen-3ya.example")


def test_the_admin_refuses_a_look_alike_of_another_accounts_domain(client, staff, account, other_account):
    create_site(other_account, "coco.test")
    client.force_login(staff)
    form = {"account": account.pk, "domain": "\u0441\u043e\u0441\u043e.test", "timezone": "UTC", "allowed_origins": ""}

    response = client.post("/admin/accounts/site/add/", form)

    assert response.status_code == 200
    assert "looks like coco.test" in response.content.decode()
    assert not Site.objects.filter(account=account).exists()
