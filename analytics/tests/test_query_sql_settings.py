"""The SQL path's statements run under their own settings: a time limit and the planner's."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection, transaction

from accounts.models import Account, Site
from analytics.query import sql
from analytics.query.model import parse_query
from analytics.tests.query_support import add_events

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]


def test_statements_run_without_jit() -> None:
    # A forced nested loop (the LATERAL look-ups of the range's edge visits) carries the planner's
    # disable cost, above every JIT threshold: a PostgreSQL built with LLVM compiled each such
    # statement for about a second. The embedded server has no JIT; the machine's has.
    account = Account.objects.create(name="Settings")
    site = Site.objects.create(account=account, domain="jit.test")
    first_day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=4)
    start = dt.datetime.combine(first_day, dt.time(23, 50), tzinfo=dt.UTC)
    add_events(
        site,
        [
            {"ts": start + dt.timedelta(minutes=m), "visitor": v, "pathname": f"/{m}", "country": "DE"}
            for v in (1, 2)
            for m in (0, 5, 20)
        ],
    )
    body = {
        "metrics": ["visitors", "visits", "bounce_rate", "visit_duration"],
        "filters": [["is", "visit:country", ["DE"]]],
        "date_range": [(first_day + dt.timedelta(days=1)).isoformat(), (first_day + dt.timedelta(days=2)).isoformat()],
    }
    query = parse_query(site, body, goals=set(), now=dt.datetime.now(dt.UTC), first_event_day=None)
    builder = sql.SqlBuilder(query, [])

    with transaction.atomic(), connection.cursor() as cur:
        sql.apply_statement_settings(cur)
        cur.execute("SHOW jit")
        jit = cur.fetchone()[0]
        cur.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {builder.build()}", builder.p.values)
        plan: list[dict[str, Any]] = cur.fetchone()[0]

    assert "JIT" not in plan[0]
    assert jit == "off"
    assert sql.execute(query, []).rows[0][1]["visits"] == 2
