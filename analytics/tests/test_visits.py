"""``analytics_visit``: one row per stored visit, always what its stored events say.

The rows are kept by ``analytics.ingest.store`` as events are inserted, visits renamed and events
deleted; every test compares them with the same row recomputed from the events.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.ingest import store
from analytics.ingest.pipeline import ingest
from analytics.tests.factories import make_event, make_site
from analytics.tests.query_support import enriched

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]

START = dt.datetime(2031, 8, 3, 10, tzinfo=dt.UTC)
COLUMNS = ", ".join(f'"{c}"' for c in store.VISIT_COLUMNS)


def stored_visits(site_id: int) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {COLUMNS} FROM analytics_visit WHERE site_id = %s ORDER BY visitor_id, visit_id",  # noqa: S608
            [site_id],
        )
        return cursor.fetchall()


def recomputed_visits(site_id: int) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {store.VISIT_AGGREGATES} FROM analytics_event WHERE site_id = %s AND name <> 'engagement' "  # noqa: S608
            "GROUP BY site_id, visitor_id, visit_id ORDER BY visitor_id, visit_id",
            [site_id],
        )
        return cursor.fetchall()


event_strategy = st.fixed_dictionaries(
    {
        "visitor": st.integers(min_value=1, max_value=4),
        "minute": st.integers(min_value=0, max_value=6 * 60),
        "name": st.sampled_from(["pageview", "pageview", "Signup", "engagement"]),
        "pathname": st.sampled_from(["/", "/a", "/b"]),
        "referrer_source": st.sampled_from(["", "Google"]),
        "country": st.sampled_from(["DE", "US"]),
        "interactive": st.booleans(),
    }
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(events=st.lists(event_strategy, min_size=1, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=4))
def test_visits_equal_their_events_whatever_order_the_batches_come_in(
    events: list[dict[str, Any]], cuts: list[int]
) -> None:
    """Late events in later batches move visit starts and merge visits (renames)."""
    site = make_site(f"{uuid.uuid4().hex[:12]}.test")
    payload = [
        enriched(site, {**e, "ts": START + dt.timedelta(minutes=e["minute"]), "engagement_ms": 1000}) for e in events
    ]
    bounds = [0, *sorted(min(c, len(payload)) for c in cuts), len(payload)]
    for lower, upper in itertools.pairwise(bounds):
        if upper > lower:
            ingest(uuid.uuid4().hex, payload[lower:upper])

    assert stored_visits(site.id) == recomputed_visits(site.id)


def test_a_batch_inserted_twice_changes_no_visit() -> None:
    site = make_site()
    rows = [(make_event(site, START + dt.timedelta(minutes=m), pathname=f"/{m}"), 7) for m in (0, 5, 9)]
    store.insert_events(rows[:2])
    store.insert_events(rows)
    first = stored_visits(site.id)

    assert store.insert_events(rows) == 0

    assert stored_visits(site.id) == first == recomputed_visits(site.id)
    assert first[0][7:12] == (3, 3, 3, "/0", "/9")  # pageviews, interactions, events, entry, exit


def test_an_earlier_event_becomes_the_entry_and_a_later_one_the_exit() -> None:
    site = make_site()
    store.insert_events([(make_event(site, START, pathname="/middle", country="DE"), 7)])
    store.insert_events(
        [
            (make_event(site, START - dt.timedelta(minutes=3), pathname="/first", country="US"), 7),
            (make_event(site, START + dt.timedelta(minutes=3), pathname="/last", country="FR"), 7),
        ]
    )
    (row,) = stored_visits(site.id)
    visit = dict(zip(store.VISIT_COLUMNS, row, strict=True))

    assert (visit["entry_page"], visit["exit_page"], visit["country"]) == ("/first", "/last", "US")
    assert (visit["start"], visit["end"]) == (START - dt.timedelta(minutes=3), START + dt.timedelta(minutes=3))
    assert [row] == recomputed_visits(site.id)


def test_renaming_a_visit_merges_its_row_into_the_new_visit() -> None:
    site = make_site()
    store.insert_events(
        [
            (make_event(site, START, pathname="/a"), 10),
            (make_event(site, START + dt.timedelta(minutes=40), pathname="/b"), 11),
            (make_event(site, START, visitor=2), 10),
        ]
    )

    store.rename_visits(site.id, [(1, 11, 10)])

    rows = stored_visits(site.id)
    assert [(r[1], r[2], r[7]) for r in rows] == [(1, 10, 2), (2, 10, 1)]
    assert rows == recomputed_visits(site.id)


def test_retention_recomputes_a_visit_that_goes_on_past_the_cutoff() -> None:
    site = make_site()
    cutoff = START
    store.insert_events(
        [
            (make_event(site, cutoff - dt.timedelta(hours=2), pathname="/old"), 1),
            (make_event(site, cutoff - dt.timedelta(minutes=10), pathname="/before"), 2),
            (make_event(site, cutoff + dt.timedelta(minutes=5), pathname="/after"), 2),
        ]
    )

    assert store.delete_older_than([site.id], cutoff) == 2

    rows = stored_visits(site.id)
    assert [(r[2], r[3], r[10]) for r in rows] == [(2, cutoff + dt.timedelta(minutes=5), "/after")]
    assert rows == recomputed_visits(site.id)


def test_deleting_a_site_removes_its_visits_and_no_other() -> None:
    site, other = make_site("a.example"), make_site("b.example")
    store.insert_events([(make_event(s, START), 1) for s in (site, other)])

    store.delete_site_events(site.id)

    assert stored_visits(site.id) == []
    assert len(stored_visits(other.id)) == 1
