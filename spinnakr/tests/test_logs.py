from __future__ import annotations

import logging

from spinnakr.logs import KeyValueFormatter


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
