"""The planner: Redis rollups when they hold the exact answer, SQL otherwise.

Until the worker stream's rollups are merged this always answers ``None``
(meaning: use SQL).
"""

from __future__ import annotations

from typing import Any

from accounts.models import Site
from analytics.query.model import Query


def try_redis(site: Site, query: Query) -> tuple[list[tuple[list[Any], dict[str, Any]]], int] | None:
    return None
