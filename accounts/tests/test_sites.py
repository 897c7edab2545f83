from __future__ import annotations

import re

import pytest
from django.db.models.signals import post_save

from accounts.models import Site
from accounts.signals import site_deleted, site_timezone_changed
from accounts.sites import (
    SiteError,
    clean_domain,
    clean_origins,
    create_site,
    delete_site,
    rotate_site_key,
    update_site,
)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Example.COM", "example.com"),
        ("https://shop.example/", "shop.example"),
        ("A-Site.test.", "a-site.test"),
        ("localhost", "localhost"),
        ("münchen.example", "xn--mnchen-3ya.example"),
        ("xn--mnchen-3ya.example", "xn--mnchen-3ya.example"),
        ("faß.de", "xn--fa-hia.de"),
        ("\uff41-site.test", "a-site.test"),
        ("http://\uff21-\uff33ite\uff0etest\uff0f", "a-site.test"),
        ("пример.example", "xn--e1afmkfd.example"),
        ("r3--sn-abc.example", "r3--sn-abc.example"),
        ("a-b.c-d.test", "a-b.c-d.test"),
    ],
)
def test_it_normalises_host_names(raw, clean):
    assert clean_domain(raw) == clean


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        None,
        42,
        "example.com:8080",
        "-bad.example",
        "bad-.example",
        "under_score.example",
        "ex ample.com",
        "example.com?x=1",
        "example.com#top",
        "user@example.com",
        "a..example",
        "goals",
        "x" * 64 + ".example",
        "a." * 130 + "example",
        "example.com/<script>",
        "a-site.test/blog",
        "http://a-site.test/blog/",
        "\uff41-site.test\uff0fblog",
        "a-sit\u0435.test",
        "xn--a-sit-3we.test",
        "\u03c1ay\u0440al.test",
    ],
)
def test_it_rejects_malformed_domains(raw):
    with pytest.raises(SiteError):
        clean_domain(raw)


def test_it_says_that_a_path_is_not_part_of_a_domain():
    with pytest.raises(
        SiteError, match=re.escape("domain must be a host name without a path: a-site.test, not a-site.test/blog")
    ):
        clean_domain("https://A-Site.test/blog")


def test_it_names_the_letter_of_another_script_in_a_label():
    with pytest.raises(SiteError) as raised:
        clean_domain("a-sit\u0435.test")
    assert raised.value.message == (
        "'a-sit\u0435' mixes Cyrillic and Latin letters (U+0435 CYRILLIC SMALL LETTER IE); a label must keep to one script"
    )


def test_it_cleans_allowed_origins():
    assert clean_origins("https://Shop.example/, http://localhost:3000\nhttps://shop.example") == [
        "https://shop.example",
        "http://localhost:3000",
    ]


def test_it_keeps_an_idna_origin_in_the_form_browsers_send():
    assert clean_origins(["https://M\u00fcnchen.example:8443"]) == ["https://xn--mnchen-3ya.example:8443"]


@pytest.mark.parametrize("raw", [["ftp://x.example"], ["https://x.example/path"], [42], "https://u:p@x.example"])
def test_it_rejects_bad_origins(raw):
    with pytest.raises(SiteError):
        clean_origins(raw)


def test_it_creates_a_site_with_a_public_key(account):
    site = create_site(account, "New.Example", "Europe/Paris", allowed_origins=["https://new.example"])
    assert (site.domain, site.timezone, site.allowed_origins) == (
        "new.example",
        "Europe/Paris",
        ["https://new.example"],
    )
    assert site.site_key.startswith("pk_")


def test_it_refuses_a_taken_domain_across_accounts(site, other_account):
    with pytest.raises(SiteError, match="already registered"):
        create_site(other_account, "SHOP.example")


def test_it_refuses_the_full_width_form_of_another_accounts_domain(site, other_account):
    with pytest.raises(SiteError, match=re.escape("shop.example is already registered")):
        create_site(other_account, "\uff53\uff48\uff4f\uff50.example")


def test_it_refuses_a_look_alike_in_another_script_of_another_accounts_domain(other_account, account):
    create_site(other_account, "coco.test")
    with pytest.raises(SiteError, match=re.escape("looks like coco.test, which is already registered")):
        create_site(account, "\u0441\u043e\u0441\u043e.test")  # Cyrillic, letter for letter


def test_it_refuses_a_latin_domain_that_looks_like_another_accounts_idna_domain(other_account, account):
    create_site(other_account, "\u0441\u043e\u0441\u043e.test")
    with pytest.raises(SiteError, match=re.escape("coco.test looks like \u0441\u043e\u0441\u043e.test")):
        create_site(account, "coco.test")


def test_an_account_may_hold_look_alikes_of_its_own_domains(account):
    create_site(account, "coco.test")
    assert create_site(account, "\u0441\u043e\u0441\u043e.test").domain == "xn--n1aahb.test"


def test_renaming_onto_a_look_alike_of_another_accounts_domain_is_refused(site, other_site):
    with pytest.raises(SiteError, match=re.escape("looks like mallory.example")):
        update_site(site, domain="\u043c\u0430\u04cf\u04cf\u043e\u0433\u0443.example")  # all Cyrillic


def test_a_site_named_under_older_rules_keeps_its_settings(account):
    site = Site.objects.create(account=account, domain="example.com/blog")
    update_site(site, domain="example.com/blog", timezone="Asia/Tokyo")
    site.refresh_from_db()
    assert (site.domain, site.timezone) == ("example.com/blog", "Asia/Tokyo")


def test_it_refuses_an_unknown_timezone(account):
    with pytest.raises(SiteError, match="time zone"):
        create_site(account, "tz.example", "Mars/Olympus")


def test_it_updates_domain_and_timezone(site):
    update_site(site, domain="renamed.example", timezone="Asia/Tokyo", public=True)
    site.refresh_from_db()
    assert (site.domain, site.timezone, site.public) == ("renamed.example", "Asia/Tokyo", True)


def test_it_refuses_renaming_onto_a_taken_domain(site, other_site):
    with pytest.raises(SiteError, match="already registered"):
        update_site(site, domain=other_site.domain)


def test_it_refuses_changing_the_site_key_through_update(site):
    with pytest.raises(SiteError):
        update_site(site, site_key="pk_mine")


def test_it_rotates_the_site_key_and_signals_the_cache(site):
    seen: list[str] = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.site_key)

    post_save.connect(receiver, sender=Site)
    try:
        old = site.site_key
        rotate_site_key(site)
    finally:
        post_save.disconnect(receiver, sender=Site)
    assert site.site_key != old
    assert Site.objects.get(pk=site.pk).site_key == site.site_key
    assert seen == [site.site_key]


@pytest.mark.django_db(transaction=True)
def test_it_deletes_a_site_and_sends_site_deleted_after_commit(account):
    site = create_site(account, "gone.example")
    received: list[dict] = []

    def receiver(sender, **kwargs):
        received.append({**kwargs, "exists": Site.objects.filter(pk=kwargs["site_id"]).exists()})

    site_deleted.connect(receiver)
    try:
        delete_site(site)
    finally:
        site_deleted.disconnect(receiver)
    assert received == [{"signal": site_deleted, "site_id": site.pk, "account_id": account.pk, "exists": False}]


@pytest.mark.django_db(transaction=True)
def test_it_sends_site_timezone_changed_after_a_change_of_timezone_commits(account):
    site = create_site(account, "tz.example", "UTC")
    received: list[dict] = []

    def receiver(sender, **kwargs):
        received.append({**kwargs, "stored": Site.objects.get(pk=kwargs["site_id"]).timezone})

    site_timezone_changed.connect(receiver)
    try:
        update_site(site, timezone="UTC", public=True)
        update_site(site, timezone="Asia/Tokyo")
    finally:
        site_timezone_changed.disconnect(receiver)
    assert received == [
        {"signal": site_timezone_changed, "site_id": site.pk, "old": "UTC", "new": "Asia/Tokyo", "stored": "Asia/Tokyo"}
    ]
