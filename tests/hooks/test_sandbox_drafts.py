"""Issue 21 (Sandbox): the CDS Hooks Sandbox sends MedicationRequest.category as an object, so
the updated order failed validation and the update suggestion was silently dropped. The update
is built from the fields it needs plus the draft's valid fields; a dropped suggestion is logged."""
from __future__ import annotations

import logging

from hook_helpers import draft_entries, kind, only_card, run


def _malform(field: str, value):
    def mutate(body):
        for resource in draft_entries(body).values():
            if resource["resourceType"] == "MedicationRequest":
                resource[field] = value
    return mutate


def _updates(card):
    return [a["resource"] for s in card.get("suggestions", ()) for a in s["actions"] if a["type"] == "update"]


def test_a_sandbox_category_object_keeps_the_update_suggestion(client, caplog):
    sandbox_category = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                    "code": "inpatient"}]}
    with caplog.at_level(logging.INFO, logger="cds_service.hooks.order_check"):
        body, payload = run(client, "crcl-22", mutate=_malform("category", sandbox_category))
    card = only_card(payload)
    assert kind(card) == "dose_correction"
    [updated] = _updates(card)
    draft = draft_entries(body)[f"MedicationRequest/{updated['id']}"]
    assert "category" not in updated and updated["subject"] == draft["subject"] and updated["status"] == "draft"
    assert updated["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 30
    built = [r for r in caplog.records if "without the draft's malformed fields" in r.getMessage()]
    assert built and built[0].fields["fields"] == ["category"]


def test_a_suggestion_that_cannot_be_made_valid_is_dropped_with_a_log_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="cds_service.hooks.order_check"):
        _, payload = run(client, "crcl-22", mutate=_malform("intent", {"text": "Jane Roe MRN-1"}))
    card = only_card(payload)
    assert _updates(card) == []  # the card still says what to change
    dropped = [r for r in caplog.records if r.getMessage().startswith("update suggestion dropped")]
    assert dropped and "intent" in dropped[0].fields["reason"] and "MRN-1" not in dropped[0].fields["reason"]
