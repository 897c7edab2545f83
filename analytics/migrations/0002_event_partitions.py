"""Monthly partitions of analytics_event for the previous, current and next month.

Later months are created by the worker on demand and by the beat task
``analytics.ensure_partitions``; this migration only makes a fresh database ready.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.db import migrations


def _month(year: int, month: int) -> date:
    year += (month - 1) // 12
    return date(year, (month - 1) % 12 + 1, 1)


def create_partitions(apps, schema_editor):
    today = datetime.now(UTC)
    for offset in (-1, 0, 1):
        start = _month(today.year, today.month + offset)
        end = _month(start.year, start.month + 1)
        schema_editor.execute(
            f"CREATE TABLE IF NOT EXISTS analytics_event_p{start:%Y%m} PARTITION OF analytics_event "
            f"FOR VALUES FROM ('{start.isoformat()} 00:00:00+00') TO ('{end.isoformat()} 00:00:00+00')"
        )


class Migration(migrations.Migration):
    dependencies = [("analytics", "0001_event_table")]
    operations = [migrations.RunPython(create_partitions, migrations.RunPython.noop)]
