"""serving.Front (the ASGI front `serve` runs; issue 21) in process, driven as granian would.

The JWT is checked on the headers before a body byte is read; a declared Content-Length over
the limit is 413 before reading (L8); a stalled body costs no thread and gets 408 after one
total deadline whatever the thread count; /healthz never waits behind the app's threads.
The real-server figures (200 + 200 slow sockets) are in reliability/test_slow_clients.py.
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from cds_service.web.serving import Front
from security_helpers import BASE, PV, hook_body
from security_helpers import es_key, jwks, make_app, mint, rs_key  # noqa: F401  (fixtures)
from tests.run_async import run_async


class Client:
    """Feeds one request to the ASGI app; `chunks` are (delay_s, bytes) pairs."""

    def __init__(self, front: Front):
        self.front = front

    async def request(self, method: str, path: str, headers: dict | None = None, chunks=(), stall=False):
        received = []
        queue = list(chunks)

        async def receive():
            received.append(time.monotonic())
            if queue:
                delay, data = queue.pop(0)
                await asyncio.sleep(delay)
                return {"type": "http.request", "body": data, "more_body": bool(queue) or stall}
            if stall:
                await asyncio.sleep(3600)
            return {"type": "http.request", "body": b"", "more_body": False}

        out = {"body": b""}

        async def send(message):
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
                out["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
            else:
                out["body"] += message.get("body", b"")

        scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
                 "server": ("localhost", 80), "client": ("127.0.0.1", 5555),
                 "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}
        await self.front(scope, receive, send)
        out["receive_calls"] = len(received)
        return out


def front_for(app, *, threads=4, body_timeout=0.3, max_body_bytes=None):
    limit = max_body_bytes or app.extensions["cds"].config.max_body_bytes
    return Front(app, max_body_bytes=limit, body_timeout=body_timeout, threads=threads,
                 access_log_enabled=False)


def run(coro):
    return run_async(coro)


JSON = {"Content-Type": "application/json", "Host": "localhost", "Origin": "https://ehr.example"}


def test_a_missing_or_bad_token_is_401_before_any_body_byte_is_read(make_app):
    c = Client(front_for(make_app()))
    for auth in ({}, {"Authorization": "Bearer not-a-jwt"}):
        t0 = time.monotonic()
        out = run(c.request("POST", PV, {**JSON, **auth, "Content-Length": "100000"}, stall=True))
        assert out["status"] == 401 and out["receive_calls"] == 0
        assert time.monotonic() - t0 < 1.0
        assert out["headers"]["www-authenticate"].startswith("Bearer")
        assert out["headers"]["access-control-allow-origin"]
        assert json.loads(out["body"])["issue"][0]["code"] == "login"


def test_a_valid_token_is_checked_once_and_the_call_answers(make_app, mint):
    c = Client(front_for(make_app()))
    body = json.dumps(hook_body()).encode()
    token = mint(BASE + PV)
    out = run(c.request("POST", PV, {**JSON, "Authorization": f"Bearer {token}",
                                      "Content-Length": str(len(body))}, chunks=[(0, body)]))
    assert out["status"] == 200, out["body"][:300]
    assert "cards" in json.loads(out["body"])
    # The jti was recorded once (by the front): the same token again is a replay.
    again = run(c.request("POST", PV, {**JSON, "Authorization": f"Bearer {token}",
                                        "Content-Length": str(len(body))}, chunks=[(0, body)]))
    assert again["status"] == 401


def test_a_declared_length_over_the_limit_is_413_before_reading(tmp_path):
    from cds_service import create_app
    c = Client(front_for(create_app({"database": str(tmp_path / "db.sqlite3")}), body_timeout=15))
    t0 = time.monotonic()
    out = run(c.request("POST", PV, {**JSON, "Content-Length": str(10 ** 15)}, stall=True))
    assert out["status"] == 413 and out["receive_calls"] == 0 and time.monotonic() - t0 < 1.0
    assert json.loads(out["body"])["issue"][0]["code"] == "too-long"
    # Undeclared (chunked) and over the limit: reading stops at the limit, 413.
    out = run(c.request("POST", PV, JSON, chunks=[(0, b"[" * 600_000)] * 20))
    assert out["status"] == 413


def test_stalled_bodies_take_no_thread_and_share_one_deadline(tmp_path):
    """One app thread, eight stalled bodies: each gets 408 at the deadline, while /healthz
    and a complete hook call are answered at once."""
    from cds_service import create_app
    front = front_for(create_app({"database": str(tmp_path / "db.sqlite3")}), threads=1, body_timeout=0.5)
    c = Client(front)
    body = json.dumps(hook_body()).encode()

    async def scenario():
        t0 = time.monotonic()
        stalled = [asyncio.create_task(c.request("POST", PV, {**JSON, "Content-Length": "500"},
                                                 chunks=[(0, b"{")], stall=True)) for _ in range(8)]
        await asyncio.sleep(0.05)
        health = await c.request("GET", "/healthz", {"Host": "localhost"})
        t_health = time.monotonic() - t0
        call = await c.request("POST", PV, {**JSON, "Content-Length": str(len(body))}, chunks=[(0, body)])
        t_call = time.monotonic() - t0
        results = await asyncio.gather(*stalled)
        return health, t_health, call, t_call, results, time.monotonic() - t0

    health, t_health, call, t_call, results, total = run(scenario())
    assert health["status"] == 200 and t_health < 0.3
    assert call["status"] == 200 and t_call < 0.5, (call["status"], t_call)
    assert [r["status"] for r in results] == [408] * 8
    assert json.loads(results[0]["body"])["issue"][0]["code"] == "timeout"
    assert 0.5 <= total < 1.5  # one deadline each, all running at once: not 8 x 0.5 s


@pytest.mark.parametrize("path,method,status", [("/healthz", "HEAD", 200), ("/cds-services", "GET", 200),
                                                 ("/nope", "GET", 404)])
def test_other_routes_pass_through(tmp_path, path, method, status):
    from cds_service import create_app
    c = Client(front_for(create_app({"database": str(tmp_path / "db.sqlite3")})))
    out = run(c.request(method, path, {"Host": "localhost"}))
    assert out["status"] == status
    if method == "HEAD":
        assert out["body"] == b""


def test_a_fault_in_the_front_is_a_500_operation_outcome(tmp_path, monkeypatch):
    from cds_service import create_app
    from cds_service.web import serving

    def broken(app, environ):
        raise RuntimeError("boom")

    monkeypatch.setattr(serving, "_run_wsgi", broken)
    c = Client(front_for(create_app({"database": str(tmp_path / "db.sqlite3")})))
    out = run(c.request("GET", "/cds-services", {"Host": "localhost", "Origin": "https://ehr.example"}))
    assert out["status"] == 500 and json.loads(out["body"])["issue"][0]["code"] == "exception"
    assert out["headers"]["access-control-allow-origin"]


@pytest.mark.parametrize("case", ["ok", "content-type", "not-json", "empty", "invalid-hook", "wrong-hook",
                                  "fault", "store-down"])
def test_the_front_answers_the_hook_post_as_the_flask_route_does(tmp_path, monkeypatch, case):
    """Issue 25: the front serves the hook POST itself (no Flask routing, no WSGI round trip).
    Every answer, errors included, is the one the Flask route gives: same status, headers, body."""
    from cds_service import create_app
    from cds_service.runtime.errors import ServiceUnavailable
    from cds_service.cards import build as cards
    app = create_app({"database": str(tmp_path / "db.sqlite3"), "cors_origins": "https://ehr.example"})
    body = hook_body()
    headers = dict(JSON)
    raw = json.dumps(body).encode()
    if case == "content-type":
        headers["Content-Type"] = "text/plain"
    elif case == "not-json":
        raw = b'{"hook": '
    elif case == "empty":
        raw = b"  "
    elif case == "invalid-hook":
        raw = json.dumps({**body, "context": {"patientId": 7}}).encode()
    elif case == "wrong-hook":
        raw = json.dumps({**body, "hook": "order-sign"}).encode()
    elif case in ("fault", "store-down"):
        def fail(*_args):
            raise ServiceUnavailable("Audit store unavailable.") if case == "store-down" else ZeroDivisionError
        monkeypatch.setattr("cds_service.web.app.validate_hook_request", fail)
    ids = iter(range(1, 1000))
    monkeypatch.setattr(cards, "new_id", lambda: f"id-{next(ids)}")
    via_flask = app.test_client().post(PV, data=raw, headers=headers)
    ids = iter(range(1, 1000))
    out = run(Client(front_for(app)).request("POST", PV, {**headers, "Content-Length": str(len(raw))},
                                              chunks=[(0, raw)]))
    assert out["status"] == via_flask.status_code
    if case != "ok":
        assert out["status"] >= 400 and json.loads(out["body"])["resourceType"] == "OperationOutcome"
    assert json.loads(out["body"]) == via_flask.get_json()
    assert out["headers"] == {k.lower(): v for k, v in via_flask.headers.items()}
