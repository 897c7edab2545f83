"""The SQL path's rows: the range's events and its visits with their attributes.

Part of the statement ``analytics.query.sql.SqlBuilder`` builds (a mixin of it): the event rows
it reads (``ev``) and the visits (``vis``), from ``analytics_visit`` or, for the plain statement
and for the visits crossing an end of the range, from their events.
"""

from __future__ import annotations

from analytics.query.model import PROPS_PREFIX, Query
from analytics.query.sql_filters import Params

# Columns of the event rows (``ev``) every statement may read; visit attributes, and ``props``,
# only when the query uses them.
EV_COLUMNS = (
    "timestamp",
    "event_id",
    "name",
    "visitor_id",
    "visit_id",
    "interactive",
    "hostname",
    "pathname",
    "revenue_amount",
    "revenue_currency",
)


class RowsSql:
    """The event and visit rows of one statement."""

    q: Query
    p: Params
    plain: bool
    attrs: set[str]

    def range_sql(self) -> str:
        rng = self.q.date_range
        return (
            f"site_id = {self.p(self.q.site_id)} AND timestamp >= {self.p(rng.start)} AND timestamp < {self.p(rng.end)}"
        )

    def ev_columns(self) -> str:
        """The event columns the statement reads (not ``SELECT *``: ``ev`` is materialized)."""
        if self.plain:
            return "*"
        cols = list(EV_COLUMNS)
        cols.extend(sorted(a for a in self.attrs if a not in ("entry_page", "exit_page")))
        dims = set(self.q.dimensions) | self.q.filter_dimensions()
        if any(d.startswith(PROPS_PREFIX) for d in dims):
            cols.append("props")
        return ", ".join(cols)

    def vis_aggregates(self) -> list[str]:
        """A visit's columns computed from its events in ``ev`` (grouped by visit)."""
        cols = [
            "visitor_id",
            "visit_id",
            "min(timestamp) AS v_start",
            "max(timestamp) AS v_end",
            "count(*) FILTER (WHERE name = 'pageview') AS v_pageviews",
            "count(*) FILTER (WHERE name = 'pageview' OR interactive) AS v_interactions",
        ]
        if not self.plain:
            cols.append("count(*) AS v_events")
        for attr in sorted(self.attrs):
            if attr == "entry_page":
                cols.append("(array_agg(pathname ORDER BY timestamp, event_id))[1] AS v_entry_page")
            elif attr == "exit_page":
                cols.append("(array_agg(pathname ORDER BY timestamp DESC, event_id DESC))[1] AS v_exit_page")
            elif attr == "referrer_source":
                # Plausible's name for traffic without a referrer or source tag.
                cols.append(
                    "coalesce(nullif((array_agg(referrer_source ORDER BY timestamp, event_id))[1], ''), 'Direct / None') AS v_referrer_source"
                )
            else:
                cols.append(f"(array_agg({attr} ORDER BY timestamp, event_id))[1] AS v_{attr}")
        return cols

    def vis_sql(self) -> str:
        """The visits with an event in the range, with their attributes from their events in it.

        The plain statement sorts the range's events by visit. Otherwise the visits that lie
        wholly inside the range are rows of ``analytics_visit`` as they are (their first and
        last events are their first and last in the range), and only the few that cross an
        end of the range are computed from their events in it. A visit that crosses the start
        has an event in the range's first 30 minutes (no gap in a visit is longer), one that
        crosses the end an event in its last 30 minutes: those windows name them, and each is looked
        up by index (LATERAL … OFFSET 0: the planner may not turn the lookups into a join,
        which would scan every visit of the site and every event of the range).
        """
        if self.plain:
            return f"SELECT {', '.join(self.vis_aggregates())} FROM ev GROUP BY visitor_id, visit_id"
        cols = [
            "visitor_id",
            "visit_id",
            '"start" AS v_start',
            '"end" AS v_end',
            "pageviews AS v_pageviews",
            "interactions AS v_interactions",
            "events AS v_events",
        ]
        for attr in sorted(self.attrs):
            if attr == "referrer_source":
                cols.append("coalesce(nullif(referrer_source, ''), 'Direct / None') AS v_referrer_source")
            else:
                cols.append(f"{attr} AS v_{attr}")
        inside = f"SELECT {', '.join(cols)} FROM analytics_visit WHERE {self.inside_sql()}"
        return f"{inside} UNION ALL {self.edges_sql()}"

    def inside_sql(self) -> str:
        """The condition on ``analytics_visit`` of the visits wholly inside the range."""
        rng = self.q.date_range
        return f'site_id = {self.p(self.q.site_id)} AND "start" >= {self.p(rng.start)} AND "end" < {self.p(rng.end)}'

    def edges_sql(self) -> str:
        """The visits that cross an end of the range, from their events in it."""
        rng = self.q.date_range
        site = self.q.site_id
        window = (
            f"SELECT DISTINCT visitor_id, visit_id FROM analytics_event WHERE site_id = {self.p(site)} "
            f"AND name <> 'engagement' AND ((timestamp >= {self.p(rng.start)} "
            f"AND timestamp < least({self.p(rng.start)} + interval '30 minutes', {self.p(rng.end)})) "
            f"OR (timestamp >= greatest({self.p(rng.end)} - interval '30 minutes', {self.p(rng.start)}) "
            f"AND timestamp < {self.p(rng.end)}))"
        )
        crossing = (
            f"SELECT w.visitor_id, w.visit_id FROM ({window}) w CROSS JOIN LATERAL (SELECT 1 FROM analytics_visit x "
            f"WHERE x.site_id = {self.p(site)} AND x.visitor_id = w.visitor_id AND x.visit_id = w.visit_id "
            f'AND (x."start" < {self.p(rng.start)} OR x."end" >= {self.p(rng.end)}) OFFSET 0) x'
        )
        events = (
            f"SELECT e.* FROM ({crossing}) c CROSS JOIN LATERAL (SELECT {self.ev_columns()} FROM analytics_event "
            f"WHERE site_id = {self.p(site)} AND visit_id = c.visit_id AND visitor_id = c.visitor_id "
            f"AND timestamp >= {self.p(rng.start)} AND timestamp < {self.p(rng.end)} AND name <> 'engagement' OFFSET 0) e"
        )
        return f"SELECT {', '.join(self.vis_aggregates())} FROM ({events}) ev GROUP BY visitor_id, visit_id"

    def _vjoin_cols(self) -> str:
        return "".join(f", v.v_{a}" for a in sorted(self.attrs))
