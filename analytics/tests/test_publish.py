"""Publishing: confirmed, group-committed, consumed by a real Celery worker; 503 without a broker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from accounts.apikeys import create_api_key
from analytics import rollups
from analytics.models import Event
from analytics.tests.collector_fixtures import (
    BROWSER_UA,
    consume,
    events_of,
    make_site,
    purge_events_queue,
    start_server,
    stop_server,
)
from analytics.tests.conftest import wait_for

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
