from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from django.conf import settings

from spinnakr.logs import JsonFormatter, KeyValueFormatter


def make_record(extra: dict[str, object]) -> logging.LogRecord:
    logger = logging.getLogger("spinnakr.test")
    return logger.makeRecord("spinnakr.test", logging.INFO, __file__, 1, "collector.rejected", (), None, extra=extra)


def test_it_appends_extra_fields_as_key_values() -> None:
    line = KeyValueFormatter("%(message)s").format(
        make_record({"status": 413, "reason": "body too large", "site": "a.test"})
    )

    assert line == 'collector.rejected reason="body too large" site=a.test status=413'


def test_a_record_without_extra_is_left_as_it_is() -> None:
    assert KeyValueFormatter("%(levelname)s %(message)s").format(make_record({})) == "INFO collector.rejected"


def test_the_json_formatter_writes_one_object_a_line_with_the_extra_fields() -> None:
    line = JsonFormatter().format(make_record({"status": 413, "reason": "body\ntoo large", "site": "a.test"}))

    entry = json.loads(line)
    assert "\n" not in line
    assert entry.pop("time").endswith("+00:00")
    assert entry == {
        "level": "INFO",
        "logger": "spinnakr.test",
        "message": "collector.rejected",
        "status": 413,
        "reason": "body\ntoo large",
        "site": "a.test",
    }


def test_the_json_formatter_keeps_a_traceback_in_its_object() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("spinnakr.test").makeRecord(
            "spinnakr.test", logging.ERROR, __file__, 1, "ingest.failed", (), sys.exc_info()
        )

    entry = json.loads(JsonFormatter().format(record))

    assert entry["level"] == "ERROR"
    assert entry["exception"].endswith("ValueError: boom")


LOG_A_LINE = (
    "import django, logging; django.setup(); "
    "logging.getLogger('spinnakr.test').warning('ingest.slow', extra={'seconds': 1.5})"
)


def run_logging(**env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", LOG_A_LINE],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "spinnakr.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=settings.BASE_DIR,
        check=True,
    )
    return result.stderr


def test_log_format_json_makes_every_line_a_json_object() -> None:
    lines = run_logging(LOG_FORMAT="json").splitlines()

    entries = [json.loads(line) for line in lines]
    assert [(e["logger"], e["message"], e["seconds"]) for e in entries] == [("spinnakr.test", "ingest.slow", 1.5)]


def test_the_default_log_format_stays_key_value_lines() -> None:
    line = run_logging().strip()

    assert line.endswith(" WARNING spinnakr.test ingest.slow seconds=1.5")
