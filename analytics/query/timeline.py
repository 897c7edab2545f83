"""Time buckets: the labels of every bucket in a range, in the site's timezone."""

from __future__ import annotations

import datetime as dt

from analytics.query.dates import DateRange


def _label(moment: dt.datetime | dt.date, granularity: str) -> str:
    if granularity in ("minute", "hour"):
        assert isinstance(moment, dt.datetime)
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.isoformat() if not isinstance(moment, dt.datetime) else moment.date().isoformat()


def time_labels(rng: DateRange, granularity: str) -> list[str]:
    """Every bucket label of ``rng``; wall-clock hours skipped by DST are absent, repeated ones appear once."""
    labels: list[str] = []
    if granularity in ("minute", "hour"):
        # Walk UTC instants at quarter-hour steps for hours (zones with :30 and :45 offsets).
        walk = dt.timedelta(minutes=1) if granularity == "minute" else dt.timedelta(minutes=15)
        moment = rng.start
        seen: set[str] = set()
        # The walk's steps start at the range's start, which need not sit on a bucket edge
        # ("24h" starts now minus 24 hours): the bucket of the range's last instant comes last.
        instants: list[dt.datetime] = []
        while moment < rng.end:
            instants.append(moment)
            moment += walk
        instants.append(rng.end - dt.timedelta(microseconds=1))
        for instant in instants:
            local = instant.astimezone(rng.tz).replace(tzinfo=None)
            local = local.replace(second=0, microsecond=0)
            if granularity == "hour":
                local = local.replace(minute=0)
            label = _label(local, granularity)
            if label not in seen:
                seen.add(label)
                labels.append(label)
        return sorted(labels)
    day = rng.first_day
    if granularity == "week":
        day -= dt.timedelta(days=day.weekday())
    elif granularity == "month":
        day = day.replace(day=1)
    while day <= rng.last_day:
        labels.append(day.isoformat())
        if granularity == "day":
            day += dt.timedelta(days=1)
        elif granularity == "week":
            day += dt.timedelta(days=7)
        else:
            day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return labels
