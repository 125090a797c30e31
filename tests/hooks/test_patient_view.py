"""coagulopathy-risk (patient-view): one test per card kind, through the Flask test client with
full prefetch. Expected values are worked out by hand from clinical-rules.md (shown inline)."""
from __future__ import annotations

import json

import pytest

from cds_service import create_app
from cds_service.hooks import vocabulary as vocab
from hook_helpers import LOINC, RXNORM, SNOMED, actions, kind, medication, only_card, run


def _policy_app(tmp_path, **keys):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(keys))
    return create_app({"database": str(tmp_path / "p.sqlite3"), "policy": str(path)}).test_client()


def test_sic_positive_icu_patient_gets_bmi_dose_and_anti_xa(client):
    body, payload = run(client, "sic-positive")
    card = only_card(payload)
    # SIC: platelets 95 (<100) 2 + INR 1.3 (>1.2-<=1.4) 1 + SOFA-4 (P/F 180 without IMV/NIV -> 2,
    # MAP 72 -> 0, bilirubin 1.0 -> 0, creatinine 1.1 -> 0) = 2 -> 5, positive (P = 3).
    # D-dimer 3.6 / ULN 0.5 = 7.2x. BMI 88 / 1.70^2 = 30.45 -> 60 mg once daily (bmi_ge_30).
    assert card["summary"] == "SIC 5 and D-dimer 7.2× ULN: consider enoxaparin 60 mg SC daily"
    assert card["indicator"] == "warning" and kind(card) == "prophylaxis_suggestion"
    assert card["selectionBehavior"] == "any"
    drug, lab = card["suggestions"]
    (create,) = drug["actions"]
    assert create["type"] == "create"
    mr = create["resource"]
    assert medication(mr) == ("854238", 60, "mg", (1, 1, "d"))
    assert mr["medicationCodeableConcept"]["text"] == "enoxaparin 60 mg/0.6 mL prefilled syringe"
    assert mr["dosageInstruction"][0]["route"]["coding"][0] == {"system": SNOMED, "code": "34206005"}
    assert mr["subject"] == {"reference": "Patient/example-sic"}
    assert mr["encounter"] == {"reference": "Encounter/enc-sic"}
    # Anti-Xa: escalated (BMI-tier) dose -> indicated, prophylactic target 0.2-0.5, peak 4 h.
    (order_lab,) = lab["actions"]
    sr = order_lab["resource"]
    assert sr["resourceType"] == "ServiceRequest"
    assert sr["code"]["coding"][0] == {"system": LOINC, "code": "32684-3"}
    assert sr["code"]["text"] == "Anti-Xa, LMWH-calibrated"
    assert "4 h after" in sr["occurrenceTiming"]["code"]["text"]
    assert "0.2–0.5 IU/mL" in sr["note"][0]["text"]
    detail = card["detail"]
    assert "| Platelets | 95 | ×10⁹/L |" in detail and "| INR | 1.3 |" in detail
    assert "platelets 2 + INR 1 + SOFA-4 2 = **5**, positive" in detail
    # ISTH: platelets 95 (50-<100) 1 + D-dimer 7.2x 2 + PT 15.1-13.5 = 1.6 s -> 0 + fibrinogen 3.2 -> 0 = 3.
    assert "platelets 1 + D-dimer 2 + PT 0 + fibrinogen 0 = **3**, not overt" in detail
    # CrCl: IBW 50 + 0.9055 x 17.6 = 65.94; 88 > 1.2 x IBW -> AdjBW 74.76;
    # (140 - 66) x 74.76 / (72 x 1.1) = 69.9 mL/min.
    assert "BMI 30.4" in detail and "CrCl 69.9 mL/min" in detail and "adjusted body weight 74.8 kg" in detail
    assert "target 0.2–0.5 IU/mL" in detail
    assert "Evidence (critically ill)" in detail and "HFNC" in detail   # high-flow -> critically ill
    assert "Tang N et al. J Thromb Haemost 2020;18:1094-1099" in detail
    assert {link["url"] for link in card["links"]} >= {vocab.EVIDENCE["tang_2020"][1]}


def test_d_dimer_ward_patient_standard_dose_and_therapeutic_option_text(client):
    _, payload = run(client, "d-dimer-ward")
    card = only_card(payload)
    # 4.2 / 0.5 = 8.4x; BMI 70 / 1.65^2 = 25.7 -> 40 mg; SIC negative (P = 0).
    assert card["summary"] == "D-dimer 8.4× ULN: consider enoxaparin 40 mg SC daily"
    assert card["indicator"] == "warning" and kind(card) == "prophylaxis_suggestion"
    (only,) = card["suggestions"]   # no anti-Xa reason at BMI 25.7, CrCl 75
    assert medication(only["actions"][0]["resource"]) == ("854235", 40, "mg", (1, 1, "d"))
    # Low-flow oxygen, D-dimer > ULN, no caution, CrCl >= 30 -> therapeutic option, described only.
    assert "therapeutic-dose heparin is an option" in card["detail"]
    assert "1 mg/kg (actual body weight) SC every 12 h" in card["detail"]
    assert all(a["resource"]["resourceType"] == "MedicationRequest" for a in actions(card))


def test_active_bleeding_is_critical_without_any_heparin_suggestion(client):
    _, payload = run(client, "contraindicated")
    card = only_card(payload)
    assert card["indicator"] == "critical" and kind(card) == "contraindicated"
    assert card["summary"] == ("Pharmacological VTE prophylaxis contraindicated (active bleeding): "
                               "consider mechanical prophylaxis")
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert "Condition/example-bleed-bleeding" in card["detail"]
    assert "mechanical prophylaxis" in card["detail"]
    assert {r["code"] for r in card["overrideReasons"]} >= {"contraindication-not-current", "data-inaccurate"}


def test_hit_is_critical_and_offers_fondaparinux_not_heparin(client):
    _, payload = run(client, "hit")
    card = only_card(payload)
    # CrCl: IBW 45.5 + 0.9055 x 7.6 = 52.38; 64 > 62.86 -> AdjBW 57.03;
    # (140 - 49) x 57.03 / (72 x 0.7) x 0.85 = 87.5 >= 30 -> fondaparinux 2.5 mg daily.
    assert card["indicator"] == "critical" and kind(card) == "contraindicated"
    assert card["summary"] == "Heparins contraindicated (HIT history): consider fondaparinux 2.5 mg SC daily"
    (suggestion,) = card["suggestions"]
    mr = suggestion["actions"][0]["resource"]
    assert medication(mr) == ("321208", 2.5, "mg", (1, 1, "d"))
    assert mr["medicationCodeableConcept"]["coding"][0]["system"] == RXNORM
    assert "CrCl 87.5 mL/min" in card["detail"]
    text = json.dumps(card["suggestions"]).lower()
    assert "enoxaparin" not in text and "heparin" not in text.replace("fondaparinux", "")


def test_not_determinable_names_exactly_what_is_missing(client):
    _, payload = run(client, "not-determinable")   # labs 5 days old, outside the 72-h window
    card = only_card(payload)
    assert card["indicator"] == "info" and kind(card) == "not_determinable"
    assert card["summary"] == "Coagulopathy risk not determinable: no usable platelet count, INR and D-dimer"
    assert ("platelet count (none usable in the last 72 h), INR (none usable in the last 72 h) and "
            "D-dimer (none usable in the last 72 h)") in card["detail"]
    assert "suggestions" not in card


def test_not_determinable_policy_no_card(tmp_path):
    client = _policy_app(tmp_path, **{"cards.not_determinable": "no_card"})
    _, payload = run(client, "not-determinable")
    assert payload == {"cards": []}


def test_no_anticoagulant_at_all_gets_one_info_reminder(client):
    _, payload = run(client, "standard-prophylaxis")
    card = only_card(payload)
    # No trigger (D-dimer 1.8x, SIC 0); BMI 62 / 1.68^2 = 22.0 -> 40 mg.
    assert card["indicator"] == "info" and kind(card) == "standard_prophylaxis"
    assert card["summary"] == "No anticoagulant ordered: consider VTE prophylaxis with enoxaparin 40 mg SC daily"
    (suggestion,) = card["suggestions"]
    assert medication(suggestion["actions"][0]["resource"]) == ("854235", 40, "mg", (1, 1, "d"))
    assert "BMI 22 " in card["detail"]


def test_nothing_to_say_is_exactly_empty(client):
    _, payload = run(client, "nothing-to-say")
    assert payload == {"cards": []}


def test_trigger_with_an_ordered_prophylaxis_at_the_wrong_dose_names_it_without_duplicating(client):
    def active_40mg(body):
        src = json.loads(json.dumps(body["prefetch"]["medications"]))
        mr = {"resourceType": "MedicationRequest", "id": "active-40", "status": "active", "intent": "order",
              "subject": {"reference": "Patient/example-sic"},
              "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "854235"}], "text": "enox"},
              "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                                     "doseAndRate": [{"doseQuantity": {"value": 40, "unit": "mg",
                                                                       "system": "http://unitsofmeasure.org",
                                                                       "code": "mg"}}]}]}
        src["entry"] = [{"resource": mr, "search": {"mode": "match"}}]
        body["prefetch"]["medications"] = src

    _, payload = run(client, "sic-positive", mutate=active_40mg)
    card = only_card(payload)
    # The active order gives no route, so none is shown for it.
    assert card["summary"] == ("SIC 5 and D-dimer 7.2× ULN: enoxaparin 40 mg daily is ordered; "
                               "consider enoxaparin 60 mg SC daily")
    # Only the anti-Xa order is offered: a create MedicationRequest would duplicate the active one.
    assert [a["resource"]["resourceType"] for a in actions(card)] == ["ServiceRequest"]


# v2 scope (§1a): with the IMP Encounter, a COVID-19 Condition (linked or recent) is needed.
@pytest.mark.parametrize("with_covid,expected", [(False, 0), (True, 1)])
def test_require_covid_condition_gates_cards(tmp_path, with_covid, expected):
    client = _policy_app(tmp_path, **{"scope.require_covid_condition": True})

    def covid(body):
        if not with_covid:
            body["prefetch"]["conditions"] = {"resourceType": "Bundle", "type": "searchset"}

    _, payload = run(client, "sic-positive", mutate=covid)
    assert len(payload["cards"]) == expected


def test_renal_policy_preferring_heparin_suggests_ufh_in_units(tmp_path):
    client = _policy_app(tmp_path, **{"renal.preferred_agent": "heparin"})

    def as_patient_view(body):   # the CrCl 22.4 patient, chart opened, nothing ordered
        body["hook"] = "patient-view"
        del body["context"]["selections"], body["context"]["draftOrders"]

    _, payload = run(client, "crcl-22", mutate=as_patient_view)
    card = only_card(payload)
    assert kind(card) == "standard_prophylaxis"
    assert card["summary"] == ("No anticoagulant ordered: consider VTE prophylaxis with "
                               "heparin (UFH) 5,000 units SC every 12 h")
    (suggestion,) = card["suggestions"]   # no LMWH in play: no anti-Xa
    mr = suggestion["actions"][0]["resource"]
    assert medication(mr) == ("2121591", 5000, "[iU]", (1, 12, "h"))


def test_ward_patient_without_platelets_or_hb_is_not_offered_therapeutic_heparin(client):
    # d-dimer-ward (low-flow O2, D-dimer 8.4x ULN) meets the §13 therapeutic-option criteria
    # only with no bleeding caution; without a platelet count or Hb that cannot be known.
    def mutate(body):
        for key in ("labs", "platelet_trend"):   # v2: platelet counts also come under platelet_trend
            labs = body["prefetch"][key]
            labs["entry"] = [e for e in labs.get("entry", [])
                             if not any(k in e["resource"]["id"] for k in ("platelets", "hemoglobin"))]
    _, payload = run(client, "d-dimer-ward", mutate=mutate)
    detail = only_card(payload)["detail"]
    assert "therapeutic-dose heparin is an option" not in detail and "1 mg/kg" not in detail
    assert "platelets below 50 ×10⁹/L and haemoglobin below 8 g/dL cannot be ruled out" in detail
