"""The raw event store: partitions on demand, idempotent batch inserts, renames, deletion."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from analytics.ingest import store
from analytics.models import Event
from analytics.tests.factories import make_event, make_site

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_partition_cache")]


def partitions():
    return [name for name, _ in store.existing_partitions()]


def test_it_creates_the_month_partition_an_event_needs():
    site = make_site()
    event = make_event(site, datetime(2031, 7, 31, 23, 59, 59, 999999, tzinfo=UTC))
    store.insert_events([(event, 7)])
    assert "analytics_event_p203107" in partitions()
    row = Event.objects.get(site_id=site.id)
    assert row.timestamp == datetime(2031, 7, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert row.visit_id == 7


def test_the_migration_created_the_months_around_now():
    today = datetime.now(UTC).date()
    assert f"analytics_event_p{today:%Y%m}" in partitions()


def test_inserting_the_same_batch_twice_stores_it_once():
    site = make_site()
    moment = datetime(2031, 8, 1, 10, tzinfo=UTC)
    events = [make_event(site, moment, pathname=f"/{n}") for n in range(5)]
    assert store.insert_events([(e, 1) for e in events]) == 5
    assert store.insert_events([(e, 1) for e in events]) == 0
    assert Event.objects.filter(site_id=site.id).count() == 5


def test_every_field_survives_the_copy():
    site = make_site()
    event = make_event(
        site,
        datetime(2031, 8, 2, 10, tzinfo=UTC),
        name="Purchase",
        props={"plan": "pro", "quote": 'it\'s "tab"\there'},
        revenue_amount="19.9900",
        revenue_currency="EUR",
        interactive=False,
        utm_source="news\\letter",
        referrer="https://example.org/a b",
    )
    store.insert_events([(event, -5)])
    row = Event.objects.get(site_id=site.id)
    assert row.props == {"plan": "pro", "quote": 'it\'s "tab"\there'}
    assert row.revenue_amount == Decimal("19.9900")
    assert (row.revenue_currency, row.interactive, row.utm_source, row.referrer) == (
        "EUR",
        False,
        "news\\letter",
        "https://example.org/a b",
    )
    assert row.visit_id == -5
    assert str(row.event_id) == event["event_id"]


def test_renaming_a_visit_touches_only_that_visitors_rows():
    site = make_site()
    moment = datetime(2031, 8, 3, 10, tzinfo=UTC)
    store.insert_events([(make_event(site, moment, visitor=1), 10), (make_event(site, moment, visitor=2), 10)])
    store.rename_visits(site.id, [(1, 10, 11)])
    assert sorted(Event.objects.filter(site_id=site.id).values_list("visitor_id", "visit_id")) == [(1, 11), (2, 10)]


def test_deleting_a_site_removes_its_events_in_every_partition_and_nothing_else():
    site, other = make_site("a.example"), make_site("b.example")
    rows = [(make_event(s, datetime(2031, m, 5, tzinfo=UTC)), 1) for s in (site, other) for m in (9, 10)]
    store.insert_events(rows)
    assert store.delete_site_events(site.id) == 2
    assert Event.objects.filter(site_id=other.id).count() == 2


def test_retention_drops_whole_partitions_past_the_cutoff():
    store.ensure_partitions([date(2020, 1, 1), date(2020, 2, 1)])
    dropped = store.drop_partitions_before(date(2020, 2, 15))
    assert dropped == ["analytics_event_p202001"]
    assert "analytics_event_p202002" in partitions()
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('analytics_event_p202001')")
        assert cursor.fetchone() == (None,)


def test_the_month_of_a_timestamp_turns_at_midnight_utc() -> None:
    last_moment = datetime(2026, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    last_us = (last_moment - store.EPOCH) // timedelta(microseconds=1)

    assert store.month_of(last_us) == date(2026, 1, 1)
    assert store.month_of(last_us + 1) == date(2026, 2, 1)
    assert store.month_of(0) == date(1970, 1, 1)
