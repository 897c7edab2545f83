"""The query engine: one query model for every reader (dashboard, Stats API, exports).

``run_query(site, body)`` answers a Stats API v2 body from the Redis rollups when
they hold the exact answer and from the raw events in PostgreSQL otherwise.
"""

from __future__ import annotations

from analytics.query.engine import run_query
from analytics.query.errors import QueryError

__all__ = ["QueryError", "run_query"]
