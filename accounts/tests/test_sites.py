from __future__ import annotations

import pytest
from django.db.models.signals import post_save

from accounts.models import Site
from accounts.signals import site_deleted
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
        ("http://blog.example.org/en/", "blog.example.org/en"),
        ("example.com/blog", "example.com/blog"),
        ("localhost", "localhost"),
        ("münchen.example", "münchen.example"),
        ("a-b.c-d.test", "a-b.c-d.test"),
    ],
)
def test_it_accepts_host_names_with_an_optional_path(raw, clean):
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
    ],
)
def test_it_rejects_malformed_domains(raw):
    with pytest.raises(SiteError):
        clean_domain(raw)


def test_it_cleans_allowed_origins():
    assert clean_origins("https://Shop.example/, http://localhost:3000\nhttps://shop.example") == [
        "https://shop.example",
        "http://localhost:3000",
    ]


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
