"""What is happening now: visitors of the last five minutes, their pages, the last 30 minutes.

These numbers seed the live dashboard before its WebSocket deltas arrive. Visitors now and
the per-minute counters come from the Redis rollups (the ``live`` sorted set, minute hashes
and minute HyperLogLogs); when the site's rollups are missing (no ``meta`` hash) they come
from PostgreSQL. Top pages now always come from PostgreSQL: the rollups keep pages per day only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import redis
from django.db import connection
from django.utils import timezone

from accounts.models import Site
from analytics.ingest import rollups
from spinnakr import breaker, redis_clients

NOW_WINDOW = dt.timedelta(minutes=5)
MINUTES = 30


def _rollups_present(site: Site) -> bool:
    place = redis_clients.rollup_placement()
    if breaker.is_open(place.server_of(site.pk)) or place.moving(site.pk):  # down a moment ago, or moving
        return False
    try:
        return bool(rollups.meta(site.pk).get("complete_since"))
    except breaker.UNREACHABLE as exc:
        breaker.trip(place.server_of(site.pk), exc)
        return False
    except redis.RedisError:
        return False


def visitors_now(site: Site, now: dt.datetime | None = None) -> int:
    now = now or timezone.now()
    if _rollups_present(site):
        return rollups.visitors_now(site.pk, now.timestamp())
    return _sql_visitors_now(site, now)


def _sql_visitors_now(site: Site, now: dt.datetime) -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(DISTINCT visitor_id) FROM analytics_event WHERE site_id = %s AND timestamp > %s AND timestamp <= %s",
            [site.pk, now - NOW_WINDOW, now],
        )
        row = cur.fetchone()
    return int(row[0]) if row else 0


def snapshot(site: Site, now: dt.datetime | None = None, top: int = 10) -> dict[str, Any]:
    now = now or timezone.now()
    start = (now - dt.timedelta(minutes=MINUTES - 1)).replace(second=0, microsecond=0)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pathname, count(DISTINCT visitor_id) AS visitors FROM analytics_event "
            "WHERE site_id = %s AND timestamp > %s AND timestamp <= %s AND name = 'pageview' "
            "GROUP BY pathname ORDER BY visitors DESC, pathname LIMIT %s",
            [site.pk, now - NOW_WINDOW, now, top],
        )
        pages = [{"page": page, "visitors": int(count)} for page, count in cur.fetchall()]
    if _rollups_present(site):
        return {"visitors_now": visitors_now(site, now), "top_pages": pages, "minutes": _redis_minutes(site, start)}
    with connection.cursor() as cur:
        cur.execute(
            "SELECT date_trunc('minute', timestamp) AS minute, count(*) FILTER (WHERE name = 'pageview'), "
            "count(*) FILTER (WHERE name <> 'engagement'), count(DISTINCT visitor_id) FROM analytics_event "
            "WHERE site_id = %s AND timestamp >= %s AND timestamp <= %s GROUP BY 1",
            [site.pk, start, now],
        )
        by_minute = {row[0]: row[1:] for row in cur.fetchall()}
    minutes = []
    for i in range(MINUTES):
        moment = start + dt.timedelta(minutes=i)
        pageviews, events, visitors = by_minute.get(moment, (0, 0, 0))
        minutes.append(
            {
                "minute": moment.isoformat().replace("+00:00", "Z"),
                "pageviews": int(pageviews),
                "events": int(events),
                "visitors": int(visitors),
            }
        )
    return {"visitors_now": visitors_now(site, now), "top_pages": pages, "minutes": minutes}


def _redis_minutes(site: Site, start: dt.datetime) -> list[dict[str, Any]]:
    tz = ZoneInfo(site.timezone)
    moments = [start + dt.timedelta(minutes=i) for i in range(MINUTES)]
    names = [rollups.bucket_name(m.astimezone(tz), "m") for m in moments]
    counters = rollups.counters(site.pk, "m", names)
    pipe = redis_clients.site_pipeline(site.pk)
    for name in names:
        pipe.pfcount(f"{rollups.prefix(site.pk)}uv:m:{name}")
    uniques = pipe.execute()
    return [
        {
            "minute": moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "pageviews": c["pageviews"],
            "events": c["events"],
            "visitors": int(u),
        }
        for moment, c, u in zip(moments, counters, uniques, strict=True)
    ]
