"""Every way the FHIR server can fail leads to 412 inside the deadline, with no token shown."""
from __future__ import annotations

import json
import time

import pytest
import requests
import responses

from cds_service.runtime.errors import PreconditionFailed
from cds_service.fhir.data import DataLayer
from _data_support import (rsps,  # noqa: F401 (fixture)
                           BASE, LABS, MEDICATION, TOKEN, FakeFhir, gather, make_app, queries,
                           request_body, server_answers, service_of)

DEADLINE = 0.3
# Generous: the point is that a 2-s hang is not waited for, not a benchmark.
MARGIN = 0.9


@pytest.fixture
def app():
    return make_app(fhir_timeout=DEADLINE)


def expect_412(app, body=None) -> str:
    started = time.monotonic()
    with pytest.raises(PreconditionFailed) as err:
        gather(app, body or request_body())
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + MARGIN, f"took {elapsed:.2f} s"
    diagnostics = err.value.diagnostics
    assert TOKEN not in diagnostics and "Bearer" not in diagnostics
    outcome = err.value.outcome()
    assert err.value.status == 412 and outcome["issue"][0]["code"] == "incomplete"
    return diagnostics


def all_nine_named(diagnostics: str, service) -> None:
    # Keys failing for the same reason are listed together, before that reason.
    names = diagnostics.split(": ", 1)[1].split(" (", 1)[0]
    assert names.split(", ") == list(service.prefetch)


def test_server_that_hangs_past_the_deadline(app, rsps):
    fake = FakeFhir(rsps, server_answers(service_of(app)), delay=2.0)
    diagnostics = expect_412(app)
    assert "deadline" in diagnostics
    all_nine_named(diagnostics, service_of(app))
    assert len(fake.headers) == 1  # the batch only: no fallback once the deadline has passed


def test_unreachable_server_is_retried_inside_the_deadline_then_412(app, rsps):
    refused = requests.ConnectionError("connection refused")
    rsps.add(responses.POST, BASE, body=refused)
    rsps.add(responses.GET, f"{BASE}/Patient/pat-1", body=refused)
    for query in queries(service_of(app)).values():
        if not query.startswith("Patient/"):
            rsps.add(responses.GET, f"{BASE}/{query}", body=refused)
    diagnostics = expect_412(app)
    assert "could not be reached" in diagnostics
    gets = [c for c in rsps.calls if c.request.method == "GET"]
    assert 13 < len(gets) <= 39  # some retries, at most three attempts per query (13 keys, v2)


def test_500_from_server(app, rsps):
    FakeFhir(rsps, {}, batch_status=500)
    rsps.replace(responses.GET, rsps.registered()[1].url, status=500)
    diagnostics = expect_412(app)
    assert "fhirServer answered 500" in diagnostics


def test_503_is_retried_and_then_succeeds_inside_the_deadline(app, rsps):
    service = service_of(app)
    answers = server_answers(service) | {"Medication/m1": MEDICATION}
    attempts = {"n": 0}
    labs = answers[queries(service)["labs"]]

    def flaky_labs():
        attempts["n"] += 1
        return 503 if attempts["n"] < 3 else labs

    answers[queries(service)["labs"]] = flaky_labs
    FakeFhir(rsps, answers, batch_status=405)
    got = gather(app, request_body())
    assert attempts["n"] == 3
    assert got.by_key["labs"] == LABS


@pytest.mark.parametrize("status", [401, 403])
def test_auth_refusal_is_412_with_no_fallback(app, rsps, status):
    FakeFhir(rsps, {}, batch_status=status)
    diagnostics = expect_412(app)
    assert f"fhirServer refused access ({status})" in diagnostics
    assert len(rsps.calls) == 1  # the same token would be refused again


@pytest.mark.parametrize("status", [401, 403])
def test_auth_refusal_on_get_after_fallback(app, rsps, status):
    FakeFhir(rsps, {q: status for q in queries(service_of(app)).values()}, batch_status=405)
    assert f"refused access ({status})" in expect_412(app)


def test_garbage_json_body(app, rsps):
    service = service_of(app)
    FakeFhir(rsps, {q: "{not json" for q in queries(service).values()}, batch_status=None)
    rsps.replace(responses.POST, BASE, status=200, body="<html>oops</html>")
    diagnostics = expect_412(app)
    assert "not valid JSON" in diagnostics
    all_nine_named(diagnostics, service)


def test_non_bundle_where_a_bundle_is_expected(app, rsps):
    service = service_of(app)
    answers = server_answers(service)
    answers[queries(service)["labs"]] = {"resourceType": "Observation", "id": "x"}
    answers[queries(service)["conditions"]] = {"resourceType": "OperationOutcome", "issue": []}
    FakeFhir(rsps, answers | {"Medication/m1": MEDICATION})
    diagnostics = expect_412(app)
    assert diagnostics == ("Required FHIR data could not be obtained: labs, conditions "
                           "(not prefetched; fetching it failed: the answer was not a Bundle).")


def test_per_entry_batch_error_for_a_required_key(app, rsps):
    service = service_of(app)
    answers = server_answers(service)
    answers[queries(service)["allergies"]] = 500
    FakeFhir(rsps, answers | {"Medication/m1": MEDICATION})
    diagnostics = expect_412(app)
    assert diagnostics == ("Required FHIR data could not be obtained: allergies "
                           "(not prefetched; fetching it failed: fhirServer answered 500).")


def test_oversize_body_is_cut_off(rsps):
    app = make_app(fhir_timeout=DEADLINE)
    state = app.extensions["cds"]
    state.extensions["data"] = DataLayer(state.config, max_response_bytes=4096)
    big = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {"resourceType": "Observation",
                                                                                  "id": "x" * 8000}}]}
    service = service_of(app)
    FakeFhir(rsps, {q: big for q in queries(service).values()})
    diagnostics = expect_412(app)
    assert "larger than the 4096-byte limit" in diagnostics


def test_oversize_declared_by_content_length_is_refused_unread(rsps):
    app = make_app(fhir_timeout=DEADLINE)
    state = app.extensions["cds"]
    state.extensions["data"] = DataLayer(state.config, max_response_bytes=100)
    rsps.add(responses.POST, BASE, body=json.dumps({"resourceType": "Bundle", "type": "batch-response",
                                                    "entry": [], "pad": "y" * 200}))
    rsps.add(responses.GET, f"{BASE}/Patient/pat-1", body="x" * 200)
    assert "byte limit" in expect_412(app)


def test_no_fhir_server_and_keys_absent(app, rsps):
    diagnostics = expect_412(app, request_body(server=None, token=None))
    assert "no fhirServer" in diagnostics
    assert len(rsps.calls) == 0


def test_token_never_logged(app, rsps, caplog):
    FakeFhir(rsps, {}, batch_status=401)
    expect_412(app)
    assert caplog.records
    assert TOKEN not in caplog.text
