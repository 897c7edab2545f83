"""How bench/e2e sees the pipeline: the site's stored and counted events, sampled cheaply, and
the lag of each event from these samples."""

from __future__ import annotations

import datetime as dt
import os
import re
import time
import zoneinfo
from pathlib import Path
from typing import Any

from django.db import connection

from analytics.ingest import rollups

SAMPLE_SECONDS = 0.1
# PostgreSQL is counted as a frozen part (events older than the boundary: the slice it moved
# over is added each time it moves, and the whole part recounted every minute) plus the recent
# window, so a sample stays cheap at 100 ms.
BOUNDARY_STEP = 5.0
BOUNDARY_MARGIN = 10.0
FULL_RECOUNT_SECONDS = 60.0


class Counts:
    """The site's stored events (PostgreSQL) and counted pageviews (Redis), cheaply."""

    def __init__(self, site_id: int, timezone: str, since: dt.datetime) -> None:
        self.site_id = site_id
        self.cursor = connection.cursor()
        self.zone = zoneinfo.ZoneInfo(timezone)
        self.since = since
        self.boundary: dt.datetime | None = None
        self.frozen = 0
        self.recounted = 0.0

    def _count(self, sql: str, params: list[int | dt.datetime | None]) -> int:
        self.cursor.execute(sql, params)
        row = self.cursor.fetchone()
        return int(row[0]) if row else 0

    def stored(self) -> int:
        now = dt.datetime.now(dt.UTC)
        boundary = now - dt.timedelta(seconds=BOUNDARY_MARGIN)
        boundary = dt.datetime.fromtimestamp(boundary.timestamp() // BOUNDARY_STEP * BOUNDARY_STEP, dt.UTC)
        if boundary != self.boundary:
            if self.boundary is None or time.monotonic() - self.recounted > FULL_RECOUNT_SECONDS:
                # In full now and then: rows the worker stored behind the boundary (a lag of more
                # than BOUNDARY_MARGIN) count from then on.
                self.frozen = self._count(
                    "SELECT count(*) FROM analytics_event WHERE site_id = %s AND timestamp < %s",
                    [self.site_id, boundary],
                )
                self.recounted = time.monotonic()
            else:  # the slice the boundary moved over
                self.frozen += self._count(
                    "SELECT count(*) FROM analytics_event WHERE site_id = %s AND timestamp >= %s AND timestamp < %s",
                    [self.site_id, self.boundary, boundary],
                )
            self.boundary = boundary
        return self.frozen + self._count(
            "SELECT count(*) FROM analytics_event WHERE site_id = %s AND timestamp >= %s", [self.site_id, self.boundary]
        )

    def stored_exact(self) -> int:
        return self._count("SELECT count(*) FROM analytics_event WHERE site_id = %s", [self.site_id])

    def counted(self) -> int:
        first = self.since.astimezone(self.zone).date()
        last = dt.datetime.now(self.zone).date()
        days = [(first + dt.timedelta(days=n)).strftime("%Y%m%d") for n in range((last - first).days + 1)]
        return sum(row["pageviews"] for row in rollups.counters(self.site_id, "d", days))

    def pathnames(self) -> list[str]:
        self.cursor.execute("SELECT pathname FROM analytics_event WHERE site_id = %s", [self.site_id])
        return [row[0] for row in self.cursor.fetchall()]


def loss_figures(counts: Counts, expected: set[str]) -> dict[str, int | bool]:
    """The final counts against the pathnames of the events sent (``expected``), after a second
    in which anything arriving late (duplicates, rejected-but-queued) shows."""
    time.sleep(1)
    stored, counted, paths = counts.stored_exact(), counts.counted(), counts.pathnames()
    found = set(paths)
    figures: dict[str, int | bool] = {
        "counted_redis": counted,
        "stored_postgresql": stored,
        "missing_from_postgresql": len(expected - found),
        "stored_not_accepted": len(found - expected),
        "duplicate_rows": len(paths) - len(found),
    }
    figures["zero_loss"] = (
        len(expected) == counted == stored and figures["missing_from_postgresql"] == 0
        and figures["stored_not_accepted"] == 0
    )  # fmt: skip
    return figures


def machine_figures(began: dt.datetime, load_before: tuple[float, float, float]) -> dict[str, object]:
    return {
        "date": began.strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "load_average_before": round(load_before[0], 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def date_row(figures: dict[str, Any]) -> tuple[str, str]:
    """The report's row of ``machine_figures``."""
    return (
        "date",
        f"{figures['date']}, {figures['cores']} cores, load {figures['load_average_before']} → "
        f"{figures['load_average_after']}",
    )


def loss_rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's rows of ``loss_figures``."""
    return [
        ("counted in Redis", f"{figures['counted_redis']:,}"),
        ("stored in PostgreSQL", f"{figures['stored_postgresql']:,}"),
        ("accepted not stored / stored not accepted / duplicates",
         f"{figures['missing_from_postgresql']} / {figures['stored_not_accepted']} / {figures['duplicate_rows']}"),
        ("zero loss", "yes" if figures["zero_loss"] else "NO"),
    ]  # fmt: skip


class Sampler:
    """Samples of (moment, events both stored and counted), and what each sample cost."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.samples: list[tuple[float, int]] = []
        self.cost: list[float] = []

    def sample(self) -> tuple[int, int]:
        before = time.monotonic()
        stored, counted = self.counts.stored(), self.counts.counted()
        self.samples.append((before, min(stored, counted)))
        self.cost.append(time.monotonic() - before)
        return stored, counted

    def drain(self, goal: int, timeout: float) -> tuple[bool, float]:
        """Samples until both counts reach ``goal`` (bounded by ``timeout``): (drained, seconds)."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            stored, counted = self.sample()
            if stored >= goal and counted >= goal:
                return True, time.monotonic() - began
            time.sleep(SAMPLE_SECONDS)
        return False, time.monotonic() - began


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))]


def ms(sorted_values: list[float], fraction: float) -> float | None:
    """A percentile in milliseconds, None when there is nothing to measure."""
    value = percentile(sorted_values, fraction)
    return None if value is None else round(value * 1000, 1)


def lags(accepted_at: list[float], samples: list[tuple[float, int]], before: int = 0) -> list[float]:
    """The lags of ``lags_in_order``, sorted."""
    return sorted(lags_in_order(accepted_at, samples, before))


def lags_in_order(accepted_at: list[float], samples: list[tuple[float, int]], before: int = 0) -> list[float]:
    """Per accepted event (in 202 order): first sample at/after its 202 where both counts ≥ its rank
    (counting from ``before``, the events the site already had), in the order of ``accepted_at``.

    An event never reached gets the time until the last sample (a lower bound; the run then
    reports ``drained`` false).
    """
    result: list[float] = []
    j = 0
    for rank, at in enumerate(accepted_at, start=before + 1):
        while j < len(samples) and (samples[j][0] < at or samples[j][1] < rank):
            j += 1
        if j == len(samples):
            # Not there by the last sample (the drain timed out): count the time waited so far, a
            # lower bound, so the percentiles do not leave the slowest events out.
            result.extend(max(0.0, samples[-1][0] - later) for later in accepted_at[rank - before - 1 :])
            break
        result.append(samples[j][0] - at)
    return result


def lag_figures(lag: list[float]) -> dict[str, float | None]:
    return {
        "lag_p50_ms": ms(lag, 0.50),
        "lag_p95_ms": ms(lag, 0.95),
        "lag_p99_ms": ms(lag, 0.99),
        "lag_max_ms": round(lag[-1] * 1000, 1) if lag else None,
    }


def batches(log: Path, since: int = 0) -> list[tuple[int, int]]:
    """(events, broker messages) of each group the worker applied, from its ``ingest.batch_done``
    log lines past byte ``since`` (a pool process applies the messages waiting in the queue together)."""
    with log.open("rb") as file:
        file.seek(since)
        text = file.read().decode(errors="replace")
    return [
        (int(events), int(messages))
        for events, messages in re.findall(r"ingest\.batch_done .*?\bevents=(\d+) .*?\bmessages=(\d+)", text)
    ]


def worker_figures(
    log: Path, cpu: float, events: int, wall: float, concurrency: int, since: int = 0
) -> dict[str, float | int | None]:
    """What the worker's log (past byte ``since``) and CPU time say of how it applied ``events``."""
    sizes = batches(log, since)
    messages = sum(m for _, m in sizes)
    applied = sum(e for e, _ in sizes)
    return {
        "broker_messages": messages,
        "events_per_message": round(applied / messages, 2) if messages else None,
        "groups_applied": len(sizes),
        "events_per_group": round(applied / len(sizes), 2) if sizes else None,
        "worker_cpu_us_per_event": round(cpu / max(1, events) * 1e6),
        "worker_cpu_ms_per_message": round(cpu / max(1, messages) * 1e3, 2),
        "worker_cpu_share": round(cpu / (wall * concurrency), 2),
    }


def print_table(rows: list[tuple[str, str]]) -> None:
    print("\n| measure | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
