"""serving.ServingMiddleware in process: the body deadline, the cap on unfinished bodies, the
size limit for chunked bodies (the real-server checks are in test_serving.py)."""
from __future__ import annotations

import io
import threading
import time

from werkzeug.test import Client

from cds_service import create_app
from cds_service.web.serving import ServingMiddleware

HOOK = "/cds-services/coagulopathy-risk"


class StalledInput:
    """A request body whose client never sends the rest (released at the end of the test)."""

    def __init__(self):
        self.release = threading.Event()

    def read(self, size=-1):
        self.release.wait(10)
        return b""


def client(tmp_path, **kwargs):
    flask_app = create_app({"database": str(tmp_path / "db.sqlite3"), "max_body_bytes": 1000})
    return Client(ServingMiddleware(flask_app, max_body_bytes=1000, access_log_enabled=False, **kwargs))


def test_a_stalled_body_gets_408_then_the_reader_cap_gives_503(tmp_path):
    c = client(tmp_path, body_timeout=0.2, max_pending_readers=1)
    stalled = StalledInput()
    try:
        first = c.post(HOOK, headers={"Content-Type": "application/json", "Origin": "https://ehr"},
                       environ_overrides={"wsgi.input": stalled, "CONTENT_LENGTH": "100"})
        assert first.status_code == 408
        assert first.json["issue"][0]["code"] == "timeout" and first.headers["Access-Control-Allow-Origin"]
        # The stalled reader still waits for its client: the only slot is taken.
        second = c.post(HOOK, input_stream=io.BytesIO(b"{}"), headers={"Content-Type": "application/json",
                                                                        "Content-Length": "2"})
        assert second.status_code == 503 and second.json["issue"][0]["code"] == "transient"
    finally:
        stalled.release.set()


def test_a_chunked_body_over_the_limit_gets_413(tmp_path):
    c = client(tmp_path, body_timeout=5)
    resp = c.post(HOOK, input_stream=io.BytesIO(b"[" * 5000),
                  headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                  environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 413 and resp.json["issue"][0]["code"] == "too-long"


def test_a_body_within_the_limit_reaches_the_app(tmp_path):
    c = client(tmp_path, body_timeout=5)
    resp = c.post(HOOK, data=b"[1]", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and "must be a JSON object" in resp.json["issue"][0]["diagnostics"]


def test_a_declared_length_over_the_limit_is_413_before_reading(tmp_path):
    """L8: Content-Length 10^15 was read until the 15 s deadline, then 408."""
    c = client(tmp_path, body_timeout=5)
    stalled = StalledInput()
    try:
        t0 = time.monotonic()
        resp = c.post(HOOK, headers={"Content-Type": "application/json"},
                      environ_overrides={"wsgi.input": stalled, "CONTENT_LENGTH": str(10 ** 15)})
        assert resp.status_code == 413 and time.monotonic() - t0 < 1
    finally:
        stalled.release.set()
