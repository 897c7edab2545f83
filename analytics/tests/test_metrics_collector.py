"""The collector's answers in ``/metrics``: every answer counted by reason, summed over the web
processes, whichever of them answers the scrape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from accounts.apikeys import create_api_key
from analytics.tests.collector_fixtures import (
    BROWSER_UA,
    make_site,
    purge_events_queue,
    start_server,
    stop_server,
)
from spinnakr.tests.scrape import local, parse, value

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
TOKEN = "collector-metrics-token"


@pytest.fixture
def two_workers(django_db_blocker: Any, tmp_path: Path) -> Iterator[str]:
    """A uvicorn of two worker processes with a metrics token."""
    with django_db_blocker.unblock():
        server = start_server(tmp_path, {"METRICS_TOKEN": TOKEN}, workers=2)
    yield server.url
    stop_server(server)
    purge_events_queue()


def send(url: str, body: object) -> int:
    # A connection of its own each: either process may answer.
    headers = {"user-agent": BROWSER_UA, "content-type": "text/plain"}
    return httpx.post(f"{url}/api/event", content=json.dumps(body).encode(), headers=headers, timeout=10).status_code


def answers(samples: dict[Any, float]) -> dict[tuple[str, str], float]:
    kinds = [("202", "accepted"), ("404", "unknown_site"), ("400", "invalid"), ("202", "bot")]
    return {
        kind: value(samples, "spinnakr_collector_events_total", endpoint="event", status=kind[0], reason=kind[1])
        for kind in kinds
    }


def test_every_answer_is_counted_by_reason_and_every_scrape_shows_the_sum_of_both_processes(two_workers: str) -> None:
    site = make_site()
    before = answers(local())
    sent = [
        send(two_workers, {"n": "pageview", "u": f"https://{site.domain}/p{n}", "d": site.domain}) for n in range(20)
    ]
    sent += [
        send(two_workers, {"n": "pageview", "u": "https://nobody.example/", "d": "nobody.example"}) for _ in range(7)
    ]
    sent += [send(two_workers, {"n": "pageview", "d": site.domain}) for _ in range(3)]

    scrapes = [
        httpx.get(f"{two_workers}/metrics", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10) for _ in range(10)
    ]

    assert sorted(set(sent)) == [202, 400, 404]
    assert {response.status_code for response in scrapes} == {200}
    expected = {("202", "accepted"): 20, ("404", "unknown_site"): 7, ("400", "invalid"): 3, ("202", "bot"): 0}
    for response in scrapes:
        counted = answers(parse(response.text))
        assert {kind: counted[kind] - before[kind] for kind in counted} == expected


def test_a_bots_event_is_counted_as_dropped_not_accepted(collector: str) -> None:
    site = make_site()
    before = answers(local())

    response = httpx.post(
        f"{collector}/api/event",
        content=json.dumps({"n": "pageview", "u": f"https://{site.domain}/", "d": site.domain}).encode(),
        headers={"user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"},
        timeout=10,
    )

    after = answers(local())
    assert response.status_code == 202
    assert after[("202", "bot")] - before[("202", "bot")] == 1
    assert after[("202", "accepted")] == before[("202", "accepted")]


def test_a_servers_batch_counts_each_event_by_its_answer_and_a_refused_request_once(collector: str) -> None:
    site, stranger = make_site(), make_site()
    _, key = create_api_key(site.account, "server", ("events:write",))
    before = local()
    events = [
        {"name": "pageview", "url": f"https://{site.domain}/", "domain": site.domain, "visitor_id": "u1"},
        {"name": "pageview", "url": f"https://{site.domain}/b", "domain": site.domain, "visitor_id": "u2"},
        {"name": "pageview", "domain": site.domain, "visitor_id": "u3"},
        {"name": "pageview", "url": f"https://{stranger.domain}/", "domain": stranger.domain, "visitor_id": "u4"},
    ]

    partly = httpx.post(f"{collector}/api/events", json={"events": events}, headers={"authorization": f"Bearer {key}"})
    refused = httpx.post(f"{collector}/api/events", json={"events": events}, headers={"authorization": "Bearer nope"})

    after = local()
    assert (partly.status_code, refused.status_code) == (207, 401)
    kinds = [("202", "accepted"), ("400", "invalid"), ("404", "unknown_site"), ("401", "unauthorized")]
    grown = {
        kind: value(after, "spinnakr_collector_events_total", endpoint="events", status=kind[0], reason=kind[1])
        - value(before, "spinnakr_collector_events_total", endpoint="events", status=kind[0], reason=kind[1])
        for kind in kinds
    }
    assert grown == {
        ("202", "accepted"): 2,
        ("400", "invalid"): 1,
        ("404", "unknown_site"): 1,
        ("401", "unauthorized"): 1,
    }
    purge_events_queue()
