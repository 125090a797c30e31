"""fhir/model.py: the strict structs of what the service reads decide whether a used resource
is fit (issue 15), where the fhir.resources R4B models decided before."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from cds_service.fhir import model
from cds_service.fhir.context import R4BValidator
from cds_service.fhir.read import _DATETIME, parse_datetime

LOINC = "http://loinc.org"
OBS = {"resourceType": "Observation", "id": "o1", "status": "final",
       "code": {"coding": [{"system": LOINC, "code": "777-3"}]}, "subject": {"reference": "Patient/p1"},
       "effectiveDateTime": "2024-03-10T08:00:00Z",
       "valueQuantity": {"value": 150, "unit": "10*3/uL", "system": "http://unitsofmeasure.org",
                         "code": "10*3/uL"}}
REQ = {"resourceType": "MedicationRequest", "id": "r1", "status": "active", "intent": "order",
       "subject": {"reference": "Patient/p1"},
       "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                  "code": "67108"}]},
       "authoredOn": "2024-03-10T08:00:00Z",
       "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                              "doseAndRate": [{"doseQuantity": {"value": 40, "unit": "mg"}}]}]}


def with_(resource: dict, **changes) -> dict:
    return {**resource, **changes}


@pytest.mark.parametrize("resource", [OBS, REQ, {"resourceType": "Patient", "id": "p1", "gender": "female",
                                                 "birthDate": "1950-02"}])
def test_valid_resources_pass_both_checks(resource):
    assert model.problem(resource) is None
    assert R4BValidator._check(resource) is None


@pytest.mark.parametrize("resource,where", [
    (with_(OBS, valueQuantity={"value": 90, "system": 42}), "valueQuantity.system"),
    (with_(OBS, valueQuantity={"value": True}), "valueQuantity.value"),
    (with_(OBS, effectiveDateTime="2024-03-10T08:00:00"), "effectiveDateTime"),     # a time needs an offset
    (with_(OBS, effectiveDateTime="yesterday"), "effectiveDateTime"),
    (with_(OBS, issued="2024-03-10"), "issued"),                                    # an instant needs a time
    (with_(OBS, valueString="ninety"), "value[x]"),                                 # two value[x]
    (with_(OBS, status=["final"]), "status"),
    (with_(OBS, component=[{"valueQuantity": {"value": 1}}]), "component.0"),      # component.code required
    ({k: v for k, v in OBS.items() if k != "status"}, "status"),
    (with_(REQ, intent={"code": "order"}), "intent"),
    (with_(REQ, authoredOn="yesterday"), "authoredOn"),
    ({k: v for k, v in REQ.items() if k != "subject"}, "subject"),
    (with_(REQ, dosageInstruction=[{"timing": {"repeat": {"frequency": 0}}}]), "frequency"),
    ({"resourceType": "Patient", "id": "p1", "gender": ["male"]}, "gender"),
    ({"resourceType": "Encounter", "status": "finished", "class": {"code": 7}}, "class.code"),
    ({"resourceType": "Encounter", "status": "finished"}, "class"),
])
def test_a_read_field_of_the_wrong_shape_is_rejected_like_r4b(resource, where):
    reason = model.problem(resource)
    assert reason is not None and reason.startswith("not valid FHIR R4B (") and where in reason
    assert R4BValidator._check(resource) is not None     # R4B rejected each of these too


@pytest.mark.parametrize("resource", [
    with_(OBS, note=[{"text": 5}]),                 # a field never read, malformed
    with_(OBS, someR5Element={"x": 1}),             # unknown to R4B
])
def test_fields_never_read_do_not_reject_a_resource(resource):
    assert model.problem(resource) is None
    assert R4BValidator._check(resource) is not None   # only `assess --strict` still rejects these


def test_a_decimal_as_a_json_string_is_rejected_though_r4b_took_it():
    # FHIR JSON carries decimals as numbers; the readers never used a string (it read as "no
    # value"), so the resource is now dropped with a reason instead.
    resource = with_(OBS, valueQuantity={"value": "90", "unit": "10*3/uL"})
    assert "valueQuantity.value" in model.problem(resource)
    assert R4BValidator._check(resource) is None


def test_types_not_read_are_not_checked():
    assert model.problem({"resourceType": "Flag", "status": 5}) is None


FAST = st.builds(
    lambda d, s, digits: (d + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ") if digits is None
    else digits,
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(0, 86399),
    st.one_of(st.none(), st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\Z")))


def _regex_path(value: str):
    """parse_datetime's general path (what the fast path must agree with)."""
    m = _DATETIME.match(value)
    if not m:
        return None
    year, month, day, hh, mm, ss, _, _ = m.groups()
    try:
        return datetime(int(year), int(month), int(day), int(hh), int(mm), int(ss), tzinfo=timezone.utc)
    except ValueError:
        return None


@pytest.mark.slow  # 400 hypothesis examples: left out by --fast
@settings(max_examples=400, deadline=None)
@given(FAST)
def test_date_fast_path_agrees_with_the_general_parser(value):
    assert parse_datetime(value) == _regex_path(value)
