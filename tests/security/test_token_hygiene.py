"""Token hygiene: no credential in any log line, error body or header, on any path.

Every error path is driven with recognisable credentials (a signed JWT, an opaque bearer
token, a fhirAuthorization access_token) and everything captured is grepped for them:
all log records at DEBUG (message, fields, traceback), the service's own JSON log
stream, captured stderr, and every response body and header.
"""
from __future__ import annotations

import io
import json
import logging
from dataclasses import replace

import pytest

from cds_service.logging_setup import JsonFormatter, configure_logging, redact
from security_helpers import BASE, FEEDBACK, ISS, PV, feedback_body, hook_body
from security_helpers import es_key, jwks, make_app, mint, rs_key  # noqa: F401  (fixtures)

ACCESS = "tok-SECRET-123"
OPAQUE = "opaque-SECRET-bearer-456"
FHIR_AUTH = {"access_token": ACCESS, "token_type": "Bearer", "expires_in": 300,
             "scope": "user/*.read", "subject": "cds-service"}


def with_fhir_auth(body: dict, auth=None) -> dict:
    return {**body, "fhirServer": "http://127.0.0.1:9/fhir", "fhirAuthorization": auth or FHIR_AUTH}


@pytest.fixture
def capture(caplog):
    """All log output: caplog records at DEBUG plus the service's JSON stream."""
    caplog.set_level(logging.DEBUG)
    configure_logging("DEBUG")  # idempotent; create_app does the same
    stream = io.StringIO()
    handlers = [h for h in logging.getLogger("cds_service").handlers
                if isinstance(h, logging.StreamHandler) and isinstance(h.formatter, JsonFormatter)]
    assert handlers, "configure_logging installs the service's JSON handler"
    previous = [h.setStream(stream) for h in handlers]
    yield caplog, stream
    for handler, old in zip(handlers, previous):
        handler.setStream(old)


def secrets_of(jwt_tokens: list[str]) -> list[str]:
    parts = [p for t in jwt_tokens for p in t.split(".") if len(p) > 8]
    return [ACCESS, OPAQUE, "SECRET", *jwt_tokens, *parts]


def assert_nothing_leaked(secrets, responses_, caplog, stream, capsys):
    out = capsys.readouterr()
    haystacks = {
        "caplog.text": caplog.text,
        "records": "\n".join(json.dumps(r.__dict__, default=str) for r in caplog.records),
        "json log stream": stream.getvalue(),
        "stderr/stdout": out.err + out.out,
    }
    for i, resp in enumerate(responses_):
        haystacks[f"response {i} ({resp.status_code})"] = (
            resp.get_data(as_text=True) + "\n" + "\n".join(f"{k}: {v}" for k, v in resp.headers.items()))
    for name, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"{secret[:20]}... leaked into {name}"


def test_every_error_path_with_auth_required(make_app, mint, capture, capsys, monkeypatch):
    caplog, stream = capture
    app = make_app(max_body_bytes=65536)
    client = app.test_client()
    minted: list[str] = []

    def tok(aud=BASE + PV, **kw) -> str:
        minted.append(mint(aud, **kw))
        return minted[-1]

    def auth(token: str) -> dict:
        return {"Authorization": f"Bearer {token}"}

    def boom(call):
        # A library echoing its input into an exception: both credentials in the message.
        raise RuntimeError(f"upstream refused Bearer {ACCESS}; token was {minted[-1]} ({ACCESS})")

    state = app.extensions["cds"]
    real_get = state.registry.get
    crashing = []
    monkeypatch.setattr(state.registry, "get", lambda sid: (
        replace(real_get(sid), handler=boom) if crashing and real_get(sid) else real_get(sid)))

    def crash(send):
        crashing.append(True)
        try:
            return send()
        finally:
            crashing.clear()

    replayed = tok()
    jwt_path_token = tok()
    cases = [
        # 400s
        (400, lambda: client.post(PV, data='{"fhirAuthorization": {"access_token": "%s", ' % ACCESS,
                                  content_type="application/json", headers=auth(tok()))),
        (400, lambda: client.post(PV, json={k: v for k, v in with_fhir_auth(hook_body()).items() if k != "hook"},
                                  headers=auth(tok()))),
        (400, lambda: client.post(PV, json=with_fhir_auth(hook_body(), [ACCESS]), headers=auth(tok()))),
        (400, lambda: client.post(PV, json=with_fhir_auth(hook_body(), ACCESS), headers=auth(tok()))),
        (400, lambda: client.post(PV, json=with_fhir_auth(hook_body(), {**FHIR_AUTH, "expires_in": ACCESS}),
                                  headers=auth(tok()))),
        (400, lambda: client.post(PV, json={**with_fhir_auth(hook_body()), "hook": "order-select"},
                                  headers=auth(tok()))),
        (400, lambda: client.post(FEEDBACK, json={"feedback": [{"outcome": "nope"}]},
                                  headers=auth(tok(BASE + FEEDBACK)))),
        # 401s
        (401, lambda: client.post(PV, json=with_fhir_auth(hook_body()))),
        (401, lambda: client.post(PV, json=with_fhir_auth(hook_body()), headers=auth(OPAQUE))),
        (401, lambda: client.post(PV, json=hook_body(), headers={"Authorization": f"Basic {OPAQUE}"})),
        (401, lambda: client.post(PV, json=hook_body(), headers=auth(tok("https://wrong.example" + PV)))),
        (401, lambda: client.post(PV, json=hook_body(), headers=auth(tok(exp_in=-600, iat_in=-900)))),
        (401, lambda: client.post(PV, json=hook_body(), headers=auth(tok(iss="https://evil.example")))),
        (401, lambda: client.post(PV, json=hook_body(), headers=auth(tok(alg="none")))),
        (401, lambda: client.post(PV, json=hook_body(), headers=auth(tok()[:-6] + "AAAAAA"))),
        (200, lambda: client.post(PV, json=with_fhir_auth(hook_body()), headers=auth(replayed))),
        (401, lambda: client.post(PV, json=with_fhir_auth(hook_body()), headers=auth(replayed))),
        (401, lambda: client.post(FEEDBACK, json=feedback_body(), headers=auth(tok()))),  # aud is PV
        # 404s: a JWT in the path is echoed by the diagnostics, and must be masked there
        (404, lambda: client.post("/cds-services/nope", json=hook_body(),
                                  headers=auth(tok(BASE + "/cds-services/nope")))),
        (404, lambda: client.post(f"/cds-services/{jwt_path_token}", json=hook_body(),
                                  headers=auth(tok(f"{BASE}/cds-services/{jwt_path_token}")))),
        (404, lambda: client.get(f"/nope/{jwt_path_token}?access_token={ACCESS}", headers=auth(OPAQUE))),
        # 405, 413, 415
        (405, lambda: client.get(PV, headers=auth(tok()))),
        (405, lambda: client.put(PV, json=with_fhir_auth(hook_body()), headers=auth(tok()))),
        (413, lambda: client.post(PV, json={**with_fhir_auth(hook_body()), "pad": "x" * 70000},
                                  headers=auth(tok()))),
        (415, lambda: client.post(PV, data=json.dumps(with_fhir_auth(hook_body())), content_type="text/plain",
                                  headers=auth(tok()))),
        # 500 from a handler whose exception text quotes both credentials
        (500, lambda: crash(lambda: client.post(PV, json=with_fhir_auth(hook_body()), headers=auth(tok())))),
        # accepted call with the access token also in the query string
        ({200, 412}, lambda: client.post(f"{PV}?access_token={ACCESS}", json=with_fhir_auth(hook_body()),
                                         headers=auth(tok()))),
    ]
    responses_ = []
    for expected, send in cases:
        resp = send()
        ok = resp.status_code in expected if isinstance(expected, set) else resp.status_code == expected
        assert ok, (expected, resp.status_code, resp.get_data(as_text=True)[:300])
        responses_.append(resp)

    # Access-log lines as werkzeug and gunicorn write them (the request line has the query).
    logging.getLogger("werkzeug").info('%s - - [%s] "%s" %s -', "127.0.0.1", "now",
                                       f"POST {PV}?access_token={ACCESS} HTTP/1.1", 200)
    logging.getLogger("gunicorn.access").info('%(h)s "%(r)s" %(s)s %({authorization}i)s', {
        "h": "127.0.0.1", "r": f"GET /x?jwt={minted[0]}&access_token={ACCESS} HTTP/1.1", "s": "200",
        "{authorization}i": f"Bearer {minted[0]}"})

    # The capture did see the events (so the grep below is not vacuous).
    reasons = [r.fields["reason"] for r in caplog.records if r.getMessage() == "authentication rejected"]
    assert len(reasons) == 10 and "jti replayed" in reasons
    crash = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert crash and "RuntimeError: upstream refused Bearer [REDACTED]" in crash[0].exc_text
    assert "[REDACTED-JWT]" in responses_[19].get_json()["issue"][0]["diagnostics"]
    assert "access_token=[REDACTED]" in caplog.text and '"unhandled error"' in stream.getvalue()

    assert_nothing_leaked(secrets_of(minted), responses_, caplog, stream, capsys)


def test_auth_off_still_masks_credentials(tmp_path, mint, capture, capsys, monkeypatch):
    from cds_service import create_app

    caplog, stream = capture
    app = create_app({"database": str(tmp_path / "db"), "log_level": "DEBUG", "max_body_bytes": 65536})
    client = app.test_client()
    token = mint()

    def boom(call):
        from flask import request
        # Only the credential, without its "Bearer" label: caught because it is this request's.
        raise ValueError(f"cannot use {ACCESS} with {request.headers['Authorization'].split()[-1]}")

    state = app.extensions["cds"]
    real_get = state.registry.get
    monkeypatch.setattr(state.registry, "get", lambda sid: real_get(sid) and replace(real_get(sid), handler=boom))
    headers = {"Authorization": f"Bearer {OPAQUE}"}
    responses_ = [
        client.post(PV, json=with_fhir_auth(hook_body()), headers=headers),                    # 500
        client.post(PV, json=with_fhir_auth(hook_body(), [ACCESS]), headers=headers),          # 400
        client.post(f"/cds-services/{token}", json=hook_body(), headers=headers),              # 404
        client.post(PV, json=with_fhir_auth(hook_body()), headers={"Authorization": f"Bearer {token}"}),
    ]
    assert [r.status_code for r in responses_] == [500, 400, 404, 500]
    assert [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert_nothing_leaked(secrets_of([token]), responses_, caplog, stream, capsys)


def test_credentials_are_forgotten_after_the_request(make_app, mint, capture):
    caplog, _ = capture
    client = make_app().test_client()
    client.post(PV, json=with_fhir_auth(hook_body()), headers={"Authorization": f"Bearer {mint()}"})
    # Outside any request the opaque value is ordinary text again (no unbounded growth).
    assert redact(f"value {ACCESS}") == f"value {ACCESS}"


@pytest.mark.parametrize("text,secret", [
    ("Authorization: Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl"),
    ("authorization=Bearer%20abcdefgh12345", "abcdefgh12345"),
    ("{'HTTP_AUTHORIZATION': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz"),
    ('{"Authorization": "Negotiate YIIabc123456"}', "YIIabc123456"),
    ('{"access_token": "opaque-value-1"}', "opaque-value-1"),
    ("{'access_token': 'opaque-value-2'}", "opaque-value-2"),
    ("GET /x?a=1&access_token=opaque-value-3&b=2", "opaque-value-3"),
    ("access_token%3Dopaque-value-4", "opaque-value-4"),
    ("grant_type=x&refresh_token=opaque-value-5", "opaque-value-5"),
    ("token eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl rest", "c2lnbmF0dXJl"),
    ("unsigned eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0. rest", "eyJpc3MiOiJ4In0"),
])
def test_redact_masks_credential_shapes(text, secret):
    assert secret not in redact(text)


@pytest.mark.parametrize("text", [
    "keyboard.layout.example", "cds_service.security.tokens", '"fhirAuthorization": {"scope": "user/*.read"}',
    "token_type Bearer", "hookInstance d3b07384-d9a0-4c3b-9a9e-1f1e1f1e1f1e",
])
def test_redact_leaves_ordinary_text_alone(text):
    assert redact(text) == text


def test_log_event_fields_are_redacted_by_name_and_shape(capture):
    from cds_service.logging_setup import log_event

    caplog, _ = capture
    # A logger outside cds_service: no RedactingFilter of ours on its path, only log_event's.
    log_event(logging.getLogger("elsewhere.test"), logging.INFO, "event", access_token=ACCESS,
              nested={"Authorization": OPAQUE, "ok": "kept"}, iss=ISS)
    (record,) = [r for r in caplog.records if r.getMessage() == "event"]
    assert record.fields == {"access_token": "[REDACTED]", "nested": {"Authorization": "[REDACTED]", "ok": "kept"},
                             "iss": ISS}
