"""The dashboard's data: batches of Stats API v2 queries answered by the query engine.

The dashboard page asks for everything it shows in one request: a list of
named v2 query bodies. Each is passed to ``analytics.query.run_query`` (the one
query engine); this module only adds what the dashboard needs on top:

- two relative ranges the v2 API does not name: ``"realtime"`` (the last 30
  minutes) and ``"now"`` (the last 5 minutes, "visitors now"), resolved here to
  date-time ranges in the site's timezone;
- ``{"id", "recent": N}``: the latest N raw events (the live stream's start);
- ``"props": true`` on an entry: its query broken down by each custom
  property key seen in the range (a bounded sample of the newest events);
- ``"compare": true`` on an entry: shorthand for the engine's
  ``include.comparisons`` with mode ``previous_period``.

An invalid entry answers its own ``{"error": ...}`` and leaves the others intact.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, TypedDict

from django.db import connection
from django.utils import timezone

from accounts.models import Site
from analytics.fields import FEED_FIELDS
from analytics.models import Event
from analytics.query import QueryError, run_query

logger = logging.getLogger(__name__)

MAX_QUERIES = 30
RELATIVE_MINUTES = {"realtime": 30, "now": 5}
MAX_RECENT = 50
NO_VALUE = "(none)"  # the engine's value for events without the property
PROP_SAMPLE = 5000
MAX_PROP_KEYS = 5
STREAM_FIELDS = ("timestamp", *FEED_FIELDS)


class DashboardError(ValueError):
    """The batch as a whole is malformed (each query's own errors are answered per entry)."""


class Entry(TypedDict, total=False):
    id: str
    result: dict[str, Any]
    error: str


def _with_range(body: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Resolve the dashboard's own relative ranges to a v2 date-time range."""
    date_range = body.get("date_range")
    if isinstance(date_range, str) and date_range in RELATIVE_MINUTES:
        start = now - dt.timedelta(minutes=RELATIVE_MINUTES[date_range])
        return {**body, "date_range": [start.isoformat(timespec="seconds"), now.isoformat(timespec="seconds")]}
    return body


def recent_events(site: Site, limit: int) -> list[dict[str, Any]]:
    """The site's latest raw events, newest first, shaped like the events of a live delta."""
    rows = (
        Event.objects.filter(site_id=site.pk)
        .exclude(name="engagement")
        .order_by("-timestamp")
        .values(*STREAM_FIELDS)[: max(1, min(limit, MAX_RECENT))]
    )
    return [
        {**{k: v for k, v in row.items() if k != "timestamp"}, "ts": int(row["timestamp"].timestamp() * 1000)}
        for row in rows
    ]


def prop_keys(site: Site, start: dt.datetime, end: dt.datetime) -> list[str]:
    """Custom property keys seen between ``start`` and ``end`` (a bounded sample of the newest events)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT key, count(*) FROM (
                SELECT props FROM analytics_event
                WHERE site_id = %s AND "timestamp" >= %s AND "timestamp" <= %s AND props <> '{}'::jsonb
                ORDER BY "timestamp" DESC LIMIT %s
            ) sample, jsonb_object_keys(sample.props) AS key
            GROUP BY key ORDER BY count(*) DESC, key LIMIT %s
            """,
            [site.pk, start, end, PROP_SAMPLE, MAX_PROP_KEYS],
        )
        return [row[0] for row in cursor.fetchall()]


def _props_entry(site: Site, entry: Entry, body: dict[str, Any], now: dt.datetime) -> None:
    body = _with_range(body, now)
    # The engine resolves the range (and validates the query); its echo bounds the key sample.
    echo = run_query(site, {**body, "metrics": ["events"], "dimensions": []})["query"]["date_range"]
    start, end = (dt.datetime.fromisoformat(value) for value in echo)
    breakdowns = {}
    for key in prop_keys(site, start, end):
        result = run_query(site, {**body, "dimensions": [f"event:props:{key}"]})
        # The panel lists the values of events that carry the property, not the rest.
        result["results"] = [r for r in result.get("results") or [] if r.get("dimensions") != [NO_VALUE]]
        breakdowns[key] = result
    entry["result"] = {"props": breakdowns}


def run_entry(site: Site, raw: Any, now: dt.datetime) -> Entry:
    if not isinstance(raw, dict):
        return {"error": "each entry of 'queries' must be an object"}
    entry: Entry = {"id": str(raw.get("id", ""))[:64]}
    if "recent" in raw:
        limit = raw["recent"]
        if not isinstance(limit, int) or isinstance(limit, bool):
            entry["error"] = "'recent' must be a number of events"
        else:
            entry["result"] = {"events": recent_events(site, limit)}
        return entry
    body = raw.get("query")
    if not isinstance(body, dict):
        entry["error"] = "'query' must be a Stats API v2 query object"
        return entry
    body = {key: value for key, value in body.items() if key != "site_id"}
    try:
        if raw.get("props"):
            _props_entry(site, entry, body, now)
            return entry
        if raw.get("compare"):
            include = body.get("include")
            include = {**include} if isinstance(include, dict) else {}
            body = {**body, "include": {**include, "comparisons": {"mode": "previous_period"}}}
        entry["result"] = run_query(site, _with_range(body, now))
    except QueryError as exc:
        entry["error"] = str(exc)
    return entry


def run_batch(site: Site, payload: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """Answer ``{"queries": [{"id", "query", "compare"?}, ...]}`` or a single v2 body."""
    now = now or timezone.now()
    if not isinstance(payload, dict):
        raise DashboardError("the body must be a JSON object")
    if "queries" not in payload:
        entry = run_entry(site, {"id": "", "query": payload}, now)
        if "error" in entry:
            raise QueryError(entry["error"])
        return entry["result"]
    queries = payload["queries"]
    if not isinstance(queries, list) or not queries:
        raise DashboardError("'queries' must be a non-empty list")
    if len(queries) > MAX_QUERIES:
        raise DashboardError(f"at most {MAX_QUERIES} queries per request")
    return {"results": [run_entry(site, raw, now) for raw in queries], "server_time": int(now.timestamp() * 1000)}


def overview(sites: list[Site], now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Per site: visitors now and visitors per hour over the last 24 hours (the sparkline)."""
    now = now or timezone.now()
    rows = []
    for site in sites:
        row: dict[str, Any] = {"domain": site.domain, "timezone": site.timezone}
        try:
            current = run_query(site, _with_range({"date_range": "now", "metrics": ["visitors"]}, now))
            series = run_query(
                site,
                {
                    "date_range": "24h",
                    "metrics": ["visitors", "pageviews"],
                    "dimensions": ["time:hour"],
                    "include": {"time_labels": True},
                },
            )
            totals = run_query(site, {"date_range": "24h", "metrics": ["visitors", "pageviews"]})
        except QueryError as exc:
            logger.warning("dashboard.overview_failed", extra={"site_id": site.pk, "error": str(exc)})
            row["error"] = str(exc)
            rows.append(row)
            continue
        row["visitors_now"] = _first_metric(current)
        row["totals"] = (totals.get("results") or [{}])[0].get("metrics") or [0, 0]
        # One point per hour of the last 24, zeros included, so every sparkline has the same shape.
        by_time = {(r.get("dimensions") or [""])[0]: (r.get("metrics") or [0])[0] for r in series.get("results") or []}
        labels = (series.get("meta") or {}).get("time_labels") or list(by_time)
        row["series"] = [{"time": label, "visitors": by_time.get(label, 0)} for label in labels]
        rows.append(row)
    return rows


def _first_metric(result: dict[str, Any]) -> Any:
    rows = result.get("results") or []
    return (rows[0].get("metrics") or [0])[0] if rows else 0
