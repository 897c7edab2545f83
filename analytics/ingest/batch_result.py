"""A batch's rollup result: what ``lua/apply_batch.lua`` answers and keeps at the batch's marker.

The marker ``{s:<id>}:batch:<batch_id>`` holds the result for 48 hours so that a redelivered
batch, alone or in another group, gets the same visit starts and changes nothing. It is kept
small (a byte an event): each event's visit start is one character, ``n`` the event's own
time, ``s`` the start of the same visitor's previous event in the batch, ``x`` the event's time
minus the next number of the ``sx`` list (a visit begun in an earlier batch, a late event).
The codes are read against the batch's own events, in the order the script got them (each
batch's order is ``rollups.event_order``, the same at every delivery).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class BatchResult:
    starts: list[int]  # visit start (epoch ms) per prepared event
    renames: list[tuple[int, int, int]]  # (visitor_id, old start ms, new start ms)
    new_visits: int
    visitors_now: int
    duplicate: bool


def parse_result(raw: str, events: Sequence[Mapping[str, Any]]) -> BatchResult:
    """A batch's result from the script's JSON, for the batch's prepared ``events``."""
    data = json.loads(raw)
    renames = data.get("rn") or []
    return BatchResult(
        starts=decode_starts(data, events),
        renames=[(int(v), int(a), int(b)) for v, a, b in renames] if isinstance(renames, list) else [],
        new_visits=int(data.get("nv", 0)),
        visitors_now=int(data.get("now", 0)),
        duplicate=bool(data.get("dup", 0)),
    )


def decode_starts(data: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[int]:
    """Each event's visit start from a result's codes (``sc``, ``sx``); a marker of the older
    form lists the starts themselves (``st``)."""
    if "st" in data:
        return [int(start) for start in data["st"] or []]
    offsets = iter(data.get("sx") or [])
    previous: dict[str, int] = {}
    starts: list[int] = []
    for event, code in zip(events, data.get("sc", ""), strict=True):
        if code == "n":
            start = int(event["t"])
        elif code == "s":
            start = previous[event["v"]]
        else:
            start = int(event["t"]) - int(next(offsets))
        previous[event["v"]] = start
        starts.append(start)
    return starts
