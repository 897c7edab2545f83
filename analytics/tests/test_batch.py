"""``POST /api/events``: server batches authenticated by an API key with events:write."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from accounts.apikeys import create_api_key
from accounts.models import Site
from analytics.tests.collector_fixtures import BROWSER_UA, consume, events_of, make_site, purge_events_queue

pytestmark = [pytest.mark.django_db(transaction=True)]


def key_for(site: Site, scopes: tuple[str, ...] = ("events:write",)) -> str:
    _, raw = create_api_key(site.account, "server", scopes)
    return raw


def send(url: str, key: str | None, body: object, **kwargs: object) -> httpx.Response:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    return httpx.post(f"{url}/api/events", json=body, headers=headers, timeout=20, **kwargs)  # type: ignore[arg-type]


def server_event(site: Site, **fields: object) -> dict[str, object]:
    return {"name": "pageview", "url": f"https://{site.domain}/", "domain": site.domain, **fields}


def test_it_accepts_a_batch_with_timestamps_and_visitor_details(collector: str) -> None:
    purge_events_queue()
    site = make_site()
    hour_ago = int(time.time()) - 3600
    events = [
        server_event(site, timestamp=hour_ago, ip="81.2.69.142", user_agent=BROWSER_UA, url=f"https://{site.domain}/a"),
        server_event(
            site,
            name="Signup",
            timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(hour_ago + 60)),
            visitor_id="user-1",
        ),
    ]

    response = send(collector, key_for(site), {"events": events})

    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicates": 0}
    published = sorted(
        events_of(consume(lambda got: len(events_of(got, site.id)) == 2), site.id), key=lambda e: e["ts"]
    )
    assert [event["ts"] for event in published] == [hour_ago * 1_000_000, (hour_ago + 60) * 1_000_000]
    assert (published[0]["country"], published[0]["pathname"], published[0]["browser"]) == ("GB", "/a", "Chrome")
    assert published[1]["name"] == "Signup"


def test_it_answers_207_with_a_result_per_index_when_some_are_rejected(collector: str) -> None:
    site, stranger = make_site(), make_site()
    events = [
        server_event(site, ip="203.0.113.1", user_agent=BROWSER_UA),
        {"name": "pageview", "domain": site.domain, "ip": "203.0.113.1", "user_agent": BROWSER_UA},
        server_event(stranger, visitor_id="v"),
        server_event(site, visitor_id="v", timestamp=int(time.time()) - 2 * 86_400),
        server_event(site, ip="not-an-ip", user_agent=BROWSER_UA),
    ]

    response = send(collector, key_for(site), {"events": events})

    assert response.status_code == 207
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "results": [
            {"index": 0, "status": 202},
            {"index": 1, "status": 400, "error": "url: required"},
            {"index": 2, "status": 404, "error": "unknown site for this API key"},
            {"index": 3, "status": 400, "error": "timestamp: older than 24 hours"},
            {"index": 4, "status": 400, "error": "ip: not an IP address"},
        ],
    }


def test_it_answers_400_when_no_event_is_accepted(collector: str) -> None:
    site = make_site()

    response = send(collector, key_for(site), {"events": [server_event(site)]})

    assert response.status_code == 400
    assert response.json()["error"] == "no event was accepted"
    assert response.json()["results"] == [
        {"index": 0, "status": 400, "error": "ip: ip and user_agent, or visitor_id, are required"}
    ]


def test_an_event_sent_again_with_its_client_id_is_published_once(collector: str) -> None:
    purge_events_queue()
    site = make_site()
    key = key_for(site)
    event = server_event(site, id=f"order-{uuid.uuid4().hex}", visitor_id="u", timestamp=int(time.time()) - 10)

    first = send(collector, key, {"events": [event]})
    second = send(collector, key, {"events": [event, server_event(site, visitor_id="u")]})

    assert first.json() == {"accepted": 1, "duplicates": 0}
    assert second.json() == {"accepted": 2, "duplicates": 1}
    published = events_of(consume(lambda got: len(events_of(got, site.id)) >= 2, timeout=5), site.id)
    assert len(published) == 2
    assert len({event["event_id"] for event in published}) == 2


def test_an_id_without_a_timestamp_is_stamped_now_and_counted_once_whatever_the_resends_timestamp(
    collector: str,
) -> None:
    purge_events_queue()
    site = make_site()
    key = key_for(site)
    order = f"order-{uuid.uuid4().hex}"
    before = int(time.time() * 1_000_000)

    first = send(collector, key, {"events": [server_event(site, id=order, visitor_id="u")]})
    resent = send(collector, key, {"events": [server_event(site, id=order, visitor_id="u")]})
    restamped = send(
        collector, key, {"events": [server_event(site, id=order, visitor_id="u", timestamp=before // 10**6 - 60)]}
    )

    assert first.json() == {"accepted": 1, "duplicates": 0}
    assert resent.json() == {"accepted": 1, "duplicates": 1}
    assert restamped.json() == {"accepted": 1, "duplicates": 1}
    published = events_of(consume(), site.id)  # every answer came after its publish: all are queued
    assert len(published) == 1
    assert before <= published[0]["ts"] <= int(time.time() * 1_000_000)


def test_it_answers_401_without_a_valid_key(collector: str) -> None:
    site = make_site()

    missing = send(collector, None, {"events": [server_event(site, visitor_id="u")]})
    wrong = send(collector, "spk_AAAAAAAAAAAA_" + "x" * 43, {"events": [server_event(site, visitor_id="u")]})

    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.headers["access-control-allow-origin"] == "*"
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "invalid, revoked or expired API key"}


def test_it_answers_403_to_a_key_without_events_write(collector: str) -> None:
    site = make_site()

    response = send(collector, key_for(site, ("stats:read",)), {"events": [server_event(site, visitor_id="u")]})

    assert response.status_code == 403
    assert response.json() == {"error": "the API key lacks the events:write scope"}


def test_it_refuses_more_than_1000_events(collector: str) -> None:
    site = make_site()

    response = send(collector, key_for(site), {"events": [server_event(site, visitor_id="u")] * 1001})

    assert response.status_code == 400
    assert response.json() == {"error": "events: more than 1000 events"}


def test_it_refuses_a_body_over_one_mib(collector: str) -> None:
    site = make_site()
    padding = "p" * 1900
    events = [server_event(site, visitor_id="u", props={"pad": padding}) for _ in range(600)]

    response = send(collector, key_for(site), {"events": events})

    assert response.status_code == 413
    assert response.json() == {"error": "body larger than 1048576 bytes"}


def test_it_refuses_each_event_with_text_postgresql_cannot_store_and_accepts_the_others(collector: str) -> None:
    purge_events_queue()
    site = make_site()
    at = int(time.time()) - 60
    events = [
        server_event(site, visitor_id="v", url=f"https://{site.domain}/good"),
        server_event(site, ip="203.0.113.1", user_agent=f"{BROWSER_UA}\x00"),
        server_event(site, visitor_id="v\ud800"),
        server_event(site, visitor_id="v", id="order-\x00", timestamp=at),
        server_event(site, visitor_id="v", url=f"https://{site.domain}/?utm_source=%00"),
        server_event(site, visitor_id="v", props={"plan": "\udfff"}),
    ]

    response = httpx.post(
        f"{collector}/api/events",
        content=json.dumps({"events": events}).encode(),  # escaped, as a JSON encoder writes them: \ud800
        headers={"authorization": f"Bearer {key_for(site)}"},
        timeout=20,
    )

    assert response.status_code == 207
    unstorable = "contains a NUL or an unpaired surrogate, which cannot be stored"
    assert response.json()["results"] == [
        {"index": 0, "status": 202},
        {"index": 1, "status": 400, "error": f"user_agent: {unstorable}"},
        {"index": 2, "status": 400, "error": f"visitor_id: {unstorable}"},
        {"index": 3, "status": 400, "error": f"id: {unstorable}"},
        {"index": 4, "status": 400, "error": f"url.utm_source: {unstorable}"},
        {"index": 5, "status": 400, "error": f"props.plan: {unstorable}"},
    ]
    published = events_of(consume(lambda got: events_of(got, site.id)), site.id)
    assert [event["pathname"] for event in published] == ["/good"]
