"""Publishing: confirmed, group-committed, consumed by a real Celery worker; 503 without a broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings
from kombu import Connection, Queue

from accounts.apikeys import create_api_key
from analytics.collector.publish import INGEST_TASK_SPEC, Publisher, PublishError, encode_events
from analytics.ingest import rollups
from analytics.models import Event
from analytics.payloads import EVENTS_SERIALIZER, INGEST_TASK
from analytics.tasks import ingest_batch
from analytics.tests.collector_fixtures import (
    BROWSER_UA,
    consume,
    events_of,
    make_site,
    purge_events_queue,
    start_server,
    stop_server,
)
from spinnakr.embedded import valkey as embedded_valkey
from spinnakr.queue.wire import RedisListSender
from spinnakr.tests.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]


def pageview(domain: str, path: str = "/") -> bytes:
    return json.dumps({"n": "pageview", "u": f"https://{domain}{path}", "d": domain}).encode()


async def post_concurrently(url: str, bodies: list[bytes]) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/api/event",
                    content=body,
                    headers={"user-agent": BROWSER_UA, "x-forwarded-for": f"198.51.100.{index % 250}"},
                )
                for index, body in enumerate(bodies)
            )
        )
    return [response.status_code for response in responses]


def test_it_publishes_a_celery_task_message_that_persists(collector: str) -> None:
    purge_events_queue()
    site = make_site()

    response = httpx.post(f"{collector}/api/event", content=pageview(site.domain), headers={"user-agent": BROWSER_UA})

    assert response.status_code == 202
    messages = [message for message in consume(lambda got: events_of(got, site.id)) if events_of([message], site.id)]
    assert len(messages) == 1
    message = messages[0]
    assert message.headers["task"] == "analytics.ingest_batch"
    assert message.headers["id"] == message.kwargs["batch_id"]
    assert len(message.kwargs["batch_id"]) == 32
    assert message.properties["delivery_mode"] == 2
    assert message.content_type == "application/x-orjson"  # plain JSON, written by orjson


def test_it_shares_one_message_among_requests_arriving_together(collector: str) -> None:
    purge_events_queue()
    site = make_site()
    bodies = [pageview(site.domain, f"/page/{index}") for index in range(60)]

    statuses = asyncio.run(post_concurrently(collector, bodies))

    assert statuses == [202] * 60
    messages = consume(lambda got: len(events_of(got, site.id)) >= 60)
    carrying = [message for message in messages if events_of([message], site.id)]
    paths = sorted(event["pathname"] for event in events_of(messages, site.id))
    assert paths == sorted(f"/page/{index}" for index in range(60))
    assert len(carrying) < 30


@pytest.fixture
def brokerless_collector(django_db_setup, django_db_blocker, tmp_path):
    missing = tmp_path / f"no-broker-{uuid.uuid4().hex[:8]}.sock"  # nothing listens there
    with django_db_blocker.unblock():
        server = start_server(tmp_path, {"CELERY_BROKER_URL": f"redis+socket://{missing}?virtual_host=0"})
    yield server.url
    stop_server(server)


def test_it_answers_503_with_retry_after_when_the_broker_is_unreachable(brokerless_collector: str) -> None:
    site = make_site()

    response = httpx.post(
        f"{brokerless_collector}/api/event",
        content=pageview(site.domain),
        headers={"user-agent": BROWSER_UA, "origin": "https://shop.example"},
        timeout=30,
    )

    assert response.status_code == 503
    assert response.json() == {"error": "queue unavailable, retry later"}
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["access-control-allow-origin"] == "https://shop.example"


@pytest.mark.slow
@pytest.mark.usefixtures("clean_events")
def test_events_accepted_over_http_are_stored_and_counted_by_the_real_worker(
    collector: str, celery_worker_factory: Callable[..., object]
) -> None:
    site = make_site()
    celery_worker_factory()
    bodies = [pageview(site.domain, f"/e2e/{n}") for n in range(12)]
    bodies.append(
        json.dumps(
            {"n": "engagement", "u": f"https://{site.domain}/e2e/0", "d": site.domain, "sd": 50, "e": 4000}
        ).encode()
    )

    statuses = asyncio.run(post_concurrently(collector, bodies))
    stored = wait_for(lambda: Event.objects.filter(site_id=site.id).count() == 13, timeout=30)

    assert statuses == [202] * 13
    assert stored is True
    day = time.strftime("%Y%m%d", time.gmtime())
    assert rollups.counters(site.id, "d", [day])[0]["pageviews"] == 12
    engagement = Event.objects.get(site_id=site.id, name="engagement")
    assert (engagement.scroll_depth, engagement.engagement_ms) == (50, 4000)


def test_a_batch_refused_for_want_of_a_broker_can_be_sent_again_with_the_same_ids(
    brokerless_collector: str, collector: str
) -> None:
    purge_events_queue()
    site = make_site()
    _, key = create_api_key(site.account, "server", ["events:write"])
    body = {
        "events": [
            {
                "name": "pageview",
                "url": f"https://{site.domain}/",
                "domain": site.domain,
                "id": f"retry-{uuid.uuid4().hex}",
                "timestamp": int(time.time()) - 5,
                "visitor_id": "v",
            }
        ]
    }
    headers = {"authorization": f"Bearer {key}"}

    refused = httpx.post(f"{brokerless_collector}/api/events", json=body, headers=headers, timeout=30)
    retried = httpx.post(f"{collector}/api/events", json=body, headers=headers, timeout=30)

    assert refused.status_code == 503
    assert retried.status_code == 202
    assert retried.json() == {"accepted": 1, "duplicates": 0}
    assert len(events_of(consume(lambda got: events_of(got, site.id)), site.id)) == 1


SAMPLE_EVENTS: list[Any] = [
    {"site_id": 7, "ts": 1_764_500_000_000_000, "event_id": str(uuid.uuid4()), "name": "pageview", "props": {}}
]


def sample_event(site_id: int) -> Any:
    return {**SAMPLE_EVENTS[0], "site_id": site_id, "event_id": str(uuid.uuid4())}


def test_the_pushed_messages_carry_the_ingest_tasks_own_limits() -> None:
    # The sender gets them as arguments (it does not import the tasks): they must stay the task's.
    assert (INGEST_TASK_SPEC.name, INGEST_TASK_SPEC.serializer) == (ingest_batch.name, ingest_batch.serializer)
    assert (INGEST_TASK_SPEC.time_limit, INGEST_TASK_SPEC.soft_time_limit) == (
        ingest_batch.time_limit,
        ingest_batch.soft_time_limit,
    )


@pytest.mark.skipif(settings.BROKER_IS_AMQP, reason="the direct LPUSH is for Redis brokers only")
def test_the_pushed_message_is_the_one_celery_send_task_writes() -> None:
    # send_task writes the limits of a task registered in the process: ingest_batch is (imported above).
    from spinnakr.celery import app

    queue = Queue(f"{settings.EVENTS_QUEUE}.compare-{uuid.uuid4().hex[:8]}", routing_key="unused")
    ours, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    with Connection(str(settings.CELERY_BROKER_URL)) as connection:
        assert RedisListSender.applies(connection)
        bound = queue(connection.default_channel)
        bound.declare()
        try:
            RedisListSender(app, connection, queue.name, INGEST_TASK_SPEC).send(ours, [encode_events(SAMPLE_EVENTS)], 1)
            app.send_task(
                INGEST_TASK,
                kwargs={"batch_id": theirs, "events": SAMPLE_EVENTS},
                task_id=theirs,
                queue=queue.name,
                producer=app.amqp.Producer(connection),
                delivery_mode=2,
                ignore_result=True,
                serializer=EVENTS_SERIALIZER,
                argsrepr="()",
                kwargsrepr=f"{{'batch_id': '{theirs}', 'events': <1 events>}}",
            )
            pushed = bound.get(no_ack=True, accept=settings.CELERY_ACCEPT_CONTENT)
            sent = bound.get(no_ack=True, accept=settings.CELERY_ACCEPT_CONTENT)
        finally:
            bound.delete()

    assert pushed is not None and sent is not None
    assert pushed.headers["id"] == pushed.headers["root_id"] == ours
    assert pushed.headers["timelimit"] == [300, 240]  # the registered task's limits
    assert pushed.headers == sent.headers | {
        "id": ours,
        "root_id": ours,
        "kwargsrepr": f"{{'batch_id': '{ours}', 'events': <1 events>}}",
    }
    assert (pushed.content_type, pushed.content_encoding) == (sent.content_type, sent.content_encoding)
    args, kwargs, embed = pushed.decode()
    assert (args, kwargs, embed) == (sent.decode()[0], {"batch_id": ours, "events": SAMPLE_EVENTS}, sent.decode()[2])
    for name in ("delivery_mode", "priority", "body_encoding", "reply_to"):
        assert pushed.properties[name] == sent.properties[name], name
    assert pushed.properties["correlation_id"] == ours
    assert pushed.delivery_info["routing_key"] == sent.delivery_info["routing_key"] == queue.name


def test_the_direct_push_is_only_for_a_redis_transport_without_a_key_prefix() -> None:
    redis_url = "redis://127.0.0.1:1/0"
    assert RedisListSender.applies(Connection(redis_url))
    assert not RedisListSender.applies(Connection(redis_url, transport_options={"global_keyprefix": "x:"}))
    assert not RedisListSender.applies(Connection("amqp://guest:guest@127.0.0.1:1//"))


def throwaway_valkey(socket_path: str) -> subprocess.Popen[bytes]:

    Path(socket_path).unlink(missing_ok=True)  # a killed server leaves its socket file behind
    args = [
        str(embedded_valkey.binary()),
        "--port",
        "0",
        "--unixsocket",
        socket_path,
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL)

    def answers() -> bool:
        try:
            return bool(redis.Redis(unix_socket_path=socket_path).ping())
        except redis.ConnectionError:
            return False

    wait_for(answers, timeout=10)
    return server


def test_the_event_loop_pushes_itself_and_reconnects_after_the_broker_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spinnakr.celery import app

    socket_path = str(tmp_path / "broker.sock")
    monkeypatch.setattr(app.conf, "broker_write_url", f"redis+socket://{socket_path}")
    publisher = Publisher()

    def no_thread_send(*args: object) -> None:
        raise AssertionError("a Redis broker's messages are pushed from the event loop")

    monkeypatch.setattr(publisher, "_send", no_thread_send)
    server = throwaway_valkey(socket_path)
    try:

        async def scenario() -> list[str]:
            outcomes = []
            await publisher.submit(SAMPLE_EVENTS)
            outcomes.append("pushed")
            server.kill()
            server.wait()
            try:
                await publisher.submit(SAMPLE_EVENTS)
                outcomes.append("pushed")
            except PublishError:
                outcomes.append("refused")
            restarted = throwaway_valkey(socket_path)
            try:
                await publisher.submit(SAMPLE_EVENTS)
                outcomes.append("pushed")
                queued = redis.Redis(unix_socket_path=socket_path).llen(settings.EVENTS_QUEUE)
                outcomes.append(f"{queued} queued")
            finally:
                await publisher.stop()
                restarted.kill()
                restarted.wait()
            return outcomes

        # The restarted server is empty: only the message pushed after the restart is on it.
        assert asyncio.run(scenario()) == ["pushed", "refused", "pushed", "1 queued"]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
