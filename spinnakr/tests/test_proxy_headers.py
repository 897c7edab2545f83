"""Django sees the client a trusted proxy forwarded; uvicorn runs with --no-proxy-headers."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from analytics.tests.collector_fixtures import Server, start_server, stop_server
from spinnakr.tests.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]


def fail_a_log_in(server: Server, forwarded_for: str) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as client:
        page = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token is not None
        response = client.post(
            "/accounts/login/",
            data={
                "csrfmiddlewaretoken": token.group(1),
                "username": f"{uuid.uuid4().hex}@example.com",
                "password": "x",
            },
            headers={"x-forwarded-for": forwarded_for, "referer": f"{server.url}/accounts/login/"},
        )
    assert response.status_code == 200  # the form again, with its error


@pytest.fixture
def server(request: pytest.FixtureRequest, django_db_setup, django_db_blocker, tmp_path: Path) -> Iterator[Server]:
    with django_db_blocker.unblock():
        started = start_server(tmp_path, request.param)
    yield started
    stop_server(started)


@pytest.mark.parametrize("server", [{}], indirect=True)
def test_django_sees_the_address_a_trusted_proxy_forwarded(server: Server) -> None:
    fail_a_log_in(server, "203.0.113.7")

    wait_for(lambda: "login.failed" in server.output(), timeout=10)
    assert "ip=203.0.113.7" in server.output()


@pytest.mark.parametrize("server", [{"FORWARDED_ALLOW_IPS": "10.9.9.9"}], indirect=True)
def test_django_ignores_what_an_untrusted_peer_forwards(server: Server) -> None:
    fail_a_log_in(server, "203.0.113.7")

    wait_for(lambda: "login.failed" in server.output(), timeout=10)
    assert "ip=127.0.0.1" in server.output()
    assert "203.0.113.7" not in server.output()
