"""The integration kit without a FHIR server: template rendering, the synthetic patients'
validity, load-fixtures reporting and the fire client, with HTTP mocked by `responses`."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import responses
from fhir.resources.R4B import get_fhir_model_class

from cds_service.cli import main
from cds_service.cli.examples import EXPECT_V2, SCENARIOS, build
from cds_service.cli.integration import fire as fire_mod
from cds_service.cli.integration.fixtures import (DEFAULT_DIR, FixtureError, load_fixtures, load_template, render,
                                              render_placeholder, template_paths)
from cds_service.web.schemas import errors as schema_errors
from integration.expected_patients import EXPECTED, ORDER_SELECT, cards_v2_merged, mismatches

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _clinical_scope_defaults(monkeypatch):
    """The §1a scope defaults (require COVID-19 evidence and an inpatient Encounter), which
    tests/conftest.py relaxes for other hook tests until their patients carry both: the
    synthetic patients and the examples do, and their scope is what these tests check."""
    from cds_service.logic import policy as policy_mod
    for key in ("scope.require_covid", "scope.require_inpatient"):
        _default, kind, allowed = policy_mod.DEFAULTS[key]
        monkeypatch.setitem(policy_mod.DEFAULTS, key, (True, kind, allowed))
DRAFTS = DEFAULT_DIR / "draft-orders"
FHIR = "http://fhir.test/fhir"
SERVICE = "http://cds.test"
PATIENT_IDS = sorted(EXPECTED)   # the one table of hand-worked expectations (tests/integration)
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# SARS-CoV-2 test codes (data requirements §3.2) and the results that count as positive
SARS_COV_2_TESTS = {"94500-6", "94309-2", "94533-7", "94534-5", "94531-1", "95608-6", "94558-4", "95209-3",
                    "94759-8", "97097-0", "96119-3", "94845-5", "94565-9", "94306-8"}
POSITIVE = {("http://snomed.info/sct", "10828004"), ("http://snomed.info/sct", "260373001")}
COVID_CODES = {("http://hl7.org/fhir/sid/icd-10", "U07.1"), ("http://hl7.org/fhir/sid/icd-10-cm", "U07.1"),
               ("http://snomed.info/sct", "840539006")}


# ---------------------------------------------------------------- placeholders

@pytest.mark.parametrize("text, expected", [
    ("{{now}}", "2024-03-01T12:00:00Z"),
    ("{{now-6h}}", "2024-03-01T06:00:00Z"),
    ("{{now-4h+30min}}", "2024-03-01T08:30:00Z"),
    ("{{now-2d}}", "2024-02-28T12:00:00Z"),
    ("{{now-1d}}", "2024-02-29T12:00:00Z"),  # leap year
    ("{{date:now-67y-30d}}", "1957-01-30"),   # 1957-03-01 minus 30 days crosses a 28-day February
    ("{{now+5min}}", "2024-03-01T12:05:00Z"),
])
def test_placeholders_render_relative_to_now(text, expected):
    assert render_placeholder(text, NOW) == expected


def test_year_offset_from_29_february_lands_on_28():
    leap = datetime(2024, 2, 29, 9, 0, tzinfo=timezone.utc)
    assert render_placeholder("{{date:now-1y}}", leap) == "2023-02-28"


@pytest.mark.parametrize("bad", ["{{today}}", "{{now-6}}", "{{now-6w}}", "{{now - 6h}}", "{{context.patientId}}"])
def test_unknown_placeholders_are_errors_never_passed_through(bad):
    with pytest.raises(FixtureError):
        render({"x": [bad]}, NOW)


def test_render_leaves_other_strings_and_the_template_untouched():
    template = {"a": "{{now-1h}}", "b": ["text {{now}}", 3, None], "c": {"d": "{{date:now}}"}}
    out = render(template, NOW)
    assert out == {"a": "2024-03-01T11:00:00Z", "b": ["text {{now}}", 3, None], "c": {"d": "2024-03-01"}}
    assert template["a"] == "{{now-1h}}"


# ---------------------------------------------------------------- the synthetic patients

def test_one_patient_per_scenario_each_with_expectations():
    assert sorted(p.stem for p in template_paths(DEFAULT_DIR)) == PATIENT_IDS
    assert len(PATIENT_IDS) == 35   # 25 v1/v2 patients + 10 of issue 20 (clinical rules §19)
    assert {pid for pid, _, _ in ORDER_SELECT} <= set(PATIENT_IDS)
    assert {draft for _, draft, _ in ORDER_SELECT} <= {p.name for p in DRAFTS.glob("*.json")}


@pytest.mark.parametrize("pid", PATIENT_IDS)
def test_patient_bundle_renders_to_valid_r4_resources(pid):
    bundle = render(load_template(DEFAULT_DIR / f"{pid}.json"), NOW)
    assert "{{" not in json.dumps(bundle)
    ids = set()
    for entry in bundle["entry"]:
        resource, request = entry["resource"], entry["request"]
        # PUT with a fixed id: idempotent loading.
        assert request == {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
        assert resource["id"] not in ids
        ids.add(resource["id"])
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        ref = (resource.get("subject") or resource.get("patient") or {}).get("reference")
        assert resource["resourceType"] == "Patient" or ref == f"Patient/{pid}"
    patient = bundle["entry"][0]["resource"]
    assert patient["resourceType"] == "Patient" and patient["id"] == pid
    assert patient["name"][0]["given"]


def _observations(pid: str) -> dict[str, dict]:
    bundle = render(load_template(DEFAULT_DIR / f"{pid}.json"), NOW)
    return {e["resource"]["id"]: e["resource"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Observation"}


def test_every_observation_uses_ucum_and_known_codes():
    from cds_service.fhir.codes import load_codes
    codes = load_codes()
    known = set().union(*(codes.observation(k).exact for k in codes.observation_keys()))
    known |= {("http://loinc.org", code) for code in SARS_COV_2_TESTS}
    for pid in PATIENT_IDS:
        for obs in _observations(pid).values():
            coding = obs["code"]["coding"][0]
            assert (coding["system"], coding["code"]) in known, (pid, coding)
            if "valueQuantity" in obs:
                q = obs["valueQuantity"]
                assert q["system"] == "http://unitsofmeasure.org" and q["code"] == q["unit"]


def test_scenario_data_is_what_the_readme_worked_out():
    # Spot checks of the inputs behind the hand-worked expectations in the README.
    carlos = _observations("cov-bmi-40")
    assert carlos["cov-bmi-40-weight"]["valueQuantity"]["value"] == 135
    assert carlos["cov-bmi-40-weight-old"]["effectiveDateTime"] == "2024-01-16T12:00:00Z"  # 45 d: outside 30 d
    dorothy = _observations("cov-renal-umol")
    assert dorothy["cov-renal-umol-creat"]["code"]["coding"][0]["code"] == "14682-9"
    assert dorothy["cov-renal-umol-creat"]["valueQuantity"]["code"] == "umol/L"
    ines = _observations("cov-ddu-norange")["cov-ddu-norange-ddimer"]
    assert ines["code"]["coding"][0]["code"] == "48066-5" and "referenceRange" not in ines
    jamal = _observations("cov-no-weight")
    assert "cov-no-weight-weight" not in jamal and "cov-no-weight-weight-old" in jamal


def _resources(pid: str, rtype: str) -> list[dict]:
    bundle = render(load_template(DEFAULT_DIR / f"{pid}.json"), NOW)
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


@pytest.mark.parametrize("pid", PATIENT_IDS)
def test_scope_evidence_in_the_data_matches_the_expected_scope(pid):
    """From the data alone (clinical rules §1a): an in-progress IMP Encounter, COVID-19 evidence
    (a Condition linked to it, or a positive SARS-CoV-2 test within 14 days), an adult. Each
    out-of-scope patient lacks exactly the thing its expected reason names."""
    encounters = _resources(pid, "Encounter")
    assert [e["id"] for e in encounters] == [f"{pid}-enc"]
    enc = encounters[0]
    inpatient = enc["status"] == "in-progress" and enc["class"] == {**enc["class"], "system": ACT_CODE} \
        and enc["class"]["code"] == "IMP"
    linked = [c for c in _resources(pid, "Condition")
              if {(x["system"], x["code"]) for x in c["code"]["coding"]} & COVID_CODES
              and c.get("encounter") == {"reference": f"Encounter/{pid}-enc"}
              and c["clinicalStatus"]["coding"][0]["code"] == "active"]
    positive = [o for o in _observations(pid).values() if o["code"]["coding"][0]["code"] in SARS_COV_2_TESTS
                and ({(c["system"], c["code"]) for c in o["valueCodeableConcept"]["coding"]} & POSITIVE)
                and o["effectiveDateTime"] >= "2024-02-16"]   # NOW - 14 d
    patient = _resources(pid, "Patient")[0]
    adult = patient["birthDate"] <= "2006-03-01"   # 18 completed years at NOW
    reasons = [r for r, missing in (("age_lt_18", not adult), ("no_covid_evidence", not (linked or positive)),
                                    ("not_inpatient", not inpatient)) if missing]
    assert reasons == EXPECTED[pid]["scope_reasons"]


@pytest.mark.parametrize("pid", PATIENT_IDS)
def test_assess_on_the_rendered_bundle_gives_the_expected_assessment(pid, tmp_path, capsys):
    """`cds-service assess` on the rendered transaction Bundle, with the Encounter as
    `--encounter`: the same assessment-level expectations as the hooks (one table)."""
    path = tmp_path / f"{pid}.json"
    path.write_text(json.dumps(render(load_template(DEFAULT_DIR / f"{pid}.json"), NOW)))
    code = main(["assess", str(path), "--now", "2024-03-01T12:00:00Z", "--encounter", f"{pid}-enc"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert mismatches(pid, json.loads(out)) == {}, "(actual, expected)"


def test_readme_has_one_line_per_patient():
    readme = (DEFAULT_DIR / "README.md").read_text()
    rows = [line for line in readme.splitlines() if re.match(r"^\| [A-Z][a-z]+ [A-Z]", line)]
    assert sorted(re.search(r"`(cov-[a-z0-9-]+)`", r).group(1) for r in rows) == PATIENT_IDS


# ---------------------------------------------------------------- load-fixtures

def _transaction_response(request):
    bundle = json.loads(request.body)
    entries = [{"response": {"status": "201 Created", "location": e["request"]["url"]}} for e in bundle["entry"]]
    return 200, {}, json.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": entries})


@responses.activate
def test_load_fixtures_posts_rendered_transactions_with_the_token(tmp_path):
    responses.add_callback(responses.POST, FHIR, callback=_transaction_response)
    results = load_fixtures(FHIR + "/", DEFAULT_DIR, token="tok-123", now=NOW)
    assert [r.ok for r in results] == [True] * len(PATIENT_IDS)
    assert len(responses.calls) == len(PATIENT_IDS)
    first = responses.calls[0].request
    assert first.url == FHIR
    assert first.headers["Content-Type"] == "application/fhir+json"
    assert first.headers["Authorization"] == "Bearer tok-123"
    body = first.body.decode() if isinstance(first.body, bytes) else first.body
    assert "{{" not in body and json.loads(body)["type"] == "transaction"


@responses.activate
def test_load_fixtures_reports_each_failure_and_exits_non_zero(tmp_path, capsys):
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.json").write_text(json.dumps(
            {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": {"resourceType": "Patient", "id": name}, "request": {"method": "PUT",
                                                                                  "url": f"Patient/{name}"}}]}))
    (tmp_path / "d.json").write_text(json.dumps({"resourceType": "Bundle", "type": "collection"}))
    outcome = {"resourceType": "OperationOutcome",
               "issue": [{"severity": "error", "code": "processing", "diagnostics": "HAPI-0450: bad id"}]}
    responses.add(responses.POST, FHIR, json=outcome, status=400)
    responses.add(responses.POST, FHIR, json={"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": "422", "outcome": {"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "invalid", "details": {"text": "Missing subject"}}]}}}]})
    responses.add(responses.POST, FHIR, body=requests.exceptions.ConnectionError("refused"))
    code = main(["load-fixtures", "--fhir-server", FHIR, "--dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "ERROR a.json: HTTP 400: HAPI-0450: bad id" in out
    assert "ERROR b.json: entry 0 answered 422: Missing subject" in out
    assert "ERROR c.json: cannot reach the FHIR server" in out
    assert "ERROR d.json: d.json is not a FHIR transaction Bundle" in out
    assert "0 loaded, 4 failed" in err


@responses.activate
def test_load_fixtures_cli_succeeds(capsys):
    responses.add_callback(responses.POST, FHIR, callback=_transaction_response)
    assert main(["load-fixtures", "--fhir-server", FHIR]) == 0
    out = capsys.readouterr().out
    assert "ok    cov-bmi-40.json: 16 resources" in out and f"{len(PATIENT_IDS)} loaded, 0 failed" in out


# ---------------------------------------------------------------- fire

def test_fill_template_uses_only_cds_hooks_tokens():
    ctx = {"patientId": "p1", "userId": "Practitioner/dr-a"}
    assert fire_mod.fill_template("Observation?patient={{context.patientId}}&_count=5", ctx) == \
        "Observation?patient=p1&_count=5"
    assert fire_mod.fill_template("Practitioner/{{userPractitionerId}}", ctx) == "Practitioner/dr-a"
    assert fire_mod.fill_template("Encounter/{{context.encounterId}}", ctx) is None
    assert fire_mod.fill_template("PractitionerRole/{{userPractitionerRoleId}}", ctx) is None


def test_patient_view_request_is_valid_with_fhir_authorization():
    body = fire_mod.build_request("patient-view", "p1", FHIR, token="secret", prefetch={"patient": {
        "resourceType": "Patient", "id": "p1"}})
    assert schema_errors("request", body) == []
    assert schema_errors("context-patient-view", body["context"]) == []
    auth = body["fhirAuthorization"]
    assert auth["access_token"] == "secret" and auth["token_type"] == "Bearer"
    assert isinstance(auth["expires_in"], int) and auth["scope"] and auth["subject"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", body["hookInstance"])
    again = fire_mod.build_request("patient-view", "p1", FHIR)
    assert again["hookInstance"] != body["hookInstance"]
    assert "fhirAuthorization" not in again and "prefetch" not in again


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_order_requests_wrap_the_draft(hook):
    draft = fire_mod.load_draft(DRAFTS / "enoxaparin-40mg-daily.json", "p1")
    assert draft["subject"] == {"reference": "Patient/p1"} and draft["status"] == "draft"
    get_fhir_model_class("MedicationRequest").model_validate(draft)
    body = fire_mod.build_request(hook, "p1", FHIR, drafts=[draft])
    assert schema_errors("request", body) == []
    assert schema_errors(f"context-{hook}", body["context"]) == []
    assert body["context"]["draftOrders"]["entry"][0]["resource"]["id"] == "draft-enox-40-daily"
    if hook == "order-select":
        assert body["context"]["selections"] == ["MedicationRequest/draft-enox-40-daily"]
    else:
        assert "selections" not in body["context"]


def test_order_hook_without_draft_is_refused():
    with pytest.raises(fire_mod.FireError, match="draft-order"):
        fire_mod.build_request("order-select", "p1", FHIR)


def _discovery():
    return {"services": [
        {"hook": "patient-view", "id": "coagulopathy-risk", "description": "d",
         "prefetch": {"patient": "Patient/{{context.patientId}}",
                      "conditions": "Condition?patient={{context.patientId}}",
                      "encounter": "Encounter/{{context.encounterId}}"}},
        {"hook": "order-select", "id": "anticoagulant-order-check", "description": "d"}]}


@responses.activate
def test_fire_prefetches_like_the_sandbox_and_omits_failed_keys():
    responses.add(responses.GET, f"{SERVICE}/cds-services", json=_discovery())
    responses.add(responses.GET, f"{FHIR}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    responses.add(responses.GET, f"{FHIR}/Condition", status=500, json={"resourceType": "OperationOutcome"})
    responses.add(responses.POST, f"{SERVICE}/cds-services/coagulopathy-risk", json={"cards": []})
    fired = fire_mod.fire("patient-view", "p1", FHIR, service_url=SERVICE, token="tok")
    assert fired.status == 200 and fired.response == {"cards": []}
    assert fired.request["prefetch"] == {"patient": {"resourceType": "Patient", "id": "p1"}}
    assert set(fired.prefetch_omitted) == {"conditions", "encounter"}
    fhir_calls = [c.request for c in responses.calls if c.request.url.startswith(FHIR)]
    assert all(r.headers["Authorization"] == "Bearer tok" for r in fhir_calls)
    sent = json.loads(responses.calls[-1].request.body)
    assert sent["fhirServer"] == FHIR and sent["fhirAuthorization"]["access_token"] == "tok"


@responses.activate
def test_fire_no_prefetch_sends_no_fhir_request():
    responses.add(responses.GET, f"{SERVICE}/cds-services", json=_discovery())
    responses.add(responses.POST, f"{SERVICE}/cds-services/coagulopathy-risk", json={"cards": []})
    fired = fire_mod.fire("patient-view", "p1", FHIR, service_url=SERVICE, prefetch=False)
    assert "prefetch" not in fired.request
    assert len(responses.calls) == 2


@responses.activate
def test_fire_cli_prints_diagnostics_and_fails_on_non_200(capsys):
    responses.add(responses.GET, f"{SERVICE}/cds-services", json=_discovery())
    responses.add(responses.POST, f"{SERVICE}/cds-services/coagulopathy-risk", status=412, json={
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "incomplete", "diagnostics": "labs: FHIR server timed out"}]})
    code = main(["fire", "patient-view", "--patient", "p1", "--fhir-server", FHIR, "--service-url", SERVICE,
                 "--no-prefetch"])
    err = capsys.readouterr().err
    assert code == 1
    assert "coagulopathy-risk answered HTTP 412: labs: FHIR server timed out" in err


@responses.activate
def test_fire_cli_reports_a_missing_service(capsys):
    responses.add(responses.GET, f"{SERVICE}/cds-services", json={"services": []})
    code = main(["fire", "order-sign", "--patient", "p1", "--fhir-server", FHIR, "--service-url", SERVICE,
                 "--draft-order", str(DRAFTS / "enoxaparin-40mg-daily.json")])
    assert code == 2
    assert "no service for hook 'order-sign'" in capsys.readouterr().err


CARD = {
    "uuid": "7f6c8c52-0d5e-4f0a-9f43-1d2c9f3f5e10",
    "summary": "D-dimer 7.0× ULN: consider enoxaparin 80 mg SC daily",
    "indicator": "warning",
    "source": {"label": "COVID-19 coagulopathy service", "url": "https://example.org"},
    "detail": ("### Inputs\n\n| Input | Value | Date |\n|---|---|---|\n| **BMI** | 44.1 kg/m² | 2024-03-01 |\n"
               "| Platelets | &lt;25 ×10⁹/L | 2024-03-01 |\n\nSee [ISTH 2020](https://doi.org/10.1111/jth.14810)."),
    "selectionBehavior": "at-most-one",
    "suggestions": [{"label": "Order enoxaparin 80 mg SC daily", "uuid": "u1", "isRecommended": True,
                     "actions": [{"type": "create", "description": "Create the order", "resource": {
                         "resourceType": "MedicationRequest", "id": "new-1",
                         "medicationCodeableConcept": {"text": "enoxaparin 80 mg/0.8 mL prefilled syringe"},
                         "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                                                "doseAndRate": [{"doseQuantity": {"value": 80, "unit": "mg"}}]}]}},
                                 {"type": "delete", "description": "Remove the draft",
                                  "resourceId": "MedicationRequest/draft-1"}]}],
    "links": [{"label": "Clinical rules", "url": "https://example.org/rules", "type": "absolute"}],
}


def test_render_cards_is_readable_plain_text():
    text = fire_mod.render_cards({"cards": [CARD]}, "header")
    assert text.splitlines()[0] == "header"
    assert "[1] WARNING: D-dimer 7.0× ULN: consider enoxaparin 80 mg SC daily" in text
    assert "INPUTS" in text
    assert re.search(r"BMI\s+44\.1 kg/m²\s+2024-03-01", text)
    assert "<25 ×10⁹/L" in text and "|---" not in text and "**" not in text
    assert "ISTH 2020 <https://doi.org/10.1111/jth.14810>" in text
    assert "Suggestions (at-most-one):" in text and "1. Order enoxaparin 80 mg SC daily  [recommended]" in text
    assert "MedicationRequest/new-1: enoxaparin 80 mg/0.8 mL prefilled syringe, 80 mg, 1x every 1 d" in text
    assert "- delete: Remove the draft" in text and "MedicationRequest/draft-1" in text
    assert "Clinical rules <https://example.org/rules>" in text
    assert fire_mod.render_cards({"cards": []}) == "No cards."


@responses.activate
def test_fire_cli_json_prints_the_raw_response(capsys):
    responses.add(responses.GET, f"{SERVICE}/cds-services", json=_discovery())
    responses.add(responses.POST, f"{SERVICE}/cds-services/coagulopathy-risk", json={"cards": [CARD]})
    assert main(["fire", "patient-view", "--patient", "p1", "--fhir-server", FHIR, "--service-url", SERVICE,
                 "--no-prefetch", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"cards": [CARD]}


# ---------------------------------------------------------------- the examples (cds-service example)

@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_example_is_an_inpatient_with_covid_evidence(name):
    """v2 scope (clinical rules §1a): each example's context names its in-progress IMP Encounter,
    and its data holds COVID-19 evidence; the v2 prefetch keys are all sent."""
    body = build(name, NOW)
    prefetch, context = body["prefetch"], body["context"]
    assert {"encounters", "statements", "covid_tests", "platelet_trend"} <= set(prefetch)
    encounters = [e["resource"] for e in prefetch["encounters"]["entry"]]
    assert [(e["id"], e["status"], e["class"]["system"], e["class"]["code"]) for e in encounters] == \
        [(context["encounterId"], "in-progress", ACT_CODE, "IMP")]
    linked = [e["resource"] for e in prefetch["conditions"].get("entry", [])
              if e["resource"].get("encounter") == {"reference": f"Encounter/{context['encounterId']}"}]
    tests = [e["resource"] for e in prefetch["covid_tests"].get("entry", [])]
    assert linked or tests
    if SCENARIOS[name].covid_evidence == "test":
        assert not linked and tests[0]["valueCodeableConcept"]["coding"][0]["code"] == "260373001"


@pytest.mark.skipif(not cards_v2_merged(), reason="cards v2 not merged (cds_service.hooks.CARDS_VERSION < 2)")
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_example_gives_its_v2_card(name, tmp_path):
    """examples.EXPECT_V2: the one card (indicator, kind) each example gives under the v2 cards."""
    import sqlite3

    from cds_service import create_app

    database = tmp_path / "cds.sqlite3"
    client = create_app({"database": str(database)}).test_client()
    body = build(name)
    path = {"patient-view": "coagulopathy-risk", "order-select": "anticoagulant-order-check",
            "order-sign": "anticoagulant-order-sign"}[body["hook"]]
    resp = client.post(f"/cds-services/{path}", data=json.dumps(body), content_type="application/json")
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    conn = sqlite3.connect(database)
    try:
        cards = conn.execute("SELECT indicator, kind FROM card").fetchall()
    finally:
        conn.close()
    expected = EXPECT_V2[name]
    assert [tuple(c) for c in cards] == ([expected] if expected else []), resp.get_json()
