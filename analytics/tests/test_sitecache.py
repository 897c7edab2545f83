"""The collector's per-process site cache: lookups off the loop, negative caching, invalidation over Redis."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from accounts.models import Site
from analytics.collector import sitecache
from analytics.collector.sitecache import SiteCache
from analytics.tests.collector_fixtures import make_site
from spinnakr.tests.waiting import wait_for_async

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]


def _site_and_close(**account_fields: object) -> Site:
    try:
        return make_site(**account_fields)
    finally:
        connection.close()  # this runs in asgiref's thread: leave no session behind


async def a_site(**account_fields: object) -> Site:
    return await sync_to_async(_site_and_close)(**account_fields)


def subscribers(client: redis.Redis, channel: str) -> int:
    return int(client.pubsub_numsub(channel)[0][1])


async def test_a_flood_of_one_unknown_domain_costs_one_database_lookup() -> None:
    cache = SiteCache()

    first = await asyncio.gather(*(cache.get("domain", "nowhere.example") for _ in range(200)))
    second = await asyncio.gather(*(cache.get("domain", "nowhere.example") for _ in range(200)))

    assert set(first) | set(second) == {None}
    assert cache.lookups == 1


async def test_concurrent_misses_of_a_known_site_share_one_lookup() -> None:
    site = await a_site(plan="business")
    cache = SiteCache()

    found = await asyncio.gather(*(cache.get("site_key", site.site_key) for _ in range(50)))

    assert {info.site_id for info in found if info is not None} == {site.id}
    assert found[0] is not None
    assert (found[0].domain, found[0].plan, found[0].account_id) == (site.domain, "business", site.account_id)
    assert cache.lookups == 1
    assert cache.peek("domain", site.domain) == found[0]


async def test_saving_a_site_publishes_an_invalidation_after_commit() -> None:
    client = redis.Redis.from_url(settings.REDIS_DATA_URL)
    pubsub = client.pubsub()
    pubsub.subscribe(sitecache.invalidation_channel())
    pubsub.get_message(timeout=2)  # the subscription confirmation

    site = await a_site()
    messages = [pubsub.get_message(timeout=2) for _ in range(2)]
    pubsub.close()

    bodies = [json.loads(message["data"]) for message in messages if message is not None]
    assert {"kind": "site", "id": site.id, "names": [site.domain, site.site_key]} in bodies
    assert {"kind": "account", "id": site.account_id, "names": []} in bodies


async def test_the_subscriber_drops_entries_named_in_an_invalidation() -> None:
    site = await a_site()
    client = redis.Redis.from_url(settings.REDIS_DATA_URL)
    channel = sitecache.invalidation_channel()
    others = subscribers(client, channel)  # a collector server of another test may listen too
    await sitecache.start()
    try:
        await sitecache.CACHE.get("domain", site.domain)
        assert sitecache.CACHE.peek("domain", site.domain) is not False
        await wait_for_async(lambda: subscribers(client, channel) > others, timeout=5, message="the subscription")

        client.publish(channel, json.dumps({"kind": "account", "id": site.account_id}))
        await wait_for_async(lambda: sitecache.CACHE.peek("domain", site.domain) is False, timeout=3)
    finally:
        await sitecache.stop()

    assert sitecache.CACHE.peek("domain", site.domain) is False
    assert sitecache.CACHE.peek("site_key", site.site_key) is False
