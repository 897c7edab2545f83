"""A rollup server behind Sentinel: a failover under a real worker's load loses nothing, and what a
new master missed is rebuilt from PostgreSQL by itself (``analytics.ingest.failover``)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from accounts.models import Site, User
from analytics.ingest import failover, rollups
from analytics.ingest.pipeline import ingest
from analytics.ingest.store import EPOCH
from analytics.models import RollupMark, RollupRebuild
from analytics.payloads import EnrichedEvent
from analytics.tests.conftest import WorkerProcess
from analytics.tests.factories import make_event, make_site
from analytics.tests.outage_servers import free_port
from analytics.tests.sentinel_servers import SentinelGroup, sentinel_group
from spinnakr import rendezvous
from spinnakr.celery import app
from spinnakr.settings import redis_db_url
from spinnakr.tests.waiting import wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("data_redis", "clean_events"),
    pytest.mark.slow,
]
# An hour ago, on the hour: every event of a test falls on one day of the sites' calendar (UTC).
MOMENT = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """The rollups on one server behind Sentinel, for this process and its workers."""
    for running in sentinel_group(tmp_path):
        with override_settings(ROLLUP_REDIS_URLS=(redis_db_url(running.url, 0),), REDIS_SENTINELS=running.addresses()):
            yield running


@pytest.fixture
def worker(group: SentinelGroup, celery_worker_factory: Callable[..., WorkerProcess]) -> WorkerProcess:
    return celery_worker_factory(env={"REDIS_URLS": group.url, "REDIS_SENTINELS": group.sentinels})


def batch(sites: list[Site], per_site: int, offset: int = 0) -> list[EnrichedEvent]:
    """``per_site`` pageviews of each site, by as many visitors (numbered from ``offset``)."""
    return [
        make_event(site, MOMENT + timedelta(seconds=(offset + n) % 3000), visitor=offset + n, pathname=f"/p{n % 5}")
        for site in sites
        for n in range(per_site)
    ]


def send(events: list[EnrichedEvent]) -> None:
    app.send_task(
        "analytics.ingest_batch",
        kwargs={"batch_id": uuid.uuid4().hex, "events": events},
        queue=settings.EVENTS_QUEUE,
    )


def stored(site: Site) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM analytics_event WHERE site_id = %s", [site.id])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def counted(site: Site) -> int:
    return rollups.counters(site.id, "d", [MOMENT.strftime("%Y%m%d")])[0]["pageviews"]


def visitors_counted(site: Site) -> int:
    return rollups.visitors(site.id, "d", [MOMENT.strftime("%Y%m%d")])


def test_a_server_without_sentinel_gets_no_token_and_no_record(data_redis: redis.Redis) -> None:
    site = make_site("plain.example")

    ingest(uuid.uuid4().hex, batch([site], 3))

    assert (RollupMark.objects.count(), data_redis.exists(failover.APPLIED_KEY)) == (0, 0)
    assert failover.check_masters() == []


def test_health_names_a_master_behind_sentinel_that_no_sentinel_can_find(client: Client) -> None:
    nowhere = (("127.0.0.1", free_port()),)

    with override_settings(ROLLUP_REDIS_URLS=("redis+sentinel://lost-master/8",), REDIS_SENTINELS=nowhere):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert (
        "rollups on sentinel:lost-master/8: No master found for 'lost-master'"
        in response.json()["components"]["redis"]["error"]
    )


def test_a_failover_under_a_worker_s_load_loses_nothing_and_counts_nothing_twice(
    group: SentinelGroup, worker: WorkerProcess
) -> None:
    sites = [make_site(f"load{n}.example") for n in range(3)]
    sent = {site.id: 0 for site in sites}
    stop = threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set():
            send(batch(sites, 10, offset=n * 10))
            for site in sites:
                sent[site.id] += 10
            n += 1
            time.sleep(0.05)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        wait_for(lambda: all(stored(site) >= 100 for site in sites), timeout=60)
        old_master = group.master_port()
        group.kill(old_master)
        new_master = group.wait_for_failover(away_from=old_master)
        promoted_with = stored(sites[0])
        wait_for(lambda: stored(sites[0]) >= promoted_with + 100, timeout=60)  # the worker goes on
    finally:
        stop.set()
        loader.join()
    wait_for(lambda: [stored(site) for site in sites] == [sent[site.id] for site in sites], timeout=120)
    failover.check_masters()  # as the beat does
    wait_for(lambda: not RollupRebuild.objects.filter(finished__isnull=True).exists(), timeout=120)

    assert new_master != old_master
    assert [counted(site) for site in sites] == [sent[site.id] for site in sites]
    assert [visitors_counted(site) for site in sites] == pytest.approx([sent[site.id] for site in sites], rel=0.02)


def test_a_batch_whose_rollups_reached_the_new_master_before_the_switch_counts_once_when_redelivered(
    group: SentinelGroup, celery_worker_factory: Callable[..., WorkerProcess]
) -> None:
    site = make_site("redelivered.example")
    env = {"REDIS_URLS": group.url, "REDIS_SENTINELS": group.sentinels, "BROKER_LEASE_SECONDS": "3"}
    paused = celery_worker_factory(env={**env, "SPINNAKR_TEST_INGEST_PAUSE": "after_rollups:60"})
    send(batch([site], 12))
    wait_for(lambda: counted(site) == 12, timeout=60)
    group.replicated()
    paused.kill()
    group.kill(group.ports[0])
    group.wait_for_failover(away_from=group.ports[0])

    celery_worker_factory(env=env)
    wait_for(lambda: stored(site) == 12, timeout=60)

    assert failover.check_masters() == []
    assert counted(site) == 12
    assert visitors_counted(site) == 12


def test_what_the_new_master_missed_is_rebuilt_from_postgresql_by_itself_and_shown_in_the_admin(
    group: SentinelGroup, worker: WorkerProcess, client: Client
) -> None:
    hit, spared = make_site("hit.example"), make_site("spared.example")
    send(batch([hit, spared], 20))
    wait_for(lambda: (stored(hit), stored(spared)) == (20, 20), timeout=60)
    failover.check_masters()  # the beat has seen the first master
    group.replicated()

    # The replica takes no more of its master's stream: the next batch reaches the master alone.
    replica = group.client(group.ports[1])
    replica.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
    lost = batch([hit], 15, offset=100)
    send(lost)
    wait_for(lambda: stored(hit) == 35, timeout=60)
    group.kill(group.ports[0])
    wait_for(lambda: replica.info("replication")["master_link_status"] == "down", timeout=30)
    replica.execute_command("CLIENT", "UNPAUSE")
    group.wait_for_failover(away_from=group.ports[0])
    send(batch([hit, spared], 5, offset=200))
    wait_for(lambda: (stored(hit), stored(spared)) == (40, 25), timeout=60)
    missed_before_rebuild = counted(hit)

    rebuilds = failover.check_masters()
    flagged = rollups.meta(hit.id).get("rebuilding")  # the rebuild's grace alone lasts 2 s
    wait_for(lambda: RollupRebuild.objects.filter(finished__isnull=False).count() == 1, timeout=120)
    done = RollupRebuild.objects.get()
    staff = User.objects.create_superuser("staff@failover.test", None)
    client.force_login(staff)
    listing = client.get("/admin/analytics/rolluprebuild/").content.decode()

    assert missed_before_rebuild == 25
    assert [r.site_id for r in rebuilds] == [hit.id]
    assert flagged == "1"
    assert (done.missed_events, done.replayed_events, done.error) == (15, 40, "")
    assert (done.window_start, done.window_end) == (
        min(event_time(e) for e in lost),
        max(event_time(e) for e in lost),
    )
    assert done.started is not None and done.finished is not None and done.started <= done.finished
    assert (counted(hit), counted(spared)) == (40, 25)
    assert rollups.meta(hit.id).get("rebuilding") is None
    assert "hit.example" in listing


def event_time(event: EnrichedEvent) -> datetime:
    return EPOCH + timedelta(microseconds=event["ts"])


def test_a_rebuild_whose_task_never_started_is_queued_again(group: SentinelGroup, worker: WorkerProcess) -> None:
    site = make_site("forgotten.example")
    send(batch([site], 6))
    wait_for(lambda: stored(site) == 6, timeout=60)
    forgotten = RollupRebuild.objects.create(
        site=site,
        server=rendezvous.identity(group.url),
        reason="a failover whose rebuild task was lost",
        window_start=MOMENT,
        window_end=MOMENT,
        created=timezone.now() - failover.REQUEUE_AFTER - timedelta(minutes=1),
    )

    failover.check_masters()

    wait_for(lambda: RollupRebuild.objects.get(pk=forgotten.pk).finished is not None, timeout=60)
    assert RollupRebuild.objects.get(pk=forgotten.pk).replayed_events == 6
