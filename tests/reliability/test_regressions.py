"""Regressions for the 500s the fuzz tests found: FHIR fields of the wrong JSON type.

The readers are meant to treat a field of the wrong shape as absent (fhir/read.py). Each case
below raised TypeError (iterating a number, hashing a list or dict) or formatted an infinite
value, and answered 500. Now each is a 200 with schema-valid cards, the bad field ignored.
(A few cases are shielded today by the R4B validation that runs first; they stay as guards.)
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from bench import synth
from cds_service.fhir.bundle import next_link
from cds_service.fhir.read import parse_datetime
from conftest import assert_valid_cds_response

NOW = datetime.now(timezone.utc)
PID = "reg-p"


def base(hook: str) -> dict:
    rec = synth.record(PID, 30, now=NOW)
    for key, extra in synth.rich_extras(PID, NOW).items():
        rec[key] = rec[key] + extra
    return synth.hook_request(hook, PID, rec=rec)


def first(doc: dict, key: str, rtype: str) -> dict:
    return next(e["resource"] for e in doc["prefetch"][key]["entry"] if e["resource"]["resourceType"] == rtype)


def call(client, doc: dict) -> dict:
    resp = client.post(synth.SERVICE_PATH[doc["hook"]], data=orjson.dumps(doc), content_type="application/json")
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    body = resp.get_json()
    assert_valid_cds_response(body)
    return body


# (label, hook, mutation) -- each mutation once answered 500.
CASES = [
    ("Observation code.coding is a number", "patient-view",
     lambda d: first(d, "bedside", "Observation")["code"].__setitem__("coding", -1)),
    ("Observation effectiveDateTime offset +99:00", "patient-view",
     lambda d: first(d, "labs", "Observation").__setitem__("effectiveDateTime", "2024-01-01T10:00:00+99:00")),
    ("Observation status is a list", "patient-view",
     lambda d: first(d, "labs", "Observation").__setitem__("status", ["final"])),
    ("Observation component is a number", "patient-view",
     lambda d: first(d, "bedside", "Observation").__setitem__("component", 5)),
    ("referenceRange is true", "patient-view",
     lambda d: first(d, "labs", "Observation").__setitem__("referenceRange", True)),
    ("referenceRange appliesTo is a number, age.low a list", "patient-view",
     lambda d: first(d, "labs", "Observation").__setitem__(
         "referenceRange", [{"high": {"value": 0.5, "unit": "mg/L"}, "appliesTo": 3, "age": {"low": []}}])),
    ("AllergyIntolerance reaction and manifestation are numbers", "patient-view",
     lambda d: first(d, "allergies", "AllergyIntolerance").__setitem__("reaction", [{"manifestation": 2}, 1])),
    ("Procedure usedCode is a number", "patient-view",
     lambda d: first(d, "procedures", "Procedure").__setitem__("usedCode", 1)),
    ("Procedure status is a list", "patient-view",
     lambda d: first(d, "procedures", "Procedure").__setitem__("status", ["in-progress"])),
    ("MedicationRequest dosageInstruction is a number", "patient-view",
     lambda d: first(d, "medications", "MedicationRequest").__setitem__("dosageInstruction", 1.5)),
    ("MedicationRequest doseAndRate is a number", "order-select",
     lambda d: d["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"][0]
     .__setitem__("doseAndRate", 7)),
    ("MedicationRequest intent is an object", "order-sign",
     lambda d: d["context"]["draftOrders"]["entry"][0]["resource"].__setitem__("intent", {})),
    ("timing.repeat.periodUnit is a list", "order-select",
     lambda d: d["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"][0]["timing"]["repeat"]
     .__setitem__("periodUnit", ["d"])),
    ("contained is a number", "patient-view",
     lambda d: d["prefetch"]["medications"]["entry"][1]["resource"].__setitem__("contained", 3)),
    ("a Medication id is a list (data layer)", "patient-view", lambda d: _medication_with_list_id(d)),
    ("a HIT Condition dated 0001-01-01T00:00:00+14:00 (no UTC form)", "patient-view",
     lambda d: d["prefetch"]["conditions"]["entry"].append({"resource": _hit_condition("0001-01-01T00:00:00+14:00")})),
]


def _hit_condition(when: str) -> dict:
    from cds_service.fhir.codes import load_codes
    codes = load_codes()
    system, code = codes.resolve(codes.data["conditions"]["hit"][0])
    return {"resourceType": "Condition", "id": "hit-1", "subject": {"reference": f"Patient/{PID}"},
            "code": {"coding": [{"system": system, "code": code}]}, "onsetDateTime": when, "recordedDate": when}


def _medication_with_list_id(doc: dict) -> None:
    order = synth.medication_request(PID, "mr2", "active")
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "Medication/m2"}
    doc["prefetch"]["medications"]["entry"] += [
        {"resource": order}, {"resource": {"resourceType": "Medication", "id": ["m2"]}}]


@pytest.mark.parametrize("label,hook,mutate", CASES, ids=[c[0] for c in CASES])
def test_wrong_json_type_is_ignored_not_a_500(client, label, hook, mutate):
    doc = base(hook)
    mutate(doc)
    call(client, doc)


def test_absurd_frequency_is_not_determinable_not_infinite(client):
    """frequency 1e308/day gave doses_per_day = inf, and formatting it raised (500). The
    frequency now reads as "frequency not readable" (v2: the synthetic patient's active
    anticoagulant makes the draft a duplicate first, §10.4; the dose check cannot be done)."""
    doc = base("order-select")
    repeat = doc["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"][0]["timing"]["repeat"]
    repeat["frequency"] = 1e308
    cards = call(client, doc)["cards"]
    # v3 §19: each finding is its own card, so the duplicate (§19.9) may stand beside "not readable".
    kinds = [c["source"]["topic"]["code"] for c in cards]
    assert "not_determinable" in kinds and set(kinds) <= {"not_determinable", "duplicate_anticoagulant"}, kinds
    unreadable = cards[kinds.index("not_determinable")]
    assert "not readable" in unreadable["summary"], unreadable["summary"]
    assert "inf" not in orjson.dumps(cards).decode().lower().replace("info", "")


@pytest.mark.parametrize("text", ["2024-01-01T10:00:00+99:00", "2024-01-01T10:00:00-24:00",
                                  "2024-01-01T10:00:00+14:01", "2024-01-01T10:00:00+05:75",
                                  "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_offsets_outside_fhir_range_read_as_no_time(text):
    assert parse_datetime(text) is None


def test_fast_path_parses_like_the_general_one():
    assert parse_datetime("2024-07-03T10:11:12.1234564+05:30") == datetime(
        2024, 7, 3, 10, 11, 12, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert parse_datetime("2024-07-03T10:11:12.5") == datetime(2024, 7, 3, 10, 11, 12, 500000, tzinfo=timezone.utc)
    assert parse_datetime("2024-07-03T10:11:12-14:00").utcoffset() == timedelta(hours=-14)


@pytest.mark.parametrize("link", [5, True, {"relation": "next"}, "next"])
def test_next_link_of_a_malformed_link_field_is_none(link):
    assert next_link({"resourceType": "Bundle", "link": link}) is None


def test_feedback_timestamp_without_a_utc_form_is_a_400(client):
    """Found by the deep fuzz profile: 0001-01-01T00:00:00+14:00 made utc_iso raise OverflowError (500)."""
    item = {"card": "7d1e2c3a-0b4b-4c8e-9f5e-2a6b3c4d5e6f", "outcome": "overridden",
            "outcomeTimestamp": "0001-01-01T00:00:00+14:00"}
    resp = client.post("/cds-services/coagulopathy-risk/feedback", data=orjson.dumps(item),
                       content_type="application/json")
    assert resp.status_code == 400
    assert "outcomeTimestamp" in resp.get_json()["issue"][0]["diagnostics"]
