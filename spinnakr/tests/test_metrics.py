"""``GET /metrics``: hidden without a token, refused without the right one, and the sum of every
process's values, the queues' depth and the live consumers of processes still alive."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from django.test import Client
from kombu import Connection

from spinnakr import metrics
from spinnakr.tests.scrape import local, parse, value
from spinnakr.tests.waiting import wait_for

TOKEN = "s3cret-metrics-token-for-tests"


@pytest.fixture
def token(settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def test_the_test_processes_share_one_metrics_directory_of_their_own() -> None:
    assert metrics.MULTIPROCESS
    assert metrics.MULTIPROC_DIR.parent.name == "metrics-test"


def test_it_answers_404_when_no_token_is_set(client: Client, settings) -> None:
    settings.METRICS_TOKEN = ""

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything")

    assert response.status_code == 404


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer ", TOKEN])
def test_it_refuses_a_missing_or_wrong_token_with_401_and_says_nothing_else(
    client: Client, token: str, authorization: str | None
) -> None:
    headers = {"authorization": authorization} if authorization is not None else {}

    response = client.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response.content == b""
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'


def test_it_answers_the_prometheus_text_format_with_the_token(client: Client, token: str) -> None:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert response["Cache-Control"].startswith("max-age=0")
    samples = parse(response.content.decode())
    assert ("spinnakr_queue_messages", frozenset({("queue", "events")})) in samples


@pytest.fixture
def events_queue() -> Iterator[Connection]:
    queue = next(q for q in settings.CELERY_TASK_QUEUES if q.name == settings.EVENTS_QUEUE)
    with Connection(str(settings.CELERY_BROKER_URL)) as conn:
        bound = queue(conn.channel())
        bound.declare()
        bound.purge()
        yield conn
        bound.purge()


def test_it_shows_the_messages_waiting_in_the_events_queue(events_queue: Connection) -> None:
    producer = events_queue.Producer()
    for n in range(3):
        producer.publish({"n": n}, routing_key=settings.EVENTS_QUEUE, serializer="json")

    # RabbitMQ counts a message a moment after it is published (no confirm is asked here).
    wait_for(lambda: value(local(), "spinnakr_queue_messages", queue="events") == 3, timeout=10)


LIVE_PROCESS = """
from spinnakr import metrics
metrics.LIVE_CONSUMERS.labels("feed").inc(2)
print("counted", flush=True)
input()
"""


def test_live_consumers_are_summed_over_the_processes_alive_and_forget_those_that_died() -> None:
    before = value(local(), "spinnakr_live_consumers", kind="feed")
    other = subprocess.Popen(
        [sys.executable, "-c", LIVE_PROCESS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=settings.BASE_DIR
    )
    assert other.stdout is not None
    assert other.stdout.readline() == b"counted\n"
    try:
        assert value(local(), "spinnakr_live_consumers", kind="feed") == before + 2
    finally:
        other.kill()
        other.wait()

    wait_for(lambda: value(local(), "spinnakr_live_consumers", kind="feed") == before, timeout=10)


COUNTING_PROCESS = """
from spinnakr import metrics
metrics.collector_answer("event", 404, "unknown_site").inc(5)
"""


def test_a_counter_of_a_process_that_exited_is_still_counted() -> None:
    before = value(local(), "spinnakr_collector_events_total", endpoint="event", status="404", reason="unknown_site")

    subprocess.run([sys.executable, "-c", COUNTING_PROCESS], check=True, cwd=settings.BASE_DIR, timeout=60)

    after = value(local(), "spinnakr_collector_events_total", endpoint="event", status="404", reason="unknown_site")
    assert after == before + 5


def test_a_servers_label_names_its_address_never_its_credentials() -> None:
    client = redis.Redis.from_url("redis://user:hunter2@Cache.Internal:6390/3")
    database = {"HOST": "db.internal", "PORT": "5433", "NAME": "spinnakr", "USER": "app", "PASSWORD": "hunter2"}

    assert metrics.redis_server(client) == "cache.internal:6390/3"
    assert metrics.postgres_server(database) == "db.internal:5433/spinnakr"
    assert (
        metrics.postgres_server({**database, "HOST": "/run/postgresql", "PORT": ""}) == "unix:/run/postgresql/spinnakr"
    )


def test_a_launcher_empties_the_directory_of_every_processs_values_before_a_run(tmp_path) -> None:
    for name in ("counter_12.db", "histogram_12.db", "gauge_livesum_13.db"):
        (tmp_path / name).write_bytes(b"\0" * 8)
    (tmp_path / "README").write_text("kept")

    metrics.empty_directory(tmp_path)

    assert [path.name for path in tmp_path.iterdir()] == ["README"]
