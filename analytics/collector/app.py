"""The collector's routes and each web process's background work (site cache, publisher, salts,
bot counts)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time

import redis.asyncio as aioredis
from django.conf import settings

from analytics.collector import agents, enrich, sitecache
from analytics.collector.admission import BOT_DROPS, ensure_salts
from analytics.collector.endpoints import batch_endpoint, event_endpoint, pixel_endpoint
from analytics.collector.http import Reject
from analytics.collector.publish import PUBLISHER
from analytics.collector.snippet import script_endpoint
from spinnakr import redis_clients
from spinnakr.aio import cancel_all

logger = logging.getLogger(__name__)

# Background work of each web process ------------------------------------------

_tasks: list[asyncio.Task[None]] = []


async def flush_bot_drops(client: aioredis.Redis) -> None:
    if not BOT_DROPS:
        return
    drops = dict(BOT_DROPS)
    BOT_DROPS.clear()
    try:
        async with client.pipeline(transaction=False) as pipe:
            for site_id, count in drops.items():
                pipe.incrby(f"{{s:{site_id}}}:dropped:bots", count)
            await pipe.execute()
    except Exception:
        BOT_DROPS.update(drops)
        logger.warning("collector.bot_flush_failed", exc_info=True)


async def _bot_loop() -> None:
    client = redis_clients.data_async()
    try:
        while True:
            await asyncio.sleep(settings.COLLECTOR_FLUSH_SECONDS)
            await flush_bot_drops(client)
    finally:
        await flush_bot_drops(client)
        await client.aclose()


def warm_up() -> None:
    """Build what the first request would otherwise build on the event loop (ua-parser's matchers: ~0.4 s)."""
    agents.parse_user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0")
    enrich.country("192.0.2.1")
    enrich.acquisition("https://www.google.com/", enrich.parse_page("https://example.com/?utm_source=x"))


async def startup() -> None:
    warm_up()
    # Everything loaded so far lives for the process: keep the collector's
    # short-lived garbage from making the cyclic GC walk it.
    gc.freeze()
    await sitecache.start()
    await PUBLISHER.start()
    with contextlib.suppress(Reject):
        await ensure_salts(time.time())
    _tasks.append(asyncio.create_task(_bot_loop(), name="collector.bots"))


async def shutdown() -> None:
    await cancel_all(_tasks)
    await PUBLISHER.stop()
    await sitecache.stop()


HTTP_ROUTES = {
    "/api/event": event_endpoint,
    "/api/event/": event_endpoint,
    "/api/events": batch_endpoint,
    "/api/events/": batch_endpoint,
    "/js/script.js": script_endpoint,
}
HTTP_PREFIX_ROUTES = {"/api/pixel/": pixel_endpoint}
STARTUP = [startup]
SHUTDOWN = [shutdown]
