"""The collector finds a site by its domain however the event spells it: case, Unicode or IDNA."""

from __future__ import annotations

import uuid

import httpx
import pytest

from accounts.models import Account
from accounts.sites import create_site
from analytics.tests.collector_fixtures import BROWSER_UA

pytestmark = [pytest.mark.django_db(transaction=True)]


def send(collector: str, domain: str) -> int:
    body = {"n": "pageview", "u": "https://example.test/", "d": domain}
    headers = {"user-agent": BROWSER_UA, "content-type": "text/plain", "x-forwarded-for": "10.1.2.3"}
    return httpx.post(f"{collector}/api/event", json=body, headers=headers, timeout=10).status_code


def test_an_event_finds_a_site_whatever_the_case_of_its_domain(collector: str) -> None:
    name = f"a-site-{uuid.uuid4().hex[:8]}.test"
    create_site(Account.objects.create(name="Ascii"), name)

    assert send(collector, name.upper()) == 202


def test_an_event_finds_an_idna_site_by_its_unicode_name(collector: str) -> None:
    label = f"m\u00fcnchen-{uuid.uuid4().hex[:8]}"
    site = create_site(Account.objects.create(name="IDN"), f"{label}.example")
    assert site.domain.startswith("xn--")

    answers = [send(collector, name) for name in (f"{label}.example", f"{label.upper()}.example", site.domain)]

    assert answers == [202, 202, 202]
