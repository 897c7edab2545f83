"""The raw event store: monthly partitions of ``analytics_event``, batch inserts, deletion.

A batch goes in with COPY into a per-connection temporary staging table, then
``INSERT … SELECT … ON CONFLICT DO NOTHING`` on the primary key (site_id, timestamp,
event_id), so a redelivered batch inserts nothing new. Partitions are monthly (UTC) and
created on demand; the names of the ones that exist are cached per process.

``analytics_visit`` holds one row per stored visit (site, visitor id, visit id): its first and
last event, its counts and the attributes of its first event (the entry page, source, UTM
fields, device, country …) and the exit page of its last. The statement that inserts a batch's
events folds the rows it actually inserted into their visits (``ON CONFLICT DO UPDATE``), in the
same transaction, so a redelivered batch changes no visit either; renames and deletions
recompute or remove the visits they touch. The SQL query path reads visits from it instead of
sorting a range's events by visit (``analytics.query.sql``). Engagement events belong to no
visit row, as they count in no visit metric.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any

from django.db import connection, transaction

from analytics.fields import EVENT_FIELDS, FIELD_BY_NAME, STORE_COLUMNS, VISIT_ATTRIBUTES
from analytics.payloads import EnrichedEvent

logger = logging.getLogger(__name__)

COLUMNS = STORE_COLUMNS
# COPY's columns: those whose payload value is converted first, then the rest as they are.
_PLAIN = tuple(f.name for f in EVENT_FIELDS if f.name not in ("ts", "props"))
COPY_COLUMNS = ("timestamp", "visit_id", "props", *(FIELD_BY_NAME[name].store_column for name in _PLAIN))
_plain_values = itemgetter(*_PLAIN)
_COLUMN_LIST = ", ".join(f'"{c}"' for c in COPY_COLUMNS)
# A lock id that serialises partition DDL between workers.
_PARTITION_LOCK = 0x5350_4E4B_5061_7274

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_known_partitions: set[str] = set()

# Visit attributes: those of the visit's first event (by timestamp, then event id).
VISIT_ATTRS = VISIT_ATTRIBUTES
VISIT_COLUMNS = (
    "site_id",
    "visitor_id",
    "visit_id",
    "start",
    "entry_event_id",
    "end",
    "exit_event_id",
    "pageviews",
    "interactions",
    "events",
    "entry_page",
    "exit_page",
    *VISIT_ATTRS,
)
_VISIT_COLUMN_LIST = ", ".join(f'"{c}"' for c in VISIT_COLUMNS)
_ORDER = 'ORDER BY "timestamp", event_id'
# One visit row from its events (every ordered aggregate sorts the same way: one sort).
VISIT_AGGREGATES = ", ".join(
    [
        "site_id",
        "visitor_id",
        "visit_id",
        'min("timestamp")',
        f"(array_agg(event_id {_ORDER}))[1]",
        'max("timestamp")',
        f"(array_agg(event_id {_ORDER}))[count(*)::int]",
        "count(*) FILTER (WHERE name = 'pageview')",
        "count(*) FILTER (WHERE name = 'pageview' OR interactive)",
        "count(*)",
        f"(array_agg(pathname {_ORDER}))[1]",
        f"(array_agg(pathname {_ORDER}))[count(*)::int]",
        *(f"(array_agg({a} {_ORDER}))[1]" for a in VISIT_ATTRS),
    ]
)
_ENTRY_IS_NEW = '(EXCLUDED."start", EXCLUDED.entry_event_id) < (v."start", v.entry_event_id)'
_EXIT_IS_NEW = '(EXCLUDED."end", EXCLUDED.exit_event_id) > (v."end", v.exit_event_id)'
# A batch's new events of a visit already stored: the earlier first event and the later last
# one win, the counts add up (only rows the insert took reach this, so nothing counts twice).
VISIT_MERGE = ", ".join(
    [
        '"start" = least(v."start", EXCLUDED."start")',
        '"end" = greatest(v."end", EXCLUDED."end")',
        "pageviews = v.pageviews + EXCLUDED.pageviews",
        "interactions = v.interactions + EXCLUDED.interactions",
        "events = v.events + EXCLUDED.events",
        *(
            f"{c} = CASE WHEN {_ENTRY_IS_NEW} THEN EXCLUDED.{c} ELSE v.{c} END"
            for c in ("entry_event_id", "entry_page", *VISIT_ATTRS)
        ),
        *(f"{c} = CASE WHEN {_EXIT_IS_NEW} THEN EXCLUDED.{c} ELSE v.{c} END" for c in ("exit_event_id", "exit_page")),
    ]
)
_INSERTED_COLUMNS = ", ".join(
    f'"{c}"'
    for c in (
        "site_id",
        "visitor_id",
        "visit_id",
        "timestamp",
        "event_id",
        "name",
        "interactive",
        "pathname",
        *VISIT_ATTRS,
    )
)


def month_start(moment: datetime | date) -> date:
    return date(moment.year, moment.month, 1)


@lru_cache(maxsize=4096)
def _month_of_day(day: int) -> date:
    return month_start(EPOCH + timedelta(days=day))


def month_of(ts_us: int) -> date:
    """The first day of the UTC month of an epoch-microsecond timestamp (cached per day: the
    worker asks for every event)."""
    return _month_of_day(ts_us // 86_400_000_000)


def next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"analytics_event_p{month:%Y%m}"


def ensure_partitions(months: Iterable[date]) -> None:
    """Create the monthly partitions that do not exist yet (idempotent, concurrency-safe)."""
    for month in sorted(set(months)):
        name = partition_name(month)
        if name in _known_partitions:
            continue
        upper = next_month(month)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PARTITION_LOCK])
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF analytics_event "
                f"FOR VALUES FROM ('{month.isoformat()} 00:00:00+00') TO ('{upper.isoformat()} 00:00:00+00')"
            )
        _known_partitions.add(name)
        logger.info("store.partition_ready", extra={"partition": name})


def ensure_partitions_around(today: date, before: int = 1, after: int = 1) -> None:
    """The partitions of this month and ``before``/``after`` months around it."""
    month = month_start(today)
    months = [month]
    back = month
    for _ in range(before):
        back = month_start(back - timedelta(days=1))
        months.append(back)
    ahead = month
    for _ in range(after):
        ahead = next_month(ahead)
        months.append(ahead)
    ensure_partitions(months)


def forget_partitions() -> None:
    _known_partitions.clear()


def _row(event: EnrichedEvent, visit: int) -> tuple[object, ...]:
    """The event's values in the order of COPY_COLUMNS."""
    return (
        EPOCH + timedelta(microseconds=event["ts"]),
        visit,
        json.dumps(event["props"], separators=(",", ":")),
        *_plain_values(event),
    )


def insert_events(rows: Sequence[tuple[EnrichedEvent, int]]) -> int:
    """Store events with their visit ids; answers how many were new.

    Runs inside the caller's transaction when there is one.
    """
    if not rows:
        return 0
    ensure_partitions(month_start(EPOCH + timedelta(microseconds=event["ts"])) for event, _ in rows)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS analytics_event_staging "
            "(LIKE analytics_event INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cursor.copy(f"COPY analytics_event_staging ({_COLUMN_LIST}) FROM STDIN") as copy:
            for event, visit in rows:
                copy.write_row(_row(event, visit))
        # The rows leave the staging table as they are offered, so a second call in the same
        # transaction starts from an empty one (ON COMMIT DELETE ROWS clears it after a failure).
        # The rows the insert took (not those it already had) fold into their visits.
        cursor.execute(
            f"WITH staged AS (DELETE FROM analytics_event_staging RETURNING {_COLUMN_LIST}), "  # noqa: S608 - constant column lists
            f"inserted AS (INSERT INTO analytics_event ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM staged "
            f"ON CONFLICT DO NOTHING RETURNING {_INSERTED_COLUMNS}), "
            f"visits AS (INSERT INTO analytics_visit AS v ({_VISIT_COLUMN_LIST}) SELECT {VISIT_AGGREGATES} "
            "FROM inserted WHERE name <> 'engagement' GROUP BY site_id, visitor_id, visit_id "
            # In key order, so two workers upserting the same visits lock them in the same order.
            "ORDER BY site_id, visitor_id, visit_id "
            f"ON CONFLICT (site_id, visitor_id, visit_id) DO UPDATE SET {VISIT_MERGE}) "
            "SELECT count(*) FROM inserted"
        )
        row = cursor.fetchone()
        return int(row[0]) if row else 0


def rename_visits(site_id: int, renames: Sequence[tuple[int, int, int]]) -> None:
    """Give the stored events of merged or earlier-started visits their visit's id.

    ``renames`` holds (visitor_id, old visit id, new visit id), applied in order.
    """
    if not renames:
        return
    with transaction.atomic(), connection.cursor() as cursor:
        for visitor, old, new in renames:
            cursor.execute(
                "UPDATE analytics_event SET visit_id = %s WHERE site_id = %s AND visit_id = %s AND visitor_id = %s",
                [new, site_id, old, visitor],
            )
        touched = {(visitor, old) for visitor, old, _ in renames} | {(visitor, new) for visitor, _, new in renames}
        refresh_visits(site_id, sorted(touched))


def refresh_visits(site_id: int, visits: Sequence[tuple[int, int]]) -> None:
    """Recompute the rows of these (visitor id, visit id) from their stored events; a visit
    without events any more loses its row."""
    if not visits:
        return
    visitors, ids = [v for v, _ in visits], [i for _, i in visits]
    pairs = "SELECT * FROM unnest(%s::bigint[], %s::bigint[])"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM analytics_visit WHERE site_id = %s AND (visitor_id, visit_id) IN ({pairs})",  # noqa: S608 - constant text
            [site_id, visitors, ids],
        )
        cursor.execute(
            f"INSERT INTO analytics_visit ({_VISIT_COLUMN_LIST}) SELECT {VISIT_AGGREGATES} FROM analytics_event "  # noqa: S608 - constant text
            f"WHERE site_id = %s AND name <> 'engagement' AND (visitor_id, visit_id) IN ({pairs}) "
            "GROUP BY site_id, visitor_id, visit_id",
            [site_id, visitors, ids],
        )


def delete_site_events(site_id: int) -> int:
    """Delete a site's events and visits; answers how many events."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM analytics_visit WHERE site_id = %s", [site_id])
        cursor.execute("DELETE FROM analytics_event WHERE site_id = %s", [site_id])
        return cursor.rowcount


def _forget_visits_before(site_ids: Sequence[int] | None, cutoff: datetime) -> None:
    """After the events before ``cutoff`` went: the visits that started before it go too, and
    those that went on past it are recomputed from the events left."""
    sites = "" if site_ids is None else " AND site_id = ANY(%s)"
    params: list[Any] = [cutoff] if site_ids is None else [cutoff, list(site_ids)]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f'DELETE FROM analytics_visit WHERE "start" < %s{sites} RETURNING site_id, visitor_id, visit_id, "end"',  # noqa: S608 - constant text
            params,
        )
        spanning: dict[int, list[tuple[int, int]]] = {}
        for site_id, visitor, visit, end in cursor.fetchall():
            if end >= cutoff:
                spanning.setdefault(site_id, []).append((visitor, visit))
    for site_id, visits in spanning.items():
        refresh_visits(site_id, visits)


def delete_older_than(site_ids: Sequence[int], cutoff: datetime) -> int:
    """Delete the sites' events before ``cutoff`` (retention)."""
    if not site_ids:
        return 0
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                'DELETE FROM analytics_event WHERE site_id = ANY(%s) AND "timestamp" < %s',
                [list(site_ids), cutoff],
            )
            deleted = cursor.rowcount
        _forget_visits_before(site_ids, cutoff)
    return deleted


def existing_partitions() -> list[tuple[str, date]]:
    """(name, month) of every partition, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'analytics_event' ORDER BY c.relname"
        )
        names = [row[0] for row in cursor.fetchall()]
    found = []
    for name in names:
        stamp = name.removeprefix("analytics_event_p")
        if len(stamp) == 6 and stamp.isdigit():
            found.append((name, date(int(stamp[:4]), int(stamp[4:]), 1)))
    return found


def drop_partitions_before(cutoff: date) -> list[str]:
    """Drop whole partitions whose month ended before ``cutoff``: no plan keeps them."""
    dropped = []
    for name, month in existing_partitions():
        if next_month(month) <= cutoff:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PARTITION_LOCK])
                    cursor.execute(f"DROP TABLE IF EXISTS {name}")
                _forget_visits_before(None, datetime.combine(next_month(month), time(), tzinfo=UTC))
            _known_partitions.discard(name)
            dropped.append(name)
    return dropped
