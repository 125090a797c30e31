"""CDS Hooks 2.0 protocol layer: discovery, validation, errors, CORS (issue: foundation)."""
from __future__ import annotations

import copy
import json

import pytest

from cds_service.web.schemas import errors as schema_errors
from conftest import assert_operation_outcome, assert_valid_cds_response, load_example

PV = "/cds-services/coagulopathy-risk"
OS = "/cds-services/anticoagulant-order-check"
SIGN = "/cds-services/anticoagulant-order-sign"


def post(client, path, body, **kw):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    headers = kw.pop("headers", {})
    return client.post(path, data=data, content_type=kw.pop("content_type", "application/json"),
                       headers=headers, **kw)


def test_discovery_lists_three_services_with_templates(client):
    resp = client.get("/cds-services")
    assert resp.status_code == 200
    body = resp.get_json()
    assert not schema_errors("discovery", body)
    by_id = {s["id"]: s for s in body["services"]}
    assert {k: v["hook"] for k, v in by_id.items()} == {
        "coagulopathy-risk": "patient-view",
        "anticoagulant-order-check": "order-select",
        "anticoagulant-order-sign": "order-sign",
    }
    for service in by_id.values():
        prefetch = service["prefetch"]
        assert set(prefetch) == {"patient", "labs", "bedside", "body", "conditions", "medications",
                                 "administrations", "allergies", "procedures",
                                 "encounters", "statements", "covid_tests", "platelet_trend"}   # v2 §10
        for template in prefetch.values():
            assert "today()" not in template and "{{%" not in template
            tokens = [t.split("}}")[0] for t in template.split("{{")[1:]]
            assert tokens and all(t == "context.patientId" for t in tokens), template
        labs = prefetch["labs"]
        assert "_sort=-date" in labs and "_count=100" in labs
        assert "http://loinc.org|48065-7" in labs and "http://loinc.org|777-3" in labs
        assert "http://snomed.info/sct|722742002" in prefetch["bedside"]


def test_healthz(client):
    from cds_service.version import full_version
    resp = client.get("/healthz")
    # Issue 14: the body also names the version (package version + git describe).
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok", "version": full_version()}


@pytest.mark.parametrize("path,example", [
    (PV, "patient-view-sic-positive.json"),
    (OS, "order-select-bmi-42.json"),
])
def test_valid_request_returns_schema_valid_cards(client, path, example):
    resp = post(client, path, load_example(example))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert_valid_cds_response(resp.get_json())


def test_order_sign_accepts_draft_orders_without_selections(client):
    body = load_example("order-select-bmi-42.json")
    body["hook"] = "order-sign"
    del body["context"]["selections"]
    resp = post(client, SIGN, body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert_valid_cds_response(resp.get_json())


def test_unknown_service_is_404(client):
    assert_operation_outcome(post(client, "/cds-services/nope", load_example("patient-view-sic-positive.json")),
                             404, "not-found")
    assert_operation_outcome(client.get("/no/such/route"), 404, "not-found")


def test_wrong_method_is_405(client):
    body = assert_operation_outcome(client.get(PV), 405, "not-supported")
    assert "GET" in body["issue"][0]["diagnostics"]
    assert_operation_outcome(client.delete("/cds-services"), 405)


def test_allow_lists_the_methods_of_that_path_and_unknown_services_are_404(client):
    """Issue 21: every 405 listed GET, POST, OPTIONS (even the refused method), and GET on an
    unknown service id was 405 where the README says 404."""
    resp = client.get(PV)
    assert resp.status_code == 405 and resp.headers["Allow"] == "OPTIONS, POST"
    resp = client.delete("/cds-services")
    assert resp.status_code == 405 and resp.headers["Allow"] == "GET, HEAD, OPTIONS"
    resp = client.get(PV + "/feedback")
    assert resp.status_code == 405 and resp.headers["Allow"] == "OPTIONS, POST"
    for path in ("/cds-services/no-such-service", "/cds-services/no-such-service/feedback"):
        for method in ("GET", "PUT", "DELETE"):
            assert_operation_outcome(client.open(path, method=method), 404, "not-found")


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b"\"text\"", b"\xff\xfe"])
def test_malformed_json_is_400(client, raw):
    assert_operation_outcome(post(client, PV, raw), 400, "invalid")


def test_non_json_content_type_is_415(client):
    resp = post(client, PV, json.dumps(load_example("patient-view-sic-positive.json")),
                content_type="application/x-www-form-urlencoded")
    assert_operation_outcome(resp, 415)


def test_fhir_json_content_type_is_accepted(client):
    resp = post(client, PV, load_example("patient-view-sic-positive.json"),
                content_type="application/fhir+json; charset=utf-8")
    assert resp.status_code == 200


def test_too_large_is_413(tmp_path):
    from cds_service import create_app
    app = create_app({"max_body_bytes": 1000, "database": str(tmp_path / "x.db")})
    body = load_example("patient-view-sic-positive.json")
    body["extension"] = {"padding": "x" * 2000}
    assert_operation_outcome(post(app.test_client(), PV, body), 413, "too-long")


def _without(body, *path):
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


PV_BODY = load_example("patient-view-sic-positive.json")
OS_BODY = load_example("order-select-bmi-42.json")


@pytest.mark.parametrize("path,body,where", [
    (PV, _without(PV_BODY, "hook"), "hook"),
    (PV, _without(PV_BODY, "hookInstance"), "hookInstance"),
    (PV, _without(PV_BODY, "context"), "context"),
    (PV, {**PV_BODY, "context": "x"}, "context"),
    (PV, {**PV_BODY, "hookInstance": ""}, "hookInstance"),
    (PV, {**PV_BODY, "hookInstance": 42}, "hookInstance"),
    (PV, _without(PV_BODY, "context", "patientId"), "patientId"),
    (PV, _without(PV_BODY, "context", "userId"), "userId"),
    (PV, {**PV_BODY, "context": {**PV_BODY["context"], "patientId": "a/b"}}, "patientId"),
    (PV, {**PV_BODY, "prefetch": {"labs": 3}}, "prefetch"),
    (PV, {**PV_BODY, "prefetch": []}, "prefetch"),
    (PV, {**PV_BODY, "fhirAuthorization": {"access_token": "t", "token_type": "Bearer", "expires_in": 300,
                                           "scope": "user/*.read", "subject": "x"}, "fhirServer": None}, "fhirServer"),
    (PV, {**_without(PV_BODY, "fhirServer"), "fhirAuthorization": {
        "access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "s", "subject": "x"}},
     "fhirServer"),
    (PV, {**PV_BODY, "fhirAuthorization": {"access_token": "t", "token_type": "Bearer"}}, "fhirAuthorization"),
    (OS, _without(OS_BODY, "context", "selections"), "selections"),
    (OS, _without(OS_BODY, "context", "draftOrders"), "draftOrders"),
    (OS, {**OS_BODY, "context": {**OS_BODY["context"], "draftOrders": {"resourceType": "MedicationRequest"}}},
     "draftOrders"),
    (OS, {**OS_BODY, "context": {**OS_BODY["context"], "selections": ["MedicationRequest/other"]}}, "selections"),
    (SIGN, _without({**OS_BODY, "hook": "order-sign"}, "context", "draftOrders"), "draftOrders"),
])
def test_missing_or_ill_typed_fields_are_400(client, path, body, where):
    out = assert_operation_outcome(post(client, path, body), 400, "invalid")
    assert where in out["issue"][0]["diagnostics"]


def test_hook_mismatch_is_400(client):
    body = {**PV_BODY, "hook": "order-select"}
    out = assert_operation_outcome(post(client, PV, body), 400, "invalid")
    assert "patient-view" in out["issue"][0]["diagnostics"]


def test_unknown_extension_content_is_ignored(client):
    resp = post(client, PV, {**PV_BODY, "extension": {"com.example.x": {"deep": [1, {"a": None}]}}})
    assert resp.status_code == 200


@pytest.mark.parametrize("path", ["/cds-services", PV, OS, SIGN, PV + "/feedback", "/healthz"])
def test_cors_preflight_needs_no_auth(client, path):
    resp = client.options(path, headers={"Origin": "https://sandbox.cds-hooks.org",
                                         "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": "authorization,content-type"})
    assert 200 <= resp.status_code < 300
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    methods = {m.strip() for m in resp.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST", "OPTIONS"} <= methods
    allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed


def test_cors_origin_list_echoes_only_allowed_origin(tmp_path):
    from cds_service import create_app
    app = create_app({"cors_origins": "https://ehr.example.org", "database": str(tmp_path / "x.db")})
    c = app.test_client()
    ok = c.get("/cds-services", headers={"Origin": "https://ehr.example.org"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    other = c.get("/cds-services", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_internal_error_is_500_without_trace_and_logged_with_hook_instance(client, app, caplog):
    service = app.extensions["cds"].registry.get("coagulopathy-risk")

    def boom(call):
        raise RuntimeError("secret internals /etc/passwd")

    object.__setattr__(service, "handler", boom)  # Service is frozen; restore below
    try:
        with caplog.at_level("ERROR", logger="cds_service"):
            resp = post(client, PV, PV_BODY)
    finally:
        from cds_service.hooks.patient_view import handle
        object.__setattr__(service, "handler", handle)
    out = assert_operation_outcome(resp, 500, "exception")
    text = json.dumps(out)
    assert "secret internals" not in text and "Traceback" not in text
    assert PV_BODY["hookInstance"] in out["issue"][0]["diagnostics"]
    assert any(PV_BODY["hookInstance"] in r.getMessage() or
               PV_BODY["hookInstance"] == getattr(r, "fields", {}).get("hookInstance") for r in caplog.records)


def test_one_log_line_per_hook_call(client, caplog):
    with caplog.at_level("INFO", logger="cds_service"):
        post(client, PV, PV_BODY)
    lines = [r for r in caplog.records if r.getMessage() == "hook call"]
    assert len(lines) == 1
    fields = lines[0].fields
    assert fields["service"] == "coagulopathy-risk"
    assert fields["hookInstance"] == PV_BODY["hookInstance"]
    assert fields["status"] == 200 and fields["duration_ms"] >= 0


FEEDBACK = PV + "/feedback"
ITEM = {"card": "0c8a1d59-6f3c-4b4b-9d0e-2f6f1f3a0b11", "outcome": "accepted",
        "acceptedSuggestions": [{"id": "3b8e2c41-7f0a-4c1e-8a5d-1c2b3d4e5f60"}],
        "outcomeTimestamp": "2026-11-21T10:05:31Z"}


@pytest.mark.parametrize("body", [
    {"feedback": [ITEM]},
    ITEM,
    {"feedback": [ITEM, {"card": ITEM["card"], "outcome": "overridden",
                         "overrideReason": {"reason": {"code": "x", "system": "http://example.org"},
                                            "userComment": "n/a"},
                         "outcomeTimestamp": "2026-11-21T10:06:00Z"}]},
])
def test_feedback_accepts_wrapper_and_bare(client, body):
    resp = post(client, FEEDBACK, body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["status"] == "ok"


@pytest.mark.parametrize("item,where", [
    ({k: v for k, v in ITEM.items() if k != "card"}, "card"),
    ({k: v for k, v in ITEM.items() if k != "outcome"}, "outcome"),
    ({k: v for k, v in ITEM.items() if k != "outcomeTimestamp"}, "outcomeTimestamp"),
    ({**ITEM, "outcome": "ignored"}, "outcome"),
    ({k: v for k, v in ITEM.items() if k != "acceptedSuggestions"}, "acceptedSuggestions"),
])
def test_malformed_feedback_is_400_naming_the_item(client, item, where):
    out = assert_operation_outcome(post(client, FEEDBACK, {"feedback": [ITEM, item]}), 400, "invalid")
    diag = out["issue"][0]["diagnostics"]
    assert "feedback[1]" in diag and where in diag


def test_feedback_for_unknown_service_is_404(client):
    assert_operation_outcome(post(client, "/cds-services/nope/feedback", ITEM), 404)


def test_selection_of_a_draft_the_order_check_would_not_read_is_400(client):
    # An entry marked search.mode=include is skipped by the Bundle reader; a selection naming
    # it must not pass validation and then go unchecked.
    body = copy.deepcopy(OS_BODY)
    body["context"]["draftOrders"]["entry"][0]["search"] = {"mode": "include"}
    out = assert_operation_outcome(post(client, OS, body), 400, "invalid")
    assert "selections" in out["issue"][0]["diagnostics"]
