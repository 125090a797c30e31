"""Fuzzing the HTTP surface with hypothesis: no input may produce a 500 or an unhandled exception.

Bodies go through the Flask test client. Hook calls carry a complete prefetch (every key
satisfied), so mutated FHIR resources reach extraction and the clinical engine instead of
stopping at 412. A 200 must carry schema-valid cards; anything else must be a well-formed
OperationOutcome with a 4xx status.

Examples: profile "ci" (default) runs >= 2,000 in total; CDS_FUZZ_PROFILE=deep runs >= 10,000.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import synth
from cds_service import create_app
from conftest import assert_valid_cds_response

pytestmark = pytest.mark.slow  # property-based: left out by dev.py test --fast

PROFILE = os.environ.get("CDS_FUZZ_PROFILE", "ci")
# Per-test example counts; the ci total across this module is >= 2,000, deep >= 10,000.
SCALE = {"ci": 1, "deep": 5}[PROFILE]


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=None, derandomize=PROFILE == "ci",
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example],
                    database=None)


HOOK_PATHS = dict(synth.SERVICE_PATH)
ALLOWED_ERRORS = {400, 404, 412, 413, 415}
NOW = datetime.now(timezone.utc)
# One small realistic record (30 Observations keeps each example fast); mutated per example.
_REC = synth.record("fuzz-p", 30, now=NOW)
for _key, _extra in synth.rich_extras("fuzz-p", NOW).items():
    _REC[_key] = _REC[_key] + _extra
BASE = {hook: synth.hook_request(hook, "fuzz-p", rec=_REC) for hook in HOOK_PATHS}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app({"database": str(tmp_path_factory.mktemp("fuzz") / "cds.sqlite3"),
                      "fhir_timeout": 1.0, "log_level": "ERROR"})
    return app.test_client()


def post(client, path: str, body) -> tuple[int, dict | None]:
    # stdlib json: it encodes integers beyond 64 bits and lone surrogates, as hostile clients may
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = client.post(path, data=data, content_type="application/json")
    return resp.status_code, check_response(resp)


def check_response(resp) -> dict | None:
    """Assert the service's contract for any input; returns the parsed body."""
    status = resp.status_code
    assert status != 500, resp.get_data(as_text=True)[:1000]
    assert status == 200 or status in ALLOWED_ERRORS, (status, resp.get_data(as_text=True)[:500])
    assert resp.mimetype == "application/json"
    body = orjson.loads(resp.get_data())
    if status == 200 and "cards" in body:
        assert_valid_cds_response(body)
    elif status != 200:
        assert body["resourceType"] == "OperationOutcome"
        issue = body["issue"][0]
        assert issue["severity"] == "error" and isinstance(issue["diagnostics"], str) and issue["diagnostics"]
    return body


# -- value strategies ---------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                           max_leaves=12)
ABSURD_NUMBERS = [0, -0.0, -1, -273.15, 1e-320, 1e-9, 0.5, 1e6, 1e308, -1e308, 10**30, -(10**30), 2**63, 2**64 + 1,
                  123456789.123456789]
ODD_UNITS = ["", " ", "MG/DL", "mg/dl", "µmol/L", "umol/l", " umol/L ", "%", "10*9/L", "10^9/L", "K/uL", "/uL",
             "kg/m2", "[lb_av]", "lb", "{FEU}", "ng/mL{FEU}", "ug/mL{DDU}", "mmol/L", "xyz", "m", "1", "{score}",
             "mm[Hg]", "kPa", "g", "L", "s", "min", "{INR}", "g/L", "mg/L", "IU/mL", "[IU]/mL", "mL/d", "\u0000", "°C"]
ODD_SYSTEMS = ["http://unitsofmeasure.org", "", "http://example.org/units", "urn:oid:2.16.840.1.113883.6.8", None]
ODD_DATES = ["", "2024", "2024-07", "2024-13-45", "not a date", "9999-12-31T23:59:59Z", "0001-01-01",
             "2024-01-01T10:00:00+99:00", "2024-01-01T10:00:00-24:00", "0001-01-01T00:00:00+14:00",
             "9999-12-31T23:59:59-14:00",
             "2024-02-30T25:61:00+99:00", "2024-01-01T00:00:00", "1969-12-31T23:59:59.999999999Z",
             NOW.strftime("%Y-%m-%dT%H:%M:%S+14:00"), NOW.strftime("%Y-%m-%d")]
DELETE = object()

mutation_values = (json_values | st.sampled_from(ABSURD_NUMBERS) | st.sampled_from(ODD_UNITS)
                   | st.sampled_from(ODD_DATES) | st.just(DELETE))


def paths(value, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, prefix + (i,))
    return out


def apply(doc, path: tuple, value) -> None:
    if not path:
        return
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    if value is DELETE:
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif path[-1] < len(parent):
            del parent[path[-1]]
    else:
        parent[path[-1]] = value


def clone(doc):
    return orjson.loads(orjson.dumps(doc))


PREFETCH_PATHS = {hook: [("prefetch",) + p for p in paths(BASE[hook]["prefetch"])[1:]] for hook in HOOK_PATHS}
CONTEXT_PATHS = {hook: [("context",) + p for p in paths(BASE[hook]["context"])[1:]] for hook in HOOK_PATHS}

hooks = st.sampled_from(sorted(HOOK_PATHS))


@st.composite
def value_quantity(draw) -> dict:
    vq = {}
    if draw(st.booleans()):
        vq["value"] = draw(st.sampled_from(ABSURD_NUMBERS) | st.floats(-1e6, 1e6) | json_values)
    if draw(st.booleans()):
        vq["unit"] = draw(st.sampled_from(ODD_UNITS))
    if draw(st.booleans()):
        vq["code"] = draw(st.sampled_from(ODD_UNITS))
    system = draw(st.sampled_from(ODD_SYSTEMS))
    if system is not None:
        vq["system"] = system
    if draw(st.integers(0, 5)) == 0:
        vq["comparator"] = draw(st.sampled_from(["<", "<=", ">", ">=", "~", ""]))
    return vq


# -- tests --------------------------------------------------------------------------------

@fuzz_settings(300)
@given(path=st.sampled_from(sorted(HOOK_PATHS.values()) + ["/cds-services/coagulopathy-risk/feedback"]),
       body=json_values)
def test_random_json_bodies(client, path, body):
    post(client, path, body)


@fuzz_settings(300)
@given(hook=hooks, data=st.data())
def test_type_confusion_in_request_and_context(client, hook, data):
    doc = clone(BASE[hook])
    doc.pop("prefetch")  # keep it light: the prefetch has its own test
    doc["prefetch"] = None if data.draw(st.booleans()) else {}
    targets = [("hook",), ("hookInstance",), ("context",), ("fhirServer",), ("fhirAuthorization",),
               ("prefetch",), ("extension",)] + CONTEXT_PATHS[hook]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(targets))
        try:
            apply(doc, path, data.draw(mutation_values | st.sampled_from(["patient-view", "order-select",
                                                                           "order-sign", "medication-prescribe"])))
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or retyped the parent
    post(client, HOOK_PATHS[data.draw(hooks)], doc)


@fuzz_settings(700)
@given(hook=hooks, data=st.data())
def test_prefetch_resource_mutations(client, hook, data):
    """Odd units, absurd values, missing fields and wrong types anywhere in the prefetch."""
    doc = clone(BASE[hook])
    for _ in range(data.draw(st.integers(1, 6))):
        path = data.draw(st.sampled_from(PREFETCH_PATHS[hook]))
        try:
            apply(doc, path, data.draw(mutation_values))
        except (KeyError, IndexError, TypeError):
            pass
    status, body = post(client, HOOK_PATHS[hook], doc)
    assert status != 412 or "prefetch" in str(body), body


@fuzz_settings(500)
@given(hook=hooks, data=st.data())
def test_observation_values_units_and_dates(client, hook, data):
    """Targeted: every Observation field that extraction reads, with hostile content."""
    doc = clone(BASE[hook])
    observations = [e["resource"] for key in ("labs", "bedside", "body")
                    for e in doc["prefetch"][key].get("entry", [])]
    for index in data.draw(st.lists(st.integers(0, len(observations) - 1), min_size=1, max_size=6)):
        obs = observations[index]
        kind = data.draw(st.integers(0, 6))
        if kind == 0:
            obs["valueQuantity"] = data.draw(value_quantity())
        elif kind == 1:
            obs["effectiveDateTime"] = data.draw(st.sampled_from(ODD_DATES) | json_values)
        elif kind == 2:
            obs["status"] = data.draw(st.sampled_from(["preliminary", "entered-in-error", "", "FINAL", "amended"])
                                      | json_values)
        elif kind == 3:
            obs["referenceRange"] = data.draw(st.lists(st.fixed_dictionaries(
                {}, optional={"high": value_quantity(), "low": value_quantity(), "type": json_values,
                              "appliesTo": json_values}), max_size=3) | json_values)
        elif kind == 4:
            obs["component"] = [{"code": obs.get("code"), "valueQuantity": data.draw(value_quantity())}]
        elif kind == 5:
            obs["subject"] = data.draw(st.sampled_from([{"reference": "Patient/other"}, {}, "Patient/fuzz-p"])
                                       | json_values)
        else:
            obs.pop(data.draw(st.sampled_from(sorted(obs))), None)
    patient = doc["prefetch"]["patient"]
    if data.draw(st.booleans()):
        patient["birthDate"] = data.draw(st.sampled_from(ODD_DATES) | json_values)
    if data.draw(st.booleans()):
        patient["gender"] = data.draw(st.sampled_from(["male", "female", "other", "unknown", "", "M"]) | json_values)
    post(client, HOOK_PATHS[hook], doc)


@fuzz_settings(200)
@given(hook=st.sampled_from(["order-select", "order-sign"]), data=st.data())
def test_draft_order_mutations(client, hook, data):
    doc = clone(BASE[hook])
    draft = doc["context"]["draftOrders"]["entry"][0]["resource"]
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(paths(draft)[1:]))
        try:
            apply(draft, path, data.draw(mutation_values))
        except (KeyError, IndexError, TypeError):
            pass
    post(client, HOOK_PATHS[hook], doc)


FEEDBACK_ITEM = {"card": "7d1e2c3a-0b4b-4c8e-9f5e-2a6b3c4d5e6f", "outcome": "accepted",
                 "outcomeTimestamp": "2024-05-01T10:05:31Z",
                 "acceptedSuggestions": [{"id": "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"}],
                 "overrideReason": {"reason": {"code": "x", "system": "http://example.org"}, "userComment": "c"}}


@fuzz_settings(200)
@given(service=st.sampled_from(["coagulopathy-risk", "anticoagulant-order-check", "nope"]),
       wrapped=st.booleans(), data=st.data())
def test_feedback_bodies(client, service, wrapped, data):
    items = []
    for _ in range(data.draw(st.integers(1, 3))):
        item = clone(FEEDBACK_ITEM)
        for _ in range(data.draw(st.integers(0, 3))):
            try:
                apply(item, data.draw(st.sampled_from(paths(item)[1:])), data.draw(mutation_values))
            except (KeyError, IndexError, TypeError):
                pass
        items.append(item)
    post(client, f"/cds-services/{service}/feedback", {"feedback": items} if wrapped else items[0])


# -- explicit hostile shapes (regressions) --------------------------------------------------

def nested(doc: dict, depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return orjson.dumps(doc).replace(b'"__DEEP__"', open_ * depth + close * depth)


@pytest.mark.parametrize("depth", [100, 900, 1000, 1023, 10_000])
@pytest.mark.parametrize("where", ["hookInstance", "context", "patientId", "prefetch", "extension", "feedback"])
def test_deep_nesting_is_a_400_or_ignored(client, where, depth):
    """Regression: ~1,000 levels (within orjson's 1,024 limit) made jsonschema's error message
    (repr of the value) raise RecursionError -> 500. Now 400; deeper is a parse error (400).
    The `extension` arrays are 400 because `extension` must be an object."""
    doc = clone(BASE["patient-view"])
    path = "/cds-services/coagulopathy-risk"
    if where == "patientId":
        doc["context"]["patientId"] = "__DEEP__"
    elif where == "prefetch":
        doc["prefetch"]["labs"] = "__DEEP__"
    elif where == "feedback":
        doc, path = {"feedback": "__DEEP__"}, path + "/feedback"
    else:
        doc[where] = "__DEEP__"
    for open_, close in ((b"[", b"]"), (b'{"a":', b"}")):
        status, _ = post(client, path, nested(doc, depth, open_, close))
        if where == "extension" and open_ == b"{" and depth < 1000:
            assert status == 200  # unknown extension content is ignored, however deep
        elif where == "extension" and open_ == b"{" and depth < 1024:
            assert status in (200, 400)  # near orjson's 1,024-level limit, counted from the root
        else:
            assert status == 400


@pytest.mark.parametrize("field", ["hookInstance", "patientId", "fhirServer", "hook", "extension"])
def test_huge_strings(client, field):
    doc = clone(BASE["patient-view"])
    big = "x" * (4 * 1024 * 1024)
    if field == "patientId":
        doc["context"]["patientId"] = big
    else:
        doc[field] = big
    status, body = post(client, "/cds-services/coagulopathy-risk", doc)
    assert status == 400
    assert len(orjson.dumps(body)) < 2000, "the error must not echo the huge value back"


def test_body_over_the_limit_is_413(client):
    doc = clone(BASE["patient-view"])
    doc["extension"] = {"pad": "x" * (6 * 1024 * 1024)}
    status, _ = post(client, "/cds-services/coagulopathy-risk", doc)
    assert status == 413


def test_wide_object_and_many_entries(client):
    doc = clone(BASE["patient-view"])
    doc["extension"] = {f"k{i}": i for i in range(50_000)}
    doc["prefetch"]["conditions"]["entry"] = [{"resource": {"resourceType": "Condition"}}] * 5_000
    status, _ = post(client, "/cds-services/coagulopathy-risk", doc)
    assert status == 200


# -- signed client JWTs whose claims have unexpected JSON types (issue 14) ------------------
# Every token is correctly signed by a trusted key; only the claims are fuzzed. Any claim
# value must give 200 (it happens to be valid) or 401, never a 500. Before issue 14 a
# `tenant` array or object gave 500 (unhashable in the tenant allow-list check).

JWT_ISS = "https://fuzz-ehr.example.org"
JWT_KID = "fuzz-es384"
JWT_CLAIMS = ["tenant", "aud", "iss", "jti", "sub", "exp", "iat", "nbf"]
claim_values = (json_values | st.sampled_from(ABSURD_NUMBERS) | st.sampled_from(ODD_DATES)
                | st.just(DELETE) | st.sampled_from([["t-1"], {"t-1": 1}, "t-1", "t-2"]))


@pytest.fixture(scope="module")
def jwt_app(tmp_path_factory):
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=JWT_KID, alg="ES384", use="sig")
    tmp = tmp_path_factory.mktemp("fuzz-jwt")
    trust = tmp / "trust.json"
    trust.write_text(json.dumps({JWT_ISS: {"jwks": {"keys": [jwk]}, "tenant": ["t-1"]}}))
    app = create_app({"database": str(tmp / "cds.sqlite3"), "auth": "required",
                      "trusted_issuers": str(trust), "log_level": "ERROR"})
    return app.test_client(), key


def _signed(key, payload: dict) -> str:
    import base64

    from jwt.algorithms import get_default_algorithms

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "ES384", "typ": "JWT", "kid": JWT_KID}).encode())
    signing_input = f"{header}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(get_default_algorithms()['ES384'].sign(signing_input.encode(), key))}"


@fuzz_settings(250)
@given(changes=st.dictionaries(st.sampled_from(JWT_CLAIMS), claim_values, min_size=1, max_size=3))
def test_jwt_claims_of_any_json_type(jwt_app, changes):
    import time
    import uuid

    client, key = jwt_app
    path = "/cds-services/coagulopathy-risk/feedback"
    now = int(time.time())
    payload = {"iss": JWT_ISS, "aud": "http://localhost" + path, "exp": now + 300, "iat": now,
               "jti": str(uuid.uuid4()), "tenant": "t-1"}
    for name, value in changes.items():
        if value is DELETE:
            payload.pop(name, None)
        else:
            payload[name] = value
    body = {"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": "2024-01-01T00:00:00Z",
            "acceptedSuggestions": [{"id": str(uuid.uuid4())}]}
    resp = client.post(path, data=json.dumps(body), content_type="application/json",
                       headers={"Authorization": f"Bearer {_signed(key, payload)}"})
    assert resp.status_code in (200, 401), (resp.status_code, payload, resp.get_data(as_text=True)[:500])
    if resp.status_code == 401:
        assert resp.get_json()["issue"][0]["code"] == "login"
