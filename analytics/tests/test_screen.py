"""The worker's screen: which events it sets aside, why, and how it counts them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from analytics.ingest import screen
from analytics.payloads import EnrichedEvent
from analytics.tests.factories import make_event, make_site
from spinnakr import redis_clients

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


@pytest.fixture
def event() -> dict[str, Any]:
    return dict(make_event(make_site(), NOW, props={"plan": "pro"}))


def without(field: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda event: {name: value for name, value in event.items() if name != field}


def test_it_checks_every_field_of_an_enriched_event() -> None:
    assert screen.CHECKED_FIELDS == set(EnrichedEvent.__annotations__)


def test_it_keeps_a_well_formed_event(event: dict[str, Any]) -> None:
    assert screen.problem(event) is None
    assert screen.problem({**event, "revenue_amount": "12.3400", "scroll_depth": 40, "engagement_ms": 5}) is None


@pytest.mark.parametrize("bad", ["\x00", "\ud800", "\udfff"])
@pytest.mark.parametrize("field", ["name", "hostname", "pathname", "referrer", "utm_term", "browser", "screen"])
def test_it_names_a_text_field_postgresql_cannot_store(event: dict[str, Any], field: str, bad: str) -> None:
    assert screen.problem({**event, field: f"a{bad}b"}) == f"unstorable:{field}"


@pytest.mark.parametrize("props", [{"plan": "pro\x00"}, {"pl\ud800an": "pro"}])
def test_it_names_props_postgresql_cannot_store(event: dict[str, Any], props: dict[str, str]) -> None:
    assert screen.problem({**event, "props": props}) == "unstorable:props"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (without("pathname"), "missing:pathname"),
        (without("ts"), "missing:ts"),
        (without("scroll_depth"), "missing:scroll_depth"),
        (without("revenue_amount"), "missing:revenue_amount"),
        (lambda e: {**e, "pathname": None}, "malformed:pathname"),
        (lambda e: {**e, "ts": str(e["ts"])}, "malformed:ts"),
        (lambda e: {**e, "ts": -1}, "malformed:ts"),
        (lambda e: {**e, "site_id": True}, "malformed:site_id"),
        (lambda e: {**e, "visitor_id": 2**63}, "malformed:visitor_id"),
        (lambda e: {**e, "scroll_depth": 2**15}, "malformed:scroll_depth"),
        (lambda e: {**e, "engagement_ms": 1.5}, "malformed:engagement_ms"),
        (lambda e: {**e, "interactive": 1}, "malformed:interactive"),
        (lambda e: {**e, "props": {"plan": 1}}, "malformed:props"),
        (lambda e: {**e, "props": ["plan"]}, "malformed:props"),
        (lambda e: {**e, "revenue_amount": "1e14"}, "malformed:revenue_amount"),
        (lambda e: {**e, "revenue_amount": "ten"}, "malformed:revenue_amount"),
        (lambda e: {**e, "revenue_amount": 10}, "malformed:revenue_amount"),
        (lambda e: {**e, "event_id": "not-a-uuid"}, "malformed:event_id"),
        (lambda e: [e], "malformed:event"),
    ],
)
def test_it_names_what_is_wrong_with_the_shape_of_an_event(
    event: dict[str, Any], change: Callable[[dict[str, Any]], Any], reason: str
) -> None:
    assert screen.problem(change(event)) == reason


def test_it_keeps_the_order_of_the_events_it_keeps(event: dict[str, Any]) -> None:
    events = [{**event, "pathname": f"/{n}"} for n in range(4)]
    events[2] = {**events[2], "pathname": "/\x00"}

    kept, rejected = screen.screen("b" * 32, events)

    assert [e["pathname"] for e in kept] == ["/0", "/1", "/3"]
    assert [(r.batch_id, r.event["pathname"], r.reason) for r in rejected] == [
        ("b" * 32, "/\x00", "unstorable:pathname")
    ]


def test_it_counts_rejections_per_site_and_reason_once_per_batch_and_keeps_the_events(event: dict[str, Any]) -> None:
    site_id = event["site_id"]
    _, rejected = screen.screen(
        "c" * 32, [{**event, "pathname": "/\x00"}, {**event, "name": "\ud800"}, without("ts")(event)]
    )
    _, no_site = screen.screen("c" * 32, [{**event, "site_id": "7"}])
    client = redis_clients.for_site(site_id)

    screen.record([*rejected, *no_site])
    screen.record(rejected)  # the batch delivered again

    assert client.hgetall(f"{{s:{site_id}}}:rejected") == {
        "unstorable:pathname": "1",
        "unstorable:name": "1",
        "missing:ts": "1",
    }
    kept = [json.loads(raw) for raw in client.lrange(f"{{s:{site_id}}}:rejected:events", 0, -1)]
    assert [(r["batch_id"], r["reason"]) for r in kept] == [
        ("c" * 32, "missing:ts"),
        ("c" * 32, "unstorable:name"),
        ("c" * 32, "unstorable:pathname"),
    ]
    assert kept[2]["event"] == {**event, "pathname": "/\x00"}
    assert redis_clients.data().hgetall("{ingest}:rejected") == {"malformed:site_id": "1"}


def test_it_keeps_at_most_the_newest_events_of_a_site(event: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(screen, "KEEP_EVENTS", 2)
    for n in range(3):
        screen.record(screen.screen(f"{n:032x}", [{**event, "pathname": f"/{n}\x00"}])[1])

    kept = [
        json.loads(raw)["event"]["pathname"]
        for raw in redis_clients.for_site(event["site_id"]).lrange(f"{{s:{event['site_id']}}}:rejected:events", 0, -1)
    ]
    assert kept == ["/2\x00", "/1\x00"]
    assert (
        redis_clients.for_site(event["site_id"]).hget(f"{{s:{event['site_id']}}}:rejected", "unstorable:pathname")
        == "3"
    )


def test_sanitize_replaces_every_unstorable_character_and_keeps_the_rest(event: dict[str, Any]) -> None:
    dirty = {**event, "pathname": "/a\x00b", "referrer": "\ud800", "props": {"k\x00": "v\udfff", "plan": "pro"}}

    clean = screen.sanitize(dirty)

    assert clean == {
        **event,
        "pathname": "/a\ufffdb",
        "referrer": "\ufffd",
        "props": {"k\ufffd": "v\ufffd", "plan": "pro"},
    }
    assert screen.problem(clean) is None
