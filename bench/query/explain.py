"""EXPLAIN ANALYZE the SQL path's statement for each of the benchmark's filtered queries.

    .venv/bin/python -m bench.query.explain --domain bench-query-10000000.test [--date-range 2026-01-01,2026-01-30] [--only N]

Prints each statement's plan (with buffers), to see where the time goes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os

import django

from spinnakr import embedded

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")
embedded.acquire()
django.setup()

from django.db import connection, transaction  # noqa: E402

from accounts.models import Site  # noqa: E402
from analytics.query import sql as sql_path  # noqa: E402
from analytics.query.engine import site_goals  # noqa: E402
from analytics.query.model import parse_query  # noqa: E402
from bench.query.run import DASHBOARD, FILTERED  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--domain", required=True)
    parser.add_argument("--date-range", default="", help="first,last day instead of each query's own range")
    parser.add_argument("--only", type=int, action="append", help="index into the query list (repeatable)")
    parser.add_argument("--dashboard", action="store_true", help="the dashboard's queries instead of the filtered ones")
    parser.add_argument("--no-analyze", action="store_true")
    parser.add_argument("--plain", action="store_true", help="the plain statement (without the shortcuts)")
    parser.add_argument("--set", action="append", default=[], help="a setting for the statement, e.g. work_mem=64MB")
    parser.add_argument("--summary", action="store_true", help="only each statement's execution time")
    args = parser.parse_args()
    site = Site.objects.get(domain=args.domain)
    goals = site_goals(site)
    queries = DASHBOARD if args.dashboard else FILTERED
    for i, (label, body) in enumerate(queries):
        if args.only and i not in args.only:
            continue
        if args.date_range:
            body = {**body, "date_range": args.date_range.split(","), "include": {}}
        query = parse_query(
            site, body, goals={g.name for g in goals}, now=dt.datetime.now(dt.UTC), first_event_day=None
        )
        builder = sql_path.SqlBuilder(query, goals, plain=args.plain)
        statement = builder.build()
        print(f"==== {i}: {label}")
        with transaction.atomic(), connection.cursor() as cur:
            sql_path.apply_statement_settings(cur)  # as sql.execute does
            for setting in args.set:
                name, value = setting.split("=", 1)
                cur.execute("SELECT set_config(%s, %s, true)", [name, value])
            explain = "EXPLAIN" if args.no_analyze else "EXPLAIN (ANALYZE, BUFFERS)"
            cur.execute(f"{explain} {statement}", builder.p.values)
            for (line,) in cur.fetchall():
                if not args.summary or "Execution Time" in line:
                    print(line)


if __name__ == "__main__":
    try:
        main()
    finally:
        embedded.release()
