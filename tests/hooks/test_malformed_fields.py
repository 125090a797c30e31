"""Fields of the wrong shape inside resources (prefetch and draftOrders) read as absent: the
call answers 200 with what can still be said, never 500 (fhir/read.py: tolerant readers)."""
from __future__ import annotations

import pytest

from hook_helpers import kind, only_card, run


@pytest.fixture
def app_config(tmp_path):
    """These tests read what the order check says about an unreadable draft dose: the
    not-determinable card, which a site turns on (§16 cards.not_determinable, default "none")."""
    policy = tmp_path / "policy.json"
    policy.write_text('{"cards.not_determinable": "info_card"}')
    return {"database": str(tmp_path / "cds.sqlite3"), "policy": str(policy)}

DRAFT = ("context", "draftOrders", "entry", 0, "resource")
DOSAGE = DRAFT + ("dosageInstruction", 0)


def _first_entry(key):
    return ("prefetch", key, "entry", 0, "resource")


def _put(body, path, value):
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


@pytest.mark.parametrize("path,value", [
    (DRAFT + ("dosageInstruction",), {"text": "40 mg daily"}),   # an object, not a list
    (DRAFT + ("dosageInstruction",), True),
    (DOSAGE + ("doseAndRate",), 40),
    (DOSAGE + ("route", "coding"), 1),
    (DOSAGE + ("timing", "repeat", "periodUnit"), ["d"]),
    (DRAFT + ("intent",), {"code": "order"}),
])
def test_malformed_draft_dosage_reads_as_unknown(client, path, value):
    _, payload = run(client, "bmi-42", mutate=lambda b: _put(b, path, value))
    assert payload["cards"], "the draft is still an enoxaparin order to look at"


def test_draft_medication_coding_of_wrong_shape_is_an_unpicked_drug(client):
    _, payload = run(client, "bmi-42", mutate=lambda b: _put(b, DRAFT + ("medicationCodeableConcept", "coding"), 7))
    assert payload == {"cards": []}


@pytest.mark.parametrize("path,value", [
    (DOSAGE + ("doseAndRate", 0, "doseQuantity", "value"), 1e308),
    (DOSAGE + ("doseAndRate", 0, "doseQuantity", "value"), 10 ** 40),
    (DOSAGE + ("timing", "repeat", "frequency"), 10 ** 40),
])
def test_huge_draft_numbers_do_not_break_the_card(client, path, value):
    _, payload = run(client, "bmi-42", mutate=lambda b: _put(b, path, value))
    assert only_card(payload)["summary"]


@pytest.mark.parametrize("key,field,value", [
    ("labs", ("status",), ["final"]),
    ("labs", ("code", "coding"), True),
    ("body", ("status",), {"code": "final"}),
])
def test_malformed_prefetch_resource_is_skipped(client, key, field, value):
    _, payload = run(client, "sic-positive", mutate=lambda b: _put(b, _first_entry(key) + field, value))
    assert kind(only_card(payload)) in ("prophylaxis_suggestion", "standard_prophylaxis")


def test_malformed_covid_condition_is_skipped_and_is_no_scope_evidence(client):
    # v2 §1a: the patient's only COVID-19 evidence is this Condition; skipped, it is not read
    # as COVID-19, so the patient is out of scope (no cards), never a 500.
    _, payload = run(client, "sic-positive",
                     mutate=lambda b: _put(b, _first_entry("conditions") + ("verificationStatus", "coding"), 3))
    assert payload == {"cards": []}


@pytest.mark.parametrize("value", [1e308, 10 ** 40, 200000])
def test_absurd_draft_dose_is_unreadable_not_proposed_back(client, value):
    # q12h-renal: a therapeutic q12h enoxaparin draft at CrCl < 30 is proposed once daily at
    # the SAME mg; an absurd mg (> 10 g) must read as "dose unknown", never be echoed in an update.
    path = DOSAGE + ("doseAndRate", 0, "doseQuantity", "value")
    _, payload = run(client, "q12h-renal", mutate=lambda b: _put(b, path, value))
    card = only_card(payload)
    assert kind(card) == "not_determinable" and "suggestions" not in card
