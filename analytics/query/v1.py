"""Plausible Stats API v1 as thin adapters: v1 parameters in, a v2 body out, v1 shapes back.

v1 parameters: ``period`` (``day``, ``7d``, ``30d``, ``month``, ``6mo``, ``12mo``, ``year``,
``custom`` with ``date=START,END``), ``date`` (the reference day of a period), ``metrics``
(comma separated), ``filters`` (``dimension==a|b;dimension!=c``, also ``~`` contains and
``!~``; ``*`` wildcards in page values), ``property`` (breakdown), ``interval``, ``compare``,
``limit``, ``page``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from analytics import fields
from analytics.models import page_pattern_regex
from analytics.query.dates import check_day
from analytics.query.errors import QueryError
from analytics.query.format import metric_value

PERIODS = ("day", "24h", "7d", "28d", "30d", "91d", "month", "6mo", "12mo", "year", "all", "custom")
V1_METRICS = fields.V1_METRICS
_OPERATORS = (("!=", "is_not"), ("!~", "contains_not"), ("==", "is"), ("~", "contains"))


def _date(value: str, field: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise QueryError(f"{field}: {value!r} is not a date (YYYY-MM-DD)") from None
    return check_day(day, field)


def period_range(params: Mapping[str, str]) -> tuple[Any, dt.date | None]:
    """The v2 ``date_range`` and the anchor day for v1's ``period`` and ``date``."""
    period = params.get("period") or "30d"
    if period not in PERIODS:
        raise QueryError(f"period: must be one of {', '.join(PERIODS)}")
    date = params.get("date")
    if period == "custom":
        if not date or date.count(",") != 1:
            raise QueryError("date: a custom period needs date=YYYY-MM-DD,YYYY-MM-DD")
        first, last = (part.strip() for part in date.split(","))
        _date(first, "date")
        _date(last, "date")
        return [first, last], None
    anchor = _date(date, "date") if date else None
    return period, anchor


def parse_filters(raw: str | None) -> list[list[Any]]:
    if not raw:
        return []
    out: list[list[Any]] = []
    for part in raw.split(";"):
        part = part.strip()
        if not part:
            continue
        # The operator is the earliest token in the part (values may contain '=' or '~').
        found = sorted((part.find(token), -len(token), token, op) for token, op in _OPERATORS if token in part)
        if not found:
            raise QueryError(f"filters: {part!r} has no operator (==, !=, ~, !~)")
        _, _, token, operator = found[0]
        dimension, _, values = part.partition(token)
        dimension = dimension.strip()
        clauses = [v.strip() for v in values.split("|")]
        if not dimension or not any(clauses):
            raise QueryError(f"filters: {part!r} needs a property and a value")
        if operator in ("is", "is_not") and any("*" in c for c in clauses):
            regexes = [page_pattern_regex(c) for c in clauses]
            out.append(["matches" if operator == "is" else "matches_not", dimension, regexes])
        else:
            out.append([operator, dimension, clauses])
    return out


def parse_metrics(raw: str | None) -> list[str]:
    metrics = [m.strip() for m in (raw or "visitors").split(",") if m.strip()]
    if not metrics:
        raise QueryError("metrics: at least one metric is required")
    for metric in metrics:
        if metric not in V1_METRICS:
            raise QueryError(f"metrics: unknown metric {metric!r}")
    return metrics


def _int(params: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{name}: must be an integer") from None
    if not 1 <= value <= maximum:
        raise QueryError(f"{name}: must be from 1 to {maximum}")
    return value


def _compare(params: Mapping[str, str]) -> dict[str, Any] | None:
    compare = params.get("compare")
    if not compare:
        return None
    if compare not in ("previous_period", "year_over_year"):
        raise QueryError("compare: must be previous_period or year_over_year")
    return {"mode": compare}


def aggregate_body(params: Mapping[str, str]) -> tuple[dict[str, Any], dt.date | None]:
    date_range, anchor = period_range(params)
    body: dict[str, Any] = {
        "metrics": parse_metrics(params.get("metrics")),
        "date_range": date_range,
        "filters": parse_filters(params.get("filters")),
    }
    comparison = _compare(params)
    if comparison:
        body["include"] = {"comparisons": comparison}
    return body, anchor


def aggregate_result(body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    row = answer["results"][0]
    results: dict[str, Any] = {}
    for i, metric in enumerate(body["metrics"]):
        entry: dict[str, Any] = {"value": row["metrics"][i]}
        if "comparison" in row:
            entry["comparison_value"] = row["comparison"]["metrics"][i]
            entry["change"] = row["comparison"]["change"][i]
        results[metric] = entry
    return {"results": results}


def timeseries_body(params: Mapping[str, str]) -> tuple[dict[str, Any], dt.date | None]:
    date_range, anchor = period_range(params)
    interval = params.get("interval") or ""
    intervals = {
        "": "time",
        "date": "time:day",
        "day": "time:day",
        "hour": "time:hour",
        "week": "time:week",
        "month": "time:month",
        "minute": "time:minute",
    }
    if interval not in intervals:
        raise QueryError("interval: must be one of minute, hour, date, week, month")
    dimension = intervals[interval]
    if dimension == "time" and date_range in ("6mo", "12mo", "year"):
        dimension = "time:month"
    elif dimension == "time" and date_range not in ("day", "24h"):
        dimension = "time:day"
    body: dict[str, Any] = {
        "metrics": parse_metrics(params.get("metrics")),
        "date_range": date_range,
        "filters": parse_filters(params.get("filters")),
        "dimensions": [dimension],
        "include": {"time_labels": True},
    }
    comparison = _compare(params)
    if comparison:
        body["include"]["comparisons"] = comparison
    return body, anchor


def timeseries_result(body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    by_label = {row["dimensions"][0]: row for row in answer["results"]}
    out = []
    for label in answer["meta"].get("time_labels", []):
        row = by_label.get(label)
        entry: dict[str, Any] = {"date": label}
        for i, metric in enumerate(body["metrics"]):
            entry[metric] = row["metrics"][i] if row else metric_value(metric, None)
        out.append(entry)
    return {"results": out}


def breakdown_key(prop: str) -> str:
    if prop.startswith("event:props:"):
        return prop[len("event:props:") :]
    return prop.split(":", 1)[1]


def breakdown_body(params: Mapping[str, str]) -> tuple[dict[str, Any], dt.date | None]:
    date_range, anchor = period_range(params)
    prop = params.get("property")
    if not prop:
        raise QueryError("property: is required (for example event:page or visit:source)")
    if prop.startswith("time"):
        raise QueryError("property: time is not a breakdown property; use the timeseries endpoint")
    limit = _int(params, "limit", 100, 1000)
    page = _int(params, "page", 1, 100_000)
    metrics = parse_metrics(params.get("metrics"))
    body: dict[str, Any] = {
        "metrics": metrics,
        "date_range": date_range,
        "filters": parse_filters(params.get("filters")),
        "dimensions": [prop],
        "pagination": {"limit": limit, "offset": (page - 1) * limit},
    }
    comparison = _compare(params)
    if comparison:
        body["include"] = {"comparisons": comparison}
    return body, anchor


def breakdown_result(body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    key = breakdown_key(body["dimensions"][0])
    out = []
    for row in answer["results"]:
        entry: dict[str, Any] = {key: row["dimensions"][0]}
        for i, metric in enumerate(body["metrics"]):
            entry[metric] = row["metrics"][i]
            if "comparison" in row:
                entry.setdefault("comparison", {})[metric] = {
                    "value": row["comparison"]["metrics"][i],
                    "change": row["comparison"]["change"][i],
                }
        out.append(entry)
    return {"results": out}
