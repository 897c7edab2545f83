"""``REDIS_URLS=redis-cluster://…``: the rollups on a real three-master Redis Cluster."""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings
from redis.cluster import RedisCluster

from accounts.models import Site
from analytics.ingest import rollups
from analytics.ingest.cleanup import purge_site
from analytics.ingest.pipeline import ingest
from analytics.live.push import group_name
from analytics.tests.cluster_servers import ThrowawayCluster, assert_throwaway
from analytics.tests.conftest import WorkerProcess
from analytics.tests.factories import make_event, make_site
from analytics.tests.test_shards import DAY, NOW, answers, visits
from spinnakr import redis_clients, run
from spinnakr.celery import app
from spinnakr.tests.waiting import wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]


@pytest.fixture
def cluster(redis_cluster: ThrowawayCluster) -> Iterator[ThrowawayCluster]:
    """The session's cluster holding the rollups (``ROLLUP_REDIS_URLS``), empty before and after."""
    with override_settings(ROLLUP_REDIS_URLS=(redis_cluster.url,)):
        client = redis_clients.for_site(1)
        assert isinstance(client, RedisCluster)
        assert_throwaway(client)
        client.flushdb()
        yield redis_cluster
        client.flushdb()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[ThrowawayCluster]:
    """A cluster of the test's own, which it may break."""
    started = ThrowawayCluster(tmp_path / "cluster")
    try:
        started.start()
        with override_settings(ROLLUP_REDIS_URLS=(started.url,)):
            yield started
    finally:
        started.stop()


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[ThrowawayCluster]:
    """A cluster of the test's own whose masters each have a replica."""
    started = ThrowawayCluster(tmp_path / "cluster", replicas=True)
    try:
        started.start()
        with override_settings(ROLLUP_REDIS_URLS=(started.url,)):
            yield started
    finally:
        started.stop()


def sites_on_every_master(cluster: ThrowawayCluster, count: int = 9) -> list[Site]:
    """At least ``count`` new sites, and as many more as it takes for each master to own one."""
    sites: list[Site] = []
    while len(sites) < count or {cluster.master_of(rollups.prefix(s.id)) for s in sites} != {0, 1, 2}:
        sites.append(make_site(f"site{len(sites)}.example"))
        assert len(sites) < 100, "the slots leave a master empty"
    return sites


def owners(cluster: ThrowawayCluster, sites: list[Site]) -> dict[int, set[int]]:
    """Per site, the masters holding a key of it (asked node by node)."""
    return {site.id: cluster.holders(f"{rollups.prefix(site.id)}*") for site in sites}


@time_machine.travel(NOW, tick=False)
def test_each_site_s_keys_live_on_the_master_of_its_slot_and_the_sites_spread_over_all(
    cluster: ThrowawayCluster, data_redis: Any
) -> None:
    sites = sites_on_every_master(cluster)

    ingest(uuid.uuid4().hex, [event for n, site in enumerate(sites) for event in visits(site, n)])

    assert owners(cluster, sites) == {site.id: {cluster.master_of(rollups.prefix(site.id))} for site in sites}
    assert set().union(*owners(cluster, sites).values()) == {0, 1, 2}
    assert [rollups.counters(site.id, "d", ["20260310"])[0]["pageviews"] for site in sites] == [
        len(visits(site, n)) for n, site in enumerate(sites)
    ]
    assert list(data_redis.scan_iter(match="{s:*")) == []


@time_machine.travel(NOW, tick=False)
def test_the_cluster_keeps_one_epoch_for_all_its_masters(cluster: ThrowawayCluster) -> None:
    sites = sites_on_every_master(cluster, count=3)
    ingest(uuid.uuid4().hex, [event for n, site in enumerate(sites) for event in visits(site, n)])

    assert cluster.holders(rollups.EPOCH_KEY) == {cluster.master_of(rollups.EPOCH_KEY)}
    assert redis_clients.for_site(sites[0].id).get(rollups.EPOCH_KEY) == "0"
    assert [rollups.meta(site.id).get("complete_since") for site in sites] == [DAY] * len(sites)


@time_machine.travel(NOW, tick=False)
def test_a_batch_delivered_again_changes_nothing_on_the_cluster(cluster: ThrowawayCluster) -> None:
    sites = sites_on_every_master(cluster, count=3)
    batch = (uuid.uuid4().hex, [event for n, site in enumerate(sites) for event in visits(site, n)])
    first = ingest(*batch)
    counted = [rollups.counters(site.id, "d", ["20260310"]) for site in sites]

    again = ingest(*batch)

    assert all(again[site.id].duplicate for site in sites)
    assert [again[site.id].starts for site in sites] == [first[site.id].starts for site in sites]
    assert [rollups.counters(site.id, "d", ["20260310"]) for site in sites] == counted


@time_machine.travel(NOW, tick=False)
def test_masters_that_lost_their_scripts_are_given_them_again(cluster: ThrowawayCluster) -> None:
    sites = sites_on_every_master(cluster, count=3)
    ingest(uuid.uuid4().hex, [event for n, site in enumerate(sites) for event in visits(site, n)])
    for n in range(3):
        cluster.node(n).script_flush()  # as a master restarted or promoted would have them

    ingest(uuid.uuid4().hex, [event for n, site in enumerate(sites) for event in visits(site, n)])

    assert [rollups.counters(site.id, "d", ["20260310"])[0]["pageviews"] for site in sites] == [
        2 * len(visits(site, n)) for n, site in enumerate(sites)
    ]


@time_machine.travel(NOW, tick=False)
def test_a_site_whose_slot_moved_to_another_master_is_counted_there(own_cluster: ThrowawayCluster) -> None:
    site = make_site()
    redis_clients.for_site(site.id)  # the client has read the slot map
    slot = int(own_cluster.node(0).execute_command("CLUSTER KEYSLOT", rollups.prefix(site.id)))
    target = (own_cluster.master_of(rollups.prefix(site.id)) + 1) % 3
    target_id = own_cluster.node(target).execute_command("CLUSTER MYID")
    for n in range(3):  # the slot holds no key yet: it can simply change hands
        own_cluster.node(n).execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)

    ingest(uuid.uuid4().hex, visits(site, 4))

    assert own_cluster.holders(f"{rollups.prefix(site.id)}*") == {target}
    assert rollups.counters(site.id, "d", ["20260310"])[0]["pageviews"] == len(visits(site, 4))


@time_machine.travel(NOW, tick=False)
def test_queries_answer_from_the_cluster_what_they_answer_from_one_server(
    cluster: ThrowawayCluster, caplog: pytest.LogCaptureFixture
) -> None:
    spread = sites_on_every_master(cluster, count=6)
    ingest(uuid.uuid4().hex, [event for n, site in enumerate(spread) for event in visits(site, n)])
    with override_settings(ROLLUP_REDIS_URLS=()):
        alone = [make_site(f"alone{n}.example") for n in range(len(spread))]
        ingest(uuid.uuid4().hex, [event for n, site in enumerate(alone) for event in visits(site, n)])
        expected = answers(alone)

    with caplog.at_level(logging.INFO, logger="analytics.query.engine"):
        actual = answers(spread)

    assert actual == expected
    assert len({str(answer) for answer in actual}) == len(spread)
    assert {r.source for r in caplog.records if r.getMessage() == "query.answered"} == {"redis"}  # type: ignore[attr-defined]


async def _listen(sites: list[Site]) -> tuple[Any, str]:
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    for site in sites:
        await layer.group_add(group_name(site.id), channel)
    return layer, channel


async def _drain(layer: Any, channel: str, count: int) -> list[Any]:
    return [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(count)]


@time_machine.travel(NOW, tick=False)
def test_each_site_s_live_delta_arrives_from_the_cluster(cluster: ThrowawayCluster) -> None:
    sites = sites_on_every_master(cluster, count=3)
    layer, channel = asyncio.run(_listen(sites))

    ingest(uuid.uuid4().hex, [make_event(site, NOW - timedelta(minutes=1), visitor=n) for n, site in enumerate(sites)])

    deltas = {delta["site_id"]: delta for delta in asyncio.run(_drain(layer, channel, len(sites)))}
    assert {site_id: delta["counts"]["pageviews"] for site_id, delta in deltas.items()} == {s.id: 1 for s in sites}
    assert {site_id: delta["visitors_now"] for site_id, delta in deltas.items()} == {s.id: 1 for s in sites}


@time_machine.travel(NOW, tick=False)
def test_rebuilding_every_site_recomputes_it_on_the_cluster(cluster: ThrowawayCluster) -> None:
    sites = sites_on_every_master(cluster, count=6)
    ingest(uuid.uuid4().hex, [event for n, site in enumerate(sites) for event in visits(site, n)])
    live = [rollups.counters(site.id, "d", ["20260310"]) for site in sites]
    redis_clients.for_site(sites[0].id).flushdb()  # the cluster lost; PostgreSQL still has the events

    call_command("rebuild_rollups", "--all", stdout=io.StringIO())

    assert [rollups.counters(site.id, "d", ["20260310"]) for site in sites] == live
    assert owners(cluster, sites) == {site.id: {cluster.master_of(rollups.prefix(site.id))} for site in sites}


@time_machine.travel(NOW, tick=False)
def test_deleting_a_site_removes_its_keys_from_the_cluster_and_spares_the_others(cluster: ThrowawayCluster) -> None:
    sites = sites_on_every_master(cluster)
    ingest(uuid.uuid4().hex, [event for n, site in enumerate(sites) for event in visits(site, n)])
    gone, kept = sites[0], sites[1:]

    events, keys = purge_site(gone.id)

    assert events == len(visits(gone, 0))
    assert keys > 10
    assert cluster.holders(f"{rollups.prefix(gone.id)}*") == set()
    assert owners(cluster, kept) == {site.id: {cluster.master_of(rollups.prefix(site.id))} for site in kept}


def test_health_and_make_run_name_a_cluster_whose_master_stopped(own_cluster: ThrowawayCluster, client: Client) -> None:
    assert client.get("/healthz").status_code == 200
    assert run.unanswered_rollup_servers() == []
    own_cluster.stop_master(2)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["down"] == ["redis"]
    assert f"rollups on 127.0.0.1:{own_cluster.ports[0]}/0" in response.json()["components"]["redis"]["error"]
    assert run.unanswered_rollup_servers()[0].startswith(f"127.0.0.1:{own_cluster.ports[0]}/0 (")


def test_make_run_names_a_cluster_whose_seed_does_not_answer(own_cluster: ThrowawayCluster) -> None:
    own_cluster.stop()

    with override_settings(ROLLUP_REDIS_URLS=(own_cluster.url,)):
        unanswered = run.unanswered_rollup_servers()

    assert len(unanswered) == 1
    assert unanswered[0].startswith(f"127.0.0.1:{own_cluster.ports[0]}/0 (")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_events")
def test_a_worker_given_a_cluster_counts_every_site_on_the_master_of_its_slot(
    cluster: ThrowawayCluster, celery_worker_factory: Callable[..., WorkerProcess]
) -> None:
    sites = sites_on_every_master(cluster, count=12)
    yesterday = datetime.now(UTC).replace(hour=23, minute=0, second=0, microsecond=0) - timedelta(days=1)
    batches = [visits(site, n, yesterday) for n, site in enumerate(sites)]
    celery_worker_factory(env={"REDIS_URLS": cluster.url})

    for n in range(0, len(batches), 3):
        app.send_task(
            "analytics.ingest_batch",
            kwargs={"batch_id": uuid.uuid4().hex, "events": [e for batch in batches[n : n + 3] for e in batch]},
            queue=settings.EVENTS_QUEUE,
        )

    day = yesterday.strftime("%Y%m%d")
    wait_for(
        lambda: [rollups.counters(s.id, "d", [day])[0]["pageviews"] for s in sites] == list(map(len, batches)),
        timeout=60,
    )
    assert owners(cluster, sites) == {site.id: {cluster.master_of(rollups.prefix(site.id))} for site in sites}
    assert set().union(*owners(cluster, sites).values()) == {0, 1, 2}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_events")
def test_once_a_replica_took_over_a_lost_master_the_worker_and_the_readers_go_on_there(
    replicated_cluster: ThrowawayCluster, celery_worker_factory: Callable[..., WorkerProcess]
) -> None:
    sites = sites_on_every_master(replicated_cluster, count=3)
    yesterday = datetime.now(UTC).replace(hour=23, minute=0, second=0, microsecond=0) - timedelta(days=1)
    day = yesterday.strftime("%Y%m%d")
    counted = lambda: [rollups.counters(s.id, "d", [day])[0]["pageviews"] for s in sites]  # noqa: E731
    batches = [visits(site, n, yesterday) for n, site in enumerate(sites)]
    celery_worker_factory(env={"REDIS_URLS": replicated_cluster.url})
    send = lambda: app.send_task(  # noqa: E731
        "analytics.ingest_batch",
        kwargs={"batch_id": uuid.uuid4().hex, "events": [event for batch in batches for event in batch]},
        queue=settings.EVENTS_QUEUE,
    )
    send()
    wait_for(lambda: counted() == list(map(len, batches)), timeout=60)
    lost = replicated_cluster.master_of(rollups.prefix(sites[0].id))
    assert replicated_cluster.node(lost).execute_command("WAIT", 1, 5000) == 1  # the replica has every write
    replicated_cluster.stop_master(lost)
    replica = replicated_cluster.node(replicated_cluster.masters + lost)
    wait_for(lambda: replica.info("replication")["role"] == "master", timeout=30)
    wait_for(lambda: replicated_cluster.serves_every_slot(replicated_cluster.masters + lost), timeout=30)

    send()

    wait_for(lambda: counted() == [2 * len(batch) for batch in batches], timeout=60)
    assert replicated_cluster.master_of(rollups.prefix(sites[0].id)) == replicated_cluster.masters + lost
