"""Beat tasks: partitions ahead of time, retention of raw events (analytics.ingest.retention, analytics.ingest.store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from analytics.ingest import store
from analytics.models import Event
from analytics.tasks import apply_retention, ensure_partitions
from analytics.tests.factories import make_event, make_site

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_partition_cache")]


@time_machine.travel(datetime(2033, 12, 20, tzinfo=UTC), tick=False)
def test_the_partition_task_creates_last_this_and_the_next_two_months():
    ensure_partitions()
    names = {name for name, _ in store.existing_partitions()}
    assert {
        "analytics_event_p203311",
        "analytics_event_p203312",
        "analytics_event_p203401",
        "analytics_event_p203402",
    } <= names


@time_machine.travel(datetime(2034, 6, 15, tzinfo=UTC), tick=False)
def test_retention_deletes_each_accounts_events_past_its_own_retention():
    short = make_site("short.example", retention_days=30)
    long = make_site("long.example", retention_days=365)
    now = datetime(2034, 6, 15, tzinfo=UTC)
    ages = (10, 40, 200, 400)
    store.insert_events([(make_event(s, now - timedelta(days=d)), 1) for s in (short, long) for d in ages])

    apply_retention()

    kept = {
        (site_id, (now - ts).days)
        for site_id, ts in Event.objects.filter(site_id__in=[short.id, long.id]).values_list("site_id", "timestamp")
    }
    assert kept == {(short.id, 10), (long.id, 10), (long.id, 40), (long.id, 200)}
