"""logging_setup: every record is redacted once (issue 15), and still completely."""
from __future__ import annotations

import io
import json
import logging

from cds_service.logging_setup import JsonFormatter, RedactingFilter, configure_logging, log_event


def _line(emit) -> dict:
    configure_logging("INFO")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("cds_service.test_redact_once")
    logger.addHandler(handler)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return json.loads(stream.getvalue().strip().splitlines()[-1])


def test_a_redacted_field_is_not_damaged_by_a_second_pass():
    # The JSON formatter used to redact the redacted line again: '"[REDACTED]"' became '"[REDACTED]]"'.
    line = _line(lambda lg: log_event(lg, logging.INFO, "event", access_token="opaque-value-123",
                                      nested={"authorization": "Bearer abc.def"}))
    assert line["access_token"] == "[REDACTED]" and line["nested"] == {"authorization": "[REDACTED]"}


def test_fields_attached_as_extra_after_the_factory_are_still_redacted():
    line = _line(lambda lg: lg.info("token %s", "Bearer abcdefgh12345",
                                    extra={"fields": {"q": "a=1&access_token=opaque-value-9"}}))
    assert "abcdefgh12345" not in json.dumps(line) and "opaque-value-9" not in json.dumps(line)
    assert line["msg"] == "token Bearer [REDACTED]" and line["q"] == "a=1&access_token=[REDACTED]"


def test_a_message_replaced_after_redaction_is_redacted_again():
    def emit(lg):
        record = lg.makeRecord(lg.name, logging.INFO, __file__, 1, "first", (), None)
        record.msg = "now Bearer abcdefgh12345"     # changed after the factory redacted it
        lg.handle(record)
    assert _line(emit)["msg"] == "now Bearer [REDACTED]"
