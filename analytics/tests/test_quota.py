"""Monthly event quotas: counted once per batch, flagged past 110%, refreshed by beat."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from accounts.models import Account
from analytics.ingest import quota
from analytics.ingest.pipeline import ingest
from analytics.tests.factories import make_event, make_site

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


@time_machine.travel(NOW, tick=False)
def test_it_counts_pageviews_and_custom_events_once_per_batch_but_not_engagement():
    site = make_site()
    events = [
        make_event(site, NOW - timedelta(minutes=3)),
        make_event(site, NOW - timedelta(minutes=2), name="Signup"),
        make_event(site, NOW - timedelta(minutes=1), name="engagement", engagement_ms=10),
    ]
    ingest("c" * 32, events)
    ingest("c" * 32, events)
    ingest(uuid.uuid4().hex, [make_event(site, NOW)])
    assert quota.events_this_month(site.account_id) == 3


@time_machine.travel(NOW, tick=False)
def test_an_account_is_flagged_only_past_its_quota_plus_ten_percent_grace():
    site = make_site(monthly_event_quota=10)
    ingest(uuid.uuid4().hex, [make_event(site, NOW - timedelta(seconds=s)) for s in range(11)])
    assert not quota.over_quota(site.account)
    assert quota.over_quota_account_ids() == set()

    ingest(uuid.uuid4().hex, [make_event(site, NOW - timedelta(seconds=30))])

    assert quota.over_quota(site.account)
    assert quota.over_quota_account_ids() == {site.account_id}


def test_the_refresh_lifts_the_flag_in_a_new_month_and_after_a_raised_quota():
    with time_machine.travel(NOW, tick=False):
        site = make_site(monthly_event_quota=1)
        ingest(uuid.uuid4().hex, [make_event(site, NOW - timedelta(seconds=s)) for s in range(3)])
        assert quota.refresh_flags() == {site.account_id}
        Account.objects.filter(id=site.account_id).update(monthly_event_quota=100)
        assert quota.refresh_flags() == set()
        Account.objects.filter(id=site.account_id).update(monthly_event_quota=1)
        assert quota.refresh_flags() == {site.account_id}
    with time_machine.travel(datetime(2026, 4, 1, 0, 1, tzinfo=UTC), tick=False):
        assert quota.refresh_flags() == set()
        assert quota.events_this_month(site.account_id) == 0
