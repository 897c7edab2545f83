"""Visits do not depend on arrival order: random events in random batches against a reference."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.ingest import rollups
from analytics.ingest.pipeline import ingest
from analytics.ingest.visits import VISIT_GAP_MS, visit_id
from analytics.models import Event
from analytics.tests.factories import make_event, make_site

NOW = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)

event_specs = st.lists(
    st.tuples(
        st.integers(0, 3),  # visitor
        st.integers(0, 6 * 60),  # minutes before NOW
        st.sampled_from(["pageview", "pageview", "Signup", "engagement"]),
        st.sampled_from(["/", "/a", "/b"]),
        st.booleans(),  # interactive
    ),
    min_size=1,
    max_size=40,
)


def reference(events):
    """Sessionise sorted events the obvious way; answers day counters, page breakdowns
    (metric -> page -> value, zeros left out) and visit starts."""
    by_visitor = defaultdict(list)
    for e in events:
        if e["name"] != "engagement":
            by_visitor[e["visitor_id"]].append(e)
    totals = {"pageviews": 0, "events": 0, "visits": 0, "bounces": 0, "duration": 0}
    pages: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    starts = {}
    for visitor_events in by_visitor.values():
        visitor_events.sort(key=lambda e: (e["ts"] // 1000, e["event_id"]))
        visits: list[list[dict]] = []
        for e in visitor_events:
            t = e["ts"] // 1000
            if visits and t - visits[-1][-1]["ts"] // 1000 <= VISIT_GAP_MS:
                visits[-1].append(e)
            else:
                visits.append([e])
        for visit in visits:
            start, end = visit[0]["ts"] // 1000, visit[-1]["ts"] // 1000
            interactive = sum(1 for e in visit if e["name"] == "pageview" or e["interactive"])
            totals["visits"] += 1
            totals["bounces"] += int(interactive <= 1)
            totals["duration"] += (end - start) // 1000
            totals["pageviews"] += sum(1 for e in visit if e["name"] == "pageview")
            totals["events"] += len(visit)
            entry, exit_page = visit[0]["pathname"], visit[-1]["pathname"]
            pages["entry_page:visits"][entry] += 1
            pages["entry_page:bounces"][entry] += int(interactive <= 1)
            pages["entry_page:duration"][entry] += (end - start) // 1000
            pages["exit_page:visits"][exit_page] += 1
            pages["channel:pageviews"]["Direct"] += sum(1 for e in visit if e["name"] == "pageview")
            pages["channel:duration"]["Direct"] += (end - start) // 1000
            for e in visit:
                starts[e["event_id"]] = visit_id(e["visitor_id"], start)
    breakdowns = {name: {m: v for m, v in values.items() if v} for name, values in pages.items()}
    return totals, breakdowns, starts


@pytest.mark.django_db
@pytest.mark.usefixtures("data_redis")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=event_specs, order=st.randoms(use_true_random=False), batch_size=st.integers(1, 7))
def test_rollups_and_stored_visits_match_a_reference_whatever_the_arrival_order(specs, order, batch_size):
    with time_machine.travel(NOW, tick=False):
        site = make_site(domain=f"{uuid.uuid4().hex[:12]}.example")
        events = [
            make_event(
                site,
                NOW - timedelta(minutes=minutes),
                name=name,
                visitor=visitor,
                pathname=page,
                interactive=interactive,
                engagement_ms=1000 if name == "engagement" else None,
            )
            for visitor, minutes, name, page, interactive in specs
        ]
        arrival = list(events)
        order.shuffle(arrival)
        for n in range(0, len(arrival), batch_size):
            ingest(uuid.uuid4().hex, arrival[n : n + batch_size])

        totals, breakdowns, starts = reference(events)
        assert rollups.counters(site.id, "d", ["20260310"])[0] == totals
        for name in ("entry_page:visits", "entry_page:bounces", "entry_page:duration", "exit_page:visits",
                     "channel:pageviews", "channel:duration"):  # fmt: skip
            dimension, metric = name.split(":")
            assert dict(rollups.top(site.id, dimension, "20260310", metric)) == breakdowns.get(name, {}), name
        stored = dict(
            Event.objects.filter(site_id=site.id).exclude(name="engagement").values_list("event_id", "visit_id")
        )
        assert {str(k): v for k, v in stored.items()} == starts
