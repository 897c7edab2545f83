"""The worker's screen: the events of a batch it cannot apply, set aside before the rollups.

The collector refuses text PostgreSQL cannot store (``analytics.payloads.unstorable``), but a
batch can still reach the worker another way: a message queued before that check, a replayed
batch, another publisher. Unscreened, one such event would fail the store of its whole group
after the rollups had counted it. ``screen`` checks each event against ``EnrichedEvent`` (every key, its
type, the range of its column) and for storable text, and leaves out the events that fail
before anything is applied, so Redis and PostgreSQL apply the same events.

``record`` counts the events set aside per site and reason in the hash ``{s:<id>}:rejected``
(reasons ``missing:<field>``, ``malformed:<field>``, ``unstorable:<field>``, ``malformed:event``)
and keeps them, newest first, in ``{s:<id>}:rejected:events`` (at most ``KEEP_EVENTS`` a site)
for an operator; an event without a usable site id goes to ``{ingest}:rejected`` and
``{ingest}:rejected:events``. A batch's rejections are recorded once (the marker
``…:rejected:batch:<batch id>``, 48 h), so a redelivered batch counts none twice.

``sanitize`` is for batches parked before the screen existed: their rollups were applied with
the unstorable text, so a replay must store every event (see ``replay_failed_batches``).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from operator import itemgetter
from typing import Any

from analytics.fields import EVENT_FIELDS
from analytics.ingest import rollups
from analytics.payloads import UNSTORABLE_CHARACTERS, EnrichedEvent, unstorable
from spinnakr import breaker, redis_clients, redis_scripts

logger = logging.getLogger(__name__)

KEEP_EVENTS = 1000
NO_SITE_PREFIX = "{ingest}:"
_MISSING = object()
# Event time: what a datetime holds in any timezone (the store and the buckets convert it).
_MAX_TS = int(datetime(9000, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
_TEXT_FIELDS = tuple(f.name for f in EVENT_FIELDS if f.type is str)
_TEXTS = itemgetter(*_TEXT_FIELDS)
# Integer fields and the ranges of their columns (bigint, smallint, integer), high excluded.
_INTS = (("site_id", 1, 2**63), ("ts", 0, _MAX_TS), ("visitor_id", -(2**63), 2**63))
_OPTIONAL_INTS = (("scroll_depth", -(2**15), 2**15), ("engagement_ms", -(2**31), 2**31))
# Every field of EnrichedEvent (a test holds them equal).
CHECKED_FIELDS = frozenset(
    {*_TEXT_FIELDS, *(f for f, _, _ in (*_INTS, *_OPTIONAL_INTS)), "interactive", "props", "revenue_amount"}
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAX_AMOUNT = Decimal("99999999999999.99995")  # numeric(18, 4) rounds above this to 10^14

_RECORD_SCRIPT = """
-- KEYS[1] the reason counts (hash)   KEYS[2] the events kept (list)   KEYS[3] the batch's marker
-- ARGV[1] the marker's seconds   ARGV[2] most events kept   ARGV[3] {reason: count} as JSON
-- ARGV[4..] the events' records
if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for reason, count in pairs(cjson.decode(ARGV[3])) do
  redis.call('HINCRBY', KEYS[1], reason, count)
end
for n = 4, #ARGV do
  redis.call('LPUSH', KEYS[2], ARGV[n])
end
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
return 1
"""


@dataclass(frozen=True, slots=True)
class Rejected:
    batch_id: str
    event: Any
    reason: str


def _amount(value: object) -> bool:
    if type(value) is not str or "_" in value:  # Decimal reads "1_0", PostgreSQL before 16 does not
        return False
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return False
    return amount.is_finite() and abs(amount) < _MAX_AMOUNT


def _reason(event: dict[str, Any], field: str) -> str:
    return f"{'malformed' if field in event else 'missing'}:{field}"


def problem(event: Any) -> str | None:
    """Why the worker cannot apply ``event`` (a reason such as ``unstorable:pathname``), or None."""
    if type(event) is not dict:
        return "malformed:event"
    try:
        # Every text field present and a string, and their text in one piece to search once.
        text = "".join(_TEXTS(event))
    except (KeyError, TypeError):
        return next(_reason(event, f) for f in _TEXT_FIELDS if type(event.get(f)) is not str)
    get = event.get
    for field, low, high in _INTS:
        value = get(field)
        if type(value) is not int or not low <= value < high:
            return _reason(event, field)
    for field, low, high in _OPTIONAL_INTS:
        value = get(field, _MISSING)
        if value is not None and (type(value) is not int or not low <= value < high):
            return _reason(event, field)
    if type(get("interactive")) is not bool:
        return _reason(event, "interactive")
    props = get("props")
    if type(props) is not dict or not all(type(k) is str and type(v) is str for k, v in props.items()):
        return _reason(event, "props")
    if "revenue_amount" not in event or not (event["revenue_amount"] is None or _amount(event["revenue_amount"])):
        return _reason(event, "revenue_amount")
    if _UUID.fullmatch(event["event_id"]) is None:
        return "malformed:event_id"
    if unstorable(text) or (props and unstorable("".join([*props, *props.values()]))):
        # The field is looked for only in an event that has one.
        return "unstorable:" + next((f for f in _TEXT_FIELDS if unstorable(event[f])), "props")
    return None


def screen(batch_id: str, events: list[Any]) -> tuple[list[EnrichedEvent], list[Rejected]]:
    """The events of a batch the worker can apply, in order, and those it sets aside."""
    kept: list[EnrichedEvent] = []
    rejected: list[Rejected] = []
    for event in events:
        reason = problem(event)
        if reason is None:
            kept.append(event)
        else:
            rejected.append(Rejected(batch_id, event, reason))
    return kept, rejected


def _site(event: Any) -> int | None:
    site_id = event.get("site_id") if type(event) is dict else None
    return site_id if type(site_id) is int and 0 < site_id < 2**63 else None


@cache
def _record_script() -> Any:
    # Called with ``client=``: it runs on the server holding the site.
    return redis_clients.data().register_script(_RECORD_SCRIPT)


def record(rejected: Sequence[Rejected]) -> list[Rejected]:
    """Count the events set aside per site and reason and keep them for an operator, once per batch.

    With several rollups servers, answers those it could not record because their site's server
    does not answer or the site is moving: they wait with the batch's held parts
    (``analytics.ingest.held``) and are recorded when those are applied.
    """
    if not rejected:
        return []
    groups: dict[tuple[int | None, str], list[Rejected]] = defaultdict(list)
    for item in rejected:
        groups[(_site(item.event), item.batch_id)].append(item)
    script = _record_script()
    place = redis_clients.rollup_placement()
    several = len(place.every_server()) > 1
    # One round trip per server: a site's keys live where its rollups do, events without one on
    # the data Redis.
    calls: dict[str, tuple[redis_clients.Rollups, list[redis_scripts.Call], list[tuple[int | None, str]]]] = {}
    waiting: list[Rejected] = []
    now = time.time()
    for (site_id, batch_id), items in groups.items():
        url = "" if site_id is None else place.server_of(site_id)
        if several and site_id is not None and (breaker.is_open(url) or place.moving(site_id)):
            waiting.extend(items)
            continue
        if url not in calls:
            server = redis_clients.data() if site_id is None else redis_clients.for_site(site_id)
            calls[url] = (server, [], [])
        recorded = calls[url][2]
        recorded.append((site_id, batch_id))
        prefix = NO_SITE_PREFIX if site_id is None else rollups.prefix(site_id)
        records = [
            json.dumps({"batch_id": batch_id, "reason": item.reason, "at": now, "event": item.event}, default=repr)
            for item in items
        ]
        keys = [f"{prefix}rejected", f"{prefix}rejected:events", f"{prefix}rejected:batch:{batch_id}"]
        args = [rollups.MARKER_TTL, KEEP_EVENTS, json.dumps(Counter(item.reason for item in items)), *records]
        calls[url][1].append((script, keys, args))
    for url, (server, server_calls, recorded) in calls.items():
        try:
            redis_scripts.run(server, server_calls)
        except breaker.UNREACHABLE as exc:
            if not several or not url:
                raise
            breaker.trip(url, exc)
            waiting.extend(item for group in recorded for item in groups[group])
            continue
        for site_id, batch_id in recorded:
            items = groups[(site_id, batch_id)]
            logger.warning(
                "ingest.events_rejected",
                extra={
                    "batch_id": batch_id,
                    "site_id": site_id,
                    "events": len(items),
                    "reasons": ",".join(sorted({item.reason for item in items})),
                },
            )
    return waiting


def _storable(text: str) -> str:
    return UNSTORABLE_CHARACTERS.sub("\ufffd", text) if unstorable(text) else text


def sanitize(event: Any) -> Any:
    """``event`` with every NUL and surrogate of its text replaced by U+FFFD (other values as they are)."""
    if type(event) is not dict:
        return event
    clean = {key: _storable(value) if type(value) is str else value for key, value in event.items()}
    props = clean.get("props")
    if type(props) is dict:
        clean["props"] = {
            _storable(k) if type(k) is str else k: _storable(v) if type(v) is str else v for k, v in props.items()
        }
    return clean
