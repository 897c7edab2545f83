"""Password guesses on shared links are throttled per link and per client address, as log-ins are."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from analytics.dashboard import sharing
from analytics.tests.dashboard_fixtures import Cast, cast
from spinnakr.tests.waiting import wait_for

__all__ = ["cast"]

PASSWORD = "open sesame 123"


@pytest.fixture(autouse=True)
def fresh_throttle() -> Iterator[None]:
    """The failures live in Redis, which outlives a test's database."""
    cache.delete_pattern("share:fail:*")  # type: ignore[attr-defined]
    yield
    cache.delete_pattern("share:fail:*")  # type: ignore[attr-defined]


def guess(client: Client, slug: str, password: str, ip: str) -> Any:
    return client.post(f"/share/{slug}/", {"password": password}, REMOTE_ADDR=ip)


def test_it_refuses_even_the_right_password_once_a_link_had_too_many_wrong_ones(cast: Cast, settings) -> None:
    settings.LOGIN_FAILURES_PER_ACCOUNT = 3
    link = sharing.create_shared_link(cast.site, "Investors", PASSWORD)
    client = Client()
    wrong = [guess(client, link.slug, f"guess {n}", f"10.0.0.{n}").status_code for n in range(3)]

    # From yet another address: the lock is on the link.
    refused = guess(client, link.slug, PASSWORD, "10.0.0.99")

    assert wrong == [403, 403, 403]
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= settings.LOGIN_THROTTLE_WINDOW
    assert "Too many wrong passwords. Wait 15 minutes and try again." in refused.content.decode()
    assert client.get("/sites/dash.example/").status_code == 404


def test_it_throttles_one_client_address_across_links(cast: Cast, settings) -> None:
    settings.LOGIN_FAILURES_PER_IP = 3
    links = [sharing.create_shared_link(cast.site, f"Link {n}", PASSWORD) for n in range(4)]
    client = Client()
    for link in links[:3]:
        guess(client, link.slug, "wrong", "10.0.0.9")

    refused = guess(client, links[3].slug, PASSWORD, "10.0.0.9")
    allowed = guess(client, links[3].slug, PASSWORD, "10.0.0.10")

    assert refused.status_code == 429
    assert "Retry-After" in refused
    assert allowed.status_code == 200


def test_a_throttled_link_opens_again_when_the_window_ends(cast: Cast, settings) -> None:
    settings.LOGIN_FAILURES_PER_ACCOUNT = 2
    settings.LOGIN_THROTTLE_WINDOW = 1
    link = sharing.create_shared_link(cast.site, "Press", PASSWORD)
    client = Client()
    for _ in range(2):
        guess(client, link.slug, "wrong", "10.0.1.1")
    assert guess(client, link.slug, PASSWORD, "10.0.1.1").status_code == 429

    wait_for(lambda: guess(client, link.slug, PASSWORD, "10.0.1.1").status_code == 200, timeout=5)

    assert client.get("/sites/dash.example/").status_code == 200


def test_a_link_without_password_is_never_throttled(cast: Cast, settings) -> None:
    settings.LOGIN_FAILURES_PER_IP = 1
    link = sharing.create_shared_link(cast.site, "Board")
    other = sharing.create_shared_link(cast.site, "Locked", PASSWORD)
    client = Client()
    guess(client, other.slug, "wrong", "10.0.2.1")

    assert guess(client, link.slug, "anything", "10.0.2.1").status_code == 200
