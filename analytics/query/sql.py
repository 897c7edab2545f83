"""The SQL path: any query, exactly, over the raw events in ``analytics_event`` and their visits.

Definitions (see docs/querying.md):
- a visit is a distinct ``(visitor_id, visit_id)``; its attributes (source, UTM,
  device, country …) and entry page are those of its first event in the range, its
  exit page that of its last (as the rollups in ``analytics.ingest.rollups`` keep them);
- a bounce is a visit with at most one interactive event (a pageview or an
  interactive custom event), as Plausible counts them;
- a visit's duration is the time between its first and last event, whole seconds;
- ``engagement`` events count only in ``time_on_page`` and ``scroll_depth``.

Every statement starts from ``site_id = %s`` and the range on ``timestamp``, so
it reads one site's rows of the month partitions the range touches. The visits come
from ``analytics_visit`` (one row per stored visit, kept with the events by
``analytics.ingest.store``) for those wholly inside the range, and from their events for the
few that cross an end of it. Values are always bound parameters; only identifiers
from fixed tables reach the SQL text.

``SqlBuilder`` composes the statement; its conditions and dimension expressions are in
``analytics.query.sql_filters``, the event and visit rows it reads in ``analytics.query.sql_rows``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, connection, transaction

from analytics.fields import metric_names
from analytics.query.errors import QueryError
from analytics.query.model import ENGAGEMENT_METRICS, VISIT_COLUMNS, VISIT_METRICS, Query, is_event_dimension
from analytics.query.sql_filters import FilterSql, GoalDef, Params
from analytics.query.sql_rows import RowsSql

STATEMENT_TIMEOUT_MS = 30_000
# For each statement (SET LOCAL). work_mem: a month of a busy site's events (about 650 k rows)
# sorts by visit in memory instead of in temporary files. No nested loops: the planner cannot
# estimate how many visits pass a filter on their first event (it guesses one) and would look
# each one up by index; hash joins are never far off. A cheaper hand-over of rows from parallel
# workers, so scans, semi-joins and sorts by visit run in parallel. No JIT: a plan that must
# still nest-loop (the LATERAL index look-ups of a range's edge visits) carries the planner's
# disable cost (10^10), above every JIT threshold, so a PostgreSQL built with LLVM (Debian's)
# compiled and optimised every statement, even on a few rows: about a second each. The embedded
# server has no JIT provider; the query benchmark's figures are without JIT.
PLANNER_SETTINGS = {"work_mem": "64MB", "enable_nestloop": "off", "parallel_tuple_cost": "0.01", "jit": "off"}

BOUNCES = "count(*) FILTER (WHERE v_interactions <= 1) AS bounces"
DURATION = "sum(floor(extract(epoch FROM date_trunc('milliseconds', v_end) - date_trunc('milliseconds', v_start)))) AS duration"
# Counts over visits or their events (no goal, revenue or engagement).
VISIT_LEVEL_METRICS = metric_names(needs="")


@dataclass
class SqlResult:
    rows: list[tuple[list[Any], dict[str, Any]]]
    total_rows: int


def _attr_columns(query: Query) -> set[str]:
    """Visit attribute columns (keys of VISIT_COLUMNS values) that the query references."""
    dims = set(query.dimensions) | query.filter_dimensions()
    return {VISIT_COLUMNS[d] for d in dims if d in VISIT_COLUMNS}


class SqlBuilder(FilterSql, RowsSql):
    """One statement for one query.

    ``plain`` builds the reference statement, without the shortcuts (visits from
    ``analytics_visit``, visit-level answers, narrow event rows…): the tests check that both
    give the same rows.
    """

    def __init__(self, query: Query, goals: list[GoalDef], *, plain: bool = False) -> None:
        self.q = query
        self.goals = goals
        self.plain = plain
        self.p = Params()
        metrics = set(query.metrics)
        self.has_event_dims = any(is_event_dimension(d) for d in query.dimensions)
        self.use_b = bool(metrics & VISIT_METRICS) or ("visits" in metrics and not self.has_event_dims)
        self.use_c = bool(metrics & ENGAGEMENT_METRICS)
        self.attrs = _attr_columns(query)
        self.use_vis = self.use_b or self.use_c or bool(self.attrs)
        # Visit-level answers: when every dimension and filter is a visit attribute and every
        # metric is a count over visits or their events, table ``a`` comes from ``vis`` alone
        # (each visit in ``vis`` has at least one event in ``ev``, so the visitors, visits,
        # pageviews and events of the matching visits are those of their events).
        self.visit_level = (
            not plain
            and self.use_vis
            and not self.use_c
            and all(d in VISIT_COLUMNS for d in query.dimensions)
            and all(d in VISIT_COLUMNS for d in query.filter_dimensions())
            and metrics <= VISIT_LEVEL_METRICS
        )
        self.vt = "a" if self.visit_level else "b"  # the table of the visit metrics
        # Visits are needed only to tell which engagement events belong to a visit of the range.
        self.visits_only = not plain and self.use_c and not self.use_b and not self.attrs

    # statement -------------------------------------------------------------------

    def dims_for(self, source: str) -> list[str]:
        """Dimension expressions for the event (``a``), visit (``b``) or engagement (``c``) table."""
        out = []
        for dim in self.q.dimensions:
            if dim.startswith("time"):
                out.append(self.bucket("v_start" if source == "b" else "timestamp"))
            elif dim == "event:goal":
                out.append("g.goal_name")
            else:
                out.append(self.column(dim))
        return out

    def goal_join(self) -> str:
        if not self.goals:
            return " JOIN (SELECT NULL::text, NULL::text, NULL::text WHERE FALSE) AS g(goal_name, goal_event, goal_regex) ON TRUE"
        rows = ", ".join(f"({self.p(g.name)}, {self.p(g.event_name)}, {self.p(g.page_regex)})" for g in self.goals)
        return (
            f" JOIN (VALUES {rows}) AS g(goal_name, goal_event, goal_regex) ON "
            "((g.goal_event <> '' AND name = g.goal_event) OR "
            "(g.goal_regex <> '' AND name = 'pageview' AND pathname ~ g.goal_regex))"
        )

    def group(self, exprs: list[str]) -> str:
        if not exprs:
            return ""
        return " GROUP BY " + ", ".join(str(i + 1) for i in range(len(exprs)))

    def select_dims(self, exprs: list[str]) -> str:
        return "".join(f"{e} AS d{i}, " for i, e in enumerate(exprs))

    def build(self) -> str:
        metrics = set(self.q.metrics)
        ctes: list[str] = []
        # Not materialized: each reader scans the partitions with its own filters pushed down,
        # in parallel where the planner sees fit (a materialized CTE is read by one process).
        hint = "" if self.plain else " NOT MATERIALIZED"
        ctes.append(
            f"ev AS{hint} (SELECT {self.ev_columns()} FROM analytics_event WHERE {self.range_sql()} AND name <> 'engagement')"
        )
        if self.use_vis and not self.plain and not self.visits_only:
            # Not materialized: each reader gets the visit filters pushed down to its own scan.
            ctes.append(f"vis AS NOT MATERIALIZED ({self.vis_sql()})")
        elif self.use_vis:
            ctes.append(f"vis AS ({self.vis_sql()})")
        if self.visit_level:
            # The matching visits; no event table: ``ev`` is read once, by ``vis``.
            ctes.append(f"mv AS (SELECT * FROM vis WHERE {self.where()})")
        elif self.attrs or (self.plain and self.use_vis):
            ctes.append(
                f"m AS (SELECT e.*{self._vjoin_cols()} FROM ev e JOIN vis v "
                f"ON v.visitor_id = e.visitor_id AND v.visit_id = e.visit_id WHERE {self.where()})"
            )
        else:
            # Every event of ``ev`` has its visit in ``vis``: no visit attribute, no join.
            ctes.append(f"m AS (SELECT * FROM ev WHERE {self.where()})")
        ndims = len(self.q.dimensions)

        a_dims = self.dims_for("a")
        if self.visit_level:
            # Table ``b``'s visit metrics too, in the same pass over the visits.
            ctes.append(
                f"a AS (SELECT {self.select_dims(a_dims)}count(DISTINCT visitor_id) AS visitors, "
                "sum(v_pageviews)::bigint AS pageviews, sum(v_events)::bigint AS events, count(*) AS visits, "
                f"{BOUNCES}, {DURATION}, "
                "NULL::numeric AS rev_sum, 0::bigint AS rev_count, NULL::text[] AS rev_currencies "
                f"FROM mv{self.group(a_dims)})"
            )
        else:
            source = "m"
            goal_join = ""
            if "event:goal" in self.q.dimensions:
                if self.goals and not self.plain:
                    # Only the events of some goal reach the join (one test per event, not per goal).
                    # (Built before the join: parameters are numbered in the order of the text.)
                    any_goal = " OR ".join(self.goal_condition(g) for g in self.goals)
                    source = f"(SELECT * FROM m WHERE {any_goal}) m"
                goal_join = self.goal_join()
            ctes.append(
                f"a AS (SELECT {self.select_dims(a_dims)}count(DISTINCT visitor_id) AS visitors, "
                "count(*) FILTER (WHERE name = 'pageview') AS pageviews, count(*) AS events, "
                "count(DISTINCT (visitor_id, visit_id)) AS visits, "
                "sum(revenue_amount) AS rev_sum, count(revenue_amount) AS rev_count, "
                "array_agg(DISTINCT revenue_currency) FILTER (WHERE revenue_amount IS NOT NULL) AS rev_currencies "
                f"FROM {source}{goal_join}{self.group(a_dims)})"
            )
        tables = ["a"]
        if self.use_b and not self.visit_level:
            b_dims = self.dims_for("b")
            if self.q.filters:
                matched = "vis WHERE (visitor_id, visit_id) IN (SELECT visitor_id, visit_id FROM m)"
            else:
                matched = "vis"
            ctes.append(
                f"b AS (SELECT {self.select_dims(b_dims)}count(*) AS visits, "
                f"{BOUNCES}, {DURATION}, sum(v_pageviews) AS pageviews "
                f"FROM {matched}{self.group(b_dims)})"
            )
            tables.append("b")
        if self.use_c:
            ctes.append(
                "eng AS (SELECT visitor_id, visit_id, timestamp, event_id, 'pageview'::text AS name, hostname, "
                f"pathname, props, engagement_ms, scroll_depth FROM analytics_event WHERE {self.range_sql()} "
                "AND name = 'engagement')"
            )
            if self.visits_only:
                # The matching engagement events whose visit has an event in the range (no
                # visit attribute to join).
                ctes.append(f"em0 AS (SELECT * FROM eng WHERE {self.where()})")
                # The matching engagement events whose visit has an event in the range: the
                # (few) visits of the matching engagement events are looked up among the
                # events, rather than every visit of the range listed.
                ctes.append(
                    "em AS (SELECT * FROM em0 WHERE (visitor_id, visit_id) IN (SELECT DISTINCT visitor_id, visit_id "
                    "FROM ev WHERE (visitor_id, visit_id) IN (SELECT visitor_id, visit_id FROM em0)))"
                )
            else:
                ctes.append(
                    f"em AS (SELECT e.*{self._vjoin_cols()} FROM eng e JOIN vis v "
                    f"ON v.visitor_id = e.visitor_id AND v.visit_id = e.visit_id WHERE {self.where()})"
                )
            c_dims = self.dims_for("c")
            inner_dims = "".join(f"{e} AS d{i}, " for i, e in enumerate(c_dims))
            group_inner = ", ".join([*[str(i + 1) for i in range(ndims)], "visitor_id", "visit_id", "pathname"])
            outer_dims = "".join(f"d{i}, " for i in range(ndims))
            outer_group = (" GROUP BY " + ", ".join(f"d{i}" for i in range(ndims))) if ndims else ""
            ctes.append(
                f"c AS (SELECT {outer_dims}round(sum(ms) / 1000.0 / nullif(count(*) FILTER (WHERE ms IS NOT NULL), 0)) "
                f"AS time_on_page, round(avg(sd)) AS scroll_depth FROM (SELECT {inner_dims}visitor_id, visit_id, "
                f"pathname, sum(engagement_ms) AS ms, max(scroll_depth) AS sd FROM em GROUP BY {group_inner}) x{outer_group})"
            )
            tables.append("c")
        if metrics & {"conversion_rate", "group_conversion_rate"}:
            source = (
                "ev e JOIN vis v ON v.visitor_id = e.visitor_id AND v.visit_id = e.visit_id" if self.use_vis else "ev"
            )
            cols = f"e.*{self._vjoin_cols()}" if self.use_vis else "*"
            ctes.append(f"mall AS (SELECT {cols} FROM {source} WHERE {self.where(strip_goals=True)})")
            gdims = [i for i, d in enumerate(self.q.dimensions) if d != "event:goal"]
            if "group_conversion_rate" in metrics and gdims:
                exprs = [self.dims_for("a")[i] for i in gdims]
                ctes.append(
                    f"gc AS (SELECT {''.join(f'{e} AS d{i}, ' for i, e in zip(gdims, exprs, strict=True))}"
                    f"count(DISTINCT visitor_id) AS visitors FROM mall{self.group(exprs)})"
                )

        # join the per-table aggregates
        if ndims == 0:
            from_sql = " CROSS JOIN ".join(tables)
        else:
            from_sql = "a"
            seen = ["a"]
            for t in tables[1:]:
                conds = []
                for i in range(ndims):
                    left = f"coalesce({', '.join(f'{s}.d{i}' for s in seen)})" if len(seen) > 1 else f"{seen[0]}.d{i}"
                    conds.append(f"{left} = {t}.d{i}")
                from_sql += f" FULL JOIN {t} ON {' AND '.join(conds)}"
                seen.append(t)
        gdims = [i for i, d in enumerate(self.q.dimensions) if d != "event:goal"]
        if "group_conversion_rate" in metrics and gdims:
            conds = [f"gc.d{i} = a.d{i}" for i in gdims]
            from_sql += f" LEFT JOIN gc ON {' AND '.join(conds)}"

        selects = []
        for i in range(ndims):
            selects.append(
                f"coalesce({', '.join(f'{t}.d{i}' for t in tables)}) AS d{i}" if len(tables) > 1 else f"a.d{i} AS d{i}"
            )
        for j, metric in enumerate(self.q.metrics):
            selects.append(f"{self.metric_sql(metric)} AS m{j}")
        selects.append("a.rev_currencies AS rev_currencies")
        selects.append("count(*) OVER () AS total_rows")

        order = self.order_sql()
        limit = self.p(self.q.limit)
        offset = self.p(self.q.offset)
        return (
            "WITH "
            + ", ".join(ctes)
            + f" SELECT * FROM (SELECT {', '.join(selects)} FROM {from_sql}) q ORDER BY {order} LIMIT {limit} OFFSET {offset}"
        )

    def count_visitors(self, table: str) -> str:
        """Distinct visitors of a whole table (a hash of the ids rather than a sort)."""
        if self.plain:
            return f"(SELECT count(DISTINCT visitor_id) FROM {table})"
        return f"(SELECT count(*) FROM (SELECT DISTINCT visitor_id FROM {table}) AS dv)"

    def metric_sql(self, metric: str) -> str:
        if metric in ("visitors", "pageviews", "events"):
            return f"coalesce(a.{metric}, 0)"
        if metric == "visits":
            return "coalesce(b.visits, 0)" if self.use_b and not self.visit_level else "coalesce(a.visits, 0)"
        if metric == "views_per_visit":
            return f"coalesce(round({self.vt}.pageviews::numeric / nullif({self.vt}.visits, 0), 2), 0)"
        if metric == "bounce_rate":
            return f"coalesce(round(100.0 * {self.vt}.bounces / nullif({self.vt}.visits, 0)), 0)"
        if metric == "visit_duration":
            return f"coalesce(round({self.vt}.duration / nullif({self.vt}.visits, 0)), 0)"
        if metric == "percentage":
            base = "mv" if self.visit_level else "m"
            return f"coalesce(round(100.0 * a.visitors / nullif({self.count_visitors(base)}, 0), 2), 0)"
        if metric == "conversion_rate":
            return f"coalesce(round(100.0 * a.visitors / nullif({self.count_visitors('mall')}, 0), 2), 0)"
        if metric == "group_conversion_rate":
            if any(d != "event:goal" for d in self.q.dimensions):
                return "coalesce(round(100.0 * a.visitors / nullif(gc.visitors, 0), 2), 0)"
            return f"coalesce(round(100.0 * a.visitors / nullif({self.count_visitors('mall')}, 0), 2), 0)"
        if metric == "total_revenue":
            return "a.rev_sum"
        if metric == "average_revenue":
            return "a.rev_sum / nullif(a.rev_count, 0)"
        if metric in ("time_on_page", "scroll_depth"):
            return f"c.{metric}"
        raise QueryError(f"metrics: unknown metric {metric!r}")

    def order_sql(self) -> str:
        names = {d: f"d{i}" for i, d in enumerate(self.q.dimensions)}
        names.update({m: f"m{j}" for j, m in enumerate(self.q.metrics)})
        parts: list[str] = []
        used: set[str] = set()
        order = list(self.q.order_by)
        if not order:
            time_dim = self.q.time_dimension
            if time_dim:
                order.append((time_dim, "asc"))
            else:
                order.append((self.q.metrics[0], "desc"))

        def key(name: str) -> str:
            # Text in byte order, as the Redis path sorts, whatever the database's collation.
            if name in self.q.dimensions and not name.startswith("time"):
                return f'{names[name]} COLLATE "C"'
            return names[name]

        for name, direction in order:
            parts.append(f"{key(name)} {direction.upper()} NULLS LAST")
            used.add(name)
        # A stable order for ties: every remaining dimension ascending.
        parts.extend(f"{key(d)} ASC" for d in self.q.dimensions if d not in used)
        return ", ".join(parts)


def apply_statement_settings(cur: Any) -> None:
    """The time limit and PLANNER_SETTINGS, for the rest of the cursor's transaction."""
    cur.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
    for name, value in PLANNER_SETTINGS.items():
        cur.execute("SELECT set_config(%s, %s, true)", [name, value])


def execute(query: Query, goals: list[GoalDef], *, plain: bool = False) -> SqlResult:
    builder = SqlBuilder(query, goals, plain=plain)
    sql = builder.build()
    try:
        with transaction.atomic(), connection.cursor() as cur:
            apply_statement_settings(cur)
            cur.execute(sql, builder.p.values)
            fetched = cur.fetchall()
    except DatabaseError as exc:
        cause = getattr(exc, "__cause__", None)
        sqlstate = getattr(cause, "sqlstate", "") or ""
        if sqlstate.startswith("2201B") or "regular expression" in str(exc):
            raise QueryError("filters: invalid regular expression") from None
        if sqlstate == "57014":
            raise QueryError("query: took too long; narrow the date range or the filters") from None
        raise
    ndims = len(query.dimensions)
    rows: list[tuple[list[Any], dict[str, Any]]] = []
    total = 0
    for row in fetched:
        dims = [_dim_value(v) for v in row[:ndims]]
        values = {m: row[ndims + j] for j, m in enumerate(query.metrics)}
        values["__currencies"] = row[ndims + len(query.metrics)]
        total = int(row[-1])
        rows.append((dims, values))
    if not fetched and query.offset:
        total = count_rows(query, goals)
    return SqlResult(rows=rows, total_rows=total)


def count_rows(query: Query, goals: list[GoalDef]) -> int:
    """Total rows when the page is past the end (the window count is then unavailable)."""
    from dataclasses import replace

    first = replace(query, limit=1, offset=0)
    result = execute(first, goals)
    return result.total_rows


def _dim_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value
