"""Review of issue 25's merged access line: on every error path of a hook call, the one access line
carries neither the request's access token nor the raw patient id."""
from __future__ import annotations

import orjson
import pytest

from bench import synth
from cds_service.web.serving import Front, ServingMiddleware
from tests.test_access_line import _asgi, _lines, _wsgi, app, records  # noqa: F401 (fixtures)

TOKEN = "tok-1234567890-secret"
PID = "access-p"


def _case(kind: str, monkeypatch) -> tuple[bytes, int]:
    body = synth.hook_request("patient-view", PID, n_obs=20)
    body["hookInstance"] = f"hi-{TOKEN}"
    body["fhirServer"] = "https://fhir.example"
    body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                 "scope": "user/*.read", "subject": "cds"}
    if kind == "400":
        body["context"]["patientId"] = 12
        return orjson.dumps(body), 400
    if kind == "400-json":
        return orjson.dumps(body)[:-5], 400
    if kind == "412":
        del body["prefetch"]["labs"]
        return orjson.dumps(body), 412
    if kind == "500":
        import cds_service.evaluation.pipeline as pipeline
        monkeypatch.setattr(pipeline, "extract_inputs", lambda *a, **k: 1 / 0)
        return orjson.dumps(body), 500
    return orjson.dumps(body), 200


@pytest.mark.parametrize("serve", ["front", "wsgi"])
@pytest.mark.parametrize("kind", ["200", "400", "400-json", "412", "500"])
def test_access_line_never_carries_token_or_patient_id(app, records, monkeypatch, kind, serve):  # noqa: F811
    raw, expected = _case(kind, monkeypatch)
    if serve == "front":
        front = Front(app, max_body_bytes=5_000_000, body_timeout=5, threads=1)
        try:
            status = _asgi(front, raw)
        finally:
            front.pool.shutdown()
    else:
        status = int(_wsgi(ServingMiddleware(app, max_body_bytes=5_000_000, body_timeout=5), raw)[:3])
    assert status == expected
    [line] = _lines(records)
    text = str(line.fields) + line.getMessage()
    assert TOKEN not in text and PID not in text, line.fields
