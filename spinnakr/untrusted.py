"""Untrusted input the stores cannot hold or the code cannot walk, refused as a client error.

PostgreSQL ``text`` cannot hold NUL, and UTF-8 cannot encode a lone surrogate
(a JSON ``"\\ud800"`` escape decodes to one): either in a lookup or a write is a
server error unless it is refused first. JSON nested deeper than the recursion
limit makes the decoder raise ``RecursionError``, and nesting just under it
would make any code that walks the value do so.
"""

from __future__ import annotations

import json
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from spinnakr.text import UNSTORABLE_CHARACTERS

# Far above any request the API or the dashboard sends (a v2 body with filters at the
# engine's deepest nesting is ~25 levels), far below the recursion limit.
MAX_JSON_DEPTH = 64


class UntrustedInputError(ValueError):
    """Input refused; the message names where it is and is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def unstorable(text: str) -> str | None:
    """What in ``text`` no store can hold ("a NUL character", "an unpaired surrogate"), or ``None``."""
    found = UNSTORABLE_CHARACTERS.search(text)
    if found is None:
        return None
    return "a NUL character" if found.group() == "\x00" else "an unpaired surrogate"


def check_text(text: str, where: str) -> None:
    problem = unstorable(text)
    if problem is not None:
        raise UntrustedInputError(f"{where}: holds {problem}")


def check_json(value: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse a decoded JSON value nested deeper than ``max_depth`` or holding unstorable text.

    Iterative, so a value just under the recursion limit cannot exhaust it here.
    """
    stack: list[tuple[Any, int, str]] = [(value, 0, "body")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            check_text(item, where)
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                raise UntrustedInputError(f"{where}: nested more than {max_depth} levels deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    name = str(key) if where == "body" else f"{where}.{key}"
                    check_text(str(key), name)
                    stack.append((child, depth + 1, name))
            else:
                stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))


def loads_json(raw: bytes | str) -> Any:
    """``json.loads`` that refuses what ``check_json`` refuses; ``ValueError`` for invalid JSON."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise UntrustedInputError(f"body: nested more than {MAX_JSON_DEPTH} levels deep") from None
    check_json(value)
    return value


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with ``check_json``'s bounds: such bodies answer 400, never 500."""

    def parse(self, stream: IO[Any], media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            value = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"body: nested more than {MAX_JSON_DEPTH} levels deep") from None
        try:
            check_json(value)
        except UntrustedInputError as error:
            raise ParseError(error.message) from None
        return value
