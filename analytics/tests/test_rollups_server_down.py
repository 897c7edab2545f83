"""One rollups server down: the other servers' sites go on, the down server's wait and are counted once."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.test import Client

from accounts.apikeys import create_api_key
from accounts.models import Membership, Role, Site, User
from analytics.ingest import quota, rollups
from analytics.ingest.pipeline import ingest
from analytics.live.push import group_name
from analytics.payloads import EVENTS_SERIALIZER, INGEST_TASK
from analytics.query import run_query
from analytics.tests.conftest import WorkerProcess, purge_broker
from analytics.tests.factories import make_site
from analytics.tests.outage_servers import ThrowawayValkey
from analytics.tests.test_shards import PAGES, TOTALS, servers, sites_on_every_server, visits
from spinnakr import breaker, redis_clients
from spinnakr.celery import app
from spinnakr.tests.waiting import wait_for

__all__ = ["servers"]
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis", "fresh_breaker")]
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
DAY = "20260310"


@pytest.fixture
def fresh_breaker() -> Iterator[None]:
    """No failure remembered from another test, before or after."""
    breaker.reset()
    purge_broker()
    yield
    breaker.reset()
    purge_broker()


def waiting_messages() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The events queue's messages, taken off it: (headers, kwargs) each."""
    taken = []
    with app.connection_for_read() as conn:
        queue = app.amqp.queues[settings.EVENTS_QUEUE].bind(conn.default_channel)
        while (message := queue.get(no_ack=True, accept=settings.CELERY_ACCEPT_CONTENT)) is not None:
            taken.append((message.headers, message.decode()[1]))
    return taken


def server_of(servers: list[ThrowawayValkey], site: Site) -> ThrowawayValkey:
    url = redis_clients.rollup_url(site.id)
    return next(server for server in servers if f":{server.port}/" in url)


def stored(site: Site) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM analytics_event WHERE site_id = %s", [site.id])
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def by_id(event: Any) -> str:
    return str(event["event_id"])


def pageviews(site: Site) -> int:
    return rollups.counters(site.id, "d", [DAY])[0]["pageviews"]


def split(servers: list[ThrowawayValkey], sites: list[Site]) -> tuple[ThrowawayValkey, list[Site], list[Site]]:
    """The server of the first site, its sites and the others'."""
    down = server_of(servers, sites[0])
    return (
        down,
        [s for s in sites if server_of(servers, s) is down],
        [s for s in sites if server_of(servers, s) is not down],
    )


@time_machine.travel(NOW, tick=False)
def test_a_batch_counts_and_stores_the_sites_of_the_servers_that_answer_and_holds_the_rest(
    servers: list[ThrowawayValkey],
) -> None:
    sites = sites_on_every_server()
    events = {site.id: visits(site, n) for n, site in enumerate(sites)}
    down, waiting, going = split(servers, sites)
    down.stop()
    batch_id = uuid.uuid4().hex

    ingest(batch_id, [event for batch in events.values() for event in batch])

    assert [(pageviews(s), stored(s)) for s in going] == [(len(events[s.id]),) * 2 for s in going]
    assert [stored(s) for s in waiting] == [0] * len(waiting)
    [(headers, kwargs)] = waiting_messages()
    assert headers["eta"] is not None
    assert kwargs["batch_id"] == batch_id
    assert sorted(kwargs["events"], key=by_id) == sorted([e for s in waiting for e in events[s.id]], key=by_id)


@time_machine.travel(NOW, tick=False)
def test_the_held_part_is_counted_once_when_the_server_is_back_and_equals_the_raw_store(
    servers: list[ThrowawayValkey],
) -> None:
    first = make_site("first.example")
    sites = [first]
    while len({redis_clients.rollup_url(s.id) for s in sites}) < 2:  # one account's sites on two servers
        sites.append(Site.objects.create(account=first.account, domain=f"more{len(sites)}.example"))
    sites = [sites[0], sites[-1]]
    events = [event for n, site in enumerate(sites) for event in visits(site, n)]
    server_of(servers, first).stop()
    batch_id = uuid.uuid4().hex
    ingest(batch_id, events)
    [(_, kwargs)] = waiting_messages()
    server_of(servers, first).start()
    breaker.reset()  # as after breaker.OPEN_SECONDS

    ingest(kwargs["batch_id"], kwargs["events"])
    ingest(batch_id, events)  # the whole message delivered again changes nothing

    assert [pageviews(s) for s in sites] == [stored(s) for s in sites]
    assert sum(stored(s) for s in sites) == len(events)
    assert quota.events_this_month(first.account_id) == len(events)
    assert waiting_messages() == []


async def listen(sites: list[Site]) -> tuple[Any, str]:
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    for site in sites:
        await layer.group_add(group_name(site.id), channel)
    return layer, channel


async def deltas(layer: Any, channel: str, count: int) -> set[int]:
    return {(await asyncio.wait_for(layer.receive(channel), 5))["site_id"] for _ in range(count)}


@time_machine.travel(NOW, tick=False)
def test_the_other_sites_get_their_live_deltas_at_once_and_the_down_server_s_sites_once_it_is_back(
    servers: list[ThrowawayValkey],
) -> None:
    sites = sites_on_every_server()
    down, waiting, going = split(servers, sites)
    layer, channel = asyncio.run(listen(sites))
    down.stop()
    ingest(uuid.uuid4().hex, [event for n, site in enumerate(sites) for event in visits(site, n)])
    during = asyncio.run(deltas(layer, channel, len(going)))
    [(_, kwargs)] = waiting_messages()
    down.start()
    breaker.reset()

    ingest(kwargs["batch_id"], kwargs["events"])

    assert during == {site.id for site in going}
    assert asyncio.run(deltas(layer, channel, len(waiting))) == {site.id for site in waiting}


@time_machine.travel(NOW, tick=False)
def test_an_event_set_aside_for_a_down_server_s_site_waits_with_its_batch_and_is_recorded_once(
    servers: list[ThrowawayValkey],
) -> None:
    sites = sites_on_every_server(count=3)
    down, waiting, _ = split(servers, sites)
    bad = {**visits(waiting[0], 0)[0], "pathname": "/\x00"}
    events = [*(event for n, site in enumerate(sites) for event in visits(site, n)), bad]
    down.stop()
    batch_id = uuid.uuid4().hex
    ingest(batch_id, events)
    [(_, kwargs)] = waiting_messages()
    down.start()
    breaker.reset()

    ingest(kwargs["batch_id"], kwargs["events"])
    ingest(batch_id, events)

    assert [pageviews(s) for s in sites] == [stored(s) for s in sites]
    assert sum(stored(s) for s in sites) == len(events) - 1
    assert redis_clients.for_site(waiting[0].id).hgetall(f"{rollups.prefix(waiting[0].id)}rejected") == {
        "unstorable:pathname": "1"
    }


@time_machine.travel(NOW, tick=False)
def test_a_down_server_s_sites_are_answered_from_sql_marked_not_live_trying_the_server_once(
    servers: list[ThrowawayValkey], caplog: pytest.LogCaptureFixture
) -> None:
    sites = sites_on_every_server()
    ingest(uuid.uuid4().hex, [event for n, site in enumerate(sites) for event in visits(site, n)])
    down, waiting, going = split(servers, sites)
    before = [(run_query(s, TOTALS)["results"], run_query(s, PAGES)["results"]) for s in sites]
    down.stop()
    caplog.clear()

    with caplog.at_level(logging.INFO):
        answers = [(run_query(s, TOTALS), run_query(s, PAGES)) for s in sites]

    assert [(a["results"], b["results"]) for a, b in answers] == before
    assert [(a["meta"].get("live"), b["meta"].get("live")) for a, b in answers] == [
        (False, False) if site in waiting else (None, None) for site in sites
    ]
    assert len([r for r in caplog.records if r.getMessage() == "breaker.opened"]) == 1
    sources = [r.source for r in caplog.records if r.getMessage() == "query.answered"]  # type: ignore[attr-defined]
    assert sources.count("redis") == 2 * len(going)


@time_machine.travel(NOW, tick=False)
def test_the_api_says_a_down_server_s_site_is_not_live(servers: list[ThrowawayValkey], client: Client) -> None:
    sites = sites_on_every_server(count=3)
    down, waiting, _ = split(servers, sites)
    _, key = create_api_key(waiting[0].account, "stats", ["stats:read"])
    auth = {"Authorization": f"Bearer {key}"}
    down.stop()

    v2 = client.post(
        "/api/v2/query", {**TOTALS, "site_id": waiting[0].domain}, content_type="application/json", headers=auth
    )
    v1 = client.get("/api/v1/stats/aggregate", {"site_id": waiting[0].domain, "period": "day"}, headers=auth)

    assert (v2.status_code, v2.json()["meta"]["live"]) == (200, False)
    assert (v1.status_code, v1.json()["live"]) == (200, False)


def test_the_dashboard_of_a_down_server_s_site_says_it_is_not_live(
    servers: list[ThrowawayValkey], client: Client
) -> None:
    sites = sites_on_every_server(count=3)
    down, waiting, going = split(servers, sites)
    user = User.objects.create_user("owner@down.test", "a long password 1234", email_verified=True)
    for site in (waiting[0], going[0]):
        Membership.objects.create(account=site.account, user=user, role=Role.OWNER)
    client.force_login(user)
    down.stop()

    assert (
        '<p class="notice" id="not-live" role="status">Not live'
        in client.get(f"/sites/{waiting[0].domain}/").content.decode()
    )
    assert 'id="not-live" role="status" hidden>' in client.get(f"/sites/{going[0].domain}/").content.decode()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_events")
def test_a_worker_goes_on_for_the_other_servers_while_one_is_down_and_catches_up_once_it_is_back(
    servers: list[ThrowawayValkey], celery_worker_factory: Callable[..., WorkerProcess]
) -> None:
    sites = sites_on_every_server()
    down, waiting, going = split(servers, sites)
    worker = celery_worker_factory(env={"REDIS_URLS": ",".join(server.tcp_url for server in servers)})
    yesterday = datetime.now(UTC).replace(hour=23, minute=0, second=0, microsecond=0) - timedelta(days=1)
    day = yesterday.strftime("%Y%m%d")
    sent: dict[int, int] = dict.fromkeys([site.id for site in sites], 0)

    def send(batches: int) -> None:
        for _ in range(batches):
            events = [event for n, site in enumerate(sites) for event in visits(site, n % 4, yesterday)]
            app.send_task(
                INGEST_TASK,
                kwargs={"batch_id": uuid.uuid4().hex, "events": events},
                serializer=EVENTS_SERIALIZER,
                queue=settings.EVENTS_QUEUE,
            )
            for event in events:
                sent[event["site_id"]] += 1
            time.sleep(0.05)

    def counted(of: list[Site]) -> list[tuple[int, int]]:
        return [(rollups.counters(s.id, "d", [day])[0]["pageviews"], stored(s)) for s in of]

    send(10)
    down.stop()
    send(20)
    wait_for(lambda: counted(going) == [(sent[s.id],) * 2 for s in going], timeout=60)
    assert [stored(s) < sent[s.id] for s in waiting] == [True] * len(waiting)
    assert [
        run_query(s, TOTALS | {"date_range": [yesterday.date().isoformat()] * 2})["meta"].get("live") for s in waiting
    ] == [False] * len(waiting)

    down.start()

    wait_for(lambda: counted(sites) == [(sent[s.id],) * 2 for s in sites], timeout=60)
    assert b"ingest.parts_held" in worker.log.read_bytes()
    month = yesterday.strftime("%Y%m")
    assert [int(redis_clients.data().get(quota.quota_key(s.account_id, month)) or 0) for s in sites] == [
        sent[s.id] for s in sites
    ]
