"""``analytics.ingest.pipeline.ingest`` in process: several sites per message, unknown sites, live deltas."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from channels.layers import get_channel_layer
from django.db import models

from analytics.ingest import rollups
from analytics.ingest.pipeline import FAILED_BATCHES, ingest, ingest_many
from analytics.ingest.siteinfo import load_sites
from analytics.live.push import group_name
from analytics.models import Event
from analytics.tests.factories import make_event, make_site
from spinnakr import redis_clients

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


async def _listen(groups):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, channel)
    return layer, channel


async def _drain(layer, channel, count):
    return [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(count)]


@time_machine.travel(NOW, tick=False)
def test_one_message_with_several_sites_counts_each_site_and_sends_each_its_delta():
    first, second = make_site("one.example"), make_site("two.example")
    layer, channel = asyncio.run(_listen([group_name(first.id), group_name(second.id)]))
    events = [
        make_event(first, NOW - timedelta(minutes=2), visitor=1, pathname="/x", props={"k": "v"}),
        make_event(first, NOW - timedelta(minutes=1), visitor=1, pathname="/y"),
        make_event(second, NOW - timedelta(minutes=1), visitor=7),
        make_event(second, NOW - timedelta(seconds=30), visitor=7, name="engagement", engagement_ms=5),
    ]

    ingest("e" * 32, events)

    deltas = {d["site_id"]: d for d in asyncio.run(_drain(layer, channel, 2))}
    assert rollups.counters(first.id, "d", ["20260310"])[0]["pageviews"] == 2
    assert rollups.counters(second.id, "d", ["20260310"])[0]["pageviews"] == 1
    assert deltas[first.id]["counts"] == {"pageviews": 2, "events": 2, "visits": 1, "visitors": 1}
    assert deltas[first.id]["visitors_now"] == 1
    assert [e["pathname"] for e in deltas[first.id]["events"]] == ["/x", "/y"]
    assert deltas[first.id]["events"][0]["props"] == {"k": "v"}
    assert deltas[first.id]["newest_ts"] == int((NOW - timedelta(minutes=1)).timestamp() * 1000)
    assert deltas[second.id]["counts"] == {"pageviews": 1, "events": 1, "visits": 1, "visitors": 1}
    assert Event.objects.filter(site_id__in=[first.id, second.id]).count() == 4


@time_machine.travel(NOW, tick=False)
def test_events_of_a_deleted_site_are_dropped_and_the_others_kept():
    site = make_site()
    ghost = make_site("ghost.example")
    ghost_id = ghost.id
    ghost.delete()

    orphan = make_event(site, NOW)
    orphan["site_id"] = ghost_id
    ingest(uuid.uuid4().hex, [make_event(site, NOW), orphan])

    assert Event.objects.filter(site_id=site.id).count() == 1
    assert not Event.objects.filter(site_id=ghost_id).exists()
    assert list(redis_clients.for_site(ghost_id).scan_iter(match=f"{rollups.prefix(ghost_id)}*")) == []


@time_machine.travel(NOW, tick=False)
def test_an_event_repeated_inside_one_batch_counts_once():
    site = make_site()
    event = make_event(site, NOW)
    ingest(uuid.uuid4().hex, [event, event.copy()])
    assert rollups.counters(site.id, "d", ["20260310"])[0]["pageviews"] == 1
    assert Event.objects.filter(site_id=site.id).count() == 1


def _consume(deltas):
    """The dashboard's rule (static/src/dashboard/socket.js): a delta naming a batch seen before is
    dropped. Answers the summed counts of the deltas kept."""
    seen: set[str] = set()
    totals = {"pageviews": 0, "events": 0, "visits": 0}
    for delta in deltas:
        if seen & set(delta["batch_ids"]):
            continue
        seen.update(delta["batch_ids"])
        for key in totals:
            totals[key] += delta["counts"][key]
    return totals


def _three_batches(site):
    at = NOW - timedelta(minutes=10)
    visitors = [[1, 2], [3], [4, 5]]
    return [
        (f"{n:032x}", [make_event(site, at, visitor=v, pathname=f"/{v}") for v in batch])
        for n, batch in enumerate(visitors)
    ]


@time_machine.travel(NOW, tick=False)
def test_a_batch_delivered_again_in_another_group_reaches_a_live_consumer_once():
    site = make_site()
    layer, channel = asyncio.run(_listen([group_name(site.id)]))
    a, b, c = _three_batches(site)

    ingest_many([a, b])
    first = asyncio.run(_drain(layer, channel, 1))
    ingest_many([b, c])  # b delivered again (its worker died before the acknowledgement), beside c
    second = asyncio.run(_drain(layer, channel, 2))

    assert first[0]["batch_ids"] == [a[0], b[0]]
    assert sorted(d["batch_ids"] for d in second) == [[b[0]], [c[0]]]
    assert next(d for d in second if d["batch_ids"] == [b[0]])["batch_id"] == b[0]
    assert _consume(first + second) == {"pageviews": 5, "events": 5, "visits": 5}
    assert rollups.counters(site.id, "d", ["20260310"])[0]["pageviews"] == 5


@time_machine.travel(NOW, tick=False)
def test_a_batch_whose_worker_died_before_its_push_is_pushed_on_redelivery():
    site = make_site()
    layer, channel = asyncio.run(_listen([group_name(site.id)]))
    a, b, c = _three_batches(site)
    ingest_many([a])
    info = load_sites({site.id})[site.id]
    rollups.apply_batches([(info, b[0], rollups.prepare(info, b[1]))])  # the rollups took b, then the worker died

    ingest_many([b, c])

    deltas = asyncio.run(_drain(layer, channel, 3))
    assert _consume(deltas) == {"pageviews": 5, "events": 5, "visits": 5}
    assert rollups.counters(site.id, "d", ["20260310"])[0]["pageviews"] == 5
    assert Event.objects.filter(site_id=site.id).count() == 5


def _state(site):
    """A site's rollups and stored visits, comparable across sites."""
    day = ["20260310"]
    tops = {
        (dim, metric): rollups.top(site.id, dim, "20260310", metric)
        for dim in ("page", "entry_page", "exit_page", "source")
        for metric in ("visits", "pageviews", "bounces", "duration")
    }
    visits = sorted(
        (row["visitor_id"], row["n"])
        for row in Event.objects.filter(site_id=site.id)
        .values("visitor_id", "visit_id")
        .annotate(n=models.Count("event_id"))
        .values("visitor_id", "n")
    )
    return rollups.counters(site.id, "d", day)[0], rollups.visitors(site.id, "d", day), tops, visits


def _batches_for(site):
    """Four messages of one site: visits that span messages, a late event that merges two
    visits, an engagement event, and a custom event."""
    at = NOW - timedelta(hours=3)
    ev = [
        make_event(site, at, visitor=1, pathname="/a", referrer_source="Google"),
        make_event(site, at + timedelta(minutes=5), visitor=2, pathname="/b"),
        make_event(site, at + timedelta(minutes=50), visitor=1, pathname="/c"),
        make_event(site, at + timedelta(minutes=6), visitor=2, pathname="/c", name="Signup", props={"plan": "pro"}),
        make_event(site, at + timedelta(minutes=25), visitor=1, pathname="/d"),  # late: joins both visits
        make_event(site, at + timedelta(minutes=7), visitor=2, name="engagement", engagement_ms=9000),
        make_event(site, at + timedelta(minutes=90), visitor=3, pathname="/a"),
    ]
    return [[ev[0], ev[1]], [ev[2], ev[3]], [ev[4]], [ev[5], ev[6]]]


@time_machine.travel(NOW, tick=False)
def test_batches_applied_together_give_what_they_give_one_by_one():
    alone, together = make_site("alone.example"), make_site("together.example")
    for batch in _batches_for(alone):
        ingest(uuid.uuid4().hex, batch)

    results = ingest_many([(f"{n:032x}", batch) for n, batch in enumerate(_batches_for(together))])

    assert _state(together) == _state(alone)
    assert _state(together)[0]["visits"] == 3
    assert sorted(results) == [f"{n:032x}" for n in range(4)]


@time_machine.travel(NOW, tick=False)
def test_a_batch_applied_before_is_not_counted_again_inside_a_group():
    alone, mixed = make_site("alone.example"), make_site("mixed.example")
    for batch in _batches_for(alone):
        ingest(uuid.uuid4().hex, batch)
    batches = [(f"{n:032x}", batch) for n, batch in enumerate(_batches_for(mixed))]
    first = ingest(*batches[1])

    results = ingest_many(batches)

    assert results[batches[1][0]][mixed.id].duplicate
    assert results[batches[1][0]][mixed.id].starts == first[mixed.id].starts
    assert not results[batches[0][0]][mixed.id].duplicate
    assert _state(mixed) == _state(alone)
    # ... and each of them delivered again alone changes nothing either.
    for batch_id, events in batches:
        assert ingest(batch_id, events)[mixed.id].duplicate
    assert _state(mixed) == _state(alone)


class _CountingScripts:
    """Counts the calls of the rollup script (the real script still runs)."""

    def __init__(self, monkeypatch) -> None:
        self.calls = 0
        real = rollups._script

        def counting(name: str):
            script = real(name)

            def call(*args, **kwargs):
                self.calls += 1
                return script(*args, **kwargs)

            return call

        monkeypatch.setattr(rollups, "_script", counting)


@time_machine.travel(NOW, tick=False)
def test_a_group_larger_than_one_script_call_is_split_between_batches_and_gives_the_same(monkeypatch):
    alone, whole, split = make_site("alone.example"), make_site("whole.example"), make_site("split.example")
    for batch in _batches_for(alone):
        ingest(uuid.uuid4().hex, batch)
    scripts = _CountingScripts(monkeypatch)
    ingest_many([(uuid.uuid4().hex, batch) for batch in _batches_for(whole)])
    assert scripts.calls == 1

    monkeypatch.setattr(rollups, "SCRIPT_EVENTS", 3)  # batches of 2, 2, 1 and 2 events: 3 calls
    ingest_many([(uuid.uuid4().hex, batch) for batch in _batches_for(split)])

    assert scripts.calls == 1 + 3
    assert _state(split) == _state(whole) == _state(alone)


def _pageviews(site):
    return rollups.counters(site.id, "d", ["20260310"])[0]["pageviews"]


def _stored(site):
    return Event.objects.filter(site_id=site.id).count()


def _rejected(site):
    return redis_clients.for_site(site.id).hgetall(f"{rollups.prefix(site.id)}rejected")


@time_machine.travel(NOW, tick=False)
def test_an_event_the_store_cannot_take_costs_no_other_event_of_its_group():
    a, b = make_site("a.example"), make_site("b.example")
    at = NOW - timedelta(minutes=5)
    shared = [
        make_event(a, at, visitor=1, pathname="/a1"),
        make_event(b, at, visitor=2, pathname="/b\x00"),  # a NUL: PostgreSQL's text refuses it
        make_event(b, at, visitor=3, pathname="/b3"),
        make_event(a, at, visitor=4, pathname="/a4"),
    ]
    malformed: Any = {**make_event(a, at, visitor=6), "ts": "soon"}
    other = [make_event(a, at, visitor=5), malformed, make_event(b, at, visitor=7)]

    ingest_many([(uuid.uuid4().hex, shared), (uuid.uuid4().hex, other)])

    assert (_pageviews(a), _stored(a), rollups.visitors(a.id, "d", ["20260310"])) == (3, 3, 3)
    assert (_pageviews(b), _stored(b), rollups.visitors(b.id, "d", ["20260310"])) == (2, 2, 2)
    assert _rejected(a) == {"malformed:ts": "1"}
    assert _rejected(b) == {"unstorable:pathname": "1"}
    assert redis_clients.data().llen(FAILED_BATCHES) == 0


@time_machine.travel(NOW, tick=False)
def test_a_batch_with_a_rejected_event_delivered_again_changes_nothing():
    site = make_site()
    batch = (uuid.uuid4().hex, [make_event(site, NOW, visitor=1), make_event(site, NOW, visitor=2, referrer="\ud800")])

    first = ingest(*batch)
    again = ingest(*batch)

    assert again[site.id].duplicate
    assert again[site.id].starts == first[site.id].starts
    assert (_pageviews(site), _stored(site)) == (1, 1)
    assert _rejected(site) == {"unstorable:referrer": "1"}
    assert redis_clients.for_site(site.id).llen(f"{rollups.prefix(site.id)}rejected:events") == 1
