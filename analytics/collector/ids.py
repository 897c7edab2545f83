"""Client ids of ``POST /api/events``: an event sent again within a day is not published twice."""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis

from analytics.collector.http import unavailable
from analytics.payloads import (
    EnrichedEvent,
)
from spinnakr import redis_clients

logger = logging.getLogger(__name__)

# Client ids: an event sent again within CLIENT_ID_TTL is accepted and not published twice.
# One pipelined SET NX per batch request (never on /api/event); a claim is released when
# the publish fails, so a retry is never mistaken for a duplicate.
CLIENT_ID_TTL = 25 * 3600
_id_client: aioredis.Redis | None = None


def _ids_redis() -> aioredis.Redis:
    global _id_client
    if _id_client is None:
        _id_client = redis_clients.data_async(timeout=5)
    return _id_client


async def claim_client_ids(
    claims: list[tuple[str, int, int]], events: list[EnrichedEvent], results: list[dict[str, Any]]
) -> list[str]:
    """Claim each client id; drop from ``events`` those already claimed (marking their results)."""
    if not claims:
        return []
    try:
        async with _ids_redis().pipeline(transaction=False) as pipe:
            for key, _, _ in claims:
                pipe.set(key, "1", nx=True, ex=CLIENT_ID_TTL)
            answers = await pipe.execute()
    except Exception:
        logger.warning("collector.client_ids_unavailable", exc_info=True)
        raise unavailable() from None
    duplicates = {position for (_, position, _), fresh in zip(claims, answers, strict=True) if not fresh}
    for (_, _, index), fresh in zip(claims, answers, strict=True):
        if not fresh:
            results[index]["duplicate"] = True
    events[:] = [event for position, event in enumerate(events) if position not in duplicates]
    return [key for (key, _, _), fresh in zip(claims, answers, strict=True) if fresh]


async def release_client_ids(keys: list[str]) -> None:
    if not keys:
        return
    try:
        await _ids_redis().delete(*keys)
    except Exception:
        logger.exception("collector.client_ids_not_released", extra={"keys": len(keys)})
