"""Issue 21: feedback comments (`override_comment`) were stored verbatim at any length and may
hold patient identifiers. They are capped, the reply says so, and no log line carries them."""
from __future__ import annotations

import json
import logging
import uuid

from cds_service import create_app
from cds_service.logging_setup import log_event
from log_lines import Lines

COMMENT = "Pt MRN-445566 Jane Roe refused heparin. " * 200   # 8,000 characters


def test_a_long_comment_is_capped_said_and_never_logged(tmp_path):
    app = create_app({"database": str(tmp_path / "db.sqlite3"), "log_level": "DEBUG"})
    handler = Lines()
    logging.getLogger("cds_service").addHandler(handler)
    try:
        resp = app.test_client().post("/cds-services/coagulopathy-risk/feedback", json={"feedback": [{
            "card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z",
            "overrideReason": {"userComment": COMMENT}}]})
        log_event(logging.getLogger("cds_service.test"), logging.WARNING, "x",
                  item={"overrideReason": {"userComment": COMMENT}}, override_comment=COMMENT)
    finally:
        logging.getLogger("cds_service").removeHandler(handler)
    assert resp.status_code == 200 and resp.get_json()["comments_cut"] == 1
    store = app.extensions["cds"].extensions["storage"]
    [(stored,)] = store.query("SELECT override_comment FROM feedback")
    assert stored.startswith(COMMENT[:1000]) and len(stored) < 1100
    assert "MRN-445566" not in "\n".join(handler.lines)
