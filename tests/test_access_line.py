"""Issue 25: one log line per hook call. Under the serving front (ASGI) and the WSGI middleware the
access line carries the hook call's own fields; with the access log off the call writes its own
"hook call" line (tests/test_protocol.py checks that line under the Flask test client)."""
from __future__ import annotations

import io
import logging

import orjson
import pytest

from bench import synth
from cds_service import create_app
from cds_service.web.serving import Front, ServingMiddleware
from tests.run_async import run_async

PATH = synth.SERVICE_PATH["patient-view"]
ACCESS_FIELDS = {"method", "path", "status", "bytes", "ms", "remote", "protocol"}
HOOK_FIELDS = {"service", "hookInstance", "duration_ms"}


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records():
    handler = _Records()
    logger = logging.getLogger("cds_service")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app({"database": str(tmp_path_factory.mktemp("access") / "cds.sqlite3"), "log_level": "INFO"})


def _body(hook_instance: str | None = None, token: str | None = None) -> bytes:
    body = synth.hook_request("patient-view", "access-p", n_obs=20)
    if hook_instance:
        body["hookInstance"] = hook_instance
    if token:
        body["fhirServer"] = "https://fhir.example"
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "user/*.read", "subject": "cds"}
    return orjson.dumps(body)


def _asgi(front: Front, body: bytes) -> int:
    sent = [body]

    async def receive():
        return {"type": "http.request", "body": sent.pop() if sent else b"", "more_body": False}

    out: dict = {}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]

    scope = {"type": "http", "method": "POST", "path": PATH, "raw_path": PATH.encode(), "query_string": b"",
             "root_path": "", "scheme": "http", "http_version": "1.1", "server": ("cds.example", 80),
             "client": ("127.0.0.1", 5555), "headers": [(b"content-type", b"application/json")]}
    run_async(front(scope, receive, send))
    return out["status"]


def _wsgi(middleware: ServingMiddleware, body: bytes) -> str:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": PATH, "SCRIPT_NAME": "", "QUERY_STRING": "",
               "SERVER_NAME": "cds.example", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO(),
               "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.version": (1, 0)}
    seen = {}
    result = middleware(environ, lambda status, headers, exc_info=None: seen.update(status=status))
    b"".join(result)
    result.close()
    return seen["status"]


def _lines(records) -> list[logging.LogRecord]:
    return [r for r in records if r.getMessage() in ("access", "hook call")]


def test_front_writes_one_line_per_hook_call(app, records):
    front = Front(app, max_body_bytes=5_000_000, body_timeout=5, threads=1)
    try:
        assert _asgi(front, _body("hi-front")) == 200
    finally:
        front.pool.shutdown()
    [line] = _lines(records)
    assert (line.name, line.getMessage()) == ("cds_service.access", "access")
    assert set(line.fields) == ACCESS_FIELDS | HOOK_FIELDS
    assert line.fields["service"] == "coagulopathy-risk" and line.fields["hookInstance"] == "hi-front"
    assert line.fields["status"] == 200 and line.fields["path"] == PATH and line.fields["duration_ms"] >= 0


def test_front_without_access_log_keeps_the_hook_call_line(app, records):
    front = Front(app, max_body_bytes=5_000_000, body_timeout=5, threads=1, access_log_enabled=False)
    try:
        assert _asgi(front, _body("hi-quiet")) == 200
    finally:
        front.pool.shutdown()
    [line] = _lines(records)
    assert (line.name, line.getMessage()) == ("cds_service.app", "hook call")
    assert line.fields["hookInstance"] == "hi-quiet" and line.fields["status"] == 200
    assert set(line.fields) == HOOK_FIELDS | {"status"}


def test_wsgi_middleware_writes_one_line_per_hook_call(app, records):
    middleware = ServingMiddleware(app, max_body_bytes=5_000_000, body_timeout=5)
    assert _wsgi(middleware, _body("hi-wsgi")).startswith("200")
    [line] = _lines(records)
    assert line.name == "cds_service.access"
    assert set(line.fields) == ACCESS_FIELDS | HOOK_FIELDS
    assert line.fields["hookInstance"] == "hi-wsgi" and line.fields["status"] == 200


def test_the_merged_line_masks_the_request_token(app, records):
    """The access line is written after the request's secrets are forgotten: the hook call's
    fields are redacted when they are taken (a hookInstance holding the access token)."""
    token = "tok-1234567890-secret"
    front = Front(app, max_body_bytes=5_000_000, body_timeout=5, threads=1)
    try:
        _asgi(front, _body(f"hi-{token}", token=token))
    finally:
        front.pool.shutdown()
    [line] = _lines(records)
    assert token not in str(line.fields) and "[REDACTED]" in line.fields["hookInstance"]


@pytest.mark.parametrize("access_log", [True, False])
def test_a_hook_instance_built_from_the_patient_id_is_logged_without_it(app, records, access_log):
    """A client may build its hookInstance from the patient id ("access-p" in _body); no log line
    carries a raw patient id, on the access line or the call's own line."""
    front = Front(app, max_body_bytes=5_000_000, body_timeout=5, threads=1, access_log_enabled=access_log)
    try:
        assert _asgi(front, _body("visit/access-p/2")) == 200
    finally:
        front.pool.shutdown()
    [line] = _lines(records)
    assert line.fields["hookInstance"] == "visit/[patient]/2"
    assert all("access-p" not in str(r.getMessage()) + str(getattr(r, "fields", "")) for r in records)


def test_hide_patient_id_replaces_whole_tokens_only():
    from cds_service.logging_setup import hide_patient_id
    assert hide_patient_id("enc-1-pid-12", "12") == "enc-1-pid-[patient]"
    assert hide_patient_id("5b0e3f1a-1111-4c2e", "1") == "5b0e3f1a-1111-4c2e"   # digits of another token
    assert hide_patient_id("a.b*c", "b*c") == "a.[patient]"                        # no regex injection
    assert hide_patient_id(None, "12") is None and hide_patient_id("x12", None) == "x12"
