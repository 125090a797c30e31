"""anticoagulant-order-check (order-select) and anticoagulant-order-sign (order-sign): each
dose correction, the product switch, contraindication, escalation, and the silent cases.
Update/delete targets are checked against draftOrders in hook_helpers.check_response."""
from __future__ import annotations

import copy

from cds_service.web.app import create_app
from hook_helpers import LOINC, draft_entries, kind, medication, only_card, run


def _without(resource: dict, *keys: str) -> dict:
    out = copy.deepcopy(resource)
    for key in keys:
        out.pop(key, None)
    return out


def _update(card: dict) -> dict:
    (action,) = card["suggestions"][0]["actions"]
    assert action["type"] == "update"
    return action["resource"]


def _assert_only_dose_changed(body: dict, updated: dict, medication_changed: bool) -> dict:
    draft = draft_entries(body)[f"MedicationRequest/{updated['id']}"]
    assert updated["status"] == "draft"
    ignore = ("dosageInstruction", "medicationCodeableConcept") if medication_changed else ("dosageInstruction",)
    assert _without(updated, *ignore) == _without(draft, *ignore)
    return draft


def test_bmi_42_40mg_becomes_80mg_with_anti_xa(client):
    body, payload = run(client, "bmi-42")
    card = only_card(payload)
    # BMI 115 / 1.65^2 = 42.2 >= 40 -> 80 mg once daily; anti-Xa for BMI >= 40 (and escalated dose).
    assert card["summary"] == "Enoxaparin 40 mg SC daily at BMI 42.2: consider 80 mg SC daily"
    assert card["indicator"] == "warning" and kind(card) == "dose_correction"
    assert card["selectionBehavior"] == "any"
    updated = _update(card)
    assert updated["id"] == "draft-enox-obese"
    _assert_only_dose_changed(body, updated, medication_changed=True)
    # The 40 mg syringe no longer fits: the product coding follows the new strength (SCD 80 mg).
    assert medication(updated) == ("854241", 80, "mg", (1, 1, "d"))
    assert updated["medicationCodeableConcept"]["text"] == "enoxaparin 80 mg/0.8 mL prefilled syringe"
    # §19.7 changes v2's anti-Xa order: in order hooks the advice is one line of this card
    assert len(card["suggestions"]) == 1
    assert "Anti-Xa (expert opinion" in card["detail"] and "0.2-0.5 IU/mL" in card["detail"]


def test_crcl_22_40mg_becomes_30mg(client):
    body, payload = run(client, "crcl-22")
    card = only_card(payload)
    # IBW 50 + 0.9055 x 19.6 = 67.75; TBW 70 within 1.2 x IBW -> IBW;
    # (140 - 78) x 67.75 / (72 x 2.6) = 22.4 mL/min < 30 -> 30 mg once daily (renal row).
    assert card["summary"] == "Enoxaparin 40 mg SC daily at CrCl 22.4 mL/min: consider 30 mg SC daily"
    updated = _update(card)
    _assert_only_dose_changed(body, updated, medication_changed=True)
    assert medication(updated) == ("854228", 30, "mg", (1, 1, "d"))
    # Renal impairment: anti-Xa with a trough as well (§19.7: a line, not an order).
    assert len(card["suggestions"]) == 1 and "trough < 0.5" in card["detail"]


def test_1mg_per_kg_q12h_at_crcl_below_30_becomes_q24h(client):
    body, payload = run(client, "q12h-renal")
    card = only_card(payload)
    # IBW 50 + 0.9055 x 22.6 = 70.46; TBW 80 <= 84.6 -> IBW; (140 - 70) x 70.46 / (72 x 2.4) = 28.5.
    # 80 mg q12h = 1 mg/kg per dose (therapeutic, ward patient): same mg once daily (label).
    assert card["summary"] == "Enoxaparin 80 mg SC q12h at CrCl 28.5 mL/min: consider 80 mg SC daily"
    # §19.3 changes the urgency: any twice-daily dose above 30 mg at CrCl 15-<30 is critical
    assert (card["indicator"], kind(card)) == ("critical", "dose_above_maximum")
    updated = _update(card)
    draft = _assert_only_dose_changed(body, updated, medication_changed=False)
    assert updated["medicationCodeableConcept"] == draft["medicationCodeableConcept"]   # same syringe
    assert medication(updated) == ("854241", 80, "mg", (1, 1, "d"))
    assert medication(draft)[3] == (1, 12, "h")


def test_hit_switch_is_create_then_delete_of_the_draft(client):
    body, payload = run(client, "hit-switch")
    card = only_card(payload)
    # v2 §18.4: HIT history (over 100 days or undated) with a heparin draft is a warning
    assert card["indicator"] == "warning" and kind(card) == "product_switch"
    assert card["summary"] == "HIT history: replace enoxaparin 40 mg SC daily with fondaparinux 2.5 mg SC daily"
    (suggestion,) = card["suggestions"]
    create, delete = suggestion["actions"]
    assert create["type"] == "create" and delete["type"] == "delete"   # create first (sandbox)
    assert delete == {"type": "delete", "description": delete["description"],
                      "resourceId": "MedicationRequest/draft-enox-hit"}
    new = create["resource"]
    assert new["id"] != "draft-enox-hit"
    assert medication(new) == ("861360", 2.5, "mg", (1, 1, "d"))   # §19.13: the product SCD, not the ingredient
    assert new["subject"] == draft_entries(body)["MedicationRequest/draft-enox-hit"]["subject"]


def test_contraindicated_draft_is_critical_without_suggestions(client):
    def bleeding(body):
        body["prefetch"]["conditions"]["entry"].append({"resource": {
            "resourceType": "Condition", "id": "gi-bleed", "subject": {"reference": "Patient/example-obese"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "K92.2"}]}},
            "search": {"mode": "match"}})

    _, payload = run(client, "bmi-42", mutate=bleeding)
    card = only_card(payload)
    assert card["indicator"] == "critical" and kind(card) == "contraindicated"
    assert card["summary"] == "Enoxaparin 40 mg SC daily contraindicated (active bleeding)"
    assert "mechanical prophylaxis" in card["detail"]
    # §19.1 changes v2: with no HIT, no other indication and no ECMO the stop deletes the draft
    (s,) = card["suggestions"]
    assert [(a["type"], a["resourceId"]) for a in s["actions"]] == [("delete", "MedicationRequest/draft-enox-obese")]
    assert card["overrideReasons"]


def test_therapeutic_draft_in_critically_ill_warns_with_evidence(client):
    body, payload = run(client, "escalation-icu")
    card = only_card(payload)
    # 80 mg q12h at 82 kg = 0.98 mg/kg per dose (>= 0.7: therapeutic); IMV -> critically ill.
    assert kind(card) == "escalation_warning" and card["indicator"] == "warning"
    assert card["summary"] == "Therapeutic-dose enoxaparin while critically ill: prophylactic dose unless VTE"
    assert "critically ill (IMV)" in card["detail"] and "ASH 2021/2022" in card["detail"]
    # §19.2 changes v2: no one-click update of a therapeutic draft (an uncoded PE must never be
    # under-treated by one click)
    assert "suggestions" not in card


def test_intermediate_heparin_draft_in_critically_ill_is_updated_to_the_regimen(client):
    # §19.2: the one exception: 40 mg twice daily at 82 kg (0.49 mg/kg, intermediate), IMV
    def bid40(body):
        _draft(body)["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 40
    body, payload = run(client, "escalation-icu", mutate=bid40)
    card = only_card(payload)
    assert kind(card) == "escalation_warning" and card["indicator"] == "warning"
    updated = _update(card)
    _assert_only_dose_changed(body, updated, medication_changed=True)
    assert medication(updated)[1:] == (40, "mg", (1, 1, "d"))


def test_right_dose_no_medication_and_unselected_drafts_give_no_cards(client):
    assert run(client, "dose-ok")[1] == {"cards": []}
    assert run(client, "no-medication")[1] == {"cards": []}

    def select_other(body):   # the 40 mg draft is there but not selected
        body["context"]["draftOrders"]["entry"].append({"resource": {
            "resourceType": "MedicationRequest", "id": "other", "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/example-obese"}}})
        body["context"]["selections"] = ["MedicationRequest/other"]

    assert run(client, "bmi-42", mutate=select_other)[1] == {"cards": []}


def test_order_sign_checks_every_draft_and_ignores_non_anticoagulants(client):
    body, payload = run(client, "sign-bmi-42")
    assert "selections" not in body["context"]
    card = only_card(payload)   # the paracetamol draft gives nothing
    assert kind(card) == "dose_correction"
    assert _update(card)["id"] == "draft-enox-obese"


def _no_body_60_mg(body):
    body["prefetch"]["body"] = {"resourceType": "Bundle", "type": "searchset"}
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 60


def _no_height_60_mg(body):
    bundle = body["prefetch"]["body"]
    bundle["entry"] = [e for e in bundle.get("entry", []) if "height" not in e["resource"]["id"]]
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 60


def test_undeterminable_draft_gives_no_card_by_default(client):
    """§16 (v2): cards.not_determinable defaults to "none" (weight known, height missing: the BMI
    tier of 60 mg daily cannot be checked)."""
    _, payload = run(client, "bmi-42", mutate=_no_height_60_mg)
    assert payload["cards"] == []


def test_no_weight_60_mg_daily_is_intermediate_and_said(client):
    """§19.0/§19.2 change v2's silence here (review-v3 H7): with no weight, §10.3 classes 60 mg once
    daily as intermediate, so renal function unknown and the escalation warning are said."""
    _, payload = run(client, "bmi-42", mutate=_no_body_60_mg)
    assert payload["cards"] and all(c["indicator"] == "warning" for c in payload["cards"])


def test_undeterminable_draft_names_the_missing_height(tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text('{"cards.not_determinable": "info_card"}')   # the site turned it on
    client = create_app({"database": str(tmp_path / "cds.sqlite3"), "policy": str(policy)}).test_client()
    _, payload = run(client, "bmi-42", mutate=_no_height_60_mg)
    card = only_card(payload)
    # 60 mg once daily with no height: BMI unknown, so the BMI tier cannot be checked.
    assert kind(card) == "not_determinable" and card["indicator"] == "info"
    assert "height" in card["summary"]


def _draft(body):
    return body["context"]["draftOrders"]["entry"][0]["resource"]


def test_right_dose_with_anti_xa_indicated_gives_an_info_card_with_the_lab_order(client):
    def already_80(body):
        _draft(body)["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 80

    _, payload = run(client, "bmi-42", mutate=already_80)
    # 80 mg once daily is the BMI >= 40 dose; §19.7 changes v2's anti-Xa card: in order hooks the
    # advice is a line inside another card, never a card of its own, so the right dose is silent
    assert payload["cards"] == []


def test_draft_on_top_of_an_active_therapeutic_order_warns_of_duplication(client):
    def active_treatment(body):
        active = copy.deepcopy(_draft(body))
        active.update(id="active-treatment", status="active")
        # 120 mg q12h at 115 kg = 1.04 mg/kg per dose: therapeutic.
        active["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 120
        active["dosageInstruction"][0]["timing"]["repeat"] = {"frequency": 1, "period": 12, "periodUnit": "h"}
        del active["medicationCodeableConcept"]["coding"]
        active["medicationCodeableConcept"]["coding"] = [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                           "code": "67108"}]
        body["prefetch"]["medications"]["entry"] = [{"resource": active, "search": {"mode": "match"}}]

    _, payload = run(client, "bmi-42", mutate=active_treatment)
    card = only_card(payload)
    assert kind(card) == "duplicate_anticoagulant" and card["indicator"] == "warning"
    assert "suggestions" not in card
    assert card["summary"] == "Enoxaparin 40 mg SC daily drafted while enoxaparin 120 mg SC q12h is active"


def test_iv_heparin_changed_to_prophylaxis_gets_the_subcutaneous_route(tmp_path):
    """An update that turns an IV infusion into 5,000 U every 12 h must not keep the IV route."""
    import json

    from cds_service import create_app
    from hook_helpers import SNOMED

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"renal.preferred_agent": "heparin"}))
    client = create_app({"database": str(tmp_path / "p.sqlite3"), "policy": str(policy)}).test_client()

    def mutate(body):
        # Creatinine 4.0: (140 - 63) x IBW 73.2 / (72 x 4.0) = 19.6 mL/min -> regimen UFH 5,000 U q12h.
        for e in body["prefetch"]["labs"]["entry"]:
            if "creatinine" in e["resource"]["id"]:
                e["resource"]["valueQuantity"]["value"] = 4.0
        draft = body["context"]["draftOrders"]["entry"][0]["resource"]
        draft["medicationCodeableConcept"] = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                          "code": "5224"}], "text": "heparin infusion"}
        draft["dosageInstruction"] = [{
            "route": {"coding": [{"system": SNOMED, "code": "47625008"}]},   # intravenous
            "doseAndRate": [{"rateQuantity": {"value": 18, "unit": "[iU]/kg/h", "system": "http://unitsofmeasure.org",
                                              "code": "[iU]/kg/h"}}]}]
    _, payload = run(client, "escalation-icu", mutate=mutate)
    card = only_card(payload)
    assert kind(card) == "escalation_warning"
    # §19.2 changes v2: a UFH infusion is therapeutic intensity: no one-click update at all
    assert "suggestions" not in card
    # the route rule itself (an IV draft updated to SC prophylaxis drops the IV route)
    from cds_service.fhir.codes import load_codes
    from cds_service.cards.orders import updated_draft
    from cds_service.logic.order_check import Proposed
    from cds_service.fhir.orders import normalise_order
    body = run(client, "escalation-icu", mutate=mutate)[0]
    resource = body["context"]["draftOrders"]["entry"][0]["resource"]
    codes = load_codes(None)
    new = updated_draft(codes, resource, normalise_order(resource, codes, {}), Proposed("heparin", None, 5000, 2))
    assert new["dosageInstruction"][0]["route"]["coding"][0] == {"system": SNOMED, "code": "34206005"}



def test_dose_and_cutoff_in_notes_follow_the_policy():
    """Note text names dosing.pending_weight_mg and renal.crcl_cutoff, never a fixed 40 mg / 30."""
    from cds_service.cards import content as c
    from cds_service.logic.policy import Policy

    policy = Policy.default().with_overrides({"dosing.pending_weight_mg": 30, "renal.crcl_cutoff": 35.0})
    lines = c.note_lines(["pending_weight", "renal_trough_anti_xa"], policy)
    assert lines == ["- Weight or height unknown: 30 mg pending a recorded weight.",
                     "- CrCl below 35 mL/min: also check a trough anti-Xa before the next dose."]
    assert c.label(c.ANTI_XA_REASON_TEXT, "crcl_lt_30", policy) == "CrCl < 35 mL/min"
