"""The planner: Redis rollups when they hold the exact answer, SQL otherwise.

Redis answers a query only when (1) its shape is one the rollups keep exactly
(``redis_path.supports``) and (2) the site's rollups are complete for the range:
``{s:<id>}:meta`` has a ``complete_since`` on or before the range's first day and
no rebuild is running. When the meta hash is missing (Redis lost or wiped) the
query goes to SQL and a rebuild is scheduled, at most once per ``REBUILD_DEBOUNCE``.
The answer is never zeros read from empty rollups. When the site's server does not answer
(``spinnakr.breaker`` remembers it for a few seconds), the query goes to SQL and its answer says
it is not live (``rollups_live``): the site's recent batches wait for the server.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import redis
from django.utils import timezone

from accounts.models import Site
from analytics import jobs
from analytics.ingest import rollups
from analytics.query import redis_path
from analytics.query.model import Query
from spinnakr import breaker, redis_clients

logger = logging.getLogger(__name__)

REBUILD_DEBOUNCE = 15 * 60

Row = tuple[list[Any], dict[str, Any]]


def rollups_ready(site_id: int, first_day: dt.date) -> bool:
    """Whether the rollups are complete from ``first_day`` on; schedules a rebuild when they are gone."""
    meta = rollups.meta(site_id)
    if meta.get("rebuilding") == "1":
        return False
    since = meta.get("complete_since")
    if not since:
        schedule_rebuild(site_id)
        return False
    try:
        return dt.date.fromisoformat(since) <= first_day
    except ValueError:
        return False


def schedule_rebuild(site_id: int) -> bool:
    """Queue the worker's ``analytics.rebuild_rollups`` for the site unless one was queued recently."""
    client = redis_clients.for_site(site_id)
    marker = f"{rollups.prefix(site_id)}rebuild_requested"
    if not client.set(marker, "1", nx=True, ex=REBUILD_DEBOUNCE):
        return False
    jobs.rebuild_rollups(site_id)
    logger.warning("planner.rebuild_scheduled", extra={"site_id": site_id})
    return True


# A probe of a site's rollups server must not hold a request for long (spinnakr.breaker).
PROBE_TIMEOUT = 0.5


def rollups_live(site_id: int) -> bool:
    """Whether the site's rollups server answers and the site is not being moved: otherwise its
    recent batches wait (``analytics.ingest.held``), so neither Redis nor the raw store holds them yet."""
    place = redis_clients.rollup_placement()
    url = place.server_of(site_id)
    if breaker.is_open(url) or place.moving(site_id):
        return False
    try:
        redis_clients.for_site(site_id, timeout=PROBE_TIMEOUT).ping()
    except breaker.UNREACHABLE as exc:
        breaker.trip(url, exc)
        return False
    return True


def try_redis(site: Site, query: Query) -> tuple[list[Row], int] | None:
    now = timezone.now()
    if not redis_path.supports(query, now):
        return None
    place = redis_clients.rollup_placement()
    url = place.server_of(site.pk)
    if breaker.is_open(url) or place.moving(site.pk):
        return None
    try:
        if not rollups_ready(site.pk, query.date_range.first_day):
            return None
        rows = redis_path.answer(query)
    except breaker.UNREACHABLE as exc:
        breaker.trip(url, exc)
        logger.warning("planner.redis_unavailable", extra={"site_id": site.pk, "error": repr(exc)[:300]})
        return None
    except redis.RedisError:
        logger.warning("planner.redis_unavailable", extra={"site_id": site.pk}, exc_info=True)
        return None
    if rows is None:
        return None
    return redis_path.order_and_page(query, rows)
