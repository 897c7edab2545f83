"""Sessionisation and rollups on hand-built visits (the real script on the real Redis)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from analytics.ingest import rollups
from analytics.ingest.pipeline import ingest
from analytics.ingest.visits import visit_id
from analytics.models import Event
from analytics.tests.factories import make_event, make_site
from spinnakr import redis_clients

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def at(hour: int, minute: int, day: int = 10) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def batch(*events):
    return ingest(uuid.uuid4().hex, list(events))


def day(site, name="20260310"):
    return rollups.counters(site.id, "d", [name])[0]


def top(site, dim, metric, name="20260310"):
    return dict(rollups.top(site.id, dim, name, metric))


def stored_visits(site):
    return list(Event.objects.filter(site_id=site.id).order_by("timestamp").values_list("pathname", "visit_id"))


@time_machine.travel(NOON, tick=False)
def test_a_gap_of_more_than_thirty_minutes_starts_a_new_visit():
    site = make_site()
    batch(
        make_event(site, at(10, 0), pathname="/a"),
        make_event(site, at(10, 20), pathname="/b"),
        make_event(site, at(10, 51), pathname="/c"),
        make_event(site, at(11, 21), pathname="/d"),
    )
    assert day(site) == {"pageviews": 4, "events": 4, "visits": 2, "bounces": 0, "duration": 1200 + 1800}
    assert top(site, "entry_page", "visits") == {"/a": 1, "/c": 1}
    assert top(site, "exit_page", "visits") == {"/b": 1, "/d": 1}
    first, second = (visit_id(1, int(moment.timestamp() * 1000)) for moment in (at(10, 0), at(10, 51)))
    assert [v for _, v in stored_visits(site)] == [first, first, second, second]


@time_machine.travel(NOON, tick=False)
def test_a_single_pageview_visit_is_a_bounce_and_a_non_interactive_event_does_not_change_that():
    site = make_site()
    batch(
        make_event(site, at(9, 0), visitor=1, pathname="/only"),
        make_event(site, at(9, 5), visitor=1, name="Scrolled", interactive=False),
        make_event(site, at(9, 0), visitor=2, pathname="/x"),
        make_event(site, at(9, 2), visitor=2, name="Signup", props={"plan": "pro"}),
    )
    assert day(site) == {"pageviews": 2, "events": 4, "visits": 2, "bounces": 1, "duration": 300 + 120}
    assert top(site, "entry_page", "bounces") == {"/only": 1}
    assert top(site, "name", "events") == {"pageview": 2, "Scrolled": 1, "Signup": 1}
    assert top(site, "props:plan", "events") == {"pro": 1}
    assert rollups.member_visitors(site.id, "props:plan", ["20260310"], "pro") == 1


@time_machine.travel(NOON, tick=False)
def test_a_late_event_that_bridges_two_visits_merges_them_and_renames_the_stored_visit():
    site = make_site()
    batch(make_event(site, at(10, 0), pathname="/a"), make_event(site, at(11, 0), pathname="/b"))
    assert day(site) == {"pageviews": 2, "events": 2, "visits": 2, "bounces": 2, "duration": 0}

    batch(make_event(site, at(10, 30), pathname="/late"))

    assert day(site) == {"pageviews": 3, "events": 3, "visits": 1, "bounces": 0, "duration": 3600}
    assert top(site, "entry_page", "visits") == {"/a": 1}
    assert top(site, "exit_page", "visits") == {"/b": 1}
    assert top(site, "entry_page", "bounces") == {}
    first = visit_id(1, int(at(10, 0).timestamp() * 1000))
    assert stored_visits(site) == [("/a", first), ("/late", first), ("/b", first)]


@time_machine.travel(NOON, tick=False)
def test_a_late_event_before_the_start_moves_the_visit_its_entry_page_and_its_bucket():
    site = make_site()
    batch(make_event(site, at(10, 5), pathname="/second", referrer_source="Google", channel="Organic Search"))
    batch(make_event(site, at(9, 50), pathname="/first", referrer_source="Bing", channel="Organic Search"))

    assert day(site) == {"pageviews": 2, "events": 2, "visits": 1, "bounces": 0, "duration": 900}
    assert rollups.counters(site.id, "h", ["2026031009", "2026031010"]) == [
        {"pageviews": 1, "events": 1, "visits": 1, "bounces": 0, "duration": 900},
        {"pageviews": 1, "events": 1, "visits": 0, "bounces": 0, "duration": 0},
    ]
    assert top(site, "entry_page", "visits") == {"/first": 1}
    assert top(site, "exit_page", "visits") == {"/second": 1}
    assert top(site, "source", "visits") == {"Bing": 1}
    assert top(site, "source", "pageviews") == {"Bing": 2}
    start = visit_id(1, int(at(9, 50).timestamp() * 1000))
    assert stored_visits(site) == [("/first", start), ("/second", start)]


@time_machine.travel(NOON, tick=False)
def test_engagement_events_feed_time_on_page_and_scroll_depth_only():
    site = make_site()
    batch(
        make_event(site, at(8, 0), pathname="/post"),
        make_event(site, at(8, 3), name="engagement", pathname="/post", engagement_ms=42_000, scroll_depth=80),
        make_event(site, at(8, 45), name="engagement", pathname="/post", engagement_ms=1_000, scroll_depth=None),
    )
    assert day(site) == {"pageviews": 1, "events": 1, "visits": 1, "bounces": 1, "duration": 0}
    assert top(site, "page", "time_ms") == {"/post": 43_000}
    assert top(site, "page", "engagements") == {"/post": 2}
    assert top(site, "page", "scroll_sum") == {"/post": 80}
    assert top(site, "page", "scroll_n") == {"/post": 1}
    assert "engagement" not in top(site, "name", "events")
    start = visit_id(1, int(at(8, 0).timestamp() * 1000))
    assert [v for _, v in stored_visits(site)][:2] == [start, start]


def test_day_buckets_and_visits_follow_the_site_timezone():
    # 23:50 and 00:10 in New York are 04:50 and 05:10 UTC: one visit, two local days.
    with time_machine.travel(datetime(2026, 1, 15, 6, 0, tzinfo=UTC), tick=False):
        site = make_site(timezone="America/New_York")
        batch(
            make_event(site, datetime(2026, 1, 15, 4, 50, tzinfo=UTC), pathname="/late-night"),
            make_event(site, datetime(2026, 1, 15, 5, 10, tzinfo=UTC), pathname="/after-midnight"),
        )
        assert rollups.counters(site.id, "d", ["20260114", "20260115"]) == [
            {"pageviews": 1, "events": 1, "visits": 1, "bounces": 0, "duration": 1200},
            {"pageviews": 1, "events": 1, "visits": 0, "bounces": 0, "duration": 0},
        ]
        assert rollups.counters(site.id, "h", ["2026011423"])[0]["visits"] == 1
        assert rollups.visitors(site.id, "d", ["20260114"]) == 1
        assert rollups.visitors(site.id, "d", ["20260114", "20260115"]) == 1
        assert top(site, "page", "pageviews", "20260115") == {"/after-midnight": 1}


@time_machine.travel(NOON, tick=False)
def test_the_same_batch_applied_twice_counts_once():
    site = make_site()
    events = [make_event(site, at(11, m), visitor=m % 3, pathname=f"/{m % 4}") for m in range(0, 50, 5)]
    first = ingest("b" * 32, events)
    again = ingest("b" * 32, events)
    assert again[site.id].duplicate
    assert again[site.id].starts == first[site.id].starts
    assert day(site)["pageviews"] == 10
    assert Event.objects.filter(site_id=site.id).count() == 10


@time_machine.travel(NOON, tick=False)
def test_visitors_now_counts_visitors_seen_in_the_last_five_minutes():
    site = make_site()
    batch(
        make_event(site, NOON - timedelta(minutes=2), visitor=1),
        make_event(site, NOON - timedelta(minutes=4), visitor=2),
        make_event(site, NOON - timedelta(minutes=20), visitor=3),
    )
    assert rollups.visitors_now(site.id, NOON.timestamp()) == 2
    assert rollups.meta(site.id)["complete_since"] == "2026-03-10"


@time_machine.travel(NOON, tick=False)
def test_after_redis_is_lost_live_ingestion_does_not_declare_an_older_sites_rollups_complete():
    site = make_site(domain="old.example")
    site.created = NOON - timedelta(days=30)
    site.save()
    batch(make_event(site, NOON - timedelta(days=1)))
    redis_clients.for_site(site.id).flushdb()  # Redis lost; PostgreSQL still has the event

    batch(make_event(site, NOON - timedelta(minutes=1)))
    fresh = make_site(domain="new.example")
    batch(make_event(fresh, NOON - timedelta(minutes=1)))

    assert "complete_since" not in rollups.meta(site.id)
    assert rollups.meta(fresh.id)["complete_since"] == "2026-03-10"
    assert redis_clients.for_site(site.id).get(rollups.EPOCH_KEY) == str(int(NOON.timestamp() * 1000))
