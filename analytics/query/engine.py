"""``run_query``: parse, plan, execute and shape one Stats API v2 query."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import replace
from typing import Any

from django.db import connection
from django.utils import timezone

from accounts.models import Site
from analytics.fields import metric_names
from analytics.models import Goal
from analytics.query import planner, sql
from analytics.query.dates import DateRange, previous_period, year_over_year
from analytics.query.format import REVENUE_METRICS, metric_value
from analytics.query.model import Query, parse_query
from analytics.query.timeline import time_labels

logger = logging.getLogger(__name__)

Row = tuple[list[Any], dict[str, Any]]
# Rates: a change is their difference in percentage points, not a ratio.
POINTS_METRICS = metric_names(points=True)


def site_goals(site: Site) -> list[sql.GoalDef]:
    return [
        sql.GoalDef(
            name=g.display_name,
            event_name=g.event_name,
            page_regex=g.page_regex() if g.page_path else "",
            currency=g.currency,
        )
        for g in Goal.objects.filter(site=site).order_by("id")
    ]


def first_event_day(site: Site) -> dt.date | None:
    with connection.cursor() as cur:
        cur.execute("SELECT min(timestamp) FROM analytics_event WHERE site_id = %s", [site.pk])
        row = cur.fetchone()
    first = row[0] if row else None
    created = site.created
    candidates = [d for d in (first, created) if d is not None]
    if not candidates:
        return None
    from zoneinfo import ZoneInfo

    return min(candidates).astimezone(ZoneInfo(site.timezone)).date()


def run_query(
    site: Site, body: dict[str, Any], *, today: dt.date | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Answer a Stats API v2 body for ``site``; raises ``QueryError`` for an invalid query.

    ``today`` anchors relative date ranges (v1's ``date`` parameter); ``now`` defaults to the clock.
    """
    started = time.perf_counter()
    goals = site_goals(site)
    now = now or timezone.now()
    needs_first = body.get("date_range") == "all" if isinstance(body, dict) else False
    query = parse_query(
        site,
        body,
        goals={g.name for g in goals},
        now=now,
        first_event_day=first_event_day(site) if needs_first else None,
        today=today,
    )
    rows, total, source = execute(site, query, goals)
    meta: dict[str, Any] = {}
    labels: list[str] | None = None
    if query.time_dimension is not None:
        labels = time_labels(query.date_range, query.granularity or "day")
        if query.time_labels:
            meta["time_labels"] = labels
    if query.total_rows:
        meta["total_rows"] = total
    warnings = _revenue_warnings(query, rows)
    if warnings:
        meta["metric_warnings"] = warnings
    if source != "redis" and not planner.rollups_live(site.pk):
        # The site's rollups server is down: its latest events wait, so SQL lacks them too.
        meta["live"] = False

    results = [_result(query, dims, values) for dims, values in rows]
    if query.comparison:
        comp_range = (
            previous_period(query.date_range)
            if query.comparison == "previous_period"
            else year_over_year(query.date_range)
        )
        _attach_comparison(site, query, goals, results, comp_range, labels)
        meta["comparison_date_range"] = _range_echo(comp_range)
    logger.info(
        "query.answered",
        extra={
            "site_id": site.pk,
            "source": source,
            "rows": len(results),
            "ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return {"results": results, "meta": meta, "query": _query_echo(query)}


def execute(site: Site, query: Query, goals: list[sql.GoalDef]) -> tuple[list[Row], int, str]:
    answer = planner.try_redis(site, query)
    if answer is not None:
        return answer[0], answer[1], "redis"
    result = sql.execute(query, goals)
    return result.rows, result.total_rows, "sql"


def _result(query: Query, dims: list[Any], values: dict[str, Any]) -> dict[str, Any]:
    currencies = values.get("__currencies")
    return {
        "metrics": [metric_value(m, values.get(m), currencies) for m in query.metrics],
        "dimensions": dims,
    }


def _revenue_warnings(query: Query, rows: list[Row]) -> dict[str, Any]:
    warnings: dict[str, Any] = {}
    for metric in REVENUE_METRICS:
        if metric not in query.metrics:
            continue
        if any(
            values.get(metric) is not None and len({c for c in values.get("__currencies") or [] if c}) > 1
            for _, values in rows
        ):
            warnings[metric] = {
                "code": "no_single_currency",
                "warning": "Revenue goals in more than one currency fall into one row; break down by event:goal.",
            }
    return warnings


def _change(metric: str, now: Any, before: Any) -> Any:
    if isinstance(now, dict) or isinstance(before, dict) or now is None or before is None:
        if isinstance(now, dict) and isinstance(before, dict) and before.get("value"):
            return round((now["value"] - before["value"]) / before["value"] * 100)
        return None
    if metric in POINTS_METRICS:
        return round(float(now) - float(before), 1)
    if before == 0:
        return 100 if now > 0 else 0
    return round((float(now) - float(before)) / float(before) * 100)


def _attach_comparison(
    site: Site,
    query: Query,
    goals: list[sql.GoalDef],
    results: list[dict[str, Any]],
    comp_range: DateRange,
    labels: list[str] | None,
) -> None:
    comp_query = replace(query, date_range=comp_range, limit=10_000, offset=0, comparison=None)
    comp_rows, _, _ = execute(site, comp_query, goals)
    time_index = query.dimensions.index(query.time_dimension) if query.time_dimension else None
    by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    comp_labels = time_labels(comp_range, query.granularity or "day") if time_index is not None else []
    for dims, values in comp_rows:
        key = list(dims)
        if time_index is not None:
            # Buckets pair by position: the n-th day of this range with the n-th of the other.
            key[time_index] = comp_labels.index(dims[time_index]) if dims[time_index] in comp_labels else -1
        by_key[tuple(key)] = _result(query, dims, values)
    for row in results:
        key = list(row["dimensions"])
        if time_index is not None and labels is not None:
            key[time_index] = labels.index(key[time_index]) if key[time_index] in labels else -2
        other = by_key.get(tuple(key))
        if other is None:
            dims = list(row["dimensions"])
            if time_index is not None and isinstance(key[time_index], int) and 0 <= key[time_index] < len(comp_labels):
                dims[time_index] = comp_labels[key[time_index]]
            other = {"dimensions": dims, "metrics": [metric_value(m, None) for m in query.metrics]}
        row["comparison"] = {
            "dimensions": other["dimensions"],
            "metrics": other["metrics"],
            "change": [
                _change(m, a, b) for m, a, b in zip(query.metrics, row["metrics"], other["metrics"], strict=True)
            ],
        }


def _range_echo(rng: DateRange) -> list[str]:
    last = rng.end - dt.timedelta(seconds=1)
    return [rng.start.astimezone(rng.tz).isoformat(), last.astimezone(rng.tz).replace(microsecond=0).isoformat()]


def _query_echo(query: Query) -> dict[str, Any]:
    raw = query.raw
    order = [list(o) for o in query.order_by]
    if not order:
        order = [[query.time_dimension, "asc"]] if query.time_dimension else [[query.metrics[0], "desc"]]
    include = dict(raw.get("include") or {})
    return {
        "site_id": query.domain,
        "metrics": list(query.metrics),
        "date_range": _range_echo(query.date_range),
        "filters": raw.get("filters") or [],
        "dimensions": list(query.dimensions),
        "order_by": order,
        "include": include,
        "pagination": {"limit": query.limit, "offset": query.offset},
    }
