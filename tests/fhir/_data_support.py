"""Shared pieces for the data-layer tests: a hook request, a patient's FHIR data, and a fake
FHIR server (batch + GET) registered on a `responses` mock."""
from __future__ import annotations

import copy
import json
import re
import time
from urllib.parse import unquote

import pytest
import responses

from cds_service import create_app
from cds_service.fhir.templates import fill_template
from cds_service.hooks import HookCall

BASE = "http://127.0.0.1:8080/fhir"
TOKEN = "s3cr3t-access-token-XYZ"
PID = "pat-1"
SERVICE_ID = "coagulopathy-risk"


def searchset(*resources, next_url=None, extra_entries=()):
    bundle = {"resourceType": "Bundle", "type": "searchset",
              "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]
              + list(extra_entries)}
    if next_url:
        bundle["link"] = [{"relation": "self", "url": "ignored"}, {"relation": "next", "url": next_url}]
    return bundle


def obs(oid, code="777-3", value=250.0):
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "subject": {"reference": f"Patient/{PID}"},
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "effectiveDateTime": "2024-01-02T08:00:00Z",
            "valueQuantity": {"value": value, "unit": "10*3/uL"}}


PATIENT = {"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1950-01-01"}
LABS = [obs("plt-1"), obs("ddimer-1", "48065-7", 3.1)]
BODY = [obs("wt-1", "29463-7", 80.0)]
CONDITION = {"resourceType": "Condition", "id": "c1", "subject": {"reference": f"Patient/{PID}"},
             "code": {"coding": [{"system": "http://snomed.info/sct", "code": "840539006"}]}}
MED_REQUEST = {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
               "subject": {"reference": f"Patient/{PID}"},
               "medicationReference": {"reference": "Medication/m1"}}
MEDICATION = {"resourceType": "Medication", "id": "m1",
              "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                   "code": "854235"}]}}


def patient_data() -> dict:
    """key -> what the template's query returns for PID (a resource or a searchset)."""
    return {
        "patient": PATIENT,
        "labs": searchset(*LABS),
        "bedside": searchset(),
        "body": searchset(*BODY),
        "conditions": searchset(CONDITION),
        "medications": searchset(MED_REQUEST),
        "administrations": searchset(),
        "allergies": searchset(),
        "procedures": searchset(),
        "encounters": searchset(),
        "statements": searchset(),
        "covid_tests": searchset(),
        "platelet_trend": searchset(),
    }


def make_app(**config):
    return create_app({"database": ":memory:", **config})


@pytest.fixture
def app():
    """An app with default config (imported by the test modules as a fixture)."""
    return make_app()


@pytest.fixture
def rsps():
    """The HTTP layer: any request not registered fails the call (no real network)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def state_of(app):
    return app.extensions["cds"]


def service_of(app, service_id=SERVICE_ID):
    return state_of(app).registry.get(service_id)


def queries(service, context=None) -> dict[str, str]:
    """key -> filled relative query, worked out from the declared templates."""
    ctx = context or {"patientId": PID, "userId": "Practitioner/u1"}
    return {k: fill_template(t, ctx) for k, t in service.prefetch.items()}


def request_body(prefetch=None, *, server=BASE, token=TOKEN, hook="patient-view"):
    body = {"hook": hook, "hookInstance": "6a1b2c3d-0000-4000-8000-000000000001",
            "context": {"patientId": PID, "userId": "Practitioner/u1"}}
    if server is not None:
        body["fhirServer"] = server
    if token is not None:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "user/*.read", "subject": "u1"}
    if prefetch is not None:
        body["prefetch"] = copy.deepcopy(prefetch)
    return body


def gather(app, body, service=None):
    state = state_of(app)
    call = HookCall(service=service or service_of(app), body=body, state=state)
    return state.extensions["data"].gather(call)


class FakeFhir:
    """A FHIR server on `responses`: answers batch POSTs at the base and GETs under it.

    `answers` maps a relative query (or an absolute next-page URL) to a dict body, an int
    status, or a callable returning either. Records what it was asked."""

    def __init__(self, rsps: responses.RequestsMock, answers: dict, *, base=BASE,
                 batch_status: int | None = None, delay: float = 0.0):
        self.answers, self.base, self.delay = answers, base, delay
        self.batch_status = batch_status
        self.batches: list[list[str]] = []
        self.gets: list[str] = []
        self.headers: list[dict] = []
        rsps.add_callback(responses.POST, base, callback=self._batch)
        rsps.add_callback(responses.GET, re.compile(re.escape(base) + r"(/.*|\?.*)"), callback=self._get)

    def _answer(self, key):
        value = self.answers.get(key, 404)
        return value() if callable(value) else value

    def _batch(self, request):
        self.headers.append(dict(request.headers))
        if self.delay:
            time.sleep(self.delay)
        if self.batch_status:
            return self.batch_status, {}, ""
        bundle = json.loads(request.body)
        urls = [e["request"]["url"] for e in bundle["entry"]]
        assert all(e["request"]["method"] == "GET" for e in bundle["entry"])
        self.batches.append(urls)
        entries = []
        for url in urls:
            value = self._answer(url)
            if isinstance(value, int):
                entries.append({"response": {"status": f"{value} Error"}})
            else:
                entries.append({"resource": value, "response": {"status": "200 OK"}})
        return 200, {}, json.dumps({"resourceType": "Bundle", "type": "batch-response", "entry": entries})

    def _get(self, request):
        self.headers.append(dict(request.headers))
        url = unquote(request.url)
        key = url[len(self.base) + 1:] if url.startswith(self.base + "/") else url
        self.gets.append(key)
        if self.delay:
            time.sleep(self.delay)
        value = self._answer(key)
        if isinstance(value, (bytes, str)):
            return 200, {}, value
        if isinstance(value, int):
            return value, {}, json.dumps({"resourceType": "OperationOutcome", "issue": []})
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(value)


def server_answers(service, data=None) -> dict:
    """The fake server's answers: each declared query -> that key's data."""
    data = data if data is not None else patient_data()
    q = queries(service)
    return {q[k]: v for k, v in data.items()}
