"""``analytics.ingest_batch`` through the real broker and a real Celery worker subprocess."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management import call_command

from analytics.ingest import quota, rollups
from analytics.ingest.pipeline import FAILED_BATCHES, park_failed_batch
from analytics.ingest.siteinfo import load_sites
from analytics.live.push import group_name
from analytics.models import Event
from analytics.tests.factories import make_event, make_site
from spinnakr import redis_clients
from spinnakr.celery import app
from spinnakr.tests.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_events"), pytest.mark.slow]


def publish(batch_id, events):
    app.send_task(
        "analytics.ingest_batch", kwargs={"batch_id": batch_id, "events": events}, queue=settings.EVENTS_QUEUE
    )


def messages_done(worker):
    """Broker messages the worker has applied, from its ``ingest.batch_done`` lines (one per group)."""
    return sum(int(n) for n in re.findall(r"ingest\.batch_done .*?\bmessages=(\d+)", worker.log.read_text()))


def groups_done(worker):
    return [int(n) for n in re.findall(r"ingest\.batch_done .*?\bmessages=(\d+)", worker.log.read_text())]


def day_of(events):
    return datetime.fromtimestamp(events[0]["ts"] / 1e6, UTC).strftime("%Y%m%d")


def counters(site, events):
    return rollups.counters(site.id, "d", [day_of(events)])[0]


def stored(site):
    return Event.objects.filter(site_id=site.id).count()


def a_visit(site, visitors=5, pages=4):
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    start -= timedelta(minutes=start.minute % 10)  # all in one UTC day
    return [
        make_event(site, start + timedelta(minutes=p, seconds=v), visitor=v, pathname=f"/p{p}")
        for v in range(visitors)
        for p in range(pages)
    ]


async def _receive(channel_layer, channel, timeout):
    return await asyncio.wait_for(channel_layer.receive(channel), timeout)


def test_a_published_batch_is_stored_counted_and_pushed_to_the_site_group(celery_worker_factory):
    site = make_site()
    layer = get_channel_layer()
    channel = asyncio.run(layer.new_channel())
    asyncio.run(layer.group_add(group_name(site.id), channel))
    celery_worker_factory()
    events = a_visit(site)

    publish("a" * 32, events)

    delta = asyncio.run(_receive(layer, channel, 30))
    assert stored(site) == 20
    assert counters(site, events) == {"pageviews": 20, "events": 20, "visits": 5, "bounces": 0, "duration": 5 * 180}
    assert delta["type"] == "live.delta"
    assert delta["batch_id"] == "a" * 32
    assert delta["counts"] == {"pageviews": 20, "events": 20, "visits": 5, "visitors": 5}
    assert delta["visitors_now"] == 0
    assert [e["pathname"] for e in delta["events"]][-1] == "/p3"
    assert Event.objects.filter(site_id=site.id).values("visit_id").distinct().count() == 5


def test_the_same_batch_delivered_twice_counts_once(celery_worker_factory):
    site = make_site()
    worker = celery_worker_factory()
    events = a_visit(site, visitors=3, pages=3)

    publish("b" * 32, events)
    publish("b" * 32, events)

    wait_for(lambda: messages_done(worker) == 2, timeout=30)
    assert stored(site) == 9
    assert counters(site, events)["pageviews"] == 9
    assert counters(site, events)["visits"] == 3


def test_a_worker_killed_between_rollups_and_store_counts_every_event_once_after_redelivery(celery_worker_factory):
    site = make_site()
    paused = celery_worker_factory(env={"SPINNAKR_TEST_INGEST_PAUSE": "after_rollups:60", "BROKER_LEASE_SECONDS": "3"})
    events = a_visit(site, visitors=4, pages=5)
    batch_id = uuid.uuid4().hex

    publish(batch_id, events)
    wait_for(lambda: redis_clients.data().exists(f"{rollups.prefix(site.id)}batch:{batch_id}"), timeout=30)
    assert stored(site) == 0
    paused.kill()
    celery_worker_factory(env={"BROKER_LEASE_SECONDS": "3"})

    wait_for(lambda: stored(site) == 20, timeout=40)
    assert counters(site, events) == {"pageviews": 20, "events": 20, "visits": 4, "bounces": 0, "duration": 4 * 240}
    assert rollups.visitors(site.id, "d", [day_of(events)]) == 4


def test_a_batch_that_fails_for_good_is_parked_and_can_be_replayed(celery_worker_factory):
    site = make_site()
    worker = celery_worker_factory()

    publish("d" * 32, None)  # no list of events: no event to set aside, the message itself is bad

    wait_for(lambda: redis_clients.data().llen(FAILED_BATCHES) == 1, timeout=30)
    assert "TypeError" in worker.log.read_text()
    parked = json.loads(str(redis_clients.data().lindex(FAILED_BATCHES, 0)))
    assert parked["batch_id"] == "d" * 32
    parked["events"] = [make_event(site, datetime.now(UTC) - timedelta(minutes=1), pathname="/fixed")]
    redis_clients.data().lset(FAILED_BATCHES, 0, json.dumps(parked))

    call_command("replay_failed_batches")

    wait_for(lambda: stored(site) == 1, timeout=30)
    assert redis_clients.data().llen(FAILED_BATCHES) == 0


def test_a_worker_killed_after_the_store_before_the_ack_changes_nothing_on_redelivery(celery_worker_factory):
    site = make_site()
    paused = celery_worker_factory(env={"SPINNAKR_TEST_INGEST_PAUSE": "after_store:60", "BROKER_LEASE_SECONDS": "3"})
    events = a_visit(site, visitors=3, pages=4)

    publish(uuid.uuid4().hex, events)
    wait_for(lambda: stored(site) == 12, timeout=30)
    paused.kill()
    worker = celery_worker_factory(env={"BROKER_LEASE_SECONDS": "3"})

    wait_for(lambda: "ingest.batch_done" in worker.log.read_text(), timeout=40)
    assert stored(site) == 12
    assert counters(site, events) == {"pageviews": 12, "events": 12, "visits": 3, "bounces": 0, "duration": 3 * 180}
    month = day_of(events)[:6]
    assert redis_clients.data().get(quota.quota_key(site.account_id, month)) == "12"


def test_waiting_messages_are_applied_together_each_once(celery_worker_factory):
    site = make_site()
    batches = [a_visit(site, visitors=3, pages=4)[n::4] for n in range(4)]  # 4 messages of one visit each page
    for n, events in enumerate(batches):
        publish(f"{n:032x}", events)
    publish(f"{1:032x}", batches[1])  # a redelivered copy inside the same group

    worker = celery_worker_factory()

    wait_for(lambda: messages_done(worker) == 5, timeout=30)
    assert max(groups_done(worker)) > 1
    assert stored(site) == 12
    assert counters(site, batches[0] + batches[1]) == {
        "pageviews": 12,
        "events": 12,
        "visits": 3,
        "bounces": 0,
        "duration": 3 * 180,
    }
    assert redis_clients.data().get(quota.quota_key(site.account_id, day_of(batches[0])[:6])) == "12"


def test_a_bad_batch_among_waiting_messages_is_parked_and_the_others_are_applied(celery_worker_factory):
    site = make_site()
    good = a_visit(site, visitors=2, pages=3)
    publish(uuid.uuid4().hex, good[:3])
    publish("e" * 32, None)
    publish(uuid.uuid4().hex, good[3:])

    celery_worker_factory()

    wait_for(lambda: stored(site) == 6 and redis_clients.data().llen(FAILED_BATCHES) == 1, timeout=30)
    assert json.loads(str(redis_clients.data().lindex(FAILED_BATCHES, 0)))["batch_id"] == "e" * 32
    assert counters(site, good)["pageviews"] == 6


def test_a_worker_killed_mid_group_counts_every_event_once_after_redelivery(celery_worker_factory):
    site = make_site()
    batches = [a_visit(site, visitors=4, pages=5)[n::5] for n in range(5)]
    ids = [uuid.uuid4().hex for _ in batches]
    for batch_id, events in zip(ids, batches, strict=True):
        publish(batch_id, events)
    paused = celery_worker_factory(env={"SPINNAKR_TEST_INGEST_PAUSE": "after_rollups:60", "BROKER_LEASE_SECONDS": "3"})
    marker = f"{rollups.prefix(site.id)}batch:"
    wait_for(lambda: all(redis_clients.data().exists(marker + batch_id) for batch_id in ids), timeout=30)
    assert stored(site) == 0
    paused.kill()

    worker = celery_worker_factory(env={"BROKER_LEASE_SECONDS": "3"})

    wait_for(lambda: stored(site) == 20, timeout=40)
    wait_for(lambda: messages_done(worker) >= 5, timeout=20)
    events = [e for batch in batches for e in batch]
    assert counters(site, events) == {"pageviews": 20, "events": 20, "visits": 4, "bounces": 0, "duration": 4 * 240}
    assert rollups.visitors(site.id, "d", [day_of(events)]) == 4
    assert redis_clients.data().get(quota.quota_key(site.account_id, day_of(events)[:6])) == "20"


def test_one_nul_event_of_a_customer_costs_no_event_of_another_and_every_count_agrees(celery_worker_factory):
    a, b = make_site("a.example"), make_site("b.example")
    start = a_visit(a, visitors=1, pages=1)[0]["ts"]
    # The collector's group commit mixes customers in one message: each batch holds both.
    batches = [
        (
            uuid.uuid4().hex,
            [make_event(a, at(start, n, p), visitor=n, pathname=f"/a{p}") for p in range(3)]
            + [make_event(b, at(start, n, p), visitor=100 + n, pathname=f"/b{p}") for p in range(2)],
        )
        for n in range(6)
    ]
    batches[3][1][4]["pathname"] = "/b\x00"  # published straight to the queue: the collector refuses it
    for batch_id, events in batches:
        publish(batch_id, events)

    worker = celery_worker_factory()

    wait_for(lambda: messages_done(worker) + redis_clients.data().llen(FAILED_BATCHES) == 6, timeout=60)
    assert max(groups_done(worker)) > 1
    events = [event for _, batch in batches for event in batch]
    for site, accepted in ((a, 18), (b, 11)):
        assert counters(site, events)["pageviews"] == accepted
        assert stored(site) == accepted
        assert Event.objects.filter(site_id=site.id).values("event_id").distinct().count() == accepted
        assert rollups.visitors(site.id, "d", [day_of(events)]) == 6
        assert redis_clients.data().get(quota.quota_key(site.account_id, day_of(events)[:6])) == str(accepted)
    assert redis_clients.data().hgetall(f"{rollups.prefix(b.id)}rejected") == {"unstorable:pathname": "1"}
    assert redis_clients.data().hgetall(f"{rollups.prefix(a.id)}rejected") == {}
    assert redis_clients.data().llen(FAILED_BATCHES) == 0


def at(start_us, visitor, page):
    return datetime.fromtimestamp(start_us / 1e6, UTC) + timedelta(minutes=page, seconds=visitor)


def apply_rollups_before_the_screen(batch_id, events):
    """What the worker did with a batch before it screened events: the rollups of all of them (the
    store failed after)."""
    by_site = defaultdict(list)
    for event in events:
        by_site[event["site_id"]].append(event)
    sites = load_sites(by_site)
    rollups.apply_batches(
        [
            (sites[site_id], batch_id, rollups.prepare(sites[site_id], sorted(site_events, key=rollups.event_order)))
            for site_id, site_events in by_site.items()
        ]
    )


def test_batches_parked_before_the_screen_are_replayed_whole_so_redis_and_postgresql_agree(celery_worker_factory):
    a, b = make_site("a.example"), make_site("b.example")
    start = a_visit(a, visitors=1, pages=1)[0]["ts"]
    counted = [make_event(a, at(start, 1, p), visitor=1, pathname=f"/a{p}") for p in range(3)] + [
        make_event(b, at(start, 2, p), visitor=2, pathname=f"/b{p}") for p in range(4)
    ]
    counted[4]["pathname"] = "/b\x00"
    # A NUL: the rollups were applied, then the store failed. A lone surrogate: the rollups failed.
    apply_rollups_before_the_screen("c" * 32, counted)
    park_failed_batch("c" * 32, counted, ValueError("PostgreSQL text fields cannot contain NUL (0x00) bytes"))
    uncounted = [make_event(b, at(start, 2, 4), visitor=2, pathname="/b4", props={"note": "\ud800"})]
    park_failed_batch("d" * 32, uncounted, TypeError("str is not valid UTF-8: surrogates not allowed"))
    assert (counters(a, counted)["pageviews"], counters(b, counted)["pageviews"]) == (3, 4)
    celery_worker_factory()

    call_command("replay_failed_batches")

    wait_for(lambda: stored(a) == 3 and stored(b) == 5, timeout=30)
    assert redis_clients.data().llen(FAILED_BATCHES) == 0
    for site, count in ((a, 3), (b, 5)):
        assert counters(site, counted) == {
            "pageviews": count,
            "events": count,
            "visits": 1,
            "bounces": 0,
            "duration": (count - 1) * 60,
        }
        assert Event.objects.filter(site_id=site.id).values("visit_id").distinct().count() == 1
    assert sorted(Event.objects.filter(site_id=b.id).values_list("pathname", flat=True)) == [
        "/b0",
        "/b2",
        "/b3",
        "/b4",
        "/b\ufffd",
    ]
    assert Event.objects.get(site_id=b.id, pathname="/b4").props == {"note": "\ufffd"}
    assert redis_clients.data().hgetall(f"{rollups.prefix(b.id)}rejected") == {}
