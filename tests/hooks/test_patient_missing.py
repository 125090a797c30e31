"""A patient the EHR or FHIR server does not have gets no advice: with no Patient there is no
age, sex or weight, and a standard-prophylaxis suggestion would be about nobody."""
from __future__ import annotations

import pytest
import responses

from cds_service.cli.examples import build as build_example
from conftest import assert_valid_cds_response, in_scope


def build(name, now=None):
    """The example body in v2 scope (conftest.in_scope)."""
    return in_scope(build_example(name, now))

SERVICES = {"patient-view": "coagulopathy-risk", "order-select": "anticoagulant-order-check"}


@pytest.mark.parametrize("name", ["standard-prophylaxis", "sic-positive", "bmi-42"])
def test_null_patient_prefetch_gives_no_cards(client, name):
    body = build(name)
    body["prefetch"]["patient"] = None
    resp = client.post(f"/cds-services/{SERVICES[body['hook']]}", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json() == {"cards": []}


@responses.activate
def test_patient_404_on_self_fetch_gives_no_cards(client):
    body = build("standard-prophylaxis")
    del body["prefetch"]["patient"]
    body["fhirServer"] = "http://127.0.0.1:9/fhir"
    responses.post("http://127.0.0.1:9/fhir", json={
        "resourceType": "Bundle", "type": "batch-response",
        "entry": [{"response": {"status": "404 Not Found"},
                   "resource": {"resourceType": "OperationOutcome",
                                "issue": [{"severity": "error", "code": "not-found"}]}}]})
    resp = client.post("/cds-services/coagulopathy-risk", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert_valid_cds_response(resp.get_json())
    assert resp.get_json() == {"cards": []}
    assert len(responses.calls) == 1


def test_same_patient_present_still_gets_the_card(client):
    resp = client.post("/cds-services/coagulopathy-risk", json=build("standard-prophylaxis"))
    assert len(resp.get_json()["cards"]) == 1
