"""The query model: one shape for every reader, parsed from a Stats API v2 body.

``parse_query`` validates a body against the site and returns a ``Query``; any
problem raises ``QueryError`` with a message that names the offending field.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from analytics import fields
from analytics.fields import METRIC_NAMES, metric_names
from analytics.query.dates import DateRange, resolve
from analytics.query.errors import QueryError

METRICS = METRIC_NAMES
# Metrics of whole visits: they cannot be split by a property of single events.
VISIT_METRICS = metric_names(whole_visit=True)
ENGAGEMENT_METRICS = metric_names(needs="page")
# Goal metrics: conversion rates and revenue.
GOAL_METRICS = metric_names(needs="goal")

# Event dimensions and the raw-event column behind each; visit dimensions and the
# analytics_visit column behind each (values of the visit's first event; entry and exit page:
# its first and last pageview). Both from the field registry.
EVENT_COLUMNS = fields.EVENT_COLUMNS
VISIT_COLUMNS = fields.VISIT_COLUMNS
TIME_DIMENSIONS = ("time", "time:minute", "time:hour", "time:day", "time:week", "time:month")
PROPS_PREFIX = fields.PROPS_PREFIX
OPERATORS = ("is", "is_not", "contains", "contains_not", "matches", "matches_not")
MAX_LIMIT = 10_000
MAX_CLAUSES = 100
MAX_FILTER_DEPTH = 10
# Conditions in one query, however nested: each becomes SQL the database plans and runs per event.
MAX_CONDITIONS = 200

Granularity = Literal["minute", "hour", "day", "week", "month"]


@dataclass(frozen=True)
class Condition:
    operator: str
    dimension: str
    clauses: tuple[str, ...]
    case_sensitive: bool = True


@dataclass(frozen=True)
class Logical:
    operator: Literal["and", "or", "not"]
    children: tuple[Filter, ...]


Filter = Condition | Logical


@dataclass(frozen=True)
class Query:
    site_id: int
    domain: str
    tz: ZoneInfo
    metrics: tuple[str, ...]
    date_range: DateRange
    dimensions: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()
    order_by: tuple[tuple[str, str], ...] = ()
    limit: int = MAX_LIMIT
    offset: int = 0
    time_labels: bool = False
    total_rows: bool = False
    comparison: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def time_dimension(self) -> str | None:
        return next((d for d in self.dimensions if d.startswith("time")), None)

    @property
    def granularity(self) -> Granularity | None:
        dim = self.time_dimension
        if dim is None:
            return None
        if dim == "time":
            return auto_granularity(self.date_range)
        return dim.split(":", 1)[1]  # type: ignore[return-value]

    def filter_dimensions(self) -> set[str]:
        found: set[str] = set()
        stack: list[Filter] = list(self.filters)
        while stack:
            node = stack.pop()
            if isinstance(node, Condition):
                found.add(node.dimension)
            else:
                stack.extend(node.children)
        return found


def auto_granularity(rng: DateRange) -> Granularity:
    hours = (rng.end - rng.start).total_seconds() / 3600
    if hours <= 48:
        return "hour"
    if rng.days <= 40:
        return "day"
    if rng.days <= 95:
        return "week"
    return "month"


def is_event_dimension(dim: str) -> bool:
    return dim in EVENT_COLUMNS or dim == "event:goal" or dim.startswith(PROPS_PREFIX)


def _check_dimension(dim: Any, where: str, *, allow_time: bool) -> str:
    if not isinstance(dim, str):
        raise QueryError(f"{where}: a dimension must be a string")
    if dim in EVENT_COLUMNS or dim in VISIT_COLUMNS or dim == "event:goal":
        return dim
    if dim.startswith(PROPS_PREFIX):
        key = dim[len(PROPS_PREFIX) :]
        if not key or len(key) > 300:
            raise QueryError(f"{where}: invalid custom property dimension {dim!r}")
        return dim
    if dim in TIME_DIMENSIONS:
        if not allow_time:
            raise QueryError(f"{where}: time dimensions cannot be filtered on; set date_range instead")
        return dim
    raise QueryError(f"{where}: unknown dimension {dim!r}")


def _parse_filter(node: Any, where: str, depth: int, goals: set[str]) -> Filter:
    if depth > MAX_FILTER_DEPTH:
        raise QueryError(f"{where}: filters are nested too deeply")
    if not isinstance(node, list) or not node or not isinstance(node[0], str):
        raise QueryError(f"{where}: a filter is a list starting with an operator")
    op = node[0]
    if op in ("and", "or"):
        if len(node) != 2 or not isinstance(node[1], list) or not node[1]:
            raise QueryError(f"{where}: {op!r} takes a non-empty list of filters")
        children = tuple(_parse_filter(c, f"{where}[1][{i}]", depth + 1, goals) for i, c in enumerate(node[1]))
        return Logical(op, children)  # type: ignore[arg-type]
    if op == "not":
        if len(node) != 2:
            raise QueryError(f"{where}: 'not' takes exactly one filter")
        return Logical("not", (_parse_filter(node[1], f"{where}[1]", depth + 1, goals),))
    if op not in OPERATORS:
        raise QueryError(f"{where}: unknown filter operator {op!r}")
    if len(node) not in (3, 4):
        raise QueryError(f"{where}: a filter is [operator, dimension, clauses] or with modifiers")
    dim = _check_dimension(node[1], f"{where}[1]", allow_time=False)
    clauses = node[2]
    if not isinstance(clauses, list) or not clauses or len(clauses) > MAX_CLAUSES:
        raise QueryError(f"{where}[2]: clauses must be a list of 1 to {MAX_CLAUSES} strings")
    if not all(isinstance(c, str) and len(c) <= 2000 for c in clauses):
        raise QueryError(f"{where}[2]: clauses must be strings of at most 2000 characters")
    case_sensitive = True
    if len(node) == 4:
        modifiers = node[3]
        if not isinstance(modifiers, dict) or set(modifiers) - {"case_sensitive"}:
            raise QueryError(f"{where}[3]: modifiers may only hold 'case_sensitive'")
        if not isinstance(modifiers.get("case_sensitive", True), bool):
            raise QueryError(f"{where}[3]: case_sensitive must be true or false")
        if op not in ("is", "contains", "is_not", "contains_not"):
            raise QueryError(f"{where}[3]: modifiers apply to is, is_not, contains and contains_not only")
        case_sensitive = modifiers.get("case_sensitive", True)
    if dim == "event:goal":
        if op not in ("is", "contains"):
            raise QueryError(f"{where}: only 'is' and 'contains' filter on event:goal")
        if op == "is":
            unknown = [c for c in clauses if c not in goals]
            if unknown:
                raise QueryError(f"{where}[2]: the goal {unknown[0]!r} is not configured for this site")
    if op in ("matches", "matches_not"):
        for clause in clauses:
            try:
                re.compile(clause)
            except re.error:
                raise QueryError(f"{where}[2]: {clause!r} is not a valid regular expression") from None
    return Condition(op, dim, tuple(clauses), case_sensitive)


def _count_conditions(filters: tuple[Filter, ...]) -> int:
    count = 0
    stack: list[Filter] = list(filters)
    while stack:
        node = stack.pop()
        if isinstance(node, Condition):
            count += 1
        else:
            stack.extend(node.children)
    return count


def _as_dict(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise QueryError(f"{name}: must be an object")
    return value


def parse_query(
    site: Any,
    body: Any,
    *,
    goals: set[str],
    now: dt.datetime,
    first_event_day: dt.date | None,
    today: dt.date | None = None,
) -> Query:
    """Validate a Stats API v2 body (``site_id`` is ignored here: the caller resolved the site)."""
    if not isinstance(body, dict):
        raise QueryError("query: the body must be a JSON object")
    known = {"site_id", "metrics", "date_range", "dimensions", "filters", "order_by", "include", "pagination"}
    extra = sorted(set(body) - known)
    if extra:
        raise QueryError(f"{extra[0]}: unknown field")
    try:
        tz = ZoneInfo(site.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")

    metrics = body.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        raise QueryError("metrics: a non-empty list of metrics is required")
    for metric in metrics:
        if metric not in METRICS:
            raise QueryError(f"metrics: unknown metric {metric!r}")
    if len(set(metrics)) != len(metrics):
        raise QueryError("metrics: a metric is listed twice")

    if "date_range" not in body:
        raise QueryError("date_range: is required")
    rng = resolve(body["date_range"], tz, now=now, first_event_day=first_event_day, today=today)

    dimensions = body.get("dimensions") or []
    if not isinstance(dimensions, list):
        raise QueryError("dimensions: must be a list")
    dims = tuple(_check_dimension(d, f"dimensions[{i}]", allow_time=True) for i, d in enumerate(dimensions))
    if len(set(dims)) != len(dims):
        raise QueryError("dimensions: a dimension is listed twice")
    if sum(1 for d in dims if d.startswith("time")) > 1:
        raise QueryError("dimensions: at most one time dimension")

    raw_filters = body.get("filters") or []
    if not isinstance(raw_filters, list):
        raise QueryError("filters: must be a list")
    filters = tuple(_parse_filter(f, f"filters[{i}]", 0, goals) for i, f in enumerate(raw_filters))
    conditions = _count_conditions(filters)
    if conditions > MAX_CONDITIONS:
        raise QueryError(f"filters: at most {MAX_CONDITIONS} conditions in a query, not {conditions}")

    include = _as_dict(body.get("include"), "include")
    unknown_include = sorted(set(include) - {"time_labels", "total_rows", "imports", "comparisons"})
    if unknown_include:
        raise QueryError(f"include.{unknown_include[0]}: unknown option")
    for flag in ("time_labels", "total_rows", "imports"):
        if flag in include and not isinstance(include[flag], bool):
            raise QueryError(f"include.{flag}: must be true or false")
    comparison = None
    if include.get("comparisons") is not None:
        comp = _as_dict(include["comparisons"], "include.comparisons")
        comparison = comp.get("mode")
        if comparison not in ("previous_period", "year_over_year"):
            raise QueryError("include.comparisons.mode: must be 'previous_period' or 'year_over_year'")

    pagination = _as_dict(body.get("pagination"), "pagination")
    limit = pagination.get("limit", MAX_LIMIT)
    offset = pagination.get("offset", 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"pagination.limit: must be an integer from 1 to {MAX_LIMIT}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= 10_000_000:
        raise QueryError("pagination.offset: must be a non-negative integer")

    order_raw = body.get("order_by")
    order: list[tuple[str, str]] = []
    if order_raw is not None:
        if not isinstance(order_raw, list):
            raise QueryError("order_by: must be a list of [metric or dimension, 'asc' | 'desc']")
        for i, item in enumerate(order_raw):
            if not isinstance(item, list) or len(item) != 2 or item[1] not in ("asc", "desc"):
                raise QueryError(f"order_by[{i}]: must be [metric or dimension, 'asc' | 'desc']")
            if item[0] not in metrics and item[0] not in dims:
                raise QueryError(f"order_by[{i}]: {item[0]!r} is not among the query's metrics or dimensions")
            order.append((item[0], item[1]))

    query = Query(
        site_id=site.pk,
        domain=site.domain,
        tz=tz,
        metrics=tuple(metrics),
        date_range=rng,
        dimensions=dims,
        filters=filters,
        order_by=tuple(order),
        limit=limit,
        offset=offset,
        time_labels=bool(include.get("time_labels")),
        total_rows=bool(include.get("total_rows")),
        comparison=comparison,
        raw=body,
    )
    _check_combinations(query)
    return query


def _check_combinations(query: Query) -> None:
    dims = set(query.dimensions)
    filtered = query.filter_dimensions()
    event_dims = [d for d in query.dimensions if is_event_dimension(d)]
    for metric in query.metrics:
        if metric in VISIT_METRICS and event_dims:
            raise QueryError(f"metrics: {metric!r} cannot be broken down by the event dimension {event_dims[0]!r}")
        if metric == "percentage" and not dims:
            raise QueryError("metrics: 'percentage' requires a dimension")
        if metric in GOAL_METRICS and "event:goal" not in dims and "event:goal" not in filtered:
            raise QueryError(f"metrics: {metric!r} requires an event:goal filter or dimension")
        if metric in ENGAGEMENT_METRICS:
            if "event:page" not in dims and "event:page" not in filtered:
                raise QueryError(f"metrics: {metric!r} requires an event:page filter or dimension")
            if "event:goal" in dims:
                raise QueryError(f"metrics: {metric!r} cannot be broken down by event:goal")
    if query.time_labels and query.time_dimension is None:
        raise QueryError("include.time_labels: requires a time dimension")
    if query.granularity == "minute" and (query.date_range.end - query.date_range.start) > dt.timedelta(days=2):
        raise QueryError("dimensions: time:minute is available for ranges of up to 2 days")
    if query.granularity == "hour" and query.date_range.days > 93:
        raise QueryError("dimensions: time:hour is available for ranges of up to 93 days")
