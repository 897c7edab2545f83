"""The SQL path's filters: a query's conditions, its goals and dimensions as SQL expressions.

Part of the statement ``analytics.query.sql.SqlBuilder`` builds (a mixin of it). Values are
always bound parameters (``Params``); only identifiers from fixed tables reach the SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analytics.query.errors import QueryError
from analytics.query.model import EVENT_COLUMNS, PROPS_PREFIX, VISIT_COLUMNS, Filter, Logical, Query


@dataclass(frozen=True)
class GoalDef:
    name: str
    event_name: str
    page_regex: str
    currency: str = ""


class Params:
    """The statement's bound values: each call adds one and answers its placeholder."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return "%s"


class FilterSql:
    """Conditions and dimension expressions of one statement."""

    q: Query
    p: Params
    goals: list[GoalDef]
    plain: bool

    def column(self, dim: str) -> str:
        """The expression of ``dim``."""
        if dim in EVENT_COLUMNS:
            return EVENT_COLUMNS[dim]
        if dim.startswith(PROPS_PREFIX):
            return f"coalesce(props ->> {self.p(dim[len(PROPS_PREFIX) :])}, '(none)')"
        if dim in VISIT_COLUMNS:
            return f"v_{VISIT_COLUMNS[dim]}"
        raise QueryError(f"filters: {dim!r} cannot be used here")

    def bucket(self, ts: str) -> str:
        gran = self.q.granularity
        tz = self.p(self.q.tz.key)
        if gran in ("minute", "hour"):
            return f"date_trunc('{gran}', {ts} AT TIME ZONE {tz})"
        if gran == "day":
            return f"({ts} AT TIME ZONE {tz})::date"
        return f"date_trunc('{gran}', {ts} AT TIME ZONE {tz})::date"

    def goal_condition(self, goal: GoalDef) -> str:
        if goal.event_name:
            return f"name = {self.p(goal.event_name)}"
        literal = None if self.plain else literal_regex(goal.page_regex)
        if literal is not None:  # a page without wildcards: equality, not a regular expression per event
            return f"(name = 'pageview' AND pathname = {self.p(literal)})"
        return f"(name = 'pageview' AND pathname ~ {self.p(goal.page_regex)})"

    def condition(self, node: Filter, *, strip_goals: bool = False) -> str:
        if isinstance(node, Logical):
            parts = [self.condition(c, strip_goals=strip_goals) for c in node.children]
            if node.operator == "not":
                return f"NOT ({parts[0]})"
            return "(" + f" {node.operator.upper()} ".join(parts) + ")"
        if node.dimension == "event:goal":
            if strip_goals:
                return "TRUE"
            if node.operator == "is":
                chosen = [g for g in self.goals if g.name in node.clauses]
            elif node.case_sensitive:
                chosen = [g for g in self.goals if any(c in g.name for c in node.clauses)]
            else:
                chosen = [g for g in self.goals if any(c.lower() in g.name.lower() for c in node.clauses)]
            if not chosen:
                return "FALSE"
            return "(" + " OR ".join(self.goal_condition(g) for g in chosen) + ")"
        col = self.column(node.dimension)
        op = node.operator
        negate = op.endswith("_not")
        base = op.removesuffix("_not")
        clauses = list(node.clauses)
        if base == "is":
            if node.case_sensitive:
                expr = f"{col} = ANY({self.p(clauses)})"
            else:
                expr = f"lower({col}) = ANY({self.p([c.lower() for c in clauses])})"
        elif base == "contains":
            patterns = ["%" + c.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for c in clauses]
            like = "LIKE" if node.case_sensitive else "ILIKE"
            expr = f"{col} {like} ANY({self.p(patterns)})"
        else:
            expr = f"{col} ~ ANY({self.p(clauses)})"
        return f"NOT ({expr})" if negate else expr

    def where(self, *, strip_goals: bool = False) -> str:
        if not self.q.filters:
            return "TRUE"
        return " AND ".join(self.condition(f, strip_goals=strip_goals) for f in self.q.filters)


def literal_regex(regex: str) -> str | None:
    """The one string an anchored regular expression of literal characters matches, if it is one.

    ``^/pricing$`` gives ``/pricing``; ``\\`` before a punctuation character (as ``re.escape``
    writes it) is that character; anything else (wildcards, classes, groups) gives None.
    """
    if len(regex) < 2 or not regex.startswith("^") or not regex.endswith("$"):
        return None
    body = regex[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            if i + 1 >= len(body) or body[i + 1].isalnum():
                return None
            out.append(body[i + 1])
            i += 2
        elif char in ".^$*+?()[]{}|":
            return None
        else:
            out.append(char)
            i += 1
    return "".join(out)
