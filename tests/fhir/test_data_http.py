"""Through Flask: a handler that gathers data answers 412 as an OperationOutcome (incomplete)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import responses

from conftest import assert_operation_outcome
from _data_support import (BASE, TOKEN, FakeFhir, make_app, patient_data, request_body, searchset,
                           server_answers, service_of)

PATH = "/cds-services/coagulopathy-risk"


@pytest.fixture
def app(monkeypatch):
    app = make_app()
    state = app.extensions["cds"]
    service = service_of(app)

    def gathering_handler(call):  # stands in for the real handler, wired later
        got = state.extensions["data"].gather(call)
        return {"cards": [], "extension": {"origin": got.origin, "fhir_calls": got.fhir_calls}}

    monkeypatch.setitem(state.registry._services, service.id,
                        dataclasses.replace(service, handler=gathering_handler))
    return app


def post(app, body):
    return app.test_client().post(PATH, data=json.dumps(body), content_type="application/json")


def test_unobtainable_data_is_412_incomplete_with_cors_and_no_token(app):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, BASE, status=401)
        resp = post(app, request_body())
    body = assert_operation_outcome(resp, 412, "incomplete")
    text = resp.get_data(as_text=True)
    assert TOKEN not in text
    assert ("patient, labs, bedside, body, conditions, medications, administrations, allergies, "
            "procedures, encounters, statements, covid_tests, platelet_trend (not prefetched; fetching it failed: fhirServer refused access (401))") in text
    assert body["issue"][0]["diagnostics"].startswith("Required FHIR data could not be obtained")


def test_refused_server_is_412_without_a_request(app):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        resp = post(app, request_body(server="http://localhost.evil.com/fhir"))
        assert len(rsps.calls) == 0
    assert_operation_outcome(resp, 412, "incomplete")


def test_complete_prefetch_is_200_without_fhir_server(app):
    data = patient_data()
    data["medications"] = searchset()
    resp = post(app, request_body(data, server=None, token=None))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["extension"]["fhir_calls"] == 0


def test_self_fetch_through_the_endpoint(app):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeFhir(rsps, server_answers(service_of(app)) | {"Medication/m1": {"resourceType": "Medication",
                                                                           "id": "m1"}})
        resp = post(app, request_body())
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["extension"]["origin"]["labs"] == "fetched"
