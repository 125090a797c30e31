"""Issue 23: `cds-service check URL` passes against this service (a real instance with JWT
authentication, the integrator's key in its trust file) and fails, naming the check, against a
small test service that breaks one thing at a time."""
from __future__ import annotations

import json
import threading
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug.wrappers import Request, Response
from werkzeug.serving import make_server

from cds_service.cli.check import INVARIANTS
from cds_service.cli import main
from served_instance import Instance

ISS = "https://ehr.integrator.test"
KID = "integrator-key-1"


@pytest.fixture(scope="module")
def key_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keys")
    key = ec.generate_private_key(ec.SECP384R1())
    pem = tmp / "integrator.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": KID, "alg": "ES384", "use": "sig"})
    trust = tmp / "trust.json"
    trust.write_text(json.dumps({ISS: {"jwks": {"keys": [jwk]}}}))
    return pem, trust, key.public_key()


def _jwt_args(pem):
    return ["--jwt-key", str(pem), "--jwt-iss", ISS, "--jwt-kid", KID]


def _lines(capsys) -> dict[str, str]:
    out = capsys.readouterr().out
    return {line.split(" ", 2)[1].rstrip(":"): line.split(" ", 1)[0] for line in out.splitlines()
            if line.split(" ", 1)[0] in ("PASS", "FAIL", "SKIP")}


def test_check_passes_against_this_service_with_jwt(tmp_path, key_files, capsys):
    pem, trust, _ = key_files
    instance = Instance(tmp_path, "checked", {"CDS_AUTH": "required", "CDS_TRUSTED_ISSUERS": str(trust)})
    try:
        code = main(["check", instance.base, *_jwt_args(pem)])
    finally:
        instance.stop()
    results = _lines(capsys)
    assert code == 0, results
    expected = {"discovery", "cors", "jwt", "412", "hook-calls", "feedback", "card.summary", "card.indicator",
                "card.source", "card.selectionBehavior", *(name for name, _, _ in INVARIANTS)}
    assert set(results) == expected
    assert {name for name, status in results.items() if status != "PASS"} == set()


# -- a small CDS service that breaks one check at a time --------------------------------------------
def _good_card() -> dict:
    return {
        "uuid": str(uuid.uuid4()), "summary": "Consider enoxaparin 40 mg SC daily", "indicator": "warning",
        "source": {"label": "Test service"},
        "suggestions": [
            {"label": "Order", "uuid": str(uuid.uuid4()), "isRecommended": True,
             "actions": [{"type": "create", "description": "Order enoxaparin",
                          "resource": {"resourceType": "MedicationRequest", "status": "draft"}}]},
            {"label": "Stop", "uuid": str(uuid.uuid4()), "isRecommended": False,
             "actions": [{"type": "delete", "description": "Stop heparin", "resourceId": "MedicationRequest/h1"}]}],
        "selectionBehavior": "at-most-one",
        "overrideReasons": [{"system": "http://example.org/reasons", "code": "no", "display": "Not now"}],
        "links": [{"label": "Guideline", "url": "https://example.org/g", "type": "absolute"},
                  {"label": "App", "url": "https://example.org/launch", "type": "smart", "appContext": "x"}],
    }


BREAKS = {
    "cds-resp-1": lambda c: c["suggestions"][1].update(isRecommended=True),
    "cds-resp-2": lambda c: c["suggestions"][1]["actions"][0].pop("resourceId"),
    "cds-resp-3": lambda c: c["links"][0].update(appContext="leak"),
    "cds-resp-4": lambda c: c["overrideReasons"][0].pop("display"),
    "cds-resp-5": lambda c: c["suggestions"][0]["actions"][0].pop("description"),
    "cds-resp-6": lambda c: c.pop("selectionBehavior"),
    "cds-resp-7": lambda c: c["suggestions"][0].update(actionSelectionBehavior="some"),
    "card.summary": lambda c: c.update(summary="x" * 140),
}
OTHER_BREAKS = ("discovery", "cors", "jwt", "412", "feedback")


def broken_service(mode: str, public_key):
    """A plain WSGI app (not Flask: the suite's card-limit hook watches every Flask hook answer)."""

    def reply(body=None, status=200) -> Response:
        resp = Response(json.dumps(body) if body is not None else b"", status=status,
                        mimetype="application/json")
        if mode != "cors":
            resp.headers["Access-Control-Allow-Origin"] = "*"
            resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        return resp

    def authorised(req: Request) -> bool:
        if mode == "jwt":
            return True  # accepts anyone
        header = req.headers.get("Authorization", "")
        try:
            jwt.decode(header.removeprefix("Bearer "), public_key, algorithms=["ES384"], audience=req.base_url)
        except jwt.PyJWTError:
            return False
        return True

    def handle(req: Request) -> Response:
        if req.method == "OPTIONS":
            return reply(status=204)
        if req.path == "/cds-services" and req.method == "GET":
            service = {"hook": "patient-view", "id": "broken", "title": "Broken",
                       "description": "A test service", "prefetch": {"patient": "Patient/{{context.patientId}}"}}
            if mode == "discovery":
                service.pop("description")
            return reply({"services": [service]})
        if req.path == "/cds-services/broken" and req.method == "POST":
            if not authorised(req):
                return reply(status=401)
            body = json.loads(req.get_data())
            if not body.get("prefetch") and mode != "412":
                return reply({"resourceType": "OperationOutcome", "issue": [{"severity": "error",
                                                                             "code": "incomplete"}]}, 412)
            card = _good_card()
            if mode in BREAKS:
                BREAKS[mode](card)
            return reply({"cards": [card]})
        if req.path == "/cds-services/broken/feedback" and req.method == "POST":
            if not authorised(req):
                return reply(status=401)
            return reply({"status": "ok"}) if mode != "feedback" else reply({"error": "no"}, 500)
        return reply({"error": "not found"}, 404)

    def app(environ, start_response):
        return handle(Request(environ))(environ, start_response)

    return app


@pytest.fixture
def serve_broken(key_files):
    servers = []

    def start(mode: str) -> str:
        server = make_server("127.0.0.1", 0, broken_service(mode, key_files[2]), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()


def test_the_unbroken_test_service_passes(serve_broken, key_files, capsys):
    assert main(["check", serve_broken("none"), *_jwt_args(key_files[0])]) == 0
    assert "FAIL" not in set(_lines(capsys).values())


@pytest.mark.parametrize("mode", [*BREAKS, *OTHER_BREAKS])
def test_check_fails_naming_the_broken_check(mode, serve_broken, key_files, capsys):
    code = main(["check", serve_broken(mode), *_jwt_args(key_files[0])])
    results = _lines(capsys)
    assert code == 1
    assert {name for name, status in results.items() if status == "FAIL"} == {mode}, results


def test_integrator_requests_are_used_for_another_service(serve_broken, key_files, tmp_path, capsys):
    from cds_service.cli.examples import build
    plain = tmp_path / "request.json"
    plain.write_text(json.dumps(build("sic-positive")))
    captured = tmp_path / "capture.json"   # a CDS_CAPTURE_DIR file names its service
    captured.write_text(json.dumps({"service": "broken", "request": build("standard-prophylaxis")}))
    code = main(["check", serve_broken("none"), *_jwt_args(key_files[0]),
                 "--request", str(plain), "--request", str(captured)])
    out = capsys.readouterr().out
    assert code == 0 and "PASS hook-calls: 2 of 2 answered 200" in out
    assert main(["check", serve_broken("none"), "--request", str(tmp_path / "missing.json")]) == 2
