"""Date ranges of a query, resolved in the site's timezone.

A resolved range is a half-open interval of UTC instants ``[start, end)`` plus
the local calendar dates it covers, which time buckets and labels use.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from analytics.query.errors import QueryError

RELATIVE = ("day", "24h", "7d", "28d", "30d", "91d", "month", "6mo", "12mo", "year", "all")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The days a query may name: from the Unix epoch (no event is older, see analytics.ingest.store.EPOCH)
# to the year 2999. Python's dates end at the years 1 and 9999, where the arithmetic on a range
# (time zones, the day after its end, a comparison a year back) would overflow.
FIRST_DAY = dt.date(1970, 1, 1)
LAST_DAY = dt.date(2999, 12, 31)


@dataclass(frozen=True)
class DateRange:
    start: dt.datetime  # UTC, inclusive
    end: dt.datetime  # UTC, exclusive
    first_day: dt.date  # local
    last_day: dt.date  # local, inclusive
    tz: ZoneInfo

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    def shifted(self, start: dt.datetime, end: dt.datetime) -> DateRange:
        return DateRange(
            start=start,
            end=end,
            first_day=start.astimezone(self.tz).date(),
            last_day=(end - dt.timedelta(microseconds=1)).astimezone(self.tz).date(),
            tz=self.tz,
        )


def check_day(day: dt.date, field: str) -> dt.date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise QueryError(f"{field}: {day.isoformat()} is outside the days a query may name ({FIRST_DAY} to {LAST_DAY})")
    return day


def local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """The first instant of ``day`` in ``tz``, in UTC (midnight may not exist on a DST day)."""
    naive = dt.datetime.combine(day, dt.time())
    aware = naive.replace(tzinfo=tz)
    # A local midnight skipped by a DST jump resolves forward, like the wall clock.
    back = aware.astimezone(dt.UTC).astimezone(tz)
    if back.replace(tzinfo=None) != naive:
        aware = (naive + dt.timedelta(hours=1)).replace(tzinfo=tz)
    return aware.astimezone(dt.UTC)


def days_range(first: dt.date, last: dt.date, tz: ZoneInfo) -> DateRange:
    if last < first:
        raise QueryError("date_range: the end is before the start")
    return DateRange(
        start=local_midnight(first, tz),
        end=local_midnight(last + dt.timedelta(days=1), tz),
        first_day=first,
        last_day=last,
        tz=tz,
    )


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + (day.month - 1) + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _parse_point(value: Any, tz: ZoneInfo, *, end: bool) -> tuple[dt.datetime, dt.date]:
    if not isinstance(value, str):
        raise QueryError("date_range: each bound must be an ISO 8601 date or date-time string")
    if _DATE.match(value):
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise QueryError(f"date_range: {value!r} is not a valid date") from None
        check_day(day, "date_range")
        instant = local_midnight(day + dt.timedelta(days=1) if end else day, tz)
        return instant, day
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(f"date_range: {value!r} is not a valid ISO 8601 date or date-time") from None
    check_day(moment.date(), "date_range")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    instant = moment.astimezone(dt.UTC)
    if end:
        # A date-time end is inclusive, as in Plausible ("15:59:59" includes that second).
        instant += dt.timedelta(seconds=1) if moment.microsecond == 0 else dt.timedelta(microseconds=1)
    return instant, moment.astimezone(tz).date()


def resolve(
    value: Any, tz: ZoneInfo, *, now: dt.datetime, first_event_day: dt.date | None, today: dt.date | None = None
) -> DateRange:
    """Resolve a Stats API ``date_range`` value; ``today`` anchors relative periods (v1's ``date``)."""
    local_now = now.astimezone(tz)
    anchor = check_day(today, "date") if today else local_now.date()
    if isinstance(value, list):
        if len(value) != 2:
            raise QueryError("date_range: a custom range is a list of two ISO 8601 dates or date-times")
        start, first = _parse_point(value[0], tz, end=False)
        end, _ = _parse_point(value[1], tz, end=True)
        if end <= start:
            raise QueryError("date_range: the end is before the start")
        if end - start > dt.timedelta(days=366 * 20):
            raise QueryError("date_range: a range may span at most 20 years")
        last = (end - dt.timedelta(microseconds=1)).astimezone(tz).date()
        return DateRange(start=start, end=end, first_day=first, last_day=last, tz=tz)
    if not isinstance(value, str) or value not in RELATIVE:
        raise QueryError(f"date_range: must be one of {', '.join(RELATIVE)} or a [start, end] pair")
    if value == "24h":
        end = now.astimezone(dt.UTC)
        start = end - dt.timedelta(hours=24)
        return DateRange(start, end, start.astimezone(tz).date(), local_now.date(), tz)
    if value == "day":
        return days_range(anchor, anchor, tz)
    if value.endswith("d"):
        n = int(value[:-1])
        return days_range(anchor - dt.timedelta(days=n - 1), anchor, tz)
    if value == "month":
        return days_range(anchor.replace(day=1), _add_months(anchor, 1) - dt.timedelta(days=1), tz)
    if value in ("6mo", "12mo"):
        n = int(value[:-2])
        return days_range(_add_months(anchor, -(n - 1)), _add_months(anchor, 1) - dt.timedelta(days=1), tz)
    if value == "year":
        return days_range(anchor.replace(month=1, day=1), anchor.replace(month=12, day=31), tz)
    # "all": from the first stored event (or today) to today.
    first = min(first_event_day or anchor, anchor)
    return days_range(first, anchor, tz)


def previous_period(rng: DateRange) -> DateRange:
    if rng.start.astimezone(rng.tz).time() == dt.time() and rng.end.astimezone(rng.tz).time() == dt.time():
        length = rng.days
        last = rng.first_day - dt.timedelta(days=1)
        return days_range(last - dt.timedelta(days=length - 1), last, rng.tz)
    span = rng.end - rng.start
    return rng.shifted(rng.start - span, rng.start)


def year_over_year(rng: DateRange) -> DateRange:
    def back(day: dt.date) -> dt.date:
        try:
            return day.replace(year=day.year - 1)
        except ValueError:  # 29 February
            return day.replace(year=day.year - 1, day=28)

    if rng.start.astimezone(rng.tz).time() == dt.time() and rng.end.astimezone(rng.tz).time() == dt.time():
        return days_range(back(rng.first_day), back(rng.last_day), rng.tz)
    start_local = rng.start.astimezone(rng.tz)
    end_local = rng.end.astimezone(rng.tz)
    start = (
        start_local.replace(year=start_local.year - 1)
        if not (start_local.month == 2 and start_local.day == 29)
        else start_local - dt.timedelta(days=366)
    )
    end = (
        end_local.replace(year=end_local.year - 1)
        if not (end_local.month == 2 and end_local.day == 29)
        else end_local - dt.timedelta(days=366)
    )
    return rng.shifted(start.astimezone(dt.UTC), end.astimezone(dt.UTC))
