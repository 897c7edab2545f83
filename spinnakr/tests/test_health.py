"""``GET /healthz`` names each component and answers 503 when one is down."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.test import Client, override_settings

from spinnakr.embedded import valkey as embedded_valkey
from spinnakr.tests.waiting import wait_for


@pytest.fixture
def throwaway_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real Valkey of its own, so stopping it leaves the suite's Redis alone."""
    directory = Path(tempfile.mkdtemp(prefix="spinnakr-health-"))
    sock = directory / "r.sock"
    process = subprocess.Popen(
        [
            str(embedded_valkey.binary()),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_for(sock.exists, timeout=10, interval=0.02, message="the Valkey's socket")
    yield f"unix://{sock}?db=0", process
    process.kill()
    process.wait()


@pytest.mark.django_db
def test_it_answers_200_naming_each_component(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["components"] == {"database": {"state": "up"}, "redis": {"state": "up"}, "broker": {"state": "up"}}


@pytest.mark.django_db
def test_it_answers_503_naming_a_stopped_redis(
    client: Client, throwaway_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, process = throwaway_redis
    with override_settings(REDIS_DATA_URL=url):
        assert client.get("/healthz").status_code == 200
        redis.Redis.from_url(url).shutdown(nosave=True)
        process.wait(10)

        response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["redis"]
    assert body["components"]["redis"]["state"] == "down"
    assert body["components"]["database"]["state"] == "up"


@pytest.mark.django_db
def test_it_answers_503_naming_an_unreachable_broker(client: Client) -> None:
    with override_settings(CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:1//"):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["down"] == ["broker"]


def test_it_answers_on_the_exact_path_without_redirect(client: Client) -> None:
    assert client.get("/healthz/").status_code == 404
