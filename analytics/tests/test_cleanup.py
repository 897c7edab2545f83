"""Deleting a site or an account removes its raw events, Redis keys and counters."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from accounts.signals import account_deleted, site_deleted
from analytics.ingest import freshness, quota, rollups
from analytics.ingest.cleanup import purge_account, purge_site
from analytics.ingest.pipeline import ingest
from analytics.models import Event
from analytics.tests.factories import make_event, make_site
from spinnakr import redis_clients
from spinnakr.tests.waiting import wait_for

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def site_keys(site_id):
    return list(redis_clients.data().scan_iter(match=f"{rollups.prefix(site_id)}*"))


@pytest.mark.django_db
@pytest.mark.usefixtures("data_redis")
@time_machine.travel(NOW, tick=False)
def test_purging_a_site_removes_its_events_and_keys_and_spares_the_others():
    site, other = make_site("gone.example"), make_site("kept.example")
    ingest(uuid.uuid4().hex, [make_event(s, NOW - timedelta(minutes=5)) for s in (site, other)])
    assert site_keys(site.id)

    events, keys = purge_site(site.id)

    assert events == 1
    assert keys > 10
    assert site_keys(site.id) == []
    assert not Event.objects.filter(site_id=site.id).exists()
    assert Event.objects.filter(site_id=other.id).count() == 1
    assert site_keys(other.id)
    assert list(freshness.of_sites([site.id, other.id])) == [other.id]


@pytest.mark.django_db
@pytest.mark.usefixtures("data_redis")
@time_machine.travel(NOW, tick=False)
def test_purging_an_account_removes_its_quota_counters_and_flag():
    site = make_site("acct.example", monthly_event_quota=1)
    ingest(uuid.uuid4().hex, [make_event(site, NOW - timedelta(minutes=m)) for m in range(3)])
    assert quota.over_quota_account_ids() == {site.account_id}

    purge_account(site.account_id, [site.id])

    assert quota.events_this_month(site.account_id) == 0
    assert quota.over_quota_account_ids() == set()
    assert site_keys(site.id) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_events")
@pytest.mark.slow
def test_the_deletion_signals_queue_the_clean_up_for_the_worker(celery_worker_factory):
    site = make_site("signal.example")
    other = make_site("signal-account.example")
    ingest(uuid.uuid4().hex, [make_event(s, datetime.now(UTC) - timedelta(minutes=1)) for s in (site, other)])
    celery_worker_factory()

    site_deleted.send(sender=None, site_id=site.id, account_id=site.account_id)
    account_deleted.send(sender=None, account_id=other.account_id, site_ids=[other.id])

    wait_for(lambda: not site_keys(site.id) and not site_keys(other.id), timeout=30)
    wait_for(lambda: not Event.objects.filter(site_id__in=[site.id, other.id]).exists(), timeout=10)
    assert quota.events_this_month(other.account_id) == 0
