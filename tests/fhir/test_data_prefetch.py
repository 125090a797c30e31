"""The four prefetch cases, Bundle filtering and client pagination (cds-hooks-notes §6)."""
from __future__ import annotations

import pytest
import responses

from cds_service.runtime.errors import PreconditionFailed
from _data_support import (app, rsps,  # noqa: F401 (fixtures)
                           BASE, CONDITION, LABS, MED_REQUEST, MEDICATION, PATIENT, FakeFhir,
                           gather, make_app, obs, patient_data, queries, request_body, searchset,
                           server_answers, service_of)


def test_complete_prefetch_makes_no_request(app, rsps):
    data = patient_data()
    # An order coded inline (no medicationReference), so nothing at all needs fetching.
    data["medications"]["entry"][0]["resource"] = {**MED_REQUEST, "medicationReference": None,
                                                   "medicationCodeableConcept": MEDICATION["code"]}
    got = gather(app, request_body(data))
    assert len(rsps.calls) == 0
    assert got.fhir_calls == 0 and got.round_trips == 0
    assert got.origin == {"patient": "prefetch", "labs": "prefetch", "bedside": "empty",
                          "body": "prefetch", "conditions": "prefetch", "medications": "prefetch",
                          "administrations": "empty", "allergies": "empty", "procedures": "empty",
                          "encounters": "empty", "statements": "empty", "covid_tests": "empty",
                          "platelet_trend": "empty"}
    assert got.by_key["patient"] == [PATIENT]
    assert got.by_key["labs"] == LABS
    assert [r["id"] for r in got.resources] == ["pat-1", "plt-1", "ddimer-1", "wt-1", "c1", "mr1"]


def test_null_means_no_data_and_is_not_refetched(app, rsps):
    data = patient_data()
    data["medications"] = searchset()
    data["patient"] = None
    data["conditions"] = None
    got = gather(app, request_body(data))
    assert len(rsps.calls) == 0
    assert got.origin["patient"] == "null" and got.origin["conditions"] == "null"
    assert got.by_key["patient"] == [] and got.by_key["conditions"] == []
    assert not any(r["resourceType"] in ("Patient", "Condition") for r in got.resources)


def test_empty_searchset_is_no_results(app, rsps):
    data = patient_data()
    data["medications"] = searchset()
    data["labs"] = {"resourceType": "Bundle", "type": "searchset", "total": 0}  # no entry at all
    got = gather(app, request_body(data))
    assert len(rsps.calls) == 0
    assert got.origin["labs"] == "empty" and got.by_key["labs"] == []


def test_absent_key_is_fetched_and_the_batch_holds_exactly_the_missing_queries(app, rsps):
    service = service_of(app)
    data = patient_data()
    data["medications"] = searchset()
    fake = FakeFhir(rsps, server_answers(service, data))
    prefetch = {k: v for k, v in data.items() if k not in ("labs", "allergies")}
    got = gather(app, request_body(prefetch))
    q = queries(service)
    assert fake.batches == [[q["labs"], q["allergies"]]]
    assert fake.gets == []
    assert got.origin["labs"] == "fetched" and got.origin["allergies"] == "empty"
    assert got.origin["patient"] == "prefetch"
    assert got.by_key["labs"] == LABS
    assert got.fhir_calls == 1 and got.round_trips == 1


def test_operation_outcome_is_refetched(app, rsps):
    service = service_of(app)
    data = patient_data()
    data["medications"] = searchset()
    fake = FakeFhir(rsps, server_answers(service, data))
    prefetch = dict(data, conditions={"resourceType": "OperationOutcome",
                                      "issue": [{"severity": "error", "code": "timeout"}]})
    got = gather(app, request_body(prefetch))
    assert fake.batches == [[queries(service)["conditions"]]]
    assert got.origin["conditions"] == "fetched"
    assert got.by_key["conditions"] == [CONDITION]


def test_operation_outcome_whose_refetch_fails_is_412(app, rsps):
    service = service_of(app)
    answers = server_answers(service)
    answers[queries(service)["conditions"]] = 500
    FakeFhir(rsps, answers)
    prefetch = dict(patient_data(), conditions={"resourceType": "OperationOutcome", "issue": []})
    with pytest.raises(PreconditionFailed) as err:
        gather(app, request_body(prefetch))
    assert err.value.status == 412
    assert "conditions" in err.value.diagnostics and "OperationOutcome" in err.value.diagnostics
    assert "500" in err.value.diagnostics


def test_only_match_entries_of_the_templates_type_are_read(app, rsps):
    data = patient_data()
    data["medications"] = searchset()
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "too-costly"}]}
    data["labs"] = searchset(*LABS, extra_entries=[
        {"resource": outcome, "search": {"mode": "outcome"}},
        {"resource": PATIENT | {"id": "other"}, "search": {"mode": "include"}},
        {"resource": CONDITION | {"id": "stray"}},  # another type with no search.mode
        {"resource": obs("included-obs"), "search": {"mode": "include"}},
        {"search": {"mode": "match"}},  # no resource
        "not-an-object",
    ])
    got = gather(app, request_body(data))
    assert got.by_key["labs"] == LABS
    ids = {r["id"] for r in got.resources}
    assert not ids & {"other", "stray", "included-obs"}


def test_single_resource_key_takes_the_resource(app, rsps):
    data = patient_data()
    data["medications"] = searchset()
    got = gather(app, request_body(data))
    assert got.by_key["patient"] == [PATIENT]


def test_wrong_shaped_prefetch_value_is_refetched(app, rsps):
    service = service_of(app)
    data = patient_data()
    data["medications"] = searchset()
    fake = FakeFhir(rsps, server_answers(service, data))
    prefetch = dict(data, patient=obs("not-a-patient"), body=PATIENT)
    got = gather(app, request_body(prefetch))
    q = queries(service)
    assert fake.batches == [[q["patient"], q["body"]]]
    assert got.by_key["patient"] == [PATIENT] and got.origin["body"] == "fetched"


def test_duplicates_across_keys_and_pages_are_removed(app, rsps):
    data = patient_data()
    data["medications"] = searchset()
    data["bedside"] = searchset(LABS[0])  # the same Observation under two keys
    data["labs"] = searchset(*LABS, LABS[0])
    got = gather(app, request_body(data))
    ids = [(r["resourceType"], r["id"]) for r in got.resources]
    assert len(ids) == len(set(ids))
    assert got.by_key["labs"] == LABS and got.by_key["bedside"] == [LABS[0]]


def test_client_paginated_searchset_is_followed_on_fhir_server(app, rsps):
    data = patient_data()
    data["medications"] = searchset()
    page2 = f"{BASE}?_getpages=abc&_offset=2"
    page3 = f"{BASE}?_getpages=abc&_offset=4"
    data["labs"] = searchset(LABS[0], next_url=page2)
    fake = FakeFhir(rsps, {page2: searchset(LABS[1], next_url=page3), page3: searchset(obs("plt-0"))})
    got = gather(app, request_body(data))
    assert fake.gets == [page2, page3] and fake.batches == []
    assert [r["id"] for r in got.by_key["labs"]] == ["plt-1", "ddimer-1", "plt-0"]
    assert got.origin["labs"] == "prefetch"
    assert got.fhir_calls == 2 and got.truncated == []
    assert all(h["Authorization"] == "Bearer s3cr3t-access-token-XYZ" for h in fake.headers)


def test_pagination_stops_at_the_page_cap(rsps):
    from cds_service.fhir.data import DataLayer
    app = make_app()
    state = app.extensions["cds"]
    state.extensions["data"] = DataLayer(state.config, max_pages=3)
    data = patient_data()
    data["medications"] = searchset()
    endless = {f"{BASE}?page={n}": searchset(obs(f"o{n}"), next_url=f"{BASE}?page={n + 1}") for n in range(2, 9)}
    data["labs"] = searchset(LABS[0], next_url=f"{BASE}?page=2")
    fake = FakeFhir(rsps, endless)
    got = gather(app, request_body(data))
    assert fake.gets == [f"{BASE}?page=2", f"{BASE}?page=3"]
    assert [r["id"] for r in got.by_key["labs"]] == ["plt-1", "o2", "o3"]
    assert got.truncated == ["labs"]


def test_next_link_outside_fhir_server_is_never_called(app, rsps):
    data = patient_data()
    data["medications"] = searchset()
    data["labs"] = searchset(LABS[0], next_url="https://attacker.example/fhir?page=2")
    with pytest.raises(PreconditionFailed) as err:
        gather(app, request_body(data))
    assert len(rsps.calls) == 0
    assert "labs" in err.value.diagnostics and "outside fhirServer" in err.value.diagnostics


def test_client_pagination_without_fhir_server_is_412(app, rsps):
    data = patient_data()
    data["medications"] = searchset()
    data["labs"] = searchset(LABS[0], next_url=f"{BASE}?page=2")
    with pytest.raises(PreconditionFailed) as err:
        gather(app, request_body(data, server=None, token=None))
    assert "labs" in err.value.diagnostics and "no fhirServer" in err.value.diagnostics
    assert len(rsps.calls) == 0
