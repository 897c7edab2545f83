"""The Redis path: the query shapes the rollups of ``analytics.ingest.rollups`` hold exactly.

``answer(site, query)`` returns the same rows as the SQL path would, or ``None``
when the rollups cannot answer this shape (the planner then uses SQL). Shapes:

- no filter and no dimension: visitors, visits, pageviews, events, bounce_rate,
  visit_duration, views_per_visit over whole local days;
- the same metrics by one time dimension (minute within 48 hours, hour within 90
  days, day, week, month);
- one breakdown dimension with the metrics its sorted sets keep (``BREAKDOWNS``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from analytics.fields import METRICS, dimensions_of, metric_names
from analytics.ingest import compact, rollups
from analytics.query.dates import local_midnight
from analytics.query.model import VISIT_METRICS, Query
from analytics.query.timeline import time_labels
from spinnakr import redis_clients

Row = tuple[list[Any], dict[str, Any]]

COUNTER_METRICS = metric_names(counter=True)
# Rollup dimensions kept per event: their members are those of ``events``, not of ``visits``.
_EVENT_LEVEL = frozenset(d.rollup for d in dimensions_of("event", "name", "visitor"))

# dimension → (rollup dimension name, metrics it answers exactly): a metric names the roles of
# the dimensions whose sorted sets hold it (analytics.fields).
BREAKDOWNS: dict[str, tuple[str, frozenset[str]]] = {
    d.name: (d.rollup, frozenset(m.name for m in METRICS if d.role in m.breakdowns))
    for d in dimensions_of("event", "name", "entry", "exit", "acquisition", "visitor")
}

MAX_MEMBERS = 5000


def _whole_days(query: Query) -> bool:
    rng = query.date_range
    return rng.start == local_midnight(rng.first_day, rng.tz) and rng.end == local_midnight(
        rng.last_day + dt.timedelta(days=1), rng.tz
    )


def _aligned(query: Query, unit: str) -> bool:
    """Whether the range starts and ends on bucket boundaries (a bucket is never cut)."""
    for moment in (query.date_range.start, query.date_range.end):
        local = moment.astimezone(query.tz)
        if local.second or local.microsecond or (unit == "hour" and local.minute):
            return False
    return True


def _days(query: Query) -> list[str]:
    rng = query.date_range
    return rollups.days_between(rng.first_day, rng.last_day)


def _round(numerator: float | int, denominator: int, places: int = 0) -> Decimal:
    if not denominator:
        return Decimal(0)
    exponent = Decimal(1).scaleb(-places)
    return (Decimal(numerator) / Decimal(denominator)).quantize(exponent, rounding=ROUND_HALF_UP)


def _visit_metrics(metric: str, c: dict[str, int], visitors: int | None, total_visitors: int | None) -> Any:
    if metric == "visitors":
        return visitors
    if metric in ("visits", "pageviews", "events"):
        return c.get(metric, 0)
    if metric == "bounce_rate":
        return _round(100 * c.get("bounces", 0), c.get("visits", 0))
    if metric == "visit_duration":
        return _round(c.get("duration", 0), c.get("visits", 0))
    if metric == "views_per_visit":
        return _round(c.get("pageviews", 0), c.get("visits", 0), 2)
    if metric == "percentage":
        return _round(100 * (visitors or 0), total_visitors or 0, 2)
    raise KeyError(metric)


def supports(query: Query, now: dt.datetime) -> bool:
    """Whether the rollups hold this query's exact answer (before looking at their completeness)."""
    if query.filters:
        return False
    if not _whole_days(query) and query.granularity not in ("minute", "hour"):
        return False
    dims = query.dimensions
    metrics = set(query.metrics)
    if not dims:
        return metrics <= COUNTER_METRICS and _whole_days(query)
    if len(dims) != 1:
        return False
    dim = dims[0]
    if dim.startswith("time"):
        # Pageviews count in their own bucket, visits in their first event's: their ratio per
        # bucket is not the SQL path's pageviews-of-the-visits ratio.
        if not metrics <= COUNTER_METRICS - {"views_per_visit"}:
            return False
        gran = query.granularity
        if gran == "minute":
            return _aligned(query, "minute") and query.date_range.start >= now - dt.timedelta(hours=47)
        if gran == "hour":
            return _aligned(query, "hour") and query.date_range.start >= now - dt.timedelta(days=89)
        return _whole_days(query)
    spec = BREAKDOWNS.get(dim)
    return bool(spec and metrics <= spec[1] and _whole_days(query))


def answer(query: Query) -> list[Row] | None:
    site_id = query.site_id
    dims = query.dimensions
    if not dims:
        days = _days(query)
        totals = _sum(rollups.counters(site_id, "d", days))
        visitors = rollups.visitors(site_id, "d", days)
        values = {m: _visit_metrics(m, totals, visitors, None) for m in query.metrics}
        return [([], values)]
    if dims[0].startswith("time"):
        return _timeseries(query)
    return _breakdown(query)


def _sum(rows: Sequence[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for row in rows:
        for key, value in row.items():
            total[key] += value
    return dict(total)


def _timeseries(query: Query) -> list[Row]:
    gran = query.granularity or "day"
    labels = time_labels(query.date_range, gran)
    site_id = query.site_id
    if gran in ("minute", "hour"):
        letter = "m" if gran == "minute" else "h"
        names = [
            label.replace("-", "").replace(" ", "").replace(":", "")[: 12 if letter == "m" else 10] for label in labels
        ]
        counters = rollups.counters(site_id, letter, names)  # type: ignore[arg-type]
        pipe = redis_clients.site_pipeline(site_id)
        for name in names:
            pipe.pfcount(f"{rollups.prefix(site_id)}uv:{letter}:{name}")
        uniques = [int(v) for v in pipe.execute()]
        groups = [(label, c, u) for label, c, u in zip(labels, counters, uniques, strict=True)]
    else:
        days = _days(query)
        day_counters = rollups.counters(site_id, "d", days)
        buckets: dict[str, list[int]] = defaultdict(list)
        for i, day in enumerate(days):
            moment = dt.date(int(day[:4]), int(day[4:6]), int(day[6:]))
            if gran == "week":
                moment -= dt.timedelta(days=moment.weekday())
            elif gran == "month":
                moment = moment.replace(day=1)
            buckets[moment.isoformat()].append(i)
        pipe = redis_clients.site_pipeline(site_id)
        for label in labels:
            keys = [f"{rollups.prefix(site_id)}uv:d:{days[i]}" for i in buckets.get(label, [])]
            pipe.pfcount(*keys) if keys else pipe.echo("0")
        uniques = [int(v) for v in pipe.execute()]
        groups = [
            (label, _sum([day_counters[i] for i in buckets.get(label, [])]), u)
            for label, u in zip(labels, uniques, strict=True)
        ]
    rows: list[Row] = []
    for label, c, visitors in groups:
        if not c.get("events") and not c.get("visits"):
            continue
        rows.append(([label], {m: _visit_metrics(m, c, visitors, None) for m in query.metrics}))
    return rows


def _union(site_id: int, dim: str, days: Sequence[str], metric: str) -> dict[str, int]:
    """``metric`` of each member over the days: the sorted sets plus the compacted days' strings
    (``analytics.ingest.compact``); a member whose sum is 0 is absent, as in a sorted set."""
    keys = [f"{rollups.prefix(site_id)}top:{dim}:d:{day}:{metric}" for day in days]
    if not keys:
        return {}
    pairs: list[tuple[str, float]] = redis_clients.for_site(site_id).zunion(keys, withscores=True)  # type: ignore[assignment]
    totals = compact.compacted_values(site_id, dim, days, metric)
    for member, score in pairs:
        totals[str(member)] = totals.get(str(member), 0) + int(score)
    return {member: value for member, value in totals.items() if value}


def _breakdown(query: Query) -> list[Row] | None:
    site_id = query.site_id
    dim = query.dimensions[0]
    name, _ = BREAKDOWNS[dim]
    days = _days(query)
    metrics = set(query.metrics)
    event_level = name in _EVENT_LEVEL
    needed: set[str] = set()
    if metrics & {"pageviews", "views_per_visit"}:
        needed.add("pageviews")
    if "events" in metrics or event_level:
        needed.add("events")
    if metrics & VISIT_METRICS or "visits" in metrics or not event_level:
        needed.add("visits")
    if "bounce_rate" in metrics:
        needed.add("bounces")
    if "visit_duration" in metrics:
        needed.add("duration")
    sets = {metric: _union(site_id, name, days, metric) for metric in sorted(needed)}
    members = set(sets.get("events", {})) if event_level else set(sets.get("visits", {}))
    if len(members) > MAX_MEMBERS:
        return None
    visitors: dict[str, int] = {}
    total = 0
    if metrics & {"visitors", "percentage"}:
        pipe = redis_clients.site_pipeline(site_id)
        ordered = sorted(members)
        for member in ordered:
            pipe.pfcount(*[f"{rollups.prefix(site_id)}uvm:{name}:d:{day}:{member}" for day in days])
        visitors = {m: int(v) for m, v in zip(ordered, pipe.execute(), strict=True)}
        total = rollups.visitors(site_id, "d", days)
    rows: list[Row] = []
    for member in members:
        counts = {metric: values.get(member, 0) for metric, values in sets.items()}
        label = member
        if name == "source" and member == "":
            label = "Direct / None"
        values = {m: _visit_metrics(m, counts, visitors.get(member), total) for m in query.metrics}
        rows.append(([label], values))
    return rows


def order_and_page(query: Query, rows: list[Row]) -> tuple[list[Row], int]:
    """Sort like the SQL path (dimensions in byte order on ties) and cut the page."""
    order = list(query.order_by)
    if not order:
        order = [(query.time_dimension, "asc")] if query.time_dimension else [(query.metrics[0], "desc")]
    used = {name for name, _ in order}
    order += [(d, "asc") for d in query.dimensions if d not in used]

    def value(row: Row, name: str) -> Any:
        if name in query.dimensions:
            return row[0][query.dimensions.index(name)]
        return row[1].get(name) or 0

    for name, direction in reversed(order):
        rows.sort(key=lambda r, n=name: value(r, n), reverse=direction == "desc")  # type: ignore[misc]
    total = len(rows)
    return rows[query.offset : query.offset + query.limit], total
