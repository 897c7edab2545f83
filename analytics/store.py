"""The raw event store: monthly partitions of ``analytics_event``, batch inserts, deletion.

A batch goes in with COPY into a per-connection temporary staging table, then
``INSERT … SELECT … ON CONFLICT DO NOTHING`` on the primary key (site_id, timestamp,
event_id), so a redelivered batch inserts nothing new. Partitions are monthly (UTC) and
created on demand; the names of the ones that exist are cached per process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

from django.db import connection, transaction

from analytics.payloads import EnrichedEvent

logger = logging.getLogger(__name__)

COLUMNS = (
    "site_id",
    "timestamp",
    "event_id",
    "name",
    "visitor_id",
    "visit_id",
    "hostname",
    "pathname",
    "referrer",
    "referrer_source",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "country",
    "browser",
    "browser_version",
    "os",
    "os_version",
    "device",
    "screen",
    "props",
    "revenue_amount",
    "revenue_currency",
    "interactive",
    "scroll_depth",
    "engagement_ms",
)
_TEXT = COLUMNS[6:23]
_COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMNS)
# A lock id that serialises partition DDL between workers.
_PARTITION_LOCK = 0x5350_4E4B_5061_7274

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_known_partitions: set[str] = set()


def month_start(moment: datetime | date) -> date:
    return date(moment.year, moment.month, 1)


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
    return (
        event["site_id"],
        EPOCH + timedelta(microseconds=event["ts"]),
        event["event_id"],
        event["name"],
        event["visitor_id"],
        visit,
        *(event[c] for c in _TEXT),  # type: ignore[literal-required]
        json.dumps(event["props"], separators=(",", ":")),
        event["revenue_amount"],
        event["revenue_currency"],
        event["interactive"],
        event["scroll_depth"],
        event["engagement_ms"],
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
        cursor.execute(
            f"WITH staged AS (DELETE FROM analytics_event_staging RETURNING {_COLUMN_LIST}) "  # noqa: S608 - constant column list
            f"INSERT INTO analytics_event ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM staged ON CONFLICT DO NOTHING"
        )
        return cursor.rowcount


def rename_visits(site_id: int, renames: Sequence[tuple[int, int, int]]) -> None:
    """Give the stored events of merged or earlier-started visits their visit's id.

    ``renames`` holds (visitor_id, old visit id, new visit id), applied in order.
    """
    if not renames:
        return
    with connection.cursor() as cursor:
        for visitor, old, new in renames:
            cursor.execute(
                "UPDATE analytics_event SET visit_id = %s WHERE site_id = %s AND visit_id = %s AND visitor_id = %s",
                [new, site_id, old, visitor],
            )


def delete_site_events(site_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM analytics_event WHERE site_id = %s", [site_id])
        return cursor.rowcount


def delete_older_than(site_ids: Sequence[int], cutoff: datetime) -> int:
    """Delete the sites' events before ``cutoff`` (retention)."""
    if not site_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            'DELETE FROM analytics_event WHERE site_id = ANY(%s) AND "timestamp" < %s',
            [list(site_ids), cutoff],
        )
        return cursor.rowcount


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
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PARTITION_LOCK])
                cursor.execute(f"DROP TABLE IF EXISTS {name}")
            _known_partitions.discard(name)
            dropped.append(name)
    return dropped
