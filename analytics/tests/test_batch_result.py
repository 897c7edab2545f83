"""A batch's marker: a byte an event, and the same visit starts at every delivery."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from analytics.ingest import rollups
from analytics.ingest.batch_result import decode_starts
from analytics.ingest.pipeline import ingest
from analytics.tests.factories import make_event, make_site
from spinnakr import redis_clients

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]


def rollups_server() -> redis_clients.Rollups:
    """The one server holding every site's rollups: the data Redis, or REDIS_URLS' only entry."""
    [server] = redis_clients.rollup_servers()
    return server


NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 3, 10, hour, minute, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@time_machine.travel(NOON, tick=False)
def test_a_batch_marker_holds_about_a_byte_per_event():
    site = make_site()
    events = [
        make_event(site, at(9, 0) + timedelta(minutes=minute, seconds=visitor), visitor=visitor, pathname=f"/{minute}")
        for visitor in range(1, 61)
        for minute in range(0, 50, 10)
    ]
    ingest("m" * 32, events)
    marker = rollups_server().strlen(f"{rollups.prefix(site.id)}batch:{'m' * 32}")
    assert len(events) <= marker <= len(events) + 100


@time_machine.travel(NOON, tick=False)
def test_a_redelivered_batch_gets_the_starts_of_visits_begun_in_earlier_batches_and_of_late_events():
    site = make_site()
    ingest(uuid.uuid4().hex, [make_event(site, at(10, 0), visitor=1), make_event(site, at(10, 30), visitor=4)])
    events = [
        make_event(site, at(10, 5), visitor=2),
        make_event(site, at(10, 7), visitor=2),
        make_event(site, at(10, 10), visitor=1),  # joins the visit of the first batch
        make_event(site, at(10, 12), visitor=3, name="engagement"),  # no visit around it
        make_event(site, at(10, 20), visitor=4),  # late: moves the visit's start earlier
        make_event(site, at(10, 40), visitor=4),
    ]
    first = ingest("r" * 32, events)[site.id]
    again = ingest("r" * 32, events)[site.id]
    expected = [at(10, 5), at(10, 5), at(10, 0), at(10, 12), at(10, 20), at(10, 20)]
    assert first.starts == [ms(moment) for moment in expected]
    assert again.duplicate
    assert again.starts == first.starts
    assert again.renames == first.renames == [(4, ms(at(10, 30)), ms(at(10, 20)))]


def test_a_marker_of_the_older_form_lists_its_starts():
    events = [{"t": 2000, "v": "1"}, {"t": 3000, "v": "1"}]
    assert decode_starts({"st": [1000, 1000]}, events) == [1000, 1000]


def test_codes_read_against_the_batch_events_give_each_start():
    events = [{"t": 1000, "v": "1"}, {"t": 2000, "v": "2"}, {"t": 3000, "v": "1"}, {"t": 4000, "v": "2"}]
    assert decode_starts({"sc": "nxsx", "sx": [1500, 500]}, events) == [1000, 500, 1000, 3500]
