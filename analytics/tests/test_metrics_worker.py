"""The worker's metrics and a site's freshness, recorded by a real Celery worker and read back
through ``/metrics``'s reader in this process."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from analytics.ingest import freshness
from analytics.models import Event
from analytics.tests.factories import make_site
from analytics.tests.test_freshness import events_of, uuid7_at
from spinnakr import metrics, redis_clients
from spinnakr.celery import app
from spinnakr.tests.scrape import local, value
from spinnakr.tests.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_events"), pytest.mark.slow]


def test_a_worker_records_its_group_time_lag_and_calls_per_server_and_the_sites_freshness(celery_worker_factory):
    site = make_site("worker-metrics.example")
    before = local()
    celery_worker_factory()
    received = int(time.time() * 1000) - 45_000

    app.send_task(
        "analytics.ingest_batch",
        kwargs={"batch_id": uuid7_at(received), "events": events_of(site, 4)},
        queue=settings.EVENTS_QUEUE,
    )

    wait_for(lambda: Event.objects.filter(site_id=site.id).count() == 4, timeout=30)
    wait_for(lambda: site.id in freshness.of_sites([site.id]), timeout=10)
    after = local()

    def grown(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grown("spinnakr_ingest_group_seconds_count") == 1
    assert grown("spinnakr_ingest_events_total") == 4
    assert grown("spinnakr_ingest_lag_seconds_bucket", le="30.0") == 0
    assert grown("spinnakr_ingest_lag_seconds_bucket", le="60.0") == 1
    assert (
        grown("spinnakr_rollup_call_seconds_count", server=metrics.redis_server(redis_clients.for_site(site.id))) == 1
    )
    assert grown("spinnakr_postgres_call_seconds_count", server=metrics.postgres_server()) == 1
    assert freshness.of_sites([site.id])[site.id].received_ms == received
