"""Self-fetch: headers, one batch, parallel fallback, round trips, Medications, paging, tokens."""
from __future__ import annotations

import dataclasses
import json

import pytest
import responses

from cds_service.runtime.errors import PreconditionFailed
from _data_support import (app, rsps,  # noqa: F401 (fixtures)
                           BASE, LABS, MED_REQUEST, MEDICATION, PATIENT, PID, TOKEN, FakeFhir,
                           gather, make_app, obs, patient_data, queries, request_body, searchset,
                           server_answers, service_of)


def test_self_fetch_sends_the_bearer_token_and_fhir_accept(app, rsps):
    fake = FakeFhir(rsps, server_answers(service_of(app)) | {"Medication/m1": MEDICATION})
    gather(app, request_body())
    assert fake.headers, "no request was made"
    for headers in fake.headers:
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert headers["Accept"] == "application/fhir+json"
    assert rsps.calls[0].request.headers["Content-Type"] == "application/fhir+json"


def test_no_authorization_header_without_fhir_authorization(app, rsps):
    fake = FakeFhir(rsps, server_answers(service_of(app)) | {"Medication/m1": MEDICATION})
    gather(app, request_body(token=None))
    assert fake.headers
    assert all("Authorization" not in h for h in fake.headers)


def test_miss_is_one_batch_then_one_follow_up_and_a_warm_cache_makes_no_call(app, rsps):
    service = service_of(app)
    fake = FakeFhir(rsps, server_answers(service) | {"Medication/m1": MEDICATION})
    got = gather(app, request_body())
    # Round 1: all nine queries in one batch. Round 2: the Medication the fetched order names.
    assert fake.batches == [list(queries(service).values())]
    assert fake.gets == ["Medication/m1"]
    assert got.fhir_calls == 2 and got.round_trips == 2
    assert got.by_key["medication_refs"] == [MEDICATION]
    assert set(got.origin.values()) == {"fetched", "empty"}

    warm = gather(app, request_body())
    assert len(rsps.calls) == 2, "a warm cache must make no HTTP call"
    assert warm.fhir_calls == 0 and warm.round_trips == 0
    assert warm.origin["labs"] == "cache" and warm.origin["bedside"] == "empty"
    assert warm.resources == got.resources


def test_batch_request_is_a_fhir_batch_of_gets(app, rsps):
    FakeFhir(rsps, server_answers(service_of(app)) | {"Medication/m1": MEDICATION})
    gather(app, request_body())
    sent = json.loads(rsps.calls[0].request.body)
    assert rsps.calls[0].request.method == "POST" and rsps.calls[0].request.url == BASE
    assert sent["resourceType"] == "Bundle" and sent["type"] == "batch"
    assert [e["request"] for e in sent["entry"]] == [
        {"method": "GET", "url": q} for q in queries(service_of(app)).values()]


def test_medication_referenced_by_a_prefetched_order_rides_in_the_same_batch(app, rsps):
    service = service_of(app)
    data = patient_data()
    fake = FakeFhir(rsps, server_answers(service, data) | {"Medication/m1": MEDICATION})
    prefetch = {k: v for k, v in data.items() if k != "labs"}
    got = gather(app, request_body(prefetch))
    assert fake.batches == [[queries(service)["labs"], "Medication/m1"]]
    assert fake.gets == []
    assert got.fhir_calls == 1 and got.round_trips == 1
    assert MEDICATION in got.resources


def test_fully_prefetched_order_with_absolute_or_contained_reference(app, rsps):
    data = patient_data()
    contained = dict(MED_REQUEST, id="mr2", medicationReference={"reference": "#med"},
                     contained=[dict(MEDICATION, id="med")])
    absolute = dict(MED_REQUEST, id="mr3", medicationReference={"reference": f"{BASE}/Medication/m1"})
    elsewhere = dict(MED_REQUEST, id="mr4", medicationReference={"reference": "https://other.example/Medication/x"})
    data["medications"] = searchset(contained, absolute, elsewhere)
    fake = FakeFhir(rsps, {"Medication/m1": MEDICATION})
    got = gather(app, request_body(data))
    assert fake.batches == [["Medication/m1"]]  # contained and foreign references are never fetched
    assert got.by_key["medication_refs"] == [MEDICATION]


@pytest.mark.parametrize("rejection", [405, 400, 404, 501, 500, "not-batch-response", "garbage"])
def test_rejected_batch_falls_back_to_parallel_gets(app, rsps, rejection):
    service = service_of(app)
    data = patient_data()
    data["medications"] = searchset(dict(MED_REQUEST, medicationReference=None))
    answers = server_answers(service, data)
    fake = FakeFhir(rsps, answers, batch_status=rejection if isinstance(rejection, int) else None)
    if not isinstance(rejection, int):
        rsps.replace(responses.POST, BASE, status=200,
                     body=json.dumps(searchset()) if rejection == "not-batch-response" else b"<html>")
    got = gather(app, request_body())
    assert sorted(fake.gets) == sorted(queries(service).values())
    assert got.round_trips == 2 and got.fhir_calls == 1 + 13   # 13 keys (v2)
    assert got.by_key["labs"] == LABS and got.by_key["patient"] == [PATIENT]


def test_after_a_fallback_a_newly_referenced_medication_is_left_out(app, rsps):
    service = service_of(app)
    fake = FakeFhir(rsps, server_answers(service) | {"Medication/m1": MEDICATION}, batch_status=405)
    got = gather(app, request_body())
    assert "Medication/m1" not in fake.gets  # it would have been a third round trip
    assert got.round_trips == 2
    assert "third round trip" in got.problems["Medication/m1"]
    assert "medication_refs" not in got.by_key
    assert got.by_key["medications"] == [MED_REQUEST]


def test_failed_medication_read_is_a_problem_not_a_412(app, rsps):
    FakeFhir(rsps, server_answers(service_of(app)) | {"Medication/m1": 500})
    got = gather(app, request_body())
    assert got.problems == {"Medication/m1": "fhirServer answered 500"}
    assert got.by_key["medications"] == [MED_REQUEST]


def test_server_paginated_search_is_followed(app, rsps):
    service = service_of(app)
    data = patient_data()
    data["medications"] = searchset()
    data["labs"] = searchset(LABS[0], next_url=f"{BASE}?_getpages=x&offset=1")
    fake = FakeFhir(rsps, server_answers(service, data) | {f"{BASE}?_getpages=x&offset=1": searchset(LABS[1])})
    got = gather(app, request_body())
    assert fake.gets == [f"{BASE}?_getpages=x&offset=1"]
    assert got.by_key["labs"] == LABS and got.round_trips == 2
    # The cached result is the whole (two-page) answer.
    assert gather(app, request_body()).by_key["labs"] == LABS and len(rsps.calls) == 2


def test_read_that_the_server_answers_404_is_no_data(app, rsps):
    service = service_of(app)
    answers = server_answers(service)
    answers[queries(service)["patient"]] = 404
    answers["Medication/m1"] = MEDICATION
    FakeFhir(rsps, answers)
    got = gather(app, request_body())
    assert got.origin["patient"] == "null" and got.by_key["patient"] == []


def test_self_fetched_and_prefetched_calls_give_identical_resources(rsps):
    data = patient_data()
    prefetched_app, fetched_app = make_app(), make_app()
    service = service_of(fetched_app)
    FakeFhir(rsps, server_answers(service, data) | {"Medication/m1": MEDICATION})
    # The same data prefetched; only the order's Medication still has to be read.
    prefetch = data
    from_prefetch = gather(prefetched_app, request_body(prefetch))
    fetched = gather(fetched_app, request_body())
    assert fetched.fhir_calls == 2 and from_prefetch.fhir_calls == 1  # both read Medication/m1
    assert fetched.resources == from_prefetch.resources
    assert fetched.by_key == from_prefetch.by_key
    assert [r["id"] for r in fetched.resources] == ["pat-1", "plt-1", "ddimer-1", "wt-1", "c1", "mr1", "m1"]


def _service_with(app, prefetch, required):
    return dataclasses.replace(service_of(app), prefetch=prefetch, required_keys=frozenset(required))


def test_user_tokens_are_derived_from_context_user_id(app, rsps):
    service = _service_with(app, {"me": "Practitioner/{{userPractitionerId}}",
                                  "enc": "Encounter?patient={{context.patientId}}&_count=1"}, {"me", "enc"})
    fake = FakeFhir(rsps, {"Practitioner/u1": {"resourceType": "Practitioner", "id": "u1"},
                           f"Encounter?patient={PID}&_count=1": searchset()})
    got = gather(app, request_body(), service)
    assert fake.batches == [["Practitioner/u1", f"Encounter?patient={PID}&_count=1"]]
    assert got.origin == {"me": "fetched", "enc": "empty"}


def test_unfillable_template_of_a_required_key_is_412_without_any_request(app, rsps):
    service = _service_with(app, {"enc": "Encounter/{{context.encounterId}}",
                                  "role": "PractitionerRole/{{userPractitionerRoleId}}"}, {"enc"})
    with pytest.raises(PreconditionFailed) as err:
        gather(app, request_body(), service)
    assert "enc" in err.value.diagnostics and "context.encounterId" in err.value.diagnostics
    assert len(rsps.calls) == 0


def test_optional_key_that_cannot_be_had_is_a_problem(app, rsps):
    service = _service_with(app, {"patient": "Patient/{{context.patientId}}",
                                  "role": "PractitionerRole/{{userPractitionerRoleId}}"}, {"patient"})
    FakeFhir(rsps, {f"Patient/{PID}": PATIENT})
    got = gather(app, request_body(), service)
    assert got.by_key == {"patient": [PATIENT]}  # unavailable is not the same as empty
    assert "PractitionerRole" in got.problems["role"]
    assert "role" not in got.origin


@pytest.mark.parametrize("patient_id", ["..", "a/b", "p&_include=*", "x" * 65])
def test_context_values_that_are_not_fhir_ids_never_reach_a_url(app, rsps, patient_id):
    body = request_body()
    body["context"]["patientId"] = patient_id
    with pytest.raises(PreconditionFailed):
        gather(app, body)
    assert len(rsps.calls) == 0


def test_concurrent_calls_share_the_session_and_cache_safely(app, rsps):
    from concurrent.futures import ThreadPoolExecutor
    FakeFhir(rsps, server_answers(service_of(app)) | {"Medication/m1": MEDICATION})
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: gather(app, request_body()), range(12)))
    assert all(r.resources == results[0].resources for r in results)
    assert [r["id"] for r in results[0].resources][-1] == "m1"
    assert obs("plt-1") in results[0].resources
