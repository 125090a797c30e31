"""clinical-rules §18.1: one test per patient-view catalogue row, through real HTTP (Flask test
client). Every card also passes the §18.2 checker (tests/conftest.py) and hook_helpers' checks."""
from __future__ import annotations

import json

import pytest

from hook_helpers import actions, body_for, kind, medication, only_card, post
from v2_bodies import (add_condition, add_encounter, add_hit, add_order, as_patient_view, drop, platelet_history,
                       set_lab)

ANTIPLATELET_LINE = "Do not add an antiplatelet for COVID-19 [ISTH 2023]."
NEURAXIAL_LINE = "Neuraxial catheter or puncture: follow the timing rules (boxed warning)."


def pv(client, name: str, *edits):
    body = body_for(name)
    if body["hook"] != "patient-view":
        as_patient_view(body)
    for edit in edits:
        edit(body)
    return body, post(client, body)


def creates(card) -> list[dict]:
    return [a["resource"] for a in actions(card) if a["type"] == "create"]


def deletes(card) -> list[str]:
    return [a["resourceId"] for a in actions(card) if a["type"] == "delete"]


# -- contraindicated ---------------------------------------------------------------------------------
def test_contraindicated_with_an_active_anticoagulant_is_critical_and_deletes_it(client):
    _, payload = pv(client, "contraindicated",
                    lambda b: add_order(b, "enox-active-1", "enoxaparin", dose=40))
    card = only_card(payload)
    assert (card["indicator"], kind(card)) == ("critical", "contraindicated")
    assert card["summary"] == ("Anticoagulation contraindicated (active bleeding) but enoxaparin 40 mg SC daily "
                               "is active")
    (s,) = card["suggestions"]
    assert [a["type"] for a in s["actions"]] == ["delete"]
    assert deletes(card) == ["MedicationRequest/enox-active-1"]


def test_contraindicated_without_anticoagulant_is_a_warning_for_mechanical_prophylaxis(client):
    _, payload = pv(client, "contraindicated")
    card = only_card(payload)
    assert (card["indicator"], kind(card)) == ("warning", "contraindicated")
    assert card["summary"] == "Pharmacological prophylaxis contraindicated (active bleeding): consider mechanical"
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert "intermittent pneumatic compression" in card["detail"]


# -- heparin-specific ----------------------------------------------------------------------------------
def test_hit_history_with_a_heparin_active_deletes_it_and_creates_fondaparinux_in_one_suggestion(client):
    _, payload = pv(client, "hit", lambda b: add_order(b, "enox-hit-1", "enoxaparin", dose=40))
    card = only_card(payload)
    assert (card["indicator"], kind(card)) == ("warning", "contraindicated")   # hit_history: warning
    assert card["summary"].endswith("but enoxaparin 40 mg SC daily is active")
    (s,) = card["suggestions"]
    assert [a["type"] for a in s["actions"]] == ["create", "delete"]
    assert medication(s["actions"][0]["resource"]) == ("861360", 2.5, "mg", (1, 1, "d"))   # §19.13: the product SCD, not the ingredient
    assert deletes(card) == ["MedicationRequest/enox-hit-1"]


def test_hit_history_with_nothing_active_is_heparin_avoidance_with_fondaparinux(client):
    _, payload = pv(client, "hit")
    card = only_card(payload)
    assert (card["indicator"], kind(card)) == ("warning", "heparin_avoidance")
    assert card["summary"] == "HIT history: avoid heparins; consider fondaparinux 2.5 mg SC daily" or \
        card["summary"].endswith(": avoid heparins; consider fondaparinux 2.5 mg SC daily")
    (resource,) = creates(card)
    assert medication(resource) == ("861360", 2.5, "mg", (1, 1, "d"))   # §19.13: the product SCD, not the ingredient
    assert NEURAXIAL_LINE in card["detail"]      # §19.13 changes this: every anticoagulant suggestion


# -- duplicates ---------------------------------------------------------------------------------------
def test_two_anticoagulants_active_is_a_duplicate_warning_without_suggestions(client):
    def two(body):
        add_order(body, "enox-dup-1", "enoxaparin", dose=40)
        add_order(body, "apix-dup-1", "apixaban", dose=5, per_day=2, route=None)
    _, payload = pv(client, "nothing-to-say", lambda b: drop(b, "medications", "active-enox"), two)
    card = only_card(payload)
    assert kind(card) == "duplicate_anticoagulant"
    # apixaban 5 mg twice daily is therapeutic-class, enoxaparin 40 mg prophylactic: warning (§10.4)
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Two anticoagulants active: ")
    assert "enoxaparin" in card["summary"] and "apixaban" in card["summary"]
    assert "suggestions" not in card


# -- de-escalation --------------------------------------------------------------------------------------
def test_therapeutic_heparin_with_platelets_42_is_a_review_to_the_prophylactic_dose(client):
    def edit(body):
        set_lab(body, "platelets", 42)
        add_order(body, "enox-ther-1", "enoxaparin", dose=70, per_day=2)
    _, payload = pv(client, "d-dimer-ward", edit)
    card = only_card(payload)
    assert (card["indicator"], kind(card)) == ("warning", "deescalate")
    assert card["summary"] == "On therapeutic enoxaparin with platelets 42 ×10³/µL: consider prophylactic dose"
    (s,) = card["suggestions"]
    assert [a["type"] for a in s["actions"]] == ["create", "delete"]
    assert medication(s["actions"][0]["resource"])[1:] == (40, "mg", (1, 1, "d"))
    assert deletes(card) == ["MedicationRequest/enox-ther-1"]
    assert NEURAXIAL_LINE in card["detail"]


# -- therapeutic candidate --------------------------------------------------------------------------------
def test_ward_patient_is_a_therapeutic_candidate_with_two_alternatives(client):
    _, payload = pv(client, "d-dimer-ward")
    card = only_card(payload)
    # 70 kg x 1 mg/kg = 70 mg q12h (CrCl >= 30); D-dimer 4.2 / 0.5 = 8.4x ULN
    assert (card["indicator"], kind(card)) == ("warning", "therapeutic_candidate")
    assert card["summary"] == "Ward, O2, D-dimer 8.4× ULN: consider therapeutic enoxaparin 70 mg SC q12h"
    assert card["selectionBehavior"] == "at-most-one"
    therapeutic, prophylactic = card["suggestions"]
    assert medication(therapeutic["actions"][0]["resource"])[1:] == (70, "mg", (1, 12, "h"))
    assert medication(prophylactic["actions"][0]["resource"])[1:] == (40, "mg", (1, 1, "d"))
    assert sum(bool(s.get("isRecommended")) for s in card["suggestions"]) <= 1
    assert ANTIPLATELET_LINE in card["detail"] and NEURAXIAL_LINE in card["detail"]


def test_therapeutic_candidate_over_120_kg_gets_anti_xa_with_the_therapeutic_target(client):
    def heavy(body):
        set_lab(body, "weight", 125)
    _, payload = pv(client, "d-dimer-ward", heavy)
    card = only_card(payload)
    assert kind(card) == "therapeutic_candidate"
    # 125 kg -> 125 mg -> nearest 10 mg, 5 rounds up: 130 mg q12h; anti-Xa target 0.5-1.0 (q12h)
    therapeutic = card["suggestions"][0]
    types = [a["resource"]["resourceType"] for a in therapeutic["actions"]]
    assert types == ["MedicationRequest", "ServiceRequest"]
    assert medication(therapeutic["actions"][0]["resource"])[1] == 130
    assert "0.5-1" in therapeutic["actions"][1]["description"]


def test_therapeutic_candidate_on_prophylaxis_is_info_with_create_and_delete_together(client):
    _, payload = pv(client, "d-dimer-ward", lambda b: add_order(b, "enox-pro-1", "enoxaparin", dose=40))
    card = only_card(payload)
    assert (card["indicator"], kind(card)) == ("info", "therapeutic_candidate")
    assert card["summary"] == ("On enoxaparin 40 mg SC daily; ward, O2, D-dimer 8.4× ULN: therapeutic dose "
                               "is an option")
    (s,) = card["suggestions"]
    assert [a["type"] for a in s["actions"]] == ["create", "delete"]
    assert deletes(card) == ["MedicationRequest/enox-pro-1"]


# -- prophylaxis ------------------------------------------------------------------------------------------
def test_signal_with_nothing_active_is_a_prophylaxis_suggestion(client):
    _, payload = pv(client, "sic-positive")
    card = only_card(payload)
    # ICU (HFNC), SIC 5, D-dimer 3.6 / 0.5 = 7.2x ULN, BMI 88 / 1.7^2 = 30.4 -> 60 mg daily
    assert (card["indicator"], kind(card)) == ("warning", "prophylaxis_suggestion")
    # §19.13 changes this: the summary names the dose reason (BMI), the signal moves to the why line
    assert card["summary"] == "No prophylaxis ordered; BMI 30.4: consider enoxaparin 60 mg SC daily"
    assert [medication(r)[1:] for r in creates(card) if r["resourceType"] == "MedicationRequest"] == \
        [(60, "mg", (1, 1, "d"))]
    # §19.7 changes v2: no anti-Xa for the BMI 30-<40 tier (escalated_dose removed)
    assert "ServiceRequest" not in [r["resourceType"] for r in creates(card)]
    assert NEURAXIAL_LINE in card["detail"]


def test_no_signal_nothing_active_is_standard_prophylaxis(client):
    _, payload = pv(client, "standard-prophylaxis", lambda b: drop(b, "procedures", "nasal"))
    card = only_card(payload)
    assert (card["indicator"], kind(card)) == ("info", "standard_prophylaxis")
    assert card["summary"] == "No prophylaxis ordered; BMI 22: consider enoxaparin 40 mg SC daily"   # §19.13
    (resource,) = creates(card)
    assert medication(resource) == ("854235", 40, "mg", (1, 1, "d"))


def test_pregnant_patient_gets_the_obstetric_protocol_and_no_order(client):
    def pregnant(body):
        drop(body, "procedures", "nasal")
        add_condition(body, "preg-1", "77386006", system="http://snomed.info/sct", days_ago=100, text="pregnancy")
    _, payload = pv(client, "standard-prophylaxis", pregnant)
    card = only_card(payload)
    assert (card["indicator"], kind(card)) == ("info", "standard_prophylaxis")
    assert card["summary"] == "No VTE prophylaxis ordered: follow the obstetric protocol"
    assert "suggestions" not in card


def test_active_standard_dose_at_bmi_42_is_a_dose_review_warning_without_suggestions(client):
    def edit(body):   # no oxygen record: severity unknown, so the prophylaxis pathway (not a candidate)
        drop(body, "procedures", "nasal")
        add_order(body, "enox-40-bmi", "enoxaparin", dose=40)
    _, payload = pv(client, "bmi-42", edit)
    card = only_card(payload)
    assert (card["indicator"], kind(card)) == ("warning", "dose_review")      # cards.bmi_tier2_indicator
    assert card["summary"] == "Enoxaparin 40 mg SC daily ordered; BMI 42.2: consider 80 mg SC daily"
    assert "suggestions" not in card


def test_nothing_to_say_is_exactly_empty(client):
    _, payload = pv(client, "nothing-to-say")
    assert payload == {"cards": []}


@pytest.mark.parametrize("name", ["sic-positive", "d-dimer-ward", "contraindicated", "hit", "standard-prophylaxis"])
def test_at_most_one_card_and_no_v1_leftovers(client, name):
    _, payload = pv(client, name)
    assert len(payload["cards"]) <= 1
    text = json.dumps(payload)
    for leftover in ("For information", "IU/kg would be", "**Scores**", "**Inputs**", "Decision support only",
                     "dose unknown", "cds.example.org/\""):
        assert leftover not in text


def test_two_therapeutic_anticoagulants_are_a_critical_duplicate(client):
    def two(body):
        add_order(body, "enox-ther-2", "enoxaparin", dose=70, per_day=2)
        add_order(body, "apix-ther-2", "apixaban", dose=5, per_day=2, route=None)
    _, payload = pv(client, "d-dimer-ward", two)
    card = only_card(payload)
    assert (card["indicator"], kind(card)) == ("critical", "duplicate_anticoagulant")
    assert card["summary"] == "Two anticoagulants active: enoxaparin 70 mg SC q12h and apixaban 5 mg q12h"


def test_no_create_while_a_non_heparin_anticoagulant_runs(client):
    def edit(body):   # HIT history, a heparin and argatroban active: stop the heparin, never add fondaparinux
        add_order(body, "enox-hit-2", "enoxaparin", dose=40)
        add_order(body, "arga-1", "argatroban", dose=None, route=None)
    _, payload = pv(client, "hit", edit)
    card = only_card(payload)
    assert kind(card) == "contraindicated"
    assert [a["type"] for a in actions(card)] == ["delete"]
    assert deletes(card) == ["MedicationRequest/enox-hit-2"]      # never the argatroban


def test_hit_history_with_argatroban_running_and_no_heparin_gives_no_card(client):
    _, payload = pv(client, "hit", lambda b: add_order(b, "arga-2", "argatroban", dose=None, route=None))
    assert payload == {"cards": []}


# -- rows that need the v2 data (Encounters, HIT onset, platelet trend, other indication) ----------------
def test_acute_hit_with_heparin_active_is_critical_and_deletes_every_heparin(client):
    def edit(body):
        add_hit(body, days_ago=20)
        set_lab(body, "platelets", 120)
        add_order(body, "ufh-acute-1", "heparin", dose=5000, unit="units", per_day=2)
    _, payload = pv(client, "standard-prophylaxis", edit)
    card = only_card(payload)
    assert (card["indicator"], kind(card)) == ("critical", "hit_acute")
    assert card["summary"].startswith("Acute HIT (onset ")
    assert card["summary"].endswith("platelets 120 ×10³/µL): stop all heparin; therapeutic non-heparin agent")
    assert deletes(card) == ["MedicationRequest/ufh-acute-1"] and not creates(card)


def test_platelet_fall_on_heparin_is_a_hit_suspected_warning(client):
    def edit(body):
        add_order(body, "enox-long-1", "enoxaparin", dose=40, hours_ago=8 * 24)
        set_lab(body, "platelets", 110)
        platelet_history(body, [(260, 6)])
    _, payload = pv(client, "nothing-to-say", lambda b: drop(b, "medications", "active-enox"), edit)
    card = only_card(payload)
    # 260 -> 110: a 58 % fall since heparin started (>= 50 %)
    assert (card["indicator"], kind(card)) == ("warning", "hit_suspected")
    assert card["summary"] == "Platelets fell 58 % on heparin: assess for HIT (4Ts)"
    assert "suggestions" not in card


def test_critically_ill_on_therapeutic_heparin_started_this_admission_is_deescalated(client):
    def edit(body):
        add_encounter(body)
        add_order(body, "enox-icu-1", "enoxaparin", dose=90, per_day=2, hours_ago=24)
    _, payload = pv(client, "sic-positive", edit)
    card = only_card(payload)
    assert (card["indicator"], kind(card)) == ("warning", "deescalate")
    assert card["summary"] == "Critically ill on therapeutic enoxaparin: consider prophylactic dose unless VTE"
    (s,) = card["suggestions"]
    assert [a["type"] for a in s["actions"]] == ["create", "delete"]
    assert medication(s["actions"][0]["resource"])[1:] == (60, "mg", (1, 1, "d"))    # BMI 30.4 regimen
    assert deletes(card) == ["MedicationRequest/enox-icu-1"]


def test_contraindicated_with_another_indication_has_no_suggestion_and_says_review(client):
    def edit(body):
        add_order(body, "apix-af-1", "apixaban", dose=5, per_day=2, route=None)
        add_condition(body, "af-1", "49436004", system="http://snomed.info/sct", days_ago=400, text="AF")
    _, payload = pv(client, "contraindicated", edit)
    card = only_card(payload)
    assert (card["indicator"], kind(card)) == ("critical", "contraindicated")
    assert "suggestions" not in card
    assert "review with the treating team" in card["detail"]


def test_home_medicine_counts_as_an_anticoagulant(client):
    def edit(body):
        drop(body, "procedures", "nasal")
        add_order(body, "apix-home-2", "apixaban", dose=5, per_day=2, route=None, kind="MedicationStatement")
    _, payload = pv(client, "standard-prophylaxis", edit)
    assert payload == {"cards": []}        # no "no VTE prophylaxis ordered" reminder: apixaban is present


def test_values_are_shown_as_the_lab_reported_them(client):
    # §18.2: creatinine 190 µmol/L stays "190 µmol/L" (v1 showed "2.149 mg/dL"); no FHIR ids
    def umol(body):
        drop(body, "procedures", "nasal")
        for e in body["prefetch"]["labs"]["entry"]:
            r = e["resource"]
            if "creatinine" in r["id"]:
                r["code"] = {"coding": [{"system": "http://loinc.org", "code": "14682-9"}], "text": "creatinine"}
                r["valueQuantity"] = {"value": 190, "unit": "umol/L", "system": "http://unitsofmeasure.org",
                                      "code": "umol/L"}
    _, payload = pv(client, "standard-prophylaxis", umol)
    card = only_card(payload)
    assert "creatinine 190 µmol/L" in card["detail"]
    assert "mg/dL" not in card["detail"] and "2.149" not in card["detail"]
