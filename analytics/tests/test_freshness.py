"""Each site's freshness and the worker's metrics, recorded as the pipeline applies a group
(in process, on the real servers)."""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from analytics.ingest import freshness
from analytics.ingest.pipeline import ingest, ingest_many
from analytics.tests.factories import make_event, make_site
from spinnakr import metrics, redis_clients
from spinnakr.tests.scrape import local, value

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]


def uuid7_at(ms: int) -> str:
    """A UUIDv7 batch id naming ``ms`` as its time, as the collector names its messages."""
    random = int.from_bytes(secrets.token_bytes(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((random >> 64) & 0xFFF) << 64 | (0b10 << 62) | (random & ((1 << 62) - 1))
    return uuid.UUID(int=value).hex


def events_of(site, count=3):
    now = datetime.now(UTC)
    return [make_event(site, now - timedelta(seconds=count - n), visitor=n) for n in range(count)]


def test_the_time_of_receipt_is_read_from_a_uuid7_batch_id() -> None:
    assert freshness.received_ms(uuid7_at(1_700_000_000_123), []) == 1_700_000_000_123


def test_a_batch_id_of_another_kind_falls_back_to_its_newest_event() -> None:
    site = make_site("fallback.example")
    events = events_of(site)

    assert freshness.received_ms("b" * 32, events) == max(e["ts"] for e in events) // 1000


def test_a_sites_freshness_is_when_its_events_were_applied_and_their_lag() -> None:
    site, other = make_site("fresh.example"), make_site("idle.example")
    received = int(time.time() * 1000) - 4000

    ingest(uuid7_at(received), events_of(site))

    found = freshness.of_sites([site.id, other.id])
    assert list(found) == [site.id]
    assert found[site.id].received_ms == received
    assert 4.0 <= found[site.id].lag_seconds < 60
    assert found[site.id].age_seconds() < 60


def test_a_redelivered_batch_changes_no_freshness() -> None:
    site = make_site("again.example")
    events = events_of(site)
    batch_id = uuid7_at(int(time.time() * 1000) - 1000)
    ingest(batch_id, events)
    redis_clients.data().hset(freshness.KEY, str(site.id), "1 1")

    ingest(batch_id, events)

    assert freshness.of_sites([site.id])[site.id] == freshness.Freshness(1, 1)


def test_a_group_records_its_time_its_lag_per_message_and_its_calls_per_server() -> None:
    site = make_site("timed.example")
    rollup_server = metrics.redis_server(redis_clients.for_site(site.id))
    before = local()
    old = int(time.time() * 1000) - 45_000

    ingest_many([(uuid7_at(old), events_of(site)), (uuid7_at(old + 1), events_of(site, 2))])

    after = local()

    def grown(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grown("spinnakr_ingest_group_seconds_count") == 1
    assert grown("spinnakr_ingest_events_total") == 5
    assert grown("spinnakr_ingest_lag_seconds_count") == 2
    assert grown("spinnakr_ingest_lag_seconds_bucket", le="30.0") == 0
    assert grown("spinnakr_ingest_lag_seconds_bucket", le="60.0") == 2
    assert grown("spinnakr_rollup_call_seconds_count", server=rollup_server) == 1
    assert grown("spinnakr_postgres_call_seconds_count", server=metrics.postgres_server()) == 1
