"""Structured log lines: the event name, then the record's ``extra`` fields.

``KeyValueFormatter`` (the default) writes them as key=value after the usual prefix;
``JsonFormatter`` (``LOG_FORMAT=json``) writes one JSON object a line for a log shipper.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


# uvicorn's coloured copy of its message: the same text with terminal escapes.
_NOISE = {"color_message"}


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD and key not in _NOISE and not key.startswith("_")
    }


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = extra_fields(record)
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


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, then the ``extra``
    fields; a traceback as ``exception``. A field named like one of the first four keeps the
    record's value, not the field's."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)
