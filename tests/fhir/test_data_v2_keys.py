"""The four v2 prefetch keys (data requirements §10) through the DataLayer, with and without
prefetch, FHIR mocked at the HTTP layer; and the encounterId reaching the extraction (hooks
and `cds-service assess --encounter`)."""
from __future__ import annotations

import json

import pytest

from cds_service.cli import main
from cds_service.runtime.errors import PreconditionFailed
from cds_service.fhir.codes import load_codes
from cds_service.fhir.templates import prefetch_templates
from cds_service.hooks import HookCall
from cds_service.evaluation.pipeline import evaluate
from cds_service.hooks.common import REQUIRED_KEYS
from _data_support import (app, rsps,  # noqa: F401 (fixtures)
                           PID, FakeFhir, gather, obs, patient_data, queries, request_body, searchset,
                           server_answers, service_of, state_of)

V2_KEYS = ("encounters", "statements", "covid_tests", "platelet_trend")
ENCOUNTER = {"resourceType": "Encounter", "id": "enc-1", "status": "in-progress",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
             "subject": {"reference": f"Patient/{PID}"}}
STATEMENT = {"resourceType": "MedicationStatement", "id": "ms-1", "status": "active",
             "subject": {"reference": f"Patient/{PID}"},
             "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                       "code": "1364430"}]}}
COVID_TEST = {"resourceType": "Observation", "id": "sars-1", "status": "final",
              "subject": {"reference": f"Patient/{PID}"},
              "code": {"coding": [{"system": "http://loinc.org", "code": "94500-6"}]},
              "effectiveDateTime": "2024-01-01T08:00:00Z",
              "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "260373001"}]}}
OLD_PLATELETS = obs("plt-old", value=180.0)


def v2_data() -> dict:
    data = patient_data()
    data.update(encounters=searchset(ENCOUNTER), statements=searchset(STATEMENT),
                covid_tests=searchset(COVID_TEST), platelet_trend=searchset(OLD_PLATELETS))
    return data


def test_templates_declare_the_four_keys_from_the_code_file():
    templates = prefetch_templates()
    assert templates["encounters"] == "Encounter?patient={{context.patientId}}&_sort=-date&_count=10"
    assert templates["statements"] == "MedicationStatement?patient={{context.patientId}}&status=active&_count=100"
    assert "http://loinc.org|94500-6" in templates["covid_tests"] and templates["covid_tests"].endswith("&_count=10")
    assert "94762-2" not in templates["covid_tests"]        # antibody tests are never asked for
    platelet_codes = [f"http://loinc.org|{c}" for c in ("777-3", "26515-7", "778-1", "49497-1", "13056-7", "26516-5")]
    assert templates["platelet_trend"] == ("Observation?patient={{context.patientId}}&code="
                                           + ",".join(platelet_codes) + "&_sort=-date&_count=60")
    assert set(V2_KEYS) <= REQUIRED_KEYS


def test_extra_code_file_extends_the_covid_test_query(tmp_path):
    extra = tmp_path / "codes.json"
    extra.write_text(json.dumps({"observations": {"sars_cov_2": {"codes": ["LOINC:99999-9"]}}}))
    assert "http://loinc.org|99999-9" in prefetch_templates(load_codes(str(extra)))["covid_tests"]


def test_v2_keys_from_prefetch_make_no_request(app, rsps):
    data = v2_data()
    data["medications"] = searchset()
    got = gather(app, request_body(data))
    assert len(rsps.calls) == 0
    assert {k: got.origin[k] for k in V2_KEYS} == dict.fromkeys(V2_KEYS, "prefetch")
    assert got.by_key["encounters"] == [ENCOUNTER] and got.by_key["statements"] == [STATEMENT]
    assert got.by_key["covid_tests"] == [COVID_TEST] and got.by_key["platelet_trend"] == [OLD_PLATELETS]


def test_absent_v2_keys_are_fetched_in_one_batch(app, rsps):
    service = service_of(app)
    data = v2_data()
    data["medications"] = searchset()
    fake = FakeFhir(rsps, server_answers(service, data))
    prefetch = {k: v for k, v in data.items() if k not in V2_KEYS}
    got = gather(app, request_body(prefetch))
    q = queries(service)
    assert fake.batches == [[q[k] for k in V2_KEYS]] and fake.gets == []
    assert {k: got.origin[k] for k in V2_KEYS} == dict.fromkeys(V2_KEYS, "fetched")
    assert {r["id"] for r in got.resources} >= {"enc-1", "ms-1", "sars-1", "plt-old"}


def test_v2_keys_by_get_when_the_server_refuses_batch(app, rsps):
    service = service_of(app)
    data = v2_data()
    data["medications"] = searchset()
    fake = FakeFhir(rsps, server_answers(service, data), batch_status=405)
    prefetch = {k: v for k, v in data.items() if k not in V2_KEYS}
    got = gather(app, request_body(prefetch))
    q = queries(service)
    assert sorted(fake.gets) == sorted(q[k] for k in V2_KEYS)
    assert got.by_key["encounters"] == [ENCOUNTER]


def test_statement_medication_reference_is_read_like_an_order(app, rsps):
    data = v2_data()
    data["medications"] = searchset()
    data["statements"] = searchset(dict(STATEMENT, medicationCodeableConcept=None,
                                        medicationReference={"reference": "Medication/apx"}))
    medication = {"resourceType": "Medication", "id": "apx", "code": STATEMENT["medicationCodeableConcept"]}
    fake = FakeFhir(rsps, {"Medication/apx": medication})
    got = gather(app, request_body(data))
    assert fake.batches == [["Medication/apx"]] and medication in got.resources


@pytest.mark.parametrize("key", V2_KEYS)
def test_each_v2_key_is_required(app, rsps, key):
    service = service_of(app)
    data = v2_data()
    data["medications"] = searchset()
    answers = server_answers(service, data)
    answers[queries(service)[key]] = 500
    FakeFhir(rsps, answers)
    with pytest.raises(PreconditionFailed, match=key):
        gather(app, request_body({k: v for k, v in data.items() if k != key}))


def test_hook_evaluation_passes_the_context_encounter_and_reads_the_v2_data(app, rsps):
    data = v2_data()
    data["medications"] = searchset()
    body = request_body(data)
    body["context"]["encounterId"] = "enc-1"
    state = state_of(app)
    ev = evaluate(HookCall(service=service_of(app), body=body, state=state))
    assert ev.inputs.encounter_id == "enc-1"
    assert [e.id for e in ev.inputs.encounters] == ["enc-1"]
    assert [s.ingredient for s in ev.inputs.statements] == ["apixaban"] and ev.inputs.orders == ()


def test_assess_encounter_option_plays_the_context_encounter(tmp_path, capsys, monkeypatch):
    import cds_service.fhir.extract as extract
    seen = {}
    real = extract.extract_inputs

    def spy(*args, **kwargs):
        seen["encounter_id"] = kwargs.get("encounter_id")
        return real(*args, **kwargs)

    monkeypatch.setattr(extract, "extract_inputs", spy)
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": {"resourceType": "Patient", "id": PID}},
                                            {"resource": ENCOUNTER}]}))
    assert main(["assess", str(bundle), "--now", "2024-01-02T12:00:00Z", "--encounter", "enc-1"]) == 0
    assert seen["encounter_id"] == "enc-1"
    assert main(["assess", str(bundle), "--now", "2024-01-02T12:00:00Z"]) == 0
    assert seen["encounter_id"] is None
    capsys.readouterr()


@pytest.mark.parametrize("key,broken", [
    ("encounters", dict(ENCOUNTER, status=["in-progress"], period="yesterday")),
    ("encounters", {"resourceType": "Encounter", "id": "e-bare"}),
    ("statements", dict(STATEMENT, effectivePeriod={"start": 7}, dosage="twice")),
    ("covid_tests", dict(COVID_TEST, interpretation={"coding": "POS"}, status=None)),
    ("covid_tests", dict(COVID_TEST, component=[{"code": "94533-7"}])),
    ("platelet_trend", dict(OLD_PLATELETS, valueQuantity={"value": "many"})),
])
def test_malformed_v2_resources_never_give_a_500(app, key, broken):
    data = v2_data()
    data["medications"] = searchset()
    data[key] = searchset(broken)
    resp = app.test_client().post("/cds-services/coagulopathy-risk", data=json.dumps(request_body(data)),
                                  content_type="application/json")
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
