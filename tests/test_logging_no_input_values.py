"""Issue 21 M5: no input value reaches a log line, and every logged field has a length limit.

A malformed prefetch value's resourceType was logged word for word: a patient id and name
reached a log line, and a 100 KB value made a 100 KB line."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from cds_service import create_app
from cds_service.logging_setup import log_event
from log_lines import Lines
from conftest import in_scope

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAME = "Jane Q Doe MRN-998877"


def test_malformed_prefetch_values_are_logged_by_key_and_kind_only(tmp_path):
    app = create_app({"database": str(tmp_path / "db.sqlite3"), "log_level": "DEBUG"})
    body = in_scope(json.loads((EXAMPLES / "patient-view-sic-positive.json").read_text()))
    second = json.loads(json.dumps(body))
    body["prefetch"]["patient"] = {"resourceType": f"Patient {NAME} " + "x" * 100_000}
    labs = second["prefetch"]["labs"]
    bad = dict(labs["entry"][0]["resource"], status=f"{NAME} said", id="obs-bad")
    labs["entry"].append({"resource": bad})
    handler = Lines()
    logger = logging.getLogger("cds_service")
    logger.addHandler(handler)
    try:
        for call in (body, second):
            resp = app.test_client().post("/cds-services/coagulopathy-risk", json=call)
            assert resp.status_code < 500
    finally:
        logger.removeHandler(handler)
    text = "\n".join(handler.lines)
    assert "MRN-998877" not in text and "Jane" not in text
    assert max(len(line) for line in handler.lines) < 4000
    unusable = [json.loads(line) for line in handler.lines if "unusable prefetch value" in line]
    assert unusable and unusable[0]["key"] == "patient" and unusable[0]["fault"] == "resource or Bundle not usable"


def test_dropped_resource_reasons_lose_the_values_they_quote():
    from cds_service.fhir.context import loggable_reason
    reason = loggable_reason(f"not valid FHIR R4B (status: Invalid enum value '{NAME}'; "
                             f"Object contains unknown field `{NAME}`; code: Expected `str`, got `int`)")
    assert "MRN" not in reason and "Jane" not in reason and "Expected `str`, got `int`" in reason
    assert len(loggable_reason("x" * 10_000)) <= 200


def test_every_logged_field_is_bounded():
    handler = Lines()
    logger = logging.getLogger("cds_service.test_bounds")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log_event(logger, logging.INFO, "x", big="y" * 100_000, many=list(range(10_000)),
                  deep={"a": {"b": {"c": {"d": {"e": "f" * 10_000}}}}})
        logger.info("message %s", "z" * 100_000)
    finally:
        logger.removeHandler(handler)
    assert all(len(line) < 5000 for line in handler.lines), [len(line) for line in handler.lines]
