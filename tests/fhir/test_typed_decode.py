"""Issue 25: the hook body's Observation searches decoded into typed structs (fhir/typed.py) read
exactly as the orjson dicts did, and anything the typed decode cannot read the same way is left to
orjson."""
from __future__ import annotations

import copy
from datetime import datetime, timezone

import orjson
import pytest

from bench import synth
from cds_service.fhir import typed
from cds_service.fhir.bundle import bundle_resources
from cds_service.fhir.extract import extract_inputs
from cds_service.logic.policy import Policy

NOW = datetime(2025, 3, 14, 10, 0, tzinfo=timezone.utc)
KEYS = frozenset({"labs", "bedside", "body"})


def _request(n_obs: int = 40) -> dict:
    body = synth.hook_request("patient-view", "typed-p", rec=synth.record("typed-p", n_obs, now=NOW))
    labs = body["prefetch"]["labs"]["entry"]
    # What the readers must skip or read: an include entry, another resource type, a panel with a
    # component, a covid test, entered-in-error, another patient's result, no id.
    labs.append({"resource": {"resourceType": "Patient", "id": "x"}, "search": {"mode": "include"}})
    labs.append({"resource": {"resourceType": "OperationOutcome", "issue": []}, "search": {"mode": "outcome"}})
    labs.append({"resource": {"resourceType": "Condition", "id": "c"}})
    panel = copy.deepcopy(labs[0]["resource"])
    panel["id"] = "panel-1"
    panel["component"] = [{"code": copy.deepcopy(labs[1]["resource"]["code"]),
                           "valueQuantity": copy.deepcopy(labs[1]["resource"]["valueQuantity"])}]
    labs.insert(0, {"resource": panel, "search": {"mode": "match"}})
    other = copy.deepcopy(labs[2]["resource"])
    other["subject"] = {"reference": "Patient/someone-else"}
    other.pop("id")
    labs.insert(0, {"resource": other})
    wrong = copy.deepcopy(labs[3]["resource"])
    wrong["status"] = "entered-in-error"
    labs.insert(0, {"resource": wrong})
    return body


def test_typed_body_reads_like_orjson():
    raw = orjson.dumps(_request())
    plain = orjson.loads(raw)
    body = typed.decode_hook_body(raw, KEYS)
    assert body is not None
    assert {k: v for k, v in body.items() if k != "prefetch"} == {k: v for k, v in plain.items() if k != "prefetch"}
    for key, value in body["prefetch"].items():
        if key in KEYS:
            assert type(value) is typed.TypedBundle and value == {"resourceType": "Bundle"}
            assert [o.resource for o in value.resources] == list(bundle_resources(plain["prefetch"][key],
                                                                                  ("Observation",)))
        else:
            assert value == plain["prefetch"][key]


def test_extraction_is_the_same_from_typed_observations():
    raw = orjson.dumps(_request(150))
    plain = orjson.loads(raw)
    body = typed.decode_hook_body(raw, KEYS)
    policy = Policy.default()

    def resources(prefetch):
        out = []
        for key, value in prefetch.items():
            if type(value) is typed.TypedBundle:
                out.extend(value.resources)
            elif value and value.get("resourceType") == "Bundle":
                out.extend(bundle_resources(value))
            elif value:
                out.append(value)
        return out

    typed_inputs = extract_inputs(resources(body["prefetch"]), now=NOW, policy=policy, patient_id="typed-p")
    dict_inputs = extract_inputs(resources(plain["prefetch"]), now=NOW, policy=policy, patient_id="typed-p")
    assert typed_inputs == dict_inputs
    assert typed_inputs.platelets is not None and typed_inputs.platelet_trend


@pytest.mark.parametrize("raw", [
    b'{"hook": "patient-view", "context": {}}',                                    # no prefetch
    b'{"hook": "patient-view", "context": {}, "prefetch": null}',                  # prefetch not an object
    b'{"hook": "patient-view", "other": 1, "prefetch": {}}',                       # a member CDS Hooks lacks
    b'{"hook": "patient-view", "context": {"x": "\xff"}, "prefetch": {}}',         # not UTF-8
    b'{"hook": "patient-view", "context": {"x": "\\ud800"}, "prefetch": {}}',      # a lone surrogate
    b'{"hook": "patient-view", "context": {"x": 1e400}, "prefetch": {}}',          # orjson refuses it
    b'{"hook": "patient-view", "prefetch": {"labs": {"resourceType": "Bundle"}',   # truncated
    b'[1, 2]',
])
def test_left_to_orjson(raw):
    assert typed.decode_hook_body(raw, KEYS) is None


@pytest.mark.parametrize("change", [
    lambda o: o.__setitem__("status", 7),
    lambda o: o.__setitem__("code", "platelets"),
    lambda o: o["code"]["coding"][0].__setitem__("system", ["x"]),
    lambda o: o.__setitem__("subject", "Patient/typed-p"),
    lambda o: o.__setitem__("effectiveDateTime", 20250314),
    lambda o: o.__setitem__("component", {"code": {}}),
    lambda o: o.__setitem__("id", 12),
])
def test_a_wrongly_typed_field_leaves_the_search_to_orjson(change):
    body = _request(10)
    change(body["prefetch"]["labs"]["entry"][0]["resource"])
    raw = orjson.dumps(body)
    decoded = typed.decode_hook_body(raw, KEYS)
    assert decoded is not None
    assert type(decoded["prefetch"]["labs"]) is dict and decoded["prefetch"]["labs"] == orjson.loads(raw)["prefetch"]["labs"]
    assert type(decoded["prefetch"]["bedside"]) is typed.TypedBundle


def test_a_search_that_is_not_a_bundle_is_left_to_orjson():
    body = _request(10)
    body["prefetch"]["labs"] = {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}
    decoded = typed.decode_hook_body(orjson.dumps(body), KEYS)
    assert decoded["prefetch"]["labs"] == body["prefetch"]["labs"]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from cds_service import create_app
    return create_app({"database": str(tmp_path_factory.mktemp("typed") / "cds.sqlite3"),
                       "log_level": "ERROR"}).test_client()


def _newest_platelets(body: dict) -> dict:
    return next(e["resource"] for e in body["prefetch"]["labs"]["entry"]
                if e["resource"]["code"]["text"] == "platelets")


def test_a_number_orjson_refuses_in_a_used_observation_is_a_400(client):
    """1e400 in a field the pass skips (valueQuantity.value): the typed decode reads the body, and
    the Observation, once a rule uses it, is the 400 the whole body was (never a 500)."""
    body = synth.hook_request("patient-view", "typed-p", n_obs=40)
    _newest_platelets(body)["valueQuantity"]["value"] = 123456.0
    raw = orjson.dumps(body).replace(b"123456.0", b"1e400")
    assert typed.decode_hook_body(raw, KEYS) is not None
    resp = client.post(synth.SERVICE_PATH["patient-view"], data=raw, content_type="application/json")
    assert resp.status_code == 400
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"].startswith("Request body is not valid JSON: ")
