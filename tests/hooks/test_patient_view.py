"""coagulopathy-risk (patient-view): one test per card kind, through the Flask test client with
full prefetch. Expected values are worked out by hand from clinical-rules.md (shown inline)."""
from __future__ import annotations

import json

import pytest

from cds_service import create_app
from cds_service.cards import vocabulary as vocab
from hook_helpers import LOINC, RXNORM, SNOMED, actions, kind, medication, only_card, run


def _policy_app(tmp_path, **keys):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(keys))
    return create_app({"database": str(tmp_path / "p.sqlite3"), "policy": str(path)}).test_client()


def test_sic_positive_icu_patient_gets_bmi_dose_and_anti_xa(client):
    body, payload = run(client, "sic-positive")
    card = only_card(payload)
    # SIC: platelets 95 (<100) 2 + INR 1.3 1 + SOFA-4 2 = 5, positive. D-dimer 3.6 / 0.5 = 7.2x.
    # BMI 88 / 1.70^2 = 30.45 -> 60 mg once daily (bmi_ge_30). HFNC: critically ill.
    # §19.13 changes this: the summary names the dose reason (BMI), the signal moves to the why line
    assert card["summary"] == "No prophylaxis ordered; BMI 30.4: consider enoxaparin 60 mg SC daily"
    assert card["indicator"] == "warning" and kind(card) == "prophylaxis_suggestion"
    assert card["selectionBehavior"] == "any"
    # §19.7 changes v2: no anti-Xa at the BMI 30-<40 tier (escalated_dose removed): one suggestion
    (drug,) = card["suggestions"]
    (create,) = drug["actions"]
    mr = create["resource"]
    assert medication(mr) == ("854238", 60, "mg", (1, 1, "d"))
    assert mr["medicationCodeableConcept"]["text"] == "enoxaparin 60 mg/0.6 mL prefilled syringe"
    assert mr["dosageInstruction"][0]["route"]["coding"][0] == {"system": SNOMED, "code": "34206005"}
    assert mr["subject"] == {"reference": "Patient/example-sic"}
    assert mr["encounter"] == {"reference": "Encounter/enc-sic"}
    detail = card["detail"]
    # §18.2 order: why (values as reported), dose, (check), evidence; nothing else
    assert detail.index("**Why:**") < detail.index("**Dose:**") < detail.index("**Evidence:**")
    assert "platelets 95 ×10³/µL" in detail and "D-dimer 3.6 mg/L" in detail
    assert "BMI 30.4" in detail and "CrCl 69.9 mL/min" in detail
    assert "**Scores**" not in detail and "| Platelets |" not in detail and "Sources" not in detail
    # critically ill (HFNC): the evidence line is the critical-illness one, and it is linked
    # §19.13 changes this: current evidence (ASH 2022 / ISTH 2022 + 2023 update / CHEST 2022)
    assert "ASH 2022 (critically ill: prophylactic dose)" in detail and "ISTH 2022 and its 2023 update" in detail
    assert {link["url"] for link in card["links"]} >= {vocab.EVIDENCE["ash_2022_critical"][1]}


def test_d_dimer_ward_patient_is_a_therapeutic_candidate(client):
    _, payload = run(client, "d-dimer-ward")
    card = only_card(payload)
    # Low-flow O2, D-dimer 4.2 / 0.5 = 8.4x > 1, no caution, not critically ill: §13.1 candidate.
    # 70 kg x 1 mg/kg = 70 mg every 12 h (CrCl 75 >= 30); the prophylactic alternative 40 mg daily.
    assert card["summary"] == "Ward, O2, D-dimer 8.4× ULN: consider therapeutic enoxaparin 70 mg SC q12h"
    assert card["indicator"] == "warning" and kind(card) == "therapeutic_candidate"
    assert card["selectionBehavior"] == "at-most-one"
    assert [medication(s["actions"][0]["resource"])[1:] for s in card["suggestions"]] == \
        [(70, "mg", (1, 12, "h")), (40, "mg", (1, 1, "d"))]
    assert "Do not add an antiplatelet for COVID-19 [ISTH 2023]." in card["detail"]


def test_active_bleeding_with_nothing_active_is_a_warning_without_suggestions(client):
    _, payload = run(client, "contraindicated")
    card = only_card(payload)
    assert card["indicator"] == "warning" and kind(card) == "contraindicated"
    assert card["summary"] == ("Pharmacological prophylaxis contraindicated (active bleeding): "
                               "consider mechanical")
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert "Condition/" not in card["detail"]                # no FHIR ids in clinician text
    assert "pneumatic compression" in card["detail"]
    assert {r["code"] for r in card["overrideReasons"]} >= {"contraindication-not-current", "data-inaccurate"}


def test_hit_history_offers_fondaparinux_not_heparin(client):
    _, payload = run(client, "hit")
    card = only_card(payload)
    # CrCl: IBW 45.5 + 0.9055 x 7.6 = 52.38; 64 > 62.86 -> AdjBW 57.03;
    # (140 - 49) x 57.03 / (72 x 0.7) x 0.85 = 87.5 >= 30, 64 kg >= 50 -> fondaparinux 2.5 mg daily.
    assert card["indicator"] == "warning" and kind(card) == "heparin_avoidance"
    assert card["summary"].endswith(": avoid heparins; consider fondaparinux 2.5 mg SC daily")
    (suggestion,) = card["suggestions"]
    mr = suggestion["actions"][0]["resource"]
    assert medication(mr) == ("861360", 2.5, "mg", (1, 1, "d"))   # §19.13: the product SCD, not the ingredient
    assert mr["medicationCodeableConcept"]["coding"][0]["system"] == RXNORM
    assert "CrCl 87.5 mL/min" in card["detail"]
    text = json.dumps(card["suggestions"]).lower()
    assert "enoxaparin" not in text and "heparin" not in text.replace("fondaparinux", "")


def test_not_determinable_with_an_active_matching_order_says_nothing(client):
    # v2 (§16 cards.not_determinable "none" in patient-view): on 40 mg that matches, no card.
    _, payload = run(client, "not-determinable")
    assert payload == {"cards": []}


def test_nothing_to_say_is_exactly_empty(client):
    _, payload = run(client, "nothing-to-say")
    assert payload == {"cards": []}


def test_signal_with_an_active_prophylaxis_at_another_dose_is_a_dose_review_without_creates(client):
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
    # BMI 30.45: 40 mg daily at BMI 30-<40 is not wrong by any guideline: info (cards.bmi_tier1_indicator)
    assert (card["indicator"], kind(card)) == ("info", "dose_review")
    assert card["summary"] == "Enoxaparin 40 mg daily ordered; BMI 30.4: consider 60 mg SC daily"
    assert "suggestions" not in card     # patient-view has no draft to update; a create would duplicate


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

    def as_patient_view(body):   # the CrCl 22.4 patient, chart opened, nothing ordered, no O2 record
        body["hook"] = "patient-view"
        del body["context"]["selections"], body["context"]["draftOrders"]
        body["prefetch"]["procedures"]["entry"] = []

    _, payload = run(client, "crcl-22", mutate=as_patient_view)
    card = only_card(payload)
    assert kind(card) == "standard_prophylaxis"
    # §19.13 changes this: the summary names the dose reason
    assert card["summary"] == "No prophylaxis ordered; CrCl 22.4 mL/min: consider heparin (UFH) 5,000 units SC q12h"
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
    card = only_card(payload)
    assert kind(card) == "prophylaxis_suggestion"            # cautions_unchecked: prophylaxis pathway
    assert "therapeutic" not in card["summary"] and "1 mg/kg" not in card["detail"]
    assert "**Check:** no platelet count and haemoglobin in the last 72 h." in card["detail"]
