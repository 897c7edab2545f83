"""Structured log lines: the event name, then the record's ``extra`` fields as key=value."""

from __future__ import annotations

import json
import logging

# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {key: value for key, value in vars(record).items() if key not in _STANDARD and not key.startswith("_")}
        if not fields:
            return line
        rendered = " ".join(f"{key}={_render(value)}" for key, value in sorted(fields.items()))
        head, newline, tail = line.partition("\n")  # keep a traceback below the fields
        return f"{head} {rendered}{newline}{tail}"


def _render(value: object) -> str:
    if isinstance(value, str) and value and " " not in value and "=" not in value and '"' not in value:
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return json.dumps(repr(value))
