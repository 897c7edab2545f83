"""The one exception of the query engine."""

from __future__ import annotations


class QueryError(ValueError):
    """An invalid query. The message names the offending field or value and is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
