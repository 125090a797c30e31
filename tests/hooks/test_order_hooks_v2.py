"""clinical-rules §18.4 (order-select, order-sign), one test or more per bullet, through HTTP."""
from __future__ import annotations

import json

from cds_service import create_app
from hook_helpers import actions, body_for, kind, medication, only_card, post
from v2_bodies import RXNORM, UCUM, add_hit, add_order, drop, platelet_history, set_lab


def draft_body(name: str, *edits):
    body = body_for(name)
    for edit in edits:
        edit(body)
    return body


def set_draft(body: dict, *, rxnorm: str | None = None, dose: float | None = None, unit: str = "mg",
              code: str = "mg", per_day: int | None = None, text: str | None = None) -> dict:
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    if rxnorm is not None:
        draft["medicationCodeableConcept"] = {"coding": [{"system": RXNORM, "code": rxnorm}],
                                              "text": text or rxnorm}
    dose_and_rate = draft["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    if dose is None:
        draft["dosageInstruction"][0].pop("doseAndRate")
    else:
        dose_and_rate.update({"value": dose, "unit": unit, "system": UCUM, "code": code})
    if per_day is not None:
        draft["dosageInstruction"][0]["timing"]["repeat"] = {
            1: {"frequency": 1, "period": 1, "periodUnit": "d"},
            2: {"frequency": 1, "period": 12, "periodUnit": "h"}}[per_day]
    return draft


def cards_for(client, body):
    return post(client, body)["cards"]


# -- duplicates (§10.4) ---------------------------------------------------------------------------------
def test_draft_on_top_of_an_active_anticoagulant_of_another_class_is_a_duplicate(client):
    body = draft_body("dose-ok", lambda b: add_order(b, "apix-home-1", "apixaban", dose=2.5, per_day=2, route=None))
    card = only_card(post(client, body))
    # apixaban 2.5 mg twice daily is prophylactic-class (and also the reduced AF dose): still a duplicate
    assert (card["indicator"], kind(card)) == ("warning", "duplicate_anticoagulant")
    assert card["summary"] == "Enoxaparin 40 mg SC daily drafted while apixaban 2.5 mg q12h is active"
    assert "suggestions" not in card


def test_same_ingredient_twice_is_a_duplicate(client):
    body = draft_body("dose-ok", lambda b: add_order(b, "enox-active-2", "enoxaparin", dose=40))
    card = only_card(post(client, body))
    assert kind(card) == "duplicate_anticoagulant" and card["indicator"] == "warning"


def test_a_doac_draft_is_checked_for_duplicates_too(client):
    def edit(body):
        set_draft(body, rxnorm="1364430", dose=5, per_day=2, text="apixaban 5 mg tablet")
        add_order(body, "enox-active-3", "enoxaparin", dose=40)
    # §19.1/§19.2: the DOAC draft is also checked (above prophylactic, no indication: its own card)
    cards = post(client, draft_body("dose-ok", edit))["cards"]
    (card,) = [c for c in cards if kind(c) == "duplicate_anticoagulant"]
    assert card["summary"].startswith("Apixaban 5 mg") and "enoxaparin 40 mg SC daily" in card["summary"]


def test_two_therapeutic_anticoagulants_drafted_and_active_are_critical(client):
    def edit(body):
        set_draft(body, dose=80, per_day=2)                  # 78 kg: 80 mg q12h is therapeutic
        add_order(body, "apix-ther-3", "apixaban", dose=5, per_day=2, route=None)
    card = post(client, draft_body("dose-ok", edit))["cards"][0]   # §19.2 escalation card follows
    assert (card["indicator"], kind(card)) == ("critical", "duplicate_anticoagulant")


# -- heparin while a non-heparin anticoagulant runs (§10.1) ---------------------------------------------
def test_heparin_draft_while_argatroban_runs_is_critical(client):
    body = draft_body("dose-ok", lambda b: add_order(b, "arga-3", "argatroban", dose=None, route=None))
    card = only_card(post(client, body))
    assert card["indicator"] == "critical"
    assert card["summary"] == "Enoxaparin drafted while argatroban runs: no heparin"
    assert [(a["type"], a["resourceId"]) for a in actions(card)] == [("delete", "MedicationRequest/draft-enox-ok")]


# -- HIT history (§18.4: warning) -----------------------------------------------------------------------------
def test_hit_history_heparin_draft_is_a_warning_switch_to_fondaparinux(client):
    card = only_card(post(client, body_for("hit-switch")))
    assert (card["indicator"], kind(card)) == ("warning", "product_switch")
    (s,) = card["suggestions"]
    assert [a["type"] for a in s["actions"]] == ["create", "delete"]
    assert medication(s["actions"][0]["resource"]) == ("861360", 2.5, "mg", (1, 1, "d"))   # §19.13: the product SCD, not the ingredient
    assert s["actions"][1]["resourceId"] == "MedicationRequest/draft-enox-hit"
    assert "CrCl" not in card["summary"]                       # v1 blamed CrCl: wrong


def test_hit_history_with_a_therapeutic_heparin_draft_still_switches_to_fondaparinux(client):
    # §18.4: the switch whenever §11 row 1 gives fondaparinux (whatever the drafted dose)
    card = only_card(post(client, draft_body("hit-switch", lambda b: set_draft(b, dose=60, per_day=2))))
    assert (card["indicator"], kind(card)) == ("warning", "product_switch")
    assert [a["type"] for a in actions(card)] == ["create", "delete"]
    # §19.6 changes v2 (2.5 mg + "if a treatment dose is intended"): 60 mg q12h at 64 kg is therapeutic
    # intensity, so the create is treatment-dose fondaparinux (50-100 kg band: 7.5 mg)
    assert medication(actions(card)[0]["resource"])[1:3] == (7.5, "mg")
    assert "treatment-dose" in card["detail"]


def test_hit_history_without_fondaparinux_deletes_the_draft_with_specialist_text(client):
    body = draft_body("hit-switch", lambda b: set_lab(b, "weight", 45))      # below the 50 kg label floor
    card = only_card(post(client, body))
    assert (card["indicator"], kind(card)) == ("warning", "heparin_avoidance")
    assert [a["type"] for a in actions(card)] == ["delete"]
    assert "haematology" in card["detail"]


# -- fondaparinux floors ----------------------------------------------------------------------------------------
def test_fondaparinux_draft_below_50_kg_is_a_warning(client):
    def edit(body):
        set_draft(body, rxnorm="321208", dose=2.5, text="fondaparinux 2.5 mg syringe")
        set_lab(body, "weight", 45)
    card = only_card(post(client, draft_body("dose-ok", edit)))
    assert (card["indicator"], kind(card)) == ("warning", "contraindicated")
    assert card["summary"] == "Fondaparinux contraindicated (weight < 50 kg)"


def test_fondaparinux_draft_at_crcl_below_30_is_a_warning(client):
    def edit(body):
        set_draft(body, rxnorm="321208", dose=2.5, text="fondaparinux 2.5 mg syringe")
    card = only_card(post(client, draft_body("crcl-22", edit)))
    assert (card["indicator"], kind(card)) == ("warning", "contraindicated")
    assert card["summary"] == "Fondaparinux contraindicated (CrCl < 30)"


# -- no escalation warning ----------------------------------------------------------------------------------
def test_ecmo_gives_no_escalation_warning(client):
    def ecmo(body):
        procs = body["prefetch"]["procedures"]["entry"]
        extra = json.loads(json.dumps(procs[0]))
        extra["resource"]["id"] = "example-icu-ecmo"
        extra["resource"]["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "233573008"}],
                                     "text": "ECMO"}
        procs.append(extra)
    cards = cards_for(client, draft_body("escalation-icu", ecmo))
    assert not [c for c in cards if kind(c) == "escalation_warning"]


def test_therapeutic_draft_for_a_therapeutic_candidate_gives_no_escalation_warning(client):
    def edit(body):   # ward, low-flow O2, D-dimer 2.4x ULN (1.2 / 0.5), 78 kg: 80 mg q12h is the recommendation
        set_draft(body, dose=80, per_day=2)
        body["prefetch"]["procedures"] = body_for("d-dimer-ward")["prefetch"]["procedures"]
        for e in body["prefetch"]["procedures"].get("entry", []):
            e["resource"]["subject"] = {"reference": f"Patient/{body['context']['patientId']}"}
    cards = cards_for(client, draft_body("dose-ok", edit))
    assert not [c for c in cards if kind(c) in ("escalation_warning", "dose_correction")]


# -- equivalents and low weight -------------------------------------------------------------------------------
def test_obesity_equivalent_40_mg_q12h_at_bmi_42_is_accepted(client):
    cards = cards_for(client, draft_body("bmi-42", lambda b: set_draft(b, dose=40, per_day=2)))
    assert not [c for c in cards if kind(c) in ("dose_correction", "escalation_warning")]


def test_30_mg_daily_under_50_kg_is_accepted(client):
    def edit(body):
        set_draft(body, dose=30)
        set_lab(body, "weight", 45)
    cards = cards_for(client, draft_body("dose-ok", edit))
    assert not [c for c in cards if kind(c) == "dose_correction"]


# -- BMI-tier urgency from the policy ----------------------------------------------------------------------------
def test_standard_dose_at_bmi_35_is_info_and_at_bmi_42_a_warning(client):
    body = draft_body("bmi-42", lambda b: set_lab(b, "weight", 95.3))          # 95.3 / 1.65^2 = 35.0
    card = only_card(post(client, body))
    assert (card["indicator"], kind(card)) == ("info", "dose_correction")
    assert card["summary"] == "Enoxaparin 40 mg SC daily at BMI 35: consider 60 mg SC daily"
    card = only_card(post(client, body_for("bmi-42")))
    assert (card["indicator"], kind(card)) == ("warning", "dose_correction")


def test_bmi_tier_urgency_follows_the_policy(tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text('{"cards.bmi_tier1_indicator": "warning"}')
    client = create_app({"database": str(tmp_path / "cds.sqlite3"), "policy": str(policy)}).test_client()
    card = only_card(post(client, draft_body("bmi-42", lambda b: set_lab(b, "weight", 95.3))))
    assert card["indicator"] == "warning"


# -- readable text ---------------------------------------------------------------------------------------------
def test_a_draft_without_a_dose_never_reads_dose_unknown_daily(client):
    body = draft_body("bmi-42", lambda b: set_draft(b, dose=None))
    for card in cards_for(client, body):
        assert "unknown daily" not in card["summary"] + card["detail"]
        assert "dose unknown" not in card["summary"]


# -- HIT acute / recent / suspected with a heparin draft: critical, delete the draft -----------------------
def test_acute_hit_and_a_heparin_draft_is_critical_with_the_draft_deleted(client):
    def edit(body):
        add_hit(body, days_ago=20)
        set_lab(body, "platelets", 120)
    card = only_card(post(client, draft_body("dose-ok", edit)))
    assert (card["indicator"], kind(card)) == ("critical", "hit_acute")
    assert [a["type"] for a in actions(card)] == ["delete"]
    assert actions(card)[0]["resourceId"] == "MedicationRequest/draft-enox-ok"
    assert "therapeutic-intensity non-heparin" in card["detail"]
    assert "fondaparinux 2.5" not in json.dumps(card)          # no prophylaxis create


def test_recent_hit_without_a_platelet_count_asks_for_one(client):
    def edit(body):
        add_hit(body, days_ago=50)
        drop(body, "labs", "platelets")
        drop(body, "platelet_trend", "platelets")
    card = only_card(post(client, draft_body("dose-ok", edit)))
    assert card["indicator"] == "critical" and kind(card) == "contraindicated"
    assert "platelet count and haematology" in card["detail"]
    assert [a["type"] for a in actions(card)] == ["delete"]


def test_platelet_fall_on_heparin_and_a_heparin_draft_asks_for_4ts(client):
    def edit(body):
        add_order(body, "enox-long-2", "enoxaparin", dose=40, hours_ago=8 * 24)
        set_lab(body, "platelets", 110)
        platelet_history(body, [(260, 6)])
    card, duplicate = post(client, draft_body("dose-ok", edit))["cards"]
    # §19.6 changes v2: a heparin draft in hit_suspected is a warning (critical once 4Ts >= 4)
    assert (card["indicator"], kind(card)) == ("warning", "hit_suspected")
    assert "4Ts" in card["detail"]
    # the enoxaparin already active is also named: the draft would duplicate it (§10.4)
    assert kind(duplicate) == "duplicate_anticoagulant"


# -- home medicines, flushes, count units ----------------------------------------------------------------------
def test_home_medicine_makes_a_draft_a_duplicate(client):
    body = draft_body("dose-ok", lambda b: add_order(b, "apix-home-3", "apixaban", dose=5, per_day=2, route=None,
                                                     kind="MedicationStatement"))
    card = only_card(post(client, body))
    assert kind(card) == "duplicate_anticoagulant"
    assert "apixaban (home medicine)" in card["summary"]


def test_heparin_flush_is_not_an_anticoagulant(client):
    def edit(body):
        # §19.4 step 3 needs the dose: 3 mL of a lock-flush product (<= 100 U/mL) is <= 300 U
        draft = set_draft(body, rxnorm="1658690", dose=3, unit="mL", code="mL", text="heparin lock flush 100 units/mL")
        draft["dosageInstruction"][0]["text"] = "flush line"
        add_order(body, "enox-active-4", "enoxaparin", dose=40)
    assert cards_for(client, draft_body("dose-ok", edit)) == []


def test_count_unit_pill_reads_as_the_product_strength(client):
    # the public sandbox sends {pill}: 1 {pill} of the 40 mg syringe (RxNorm 854235) is 40 mg
    body = draft_body("bmi-42", lambda b: set_draft(b, dose=1, unit="pill", code="{pill}"))
    card = only_card(post(client, body))
    assert (card["indicator"], kind(card)) == ("warning", "dose_correction")
    assert card["summary"] == "Enoxaparin 40 mg SC daily at BMI 42.2: consider 80 mg SC daily"


def test_acute_hit_and_a_prophylactic_fondaparinux_draft_is_critical_therapeutic_intensity(client):
    """§10.1/§13.1: acute HIT needs a therapeutic-intensity non-heparin agent; 2.5 mg is not enough,
    and the card must not call it a heparin allergy (found in the final pharmacist review)."""
    def edit(body):
        add_hit(body, days_ago=5)
        set_lab(body, "platelets", 60)
        set_draft(body, rxnorm="321208", dose=2.5, text="fondaparinux 2.5 mg SC daily")
    card = only_card(post(client, draft_body("dose-ok", edit)))
    assert (card["indicator"], kind(card)) == ("critical", "hit_acute")
    assert "therapeutic-intensity non-heparin" in card["detail"]
    assert "allergy" not in (card["summary"] + card["detail"]).lower()


def test_hit_history_is_not_hidden_by_a_home_anticoagulant_duplicate(client):
    """§18.4: with HIT history and a home DOAC, the heparin draft's HIT card comes first, and no
    fondaparinux create is offered on top of the active anticoagulant (§18.1)."""
    body = draft_body("hit-switch", lambda b: add_order(b, "apix-home-9", "apixaban", dose=5, per_day=2,
                                                        route=None, kind="MedicationStatement"))
    cards = post(client, body)["cards"]
    assert [kind(c) for c in cards] == ["heparin_avoidance", "duplicate_anticoagulant"]
    assert "HIT history" in cards[0]["summary"]
    assert [a["type"] for a in actions(cards[0])] == ["delete"]
    assert "fondaparinux" not in json.dumps(cards[0].get("suggestions", []))
