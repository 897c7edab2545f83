"""Visit ids: a stable function of the visitor and the start of the visit.

Sessionisation itself runs inside the rollup script (``analytics/ingest/lua/apply_batch.lua``): a gap
of more than 30 minutes between two events of a visitor, in event time, starts a new visit, so
late events, replays and rebuilds find the same visits. The script answers each event's visit
start; the id is derived from it here. When a late event moves a visit's start earlier, or
bridges two visits into one, the script reports the change and the stored rows are renamed
(``analytics.ingest.store.rename_visits``), so every raw event keeps the id of the visit it is in.
"""

from __future__ import annotations

import hashlib

VISIT_GAP_MS = 30 * 60 * 1000


def visit_id(visitor_id: int, start_ms: int) -> int:
    """A signed 64-bit id of the visit of ``visitor_id`` that started at ``start_ms``."""
    digest = hashlib.blake2b(f"{visitor_id}:{start_ms}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
