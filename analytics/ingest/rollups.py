"""Redis rollups: the key model, the per-batch script and the readers.

Every key of a site starts with the hash tag ``{s:<site_id>}`` (so one site's keys share a
Redis Cluster slot and one script can update them atomically). Buckets are in the site's
timezone: ``<minute>`` is ``YYYYMMDDHHMM``, ``<hour>`` ``YYYYMMDDHH``, ``<day>`` ``YYYYMMDD``.

Counters (hashes; fields ``pageviews``, ``events``, ``visits``, ``bounces``, ``duration`` —
always all five, integers; duration is the summed visit length in seconds):
    {s:<id>}:m:<minute>   expires 48 h after the minute
    {s:<id>}:h:<hour>     expires 90 days after the hour
    {s:<id>}:d:<day>      expires the plan's retention after the day
``events`` counts pageviews and custom events; engagement events count in no counter.
Visits, bounces and duration belong to the bucket of the visit's first event. A bounce is a
visit with at most one interactive event (pageviews are interactive).

Unique visitors (HyperLogLog, PFCOUNT over several keys of a site for ranges):
    {s:<id>}:uv:m:<minute>  {s:<id>}:uv:h:<hour>  {s:<id>}:uv:d:<day>

Breakdowns per day (sorted sets, member → value; a member whose value is 0 is absent):
    {s:<id>}:top:<dim>:d:<day>:<metric>
  The dimensions and how each is kept come from the field registry (``analytics.fields``,
  roles; the script receives them as ``ROLLUP_SPEC``):
  event dimensions (page, hostname and the visitor's attributes: country, browser, …), from
  each pageview or custom event itself, metrics ``pageviews`` and ``events``, and unique
  visitors per member in the HyperLogLog ``{s:<id>}:uvm:<dim>:d:<day>:<member>``;
  name (event names: goals; metric ``events`` only), props:<key> (custom property values;
  ``events`` only);
  visit dimensions, from the visit's entry event, metrics ``visits``, ``bounces``,
  ``duration`` (``exit_page``: ``visits`` = exits only): entry_page, exit_page, the
  acquisition dimensions (source, channel, referrer, utm_*), which also keep the
  ``pageviews`` and ``events`` of their visits, and the visitor's attributes
  engagement (on ``page``): ``engagements`` (count), ``time_ms`` (summed engaged time),
  ``scroll_sum`` and ``scroll_n`` (scroll depth sum and count: average = sum / n).
  An empty member ``""`` means absent (direct traffic, unknown country…).
  A closed day is compacted (``analytics.ingest.compact``, beat): its dense HyperLogLogs are
  rewritten sparse, and its sorted sets of a dimension move into one string
  ``{s:<id>}:topc:<dim>:d:<day>``, which readers add to any sorted set written since.
What Redis does not serve exactly goes to SQL: unique visitors per member of a visit
dimension that is not also an event dimension (entry_page, exit_page, source, channel,
referrer, utm_*), any filter, several dimensions, and ranges crossing ``complete_since``.

Visits and state:
    {s:<id>}:sess:<visitor_id>  JSON list of the visitor's recent visits (start, end, entry,
                                exit, counts); expires 25.5 h after the visitor's newest event
    {s:<id>}:live               sorted set visitor_id → last seen (epoch seconds); "visitors
                                now" = members seen in the last 5 minutes
    {s:<id>}:batch:<batch_id>   the batch's result (visit starts, a byte an event), 48 h: a
                                redelivered batch gets the same answer and changes nothing
    {s:<id>}:meta               hash: ``complete_since`` (YYYY-MM-DD, site tz: first day whose
                                rollups are complete; set by the site's first batch when the
                                site is younger than ``rollups:epoch``, else by a rebuild),
                                ``rebuilding`` ("1" while a rebuild runs), ``compacted_until``
                                (YYYYMMDD: last day compacted)
    rollups:epoch               (no site tag) epoch ms since when this Redis saw every batch:
                                0 on a fresh installation, the moment of recovery after a loss
    {s:<id>}:rb:…               the rebuild's namespace (see analytics/ingest/rebuild.py)

Readers: ``counters``, ``visitors``, ``top``, ``member_values``, ``member_visitors``,
``visitors_now``, ``meta`` (``top`` and ``member_values`` read sorted sets only: a day not yet
compacted; the query path adds the compacted strings, ``compact.compacted_values``).

The scripts name only the site's meta key in KEYS (for routing); every key they touch carries
the same hash tag, so on Redis Cluster they run within the site's slot.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

import orjson
from django.db import connection

from analytics.fields import COUNTER_FIELDS, ROLLUP_ATTRIBUTES, ROLLUP_SPEC
from analytics.ingest.batch_result import BatchResult, parse_result
from analytics.ingest.siteinfo import SiteSettings
from analytics.payloads import EnrichedEvent
from spinnakr import metrics, redis_clients, redis_scripts

MARKER_TTL = 48 * 3600
# Events of one script call at most (a single larger batch still goes whole; see apply_batches).
# A long script holds the one Redis thread (the collector's publishes wait behind it when Redis is
# also the broker), a short one costs the worker more calls; 500 is what keeps the end-to-end
# lag within its goal (100 and 500 compared in bench/HISTORY.md).
SCRIPT_EVENTS = 500
MINUTE_TTL = 48 * 3600
HOUR_TTL = 90 * 86400
LIVE_WINDOW = 300
Granularity = Literal["m", "h", "d"]
# (rollup dimension, enriched event key) of each visit attribute: the prepared event's "a".
VISIT_ATTRS = ROLLUP_ATTRIBUTES


class PreparedEvent(TypedDict):
    t: int  # epoch ms
    id: str
    v: str  # visitor id (a string: Lua numbers are doubles)
    k: Literal["p", "c", "e"]  # pageview, custom event, engagement
    ia: int
    n: str
    m: str
    h: str
    d: str
    mx: int
    hx: int
    dx: int
    pg: str
    host: str
    a: dict[str, str]
    pr: dict[str, str]
    em: NotRequired[int]
    sd: NotRequired[int]
    b: NotRequired[int]  # the event's batch, when several are applied together (1-based)


def prefix(site_id: int) -> str:
    return f"{{s:{site_id}}}:"


def rebuild_prefix(site_id: int) -> str:
    return f"{{s:{site_id}}}:rb:"


@cache
def _script(name: str) -> Any:
    # Called with ``client=``: a script object runs on any server (EVALSHA, loaded on NOSCRIPT).
    source = (Path(__file__).parent / "lua" / f"{name}.lua").read_text()
    return redis_clients.data().register_script(source)


class _Buckets:
    """Minute, hour and day bucket names and expiry times of a site, cached per UTC minute."""

    def __init__(self, info: SiteSettings) -> None:
        self.info = info
        self.day_ttl = (info.retention_days + 1) * 86400
        self._cache: dict[int, tuple[str, str, str, int, int, int]] = {}

    def __call__(self, ts_ms: int) -> tuple[str, str, str, int, int, int]:
        minute = ts_ms // 60000
        hit = self._cache.get(minute)
        if hit is not None:
            return hit
        local = datetime.fromtimestamp(minute * 60, UTC).astimezone(self.info.tz)
        hour_start = local.replace(minute=0)
        day_start = datetime(local.year, local.month, local.day, tzinfo=self.info.tz)
        value = (
            local.strftime("%Y%m%d%H%M"),
            local.strftime("%Y%m%d%H"),
            local.strftime("%Y%m%d"),
            minute * 60 + MINUTE_TTL,
            int(hour_start.timestamp()) + HOUR_TTL,
            int(day_start.timestamp()) + self.day_ttl,
        )
        self._cache[minute] = value
        return value


def event_order(event: EnrichedEvent) -> tuple[int, str]:
    """The order the script wants events in: event time (ms), then id."""
    return (event["ts"] // 1000, event["event_id"])


def prepare(info: SiteSettings, events: Iterable[EnrichedEvent]) -> list[PreparedEvent]:
    """The script's view of a site's events, in the order given (sort them by ``event_order``)."""
    buckets = _Buckets(info)
    prepared: list[PreparedEvent] = []
    for event in events:
        ts_ms = event["ts"] // 1000
        m, h, d, mx, hx, dx = buckets(ts_ms)
        name = event["name"]
        kind: Literal["p", "c", "e"] = "p" if name == "pageview" else "e" if name == "engagement" else "c"
        item: PreparedEvent = {
            "t": ts_ms,
            "id": event["event_id"],
            "v": str(event["visitor_id"]),
            "k": kind,
            "ia": 1 if kind == "p" or (kind == "c" and event["interactive"]) else 0,
            "n": name,
            "m": m,
            "h": h,
            "d": d,
            "mx": mx,
            "hx": hx,
            "dx": dx,
            "pg": event["pathname"],
            "host": event["hostname"],
            "a": {attr: str(event[source]) for attr, source in VISIT_ATTRS},  # type: ignore[literal-required]
            "pr": dict(event["props"]),
        }
        if kind == "e":
            if event["engagement_ms"] is not None:
                item["em"] = event["engagement_ms"]
            if event["scroll_depth"] is not None:
                item["sd"] = event["scroll_depth"]
        prepared.append(item)
    return prepared


EPOCH_KEY = "rollups:epoch"


def rollups_epoch(server: redis_clients.Rollups, now_ms: int) -> int:
    """Epoch ms since when the Redis ``server`` has seen every batch (``rollups:epoch``).

    Set when the key is missing: to 0 while PostgreSQL holds no event of the server's sites (a
    fresh installation: Redis has everything), else to now (Redis was lost or replaced: only
    sites created from now on are complete without a rebuild).
    """
    raw = server.get(EPOCH_KEY)
    if raw is None:
        server.set(EPOCH_KEY, now_ms if _holds_events(server) else 0, nx=True)
        raw = server.get(EPOCH_KEY)
    return int(str(raw or 0))


def _holds_events(server: redis_clients.Rollups) -> bool:
    """Whether PostgreSQL holds an event of a site whose rollups live on ``server`` (of any site
    when there is one server): a fresh server beside others that already counted is complete."""
    with connection.cursor() as cursor:
        if len(redis_clients.rollup_urls()) == 1:
            cursor.execute("SELECT EXISTS (SELECT 1 FROM analytics_event)")
        else:
            cursor.execute("SELECT id FROM accounts_site")
            ids = [site for (site,) in cursor.fetchall() if redis_clients.for_site(site) is server]
            cursor.execute("SELECT EXISTS (SELECT 1 FROM analytics_event WHERE site_id = ANY(%s))", [ids])
        row = cursor.fetchone()
    return bool(row is not None and row[0])


def _first_complete_day(info: SiteSettings, epoch_ms: int) -> str:
    """``complete_since`` for a site whose meta hash has none, or "" to leave it unset.

    Only a site created after ``rollups:epoch`` can trust its first batch: for an older site a
    missing meta means lost rollups, and the query planner then answers from SQL and queues a
    rebuild, which sets ``complete_since``.
    """
    if int(info.created.timestamp() * 1000) < epoch_ms:
        return ""
    return info.created_day.isoformat()


def apply_batches(
    parts: Sequence[tuple[SiteSettings, str, Sequence[PreparedEvent]]], now_ms: int | None = None
) -> list[BatchResult]:
    """Apply several (site, batch) parts, each once; answers their results in order.

    A site's parts go to one call of the script, which checks each batch's marker and applies
    the events of the batches it has not seen together (one write per key and member for the
    group instead of one per batch); the sites' calls share one round trip. Each part's
    events must be in ``event_order``.
    """
    if not parts:
        return []
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    script = _script("apply_batch")
    by_site: dict[int, list[int]] = {}
    for n, (info, _, _) in enumerate(parts):
        by_site.setdefault(info.site_id, []).append(n)
    # A site's batches go to one call up to SCRIPT_EVENTS events, then to the next call: a
    # script blocks the server while it runs, and a short one lets other clients (the
    # collector's publishes, when Redis is also the broker; the dashboards' reads) in between.
    # The calls of the sites on one server share one round trip.
    servers: dict[int, tuple[redis_clients.Rollups, list[tuple[int, list[int]]]]] = {}
    for site, indexes in by_site.items():
        server = redis_clients.for_site(site)
        calls = servers.setdefault(id(server), (server, []))[1]
        size = 0
        for n in indexes:
            count = len(parts[n][2])
            if not calls or calls[-1][0] != site or (size and size + count > SCRIPT_EVENTS):
                calls.append((site, []))
                size = 0
            calls[-1][1].append(n)
            size += count
    results: list[BatchResult | None] = [None] * len(parts)
    for server, calls in servers.values():
        epoch = rollups_epoch(server, now)
        scripts: list[redis_scripts.Call] = []
        for site, indexes in calls:
            merged: list[PreparedEvent] = []
            for k, n in enumerate(indexes, 1):
                for event in parts[n][2]:
                    event["b"] = k
                    merged.append(event)
            if len(indexes) > 1:
                merged.sort(key=lambda e: (e["t"], e["id"]))
            scripts.append(
                (
                    script,
                    [f"{prefix(site)}meta"],
                    [
                        prefix(site),
                        json.dumps([parts[n][1] for n in indexes]),
                        MARKER_TTL,
                        now,
                        _first_complete_day(parts[indexes[0]][0], epoch),
                        orjson.dumps(merged),
                        "live",
                        rebuild_prefix(site),
                        0,
                        ROLLUP_SPEC,
                    ],
                )
            )
        with metrics.timed_rollups(server):
            answers = redis_scripts.run(server, scripts)
        for (_, indexes), raws in zip(calls, answers, strict=True):
            for n, raw in zip(indexes, raws, strict=True):
                results[n] = parse_result(raw, parts[n][2])
    return [result for result in results if result is not None]


def replay(info: SiteSettings, prepared: Sequence[PreparedEvent], seen_cutoff_ms: int) -> None:
    """Apply stored events to the rebuild namespace (no marker, no live set)."""
    site = info.site_id
    _script("apply_batch")(
        keys=[f"{prefix(site)}meta"],
        args=[
            prefix(site),
            "",
            MARKER_TTL,
            int(time.time() * 1000),
            "",
            orjson.dumps(prepared),
            "rebuild",
            rebuild_prefix(site),
            seen_cutoff_ms,
            ROLLUP_SPEC,
        ],
        client=redis_clients.for_site(site),
    )


# Readers ----------------------------------------------------------------------


def bucket_name(moment: datetime, granularity: Granularity) -> str:
    """The bucket of an aware datetime already converted to the site's timezone."""
    return moment.strftime({"m": "%Y%m%d%H%M", "h": "%Y%m%d%H", "d": "%Y%m%d"}[granularity])


def day_name(day: date) -> str:
    return day.strftime("%Y%m%d")


def counters(site_id: int, granularity: Granularity, buckets: Sequence[str]) -> list[dict[str, int]]:
    """The counter hash of each bucket (zeros for a bucket with no data)."""
    pipe = redis_clients.site_pipeline(site_id)
    for bucket in buckets:
        pipe.hgetall(f"{prefix(site_id)}{granularity}:{bucket}")
    return [{name: int(row.get(name, 0)) for name in COUNTER_FIELDS} for row in pipe.execute()]


def visitors(site_id: int, granularity: Granularity, buckets: Sequence[str]) -> int:
    """Unique visitors over the union of the buckets (HyperLogLog, about 1% error)."""
    if not buckets:
        return 0
    return int(redis_clients.for_site(site_id).pfcount(*[f"{prefix(site_id)}uv:{granularity}:{b}" for b in buckets]))


def top(site_id: int, dimension: str, day: str, metric: str, limit: int = 100) -> list[tuple[str, int]]:
    """Members of a day's breakdown by ``metric``, highest first."""
    key = f"{prefix(site_id)}top:{dimension}:d:{day}:{metric}"
    rows: list[tuple[str, float]] = redis_clients.for_site(site_id).zrevrange(key, 0, limit - 1, withscores=True)  # type: ignore[assignment]
    return [(str(member), int(score)) for member, score in rows]


def member_values(
    site_id: int, dimension: str, days: Sequence[str], metric: str, members: Sequence[str]
) -> dict[str, int]:
    """``metric`` of each member summed over the days."""
    pipe = redis_clients.site_pipeline(site_id)
    for day in days:
        pipe.zmscore(f"{prefix(site_id)}top:{dimension}:d:{day}:{metric}", list(members))
    totals = dict.fromkeys(members, 0)
    for scores in pipe.execute():
        for member, score in zip(members, scores, strict=True):
            totals[member] += int(score or 0)
    return totals


def member_visitors(site_id: int, dimension: str, days: Sequence[str], member: str) -> int:
    """Unique visitors of one member of an event dimension over the days."""
    keys = [f"{prefix(site_id)}uvm:{dimension}:d:{day}:{member}" for day in days]
    return int(redis_clients.for_site(site_id).pfcount(*keys)) if keys else 0


def visitors_now(site_id: int, now: float | None = None) -> int:
    moment = int(now if now is not None else time.time())
    return int(redis_clients.for_site(site_id).zcount(f"{prefix(site_id)}live", moment - LIVE_WINDOW, "+inf"))


def meta(site_id: int) -> dict[str, str]:
    return {str(k): str(v) for k, v in redis_clients.for_site(site_id).hgetall(f"{prefix(site_id)}meta").items()}


def days_between(first: date, last: date) -> list[str]:
    return [day_name(first + timedelta(days=n)) for n in range((last - first).days + 1)]
