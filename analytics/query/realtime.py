"""What is happening now: visitors of the last five minutes, their pages, the last 30 minutes.

These numbers seed the live dashboard before its WebSocket deltas arrive.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection
from django.utils import timezone

from accounts.models import Site

NOW_WINDOW = dt.timedelta(minutes=5)
MINUTES = 30


def visitors_now(site: Site, now: dt.datetime | None = None) -> int:
    now = now or timezone.now()
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
