"""The query engine: one query model for every reader (dashboard, Stats API, exports).

``run_query(site, body)`` answers a Stats API v2 body from the Redis rollups when
they hold the exact answer and from the raw events in PostgreSQL otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from analytics.query.errors import QueryError

if TYPE_CHECKING:
    from accounts.models import Site

__all__ = ["QueryError", "run_query"]


def run_query(site: Site, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    from analytics.query.engine import run_query as _run

    return _run(site, body, **kwargs)
