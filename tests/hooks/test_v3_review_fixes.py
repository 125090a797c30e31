"""The independent v3 review's harm findings (review-v3.md H1-H10), each through HTTP (Flask test
client), written from clinical-rules §19. Every body is a reference example with the edits an EHR
would send."""
from __future__ import annotations

from hook_helpers import actions, kind, post
from test_order_check_v3 import draft, example
from v2_bodies import add_hit, add_order, set_lab


def _heparin_infusion(body: dict, draft_id: str = "ufh-draft") -> dict:
    """A second draft: heparin (UFH) infusion 1,000 units/h IV."""
    first = body["context"]["draftOrders"]["entry"][0]["resource"]
    import copy
    d = copy.deepcopy(first)
    d["id"] = draft_id
    d["medicationCodeableConcept"] = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                  "code": "5224"}], "text": "heparin infusion"}
    d["dosageInstruction"] = [{"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
                               "doseAndRate": [{"rateQuantity": {"value": 1000, "unit": "units/h",
                                                                 "system": "http://unitsofmeasure.org",
                                                                 "code": "[iU]/h"}}]}]
    body["context"]["draftOrders"]["entry"].append({"resource": d})
    return d


# -- H1: HIT/argatroban + CrCl < 30 or renal replacement + enoxaparin 40 mg daily: an answer, never a 500 ----------
def test_hit_history_at_crcl_below_30_with_enoxaparin_40_daily_is_the_hit_card_not_a_500(client):
    # §18.4/§19.6: HIT history and a heparin draft -> warning, delete the draft (fondaparinux impossible
    # at CrCl < 30); §19.0: the check fails closed, never silence and never a 500.
    for creatinine in (3.0, 5.0):                           # 64 kg: CrCl about 23 and 14 mL/min
        body = example(creatinine=creatinine)
        add_hit(body, days_ago=400)
        d = draft(body, "enoxaparin", 40)
        cards = post(client, body)["cards"]
        hit = [c for c in cards if kind(c) in ("heparin_avoidance", "hit_acute", "product_switch")]
        assert hit, [c["summary"] for c in cards]
        assert ("delete", f"MedicationRequest/{d['id']}") in [(a["type"], a.get("resourceId")) for a in actions(hit[0])]
        assert not any(a["type"] in ("update", "create") for c in cards for a in actions(c))


def test_acute_hit_at_crcl_below_15_with_enoxaparin_40_daily_is_critical_hit_acute(client):
    body = example(creatinine=5.0)
    add_hit(body, days_ago=10)
    set_lab(body, "platelets", 60)
    draft(body, "enoxaparin", 40)
    cards = post(client, body)["cards"]
    assert (cards[0]["indicator"], kind(cards[0])) == ("critical", "hit_acute")


def test_argatroban_running_at_crcl_below_15_with_enoxaparin_40_daily_is_answered(client):
    # §10.1/§19.9: a heparin draft while argatroban runs is a critical duplicate
    body = example(creatinine=5.0)
    add_order(body, "arg-1", "argatroban", dose=None, route=None)
    draft(body, "enoxaparin", 40)
    cards = post(client, body)["cards"]
    assert cards and cards[0]["indicator"] == "critical"
    assert not any(a["type"] in ("update", "create") for c in cards for a in actions(c))


def test_order_sign_one_renal_hit_draft_does_not_lose_the_other_drafts_cards(client):
    body = example(creatinine=3.0)
    body["hook"] = "order-sign"
    body["context"].pop("selections", None)
    add_hit(body, days_ago=400)
    draft(body, "enoxaparin", 40)
    ufh = _heparin_infusion(body)
    cards = post(client, body)["cards"]
    deleted = {a.get("resourceId") for c in cards for a in actions(c) if a["type"] == "delete"}
    assert f"MedicationRequest/{ufh['id']}" in deleted


# -- H2: acute HIT with an active VKA: name and stop warfarin, vitamin K (§19.1), in both hooks --------------------
def _acute_hit_on_warfarin(with_heparin: bool) -> dict:
    body = example()
    add_hit(body, days_ago=10)
    set_lab(body, "platelets", 60)
    add_order(body, "warf-1", "warfarin", dose=5, route=None)
    if with_heparin:
        add_order(body, "ufh-1", "heparin", dose=5000, unit="units", per_day=2)
    return body


def _deleted(card: dict) -> set:
    return {a.get("resourceId") for a in actions(card) if a["type"] == "delete"}


def test_patient_view_acute_hit_with_heparin_and_warfarin_stops_both_and_says_vitamin_k(client):
    from v2_bodies import as_patient_view
    cards = post(client, as_patient_view(_acute_hit_on_warfarin(with_heparin=True)))["cards"]
    card = cards[0]
    assert (card["indicator"], kind(card)) == ("critical", "hit_acute")
    assert "warfarin" in card["summary"] and "vitamin K" in card["summary"]
    assert {"MedicationRequest/warf-1", "MedicationRequest/ufh-1"} <= _deleted(card)


def test_order_select_heparin_draft_in_acute_hit_on_warfarin_stops_warfarin_too(client):
    body = _acute_hit_on_warfarin(with_heparin=True)
    d = draft(body, "enoxaparin", 40)
    cards = post(client, body)["cards"]
    card = cards[0]
    assert (card["indicator"], kind(card)) == ("critical", "hit_acute")
    assert "warfarin" in card["summary"] and "vitamin K" in card["summary"]
    # the draft is deleted; the active warfarin order is named, not deleted (order hooks may delete only
    # draftOrders entries, CDS Hooks notes §12)
    assert f"MedicationRequest/{d['id']}" in _deleted(card) and "warfarin" in card["detail"]


def test_order_select_argatroban_draft_in_acute_hit_on_warfarin_says_stop_warfarin_not_overlap(client):
    body = _acute_hit_on_warfarin(with_heparin=False)
    d = body["context"]["draftOrders"]["entry"][0]["resource"]
    d["medicationCodeableConcept"] = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                  "code": "15202"}], "text": "argatroban"}
    d["dosageInstruction"] = [{"doseAndRate": [{"rateQuantity": {"value": 2, "unit": "ug/kg/min",
                                                                 "system": "http://unitsofmeasure.org",
                                                                 "code": "ug/kg/min"}}]}]
    cards = post(client, body)["cards"]
    vka = [c for c in cards if "vitamin K" in c["summary"]]
    assert vka and vka[0]["indicator"] == "critical" and "warfarin" in vka[0]["summary"]
    # no card endorsing the argatroban-warfarin overlap (stop argatroban at INR > 4) in acute HIT
    assert not any("INR > 4" in c["summary"] + c["detail"] or kind(c) == "duplicate_anticoagulant" for c in cards)


# -- H3: acute HIT with platelets < 25 and no bleeding: the hit_acute card, never "no anticoagulant" (§19.1) ----------
def _acute_hit_platelets_20(*, heparin: bool, bleeding: bool = False) -> dict:
    from v2_bodies import add_condition, as_patient_view
    body = example()
    add_hit(body, days_ago=10)
    set_lab(body, "platelets", 20)
    if heparin:
        add_order(body, "ufh-1", "heparin", dose=5000, unit="units", per_day=2)
    if bleeding:
        add_condition(body, "gib-1", "K92.2", days_ago=1, text="GI haemorrhage")
    return as_patient_view(body)


def test_patient_view_acute_hit_platelets_20_on_heparin_is_hit_acute_stop_heparin(client):
    card = post(client, _acute_hit_platelets_20(heparin=True))["cards"][0]
    assert (card["indicator"], kind(card)) == ("critical", "hit_acute")
    assert "no anticoagulant" not in card["detail"].lower() and "consider stopping" not in card["detail"]
    assert "therapeutic" in card["detail"] and "MedicationRequest/ufh-1" in _deleted(card)


def test_patient_view_acute_hit_platelets_20_without_heparin_is_hit_acute_not_mechanical_only(client):
    card = post(client, _acute_hit_platelets_20(heparin=False))["cards"][0]
    assert (card["indicator"], kind(card)) == ("critical", "hit_acute")
    assert "no anticoagulant" not in card["detail"].lower()


def test_patient_view_acute_hit_with_bleeding_says_stop_not_consider_stopping(client):
    card = post(client, _acute_hit_platelets_20(heparin=True, bleeding=True))["cards"][0]
    assert card["indicator"] == "critical"
    assert "consider stopping" not in card["detail"] and "stop" in card["detail"]


# -- H6: HIT on ECMO: never "usually a UFH infusion"; no one-click fondaparinux for circuit heparin (§19.4) ----------
def _on_ecmo(body: dict) -> dict:
    from v3_bodies import ECMO, add_procedure
    add_procedure(body, ECMO, hours_ago=48)
    return body


def test_acute_hit_on_ecmo_lmwh_draft_never_recommends_a_ufh_infusion(client):
    for drug, dose in (("enoxaparin", 40), ("fondaparinux", 7.5)):
        body = _on_ecmo(example())
        add_hit(body, days_ago=10)
        set_lab(body, "platelets", 60)
        draft(body, drug, dose)
        cards = post(client, body)["cards"]
        text = " ".join(c["summary"] + c["detail"] for c in cards)
        assert "UFH infusion" not in text, drug
        assert "bivalirudin or argatroban" in text, drug


def test_hit_history_on_ecmo_heparin_infusion_draft_is_not_switched_to_fondaparinux(client):
    body = _on_ecmo(example())
    add_hit(body, days_ago=400)
    d = body["context"]["draftOrders"]["entry"][0]["resource"]
    d["medicationCodeableConcept"] = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                  "code": "5224"}], "text": "heparin infusion"}
    d["dosageInstruction"] = [{"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
                               "doseAndRate": [{"rateQuantity": {"value": 1000, "unit": "units/h",
                                                                 "system": "http://unitsofmeasure.org",
                                                                 "code": "[iU]/h"}}]}]
    cards = post(client, body)["cards"]
    assert cards, "HIT history and a heparin draft: a card (§19.6)"
    assert not any(a["type"] == "create" for c in cards for a in actions(c))
    assert "fondaparinux" not in " ".join(c["summary"] for c in cards)
    assert any("bivalirudin or argatroban" in c["detail"] for c in cards)


def test_patient_view_hit_history_on_ecmo_does_not_stop_the_circuit_heparin_by_one_click(client):
    from v2_bodies import as_patient_view
    from v3_bodies import add_heparin
    body = _on_ecmo(example())
    add_hit(body, days_ago=400)
    add_heparin(body, "ufh-ecmo", units_per_ml=100, bag_ml=250, rate_u_h=1000)
    cards = post(client, as_patient_view(body))["cards"]
    assert cards
    assert not any(a["type"] in ("delete", "create") for c in cards for a in actions(c))
    assert any("bivalirudin or argatroban" in c["detail"] for c in cards)
    assert not any("argatroban at CrCl" in c["detail"] for c in cards)


# -- H4: HIT within 100 days or suspected is the indication for a therapeutic non-heparin draft (§19.1, §19.2) ------
def test_acute_hit_treatment_dose_fondaparinux_is_not_told_to_use_the_prophylactic_dose(client):
    body = example()                                          # 64 kg: 7.5 mg is the labelled band
    add_hit(body, days_ago=10)
    set_lab(body, "platelets", 60)
    draft(body, "fondaparinux", 7.5)
    cards = post(client, body)["cards"]
    assert not any(kind(c) == "escalation_warning" or "prophylactic dose" in c["detail"] for c in cards)


def test_recent_hit_with_recovered_platelets_therapeutic_apixaban_gets_no_escalation(client):
    body = example()
    add_hit(body, days_ago=20)                                # hit_recent: within 100 days, platelets recovered
    set_lab(body, "platelets", 200)
    draft(body, "apixaban", 5, per_day=2)
    cards = post(client, body)["cards"]
    assert not any(kind(c) == "escalation_warning" for c in cards)


# -- H10: a HIT / bleeding / pregnancy Condition is never dropped for an irrelevant invalid field ----------------------
def _empty_strings(condition: dict, where: str) -> None:
    if where == "display":
        condition["code"]["coding"][0]["display"] = ""
    elif where == "text":
        condition["code"]["text"] = ""
    elif where == "status display":
        condition["clinicalStatus"]["coding"][0]["display"] = ""


def test_hit_condition_with_an_empty_display_or_text_still_blocks_heparin(client):
    from v2_bodies import as_patient_view
    for where in ("display", "text", "status display"):
        body = example()
        cond = add_hit(body, days_ago=400)
        cond["code"]["coding"][0]["display"] = "HIT"
        cond["clinicalStatus"]["coding"][0]["display"] = "Active"
        _empty_strings(cond, where)
        draft(body, "enoxaparin", 40)
        cards = post(client, body)["cards"]
        assert any(kind(c) in ("product_switch", "heparin_avoidance") for c in cards), where
        pv = post(client, as_patient_view(body))["cards"]
        assert not any(kind(c) == "therapeutic_candidate" for c in pv), where


def test_bleeding_and_pregnancy_conditions_with_an_empty_display_are_read(client):
    from v2_bodies import add_condition
    body = example()
    cond = add_condition(body, "gib-1", "K92.2", days_ago=1, text="GI haemorrhage")
    cond["code"]["coding"][0]["display"] = ""
    draft(body, "apixaban", 5, per_day=2)
    card = post(client, body)["cards"][0]
    assert (card["indicator"], kind(card)) == ("critical", "contraindicated")
    body = example()
    cond = add_condition(body, "preg-1", "77386006", system="http://snomed.info/sct", days_ago=100, text="")
    draft(body, "warfarin", 5)
    card = post(client, body)["cards"][0]
    assert card["indicator"] == "critical" and "pregnancy" in card["summary"]


# -- H5: patient-view: an active enoxaparin 40 mg daily at CrCl < 15 or on renal replacement (§19.3, §18.1) -----------
def test_patient_view_active_enoxaparin_40_daily_at_crcl_below_15_is_a_dose_review(client):
    from v2_bodies import as_patient_view
    body = example(creatinine=7.0)                            # 64 kg: CrCl about 12 mL/min
    add_order(body, "enox-1", "enoxaparin", dose=40)
    card = post(client, as_patient_view(body))["cards"][0]
    assert (card["indicator"], kind(card)) == ("warning", "dose_review")
    assert "UFH" in card["summary"] or "heparin" in card["summary"].lower()


def test_patient_view_active_enoxaparin_40_daily_on_haemodialysis_is_a_dose_review_naming_dialysis(client):
    from v2_bodies import as_patient_view
    from test_order_check_v3 import add_dialysis
    body = example()
    add_dialysis(body)
    add_order(body, "enox-1", "enoxaparin", dose=40)
    card = post(client, as_patient_view(body))["cards"][0]
    assert (card["indicator"], kind(card)) == ("warning", "dose_review")
    assert "CrCl" not in card["summary"]


# -- H7: weight unknown: enoxaparin 60 or 80 mg once daily is intermediate (§10.3), never silent (§19.0, §19.2) --------
def test_weight_unknown_enoxaparin_60_or_80_daily_is_not_silent(client):
    from v2_bodies import drop
    for dose in (60, 80):
        body = example()
        drop(body, "body", "weight")
        drop(body, "bedside", "weight")
        draft(body, "enoxaparin", dose)
        cards = post(client, body)["cards"]
        assert cards, dose
        assert any(c["indicator"] in ("warning", "critical") for c in cards), dose


# -- H8/H9: flush, pressure bag and lock by §19.4, concentration from units ÷ dispensed volume, frequency capped ------
def _heparin_order(body: dict, rid: str, *, dose: dict, timing: dict | None = None, dispense_ml: float | None = None,
                   strength: tuple | None = None, text: str = "heparin") -> dict:
    from v2_bodies import _entries, iso
    from datetime import datetime, timedelta, timezone
    pid = body["context"]["patientId"]
    dosage = {"text": text, "doseAndRate": [{"doseQuantity": dose}]}
    if timing:
        dosage["timing"] = timing
    r = {"resourceType": "MedicationRequest", "id": rid, "status": "active", "intent": "order",
         "subject": {"reference": f"Patient/{pid}"},
         "authoredOn": iso(datetime.now(timezone.utc) - timedelta(hours=24)), "dosageInstruction": [dosage]}
    coding = [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "5224"}]
    if strength:
        r["contained"] = [{"resourceType": "Medication", "id": "med", "code": {"coding": coding},
                           "ingredient": [{"itemCodeableConcept": {"coding": coding}, "strength": {
                               "numerator": {"value": strength[0], "system": "http://unitsofmeasure.org", "code": "[iU]"},
                               "denominator": {"value": strength[1], "system": "http://unitsofmeasure.org", "code": "mL"}}}]}]
        r["medicationReference"] = {"reference": "#med"}
    else:
        r["medicationCodeableConcept"] = {"coding": coding, "text": text}
    if dispense_ml:
        r["dispenseRequest"] = {"quantity": {"value": dispense_ml, "unit": "mL", "system": "http://unitsofmeasure.org",
                                             "code": "mL"}}
    if body["context"].get("encounterId"):
        r["encounter"] = {"reference": f"Encounter/{body['context']['encounterId']}"}
    _entries(body, "medications").append({"resource": r, "search": {"mode": "match"}})
    return r


U = {"system": "http://unitsofmeasure.org", "code": "[iU]", "unit": "units"}
ML = {"system": "http://unitsofmeasure.org", "code": "mL", "unit": "mL"}
HOURLY = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "h"}}
Q4H = {"repeat": {"frequency": 1, "period": 4, "periodUnit": "h"}}
Q8H = {"repeat": {"frequency": 1, "period": 8, "periodUnit": "h"}}


def _duplicate_with_enoxaparin(client, body) -> bool:
    draft(body, "enoxaparin", 40)
    return any(kind(c) == "duplicate_anticoagulant" for c in post(client, body)["cards"])


def test_pressure_bag_concentration_from_dose_over_dispensed_volume_is_not_exposure(client):
    # §19.4 step 2 with data requirements §8a (units ÷ volume): 1,000 U, dispense 500 mL = 2 U/mL
    body = example()
    _heparin_order(body, "bag-1", dose={"value": 1000, **U}, dispense_ml=500,
                   text="heparin 1,000 units in 500 mL sodium chloride 0.9%, arterial line pressure bag")
    assert not _duplicate_with_enoxaparin(client, body)


def test_hourly_flush_and_four_hourly_lock_are_exposure(client):
    # §19.4 is silent on frequency; chosen conservatively: more often than a flush (every 6 h) or a lock
    # (daily) plausibly is, it is exposure (an hourly 500 U "flush" is 12,000 U a day)
    cases = [dict(dose={"value": 10, **ML}, timing=HOURLY, strength=(25000, 500), text="heparin 10 mL every hour"),
             dict(dose={"value": 5, **ML}, timing=HOURLY, strength=(100, 1), text="heparin flush 5 mL every hour"),
             dict(dose={"value": 5, **ML}, timing=Q4H, strength=(5000, 1), text="heparin catheter lock every 4 h")]
    for case in cases:
        body = example()
        _heparin_order(body, "hep-1", **case)
        assert _duplicate_with_enoxaparin(client, body), case["text"]


def test_an_eight_hourly_500_unit_flush_stays_a_flush(client):
    body = example()
    _heparin_order(body, "flush-1", dose={"value": 5, **ML}, timing=Q8H, strength=(100, 1), text="heparin flush")
    assert not _duplicate_with_enoxaparin(client, body)


# -- M2: on haemodialysis cards name the modality, never the post-dialysis CrCl or creatinine (§19.3) ------------------
def test_haemodialysis_cards_never_show_the_post_dialysis_crcl(client):
    import re
    from v2_bodies import as_patient_view
    from test_order_check_v3 import add_dialysis
    bodies = []
    pv = example(creatinine=2.2)                              # post-dialysis creatinine: CrCl about 35
    add_dialysis(pv)
    bodies.append(as_patient_view(pv))
    for dose, per_day in ((80, 1), (40, 1), (60, 1)):
        b = example(creatinine=2.2)
        add_dialysis(b)
        draft(b, "enoxaparin", dose, per_day=per_day)
        bodies.append(b)
    for b in bodies:
        cards = post(client, b)["cards"]
        assert cards
        for c in cards:
            text = c["summary"] + c["detail"]
            assert not re.search(r"CrCl \d", text) and "creatinine" not in text, text
            assert "haemodialysis" in text


# -- M3: at BMI >= 40 a lower daily dose is never one click (§19.11) ----------------------------------------------------
def test_bmi_49_9_enoxaparin_60_q12h_is_not_cut_to_80_daily_by_one_click(client):
    body = example(weight=152.8)                              # height of dose-ok: BMI about 49.9 at 152.8 kg
    draft(body, "enoxaparin", 60, per_day=2)
    cards = post(client, body)["cards"]
    assert not any(a["type"] == "update" and "80" in a["description"] for c in cards for a in actions(c))


# -- M4: a prophylactic strength given too often, no indication: no one-click treatment dose ----------------------------
def test_prophylactic_strength_too_often_without_indication_gets_no_one_click_treatment_dose(client):
    for drug, dose, per_day in (("enoxaparin", 40, 4), ("fondaparinux", 2.5, 2)):
        body = example()
        set_lab(body, "d-dimer", 0.4)                         # no signal: not a therapeutic candidate
        draft(body, drug, dose, per_day=per_day)
        cards = post(client, body)["cards"]
        assert cards[0]["indicator"] == "critical" and kind(cards[0]) == "dose_above_maximum"
        assert not any(a["type"] == "update" for c in cards for a in actions(c)), drug


# -- M6: BMI >= 40 at CrCl < 30: a twice-daily prophylactic-intent draft is not cut to 30 mg daily by one click ---------
def test_bmi_over_40_crcl_below_30_enoxaparin_40_q12h_is_not_updated_to_30_mg(client):
    import re
    body = example(weight=135, creatinine=5.0)                # BMI about 44, CrCl below 30 on the policy weight
    draft(body, "enoxaparin", 40, per_day=2)
    cards = post(client, body)["cards"]
    assert cards and cards[0]["indicator"] == "critical"
    assert not any(a["type"] == "update" for c in cards for a in actions(c))
    assert any("obesity" in c["detail"] for c in cards)
    for c in cards:   # one CrCl per card
        assert len(set(re.findall(r"CrCl ([\d.]+)", c["summary"] + c["detail"]))) <= 1


# -- M16: CRRT circuit heparin: no escalation for a UFH infusion draft, no one-click SC UFH on top (§19.2, §19.4) --------
def _on_crrt_with_circuit_heparin() -> dict:
    from v3_bodies import CRRT, add_heparin, add_procedure
    body = example()
    add_procedure(body, CRRT, hours_ago=24)
    add_heparin(body, "ufh-crrt", units_per_ml=100, bag_ml=250, rate_u_h=500,
                text="heparin 25,000 units/250 mL: 500 units/h into the CRRT circuit, pre-filter")
    return body


def test_crrt_circuit_heparin_and_an_lmwh_draft_gets_the_duplicate_card_only(client):
    body = _on_crrt_with_circuit_heparin()
    draft(body, "enoxaparin", 40)
    cards = post(client, body)["cards"]
    assert any(kind(c) == "duplicate_anticoagulant" for c in cards)
    assert not any(a["type"] == "update" for c in cards for a in actions(c))


def test_crrt_circuit_heparin_and_a_ufh_infusion_draft_gets_no_escalation(client):
    body = _on_crrt_with_circuit_heparin()
    d = body["context"]["draftOrders"]["entry"][0]["resource"]
    d["medicationCodeableConcept"] = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                  "code": "5224"}], "text": "heparin infusion"}
    d["dosageInstruction"] = [{"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
                               "doseAndRate": [{"rateQuantity": {"value": 1000, "unit": "units/h",
                                                                 "system": "http://unitsofmeasure.org",
                                                                 "code": "[iU]/h"}}]}]
    cards = post(client, body)["cards"]
    assert not any(kind(c) == "escalation_warning" for c in cards)


# -- M17: UFH 7,500 U q8h above 100 kg is prophylaxis (§19.0), never "corrected" to 5,000 U ------------------------------
def test_ufh_7500_q8h_at_105_kg_is_not_corrected_down(client):
    body = example(weight=105)                                # BMI about 34: the weight rule, not the BMI rule
    draft(body, "heparin", 7500, per_day=3, unit="U")
    cards = post(client, body)["cards"]
    assert not any(a["type"] == "update" for c in cards for a in actions(c))
    assert not any(kind(c) == "escalation_warning" for c in cards)


def test_a_hit_condition_that_must_be_dropped_is_said_in_both_hooks(client):
    # §19.0 fails closed: a HIT record with an unreadable onset (a field the rules read) cannot be
    # used, but its loss is said, never silence
    from v2_bodies import as_patient_view
    body = example()
    cond = add_hit(body, days_ago=400)
    cond["onsetDateTime"] = "2024-13-45"
    draft(body, "enoxaparin", 40)
    cards = post(client, body)["cards"]
    assert any(c["indicator"] == "warning" and "HIT record could not be read" in c["summary"] for c in cards)
    pv = post(client, as_patient_view(body))["cards"]
    assert pv and "HIT record could not be read" in pv[0]["summary"]


# -- M7: acute HIT + a VKA draft: no "VKA bridge" info card ------------------------------------------------------------
def test_acute_hit_vka_draft_is_never_called_a_bridge(client):
    body = example()
    add_hit(body, days_ago=10)
    set_lab(body, "platelets", 60)
    add_order(body, "ufh-1", "heparin", dose=5000, unit="units", per_day=2)
    draft(body, "warfarin", 5, route_sc=False)
    cards = post(client, body)["cards"]
    assert cards[0]["indicator"] == "critical"
    assert not any("bridge" in (c["summary"] + c["detail"]).lower() for c in cards)
    assert not any(c["indicator"] == "info" for c in cards)


# -- M12: no anti-Xa advice inside a card that deletes or replaces the LMWH (§19.7) --------------------------------------
def test_no_anti_xa_line_in_a_card_that_removes_the_lmwh(client):
    from test_order_check_v3 import add_dialysis
    bodies = []
    b = example()
    add_dialysis(b)
    draft(b, "enoxaparin", 80)                                # §19.3 delete card on haemodialysis
    bodies.append(b)
    b = example(weight=45)
    add_hit(b, days_ago=400)                                   # HIT history, < 50 kg: avoid, delete
    draft(b, "enoxaparin", 40)
    bodies.append(b)
    for b in bodies:
        cards = post(client, b)["cards"]
        removing = [c for c in cards if any(a["type"] == "delete" for a in actions(c))]
        assert removing
        assert not any("Anti-Xa" in c["detail"] for c in removing)


# -- M5: dalteparin: the label's syringe for 200 IU/kg is never "above the maximum" (§19.2 product step) ----------------
def test_dalteparin_weight_band_syringes_are_not_above_the_maximum(client):
    for weight, dose in ((60, 12500), (70, 15000), (86, 18000), (64, 12900)):
        body = example(weight=weight)
        draft(body, "dalteparin", dose, unit="U")
        cards = post(client, body)["cards"]
        assert not any(kind(c) == "dose_above_maximum" for c in cards), (weight, dose)
    body = example(weight=70)
    draft(body, "dalteparin", 17500, unit="U")                 # above the 15,000 IU syringe at 70 kg
    assert any(kind(c) == "dose_above_maximum" for c in post(client, body)["cards"])


# -- M18: edoxaban 30 mg daily is a reduced treatment dose, not prophylaxis (§19.0: only where labelled) -----------------
def test_edoxaban_30_mg_daily_with_no_indication_gets_the_escalation_warning(client):
    body = example()
    set_lab(body, "d-dimer", 0.4)
    draft(body, "edoxaban", 30)
    cards = post(client, body)["cards"]
    assert any(kind(c) == "escalation_warning" for c in cards)


# -- M15: frequency unreadable, but a single dose already above any maximum: critical, not only "not checked" -------------
def test_enoxaparin_150_mg_without_frequency_at_64_kg_is_critical(client):
    body = example(weight=64)
    d = draft(body, "enoxaparin", 150)
    d["dosageInstruction"][0].pop("timing", None)
    cards = post(client, body)["cards"]
    assert cards[0]["indicator"] == "critical" and kind(cards[0]) == "dose_above_maximum"
    body = example(weight=64)
    d = draft(body, "enoxaparin", 40)
    d["dosageInstruction"][0].pop("timing", None)
    assert all(c["indicator"] != "critical" for c in post(client, body)["cards"])


# -- M14: SC UFH has an upper bound: 25,000 U SC q12h at 64 kg is not "intermediate" --------------------------------------
def test_sc_ufh_25000_q12h_at_64_kg_is_critical_above_the_maximum(client):
    body = example(weight=64)
    draft(body, "heparin", 25000, per_day=2, unit="U")
    cards = post(client, body)["cards"]
    assert cards[0]["indicator"] == "critical" and kind(cards[0]) == "dose_above_maximum"
    assert not any("Intermediate" in c["summary"] for c in cards)
    body = example(weight=64)
    draft(body, "heparin", 15000, per_day=2, unit="U")       # 234 U/kg: a treatment dose, not above it
    cards = post(client, body)["cards"]
    assert not any(kind(c) == "dose_above_maximum" for c in cards)
    assert not any("Intermediate" in c["summary"] for c in cards)


# -- M8: patient-view reads a recorded 4Ts like the order hooks (§19.6) -------------------------------------------------
def test_patient_view_platelet_fall_with_4ts_5_is_critical_and_stops_the_heparin(tmp_path):
    from test_order_check_v3 import _four_ts_client, _platelet_fall_with_four_ts
    from v2_bodies import as_patient_view
    client = _four_ts_client(tmp_path)
    card = post(client, as_patient_view(_platelet_fall_with_four_ts(5)))["cards"][0]
    assert (card["indicator"], kind(card)) == ("critical", "hit_suspected")
    assert "therapeutic-intensity" in card["detail"] and "flushes" in card["detail"]
    assert "MedicationRequest/enox-long-4" in _deleted(card)
    # with 4Ts <= 3 after the fall, no HIT card (§19.6 clears it)
    cards = post(client, as_patient_view(_platelet_fall_with_four_ts(3)))["cards"]
    assert not any(kind(c) == "hit_suspected" for c in cards)


# -- C9: ECMO heparin running + an LMWH draft: never "confirm that the other agent stops" (§19.4) ------------------------
def test_ecmo_heparin_and_an_lmwh_draft_never_invites_stopping_the_circuit_heparin(client):
    from v3_bodies import add_heparin
    body = _on_ecmo(example())
    add_heparin(body, "ufh-ecmo", units_per_ml=100, bag_ml=250, rate_u_h=1000)
    draft(body, "enoxaparin", 40)
    cards = post(client, body)["cards"]
    dup = [c for c in cards if kind(c) == "duplicate_anticoagulant"]
    assert dup and not any("other agent stops" in c["detail"] for c in dup)
    assert any("ECMO heparin" in c["detail"] for c in dup)


# -- C1: units and months keep their case in summaries ------------------------------------------------------------------
def test_twice_daily_lmwh_at_crcl_below_15_summary_keeps_units_and_months(client):
    from test_order_check_v3 import add_dialysis
    body = example(creatinine=7.0)
    draft(body, "enoxaparin", 40, per_day=2)
    summary = post(client, body)["cards"][0]["summary"]
    assert "CrCl" in summary and "mL/min" in summary
    body = example()
    add_dialysis(body)
    draft(body, "enoxaparin", 40, per_day=2)
    summary = post(client, body)["cards"][0]["summary"]
    assert "haemodialysis" in summary and "UTC" in summary


# -- C2: the patient-view summary names the modality ("on haemodialysis"), not "on renal replacement" ---------------------
def test_patient_view_prophylaxis_summary_names_haemodialysis(client):
    from v2_bodies import as_patient_view
    from test_order_check_v3 import add_dialysis
    body = example(creatinine=2.2)
    add_dialysis(body)
    card = post(client, as_patient_view(body))["cards"][0]
    assert "on haemodialysis" in card["summary"]


# -- C6: the missing-inputs line names each input's own window (§19.13) -------------------------------------------------
def test_missing_weight_is_named_with_its_30_day_window(client):
    from v2_bodies import as_patient_view, drop
    body = example()
    drop(body, "body", "weight")
    drop(body, "bedside", "weight")
    cards = post(client, as_patient_view(body))["cards"]
    checks = [line for c in cards for line in c["detail"].split("\n") if line.startswith("**Check:**")]
    assert checks and all("weight in the last 72 h" not in line and "weight and" not in line for line in checks)
    assert any("no weight in the last 30 days" in line for line in checks)


# -- C4: a VKA has no prophylactic dose: the escalation card never says "use the prophylactic dose" ---------------------
def test_warfarin_escalation_never_says_use_the_prophylactic_dose(client):
    body = example()
    set_lab(body, "d-dimer", 0.4)
    draft(body, "warfarin", 5, route_sc=False)
    cards = [c for c in post(client, body)["cards"] if kind(c) == "escalation_warning"]
    assert cards and not any("prophylactic dose" in c["detail"] for c in cards)


def test_a_heparin_allergy_record_that_must_be_dropped_is_said(client):
    from v2_bodies import _entries, iso
    from datetime import datetime, timedelta, timezone
    body = example()
    pid = body["context"]["patientId"]
    key = next((k for k in body["prefetch"] if "allerg" in k.lower()), "allergies")
    _entries(body, key).append({"resource": {
        "resourceType": "AllergyIntolerance", "id": "hep-allergy", "patient": {"reference": f"Patient/{pid}"},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                       "code": "active"}]},
        "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "5224"}]},
        "onsetDateTime": "2020-13-01"}, "search": {"mode": "match"}})
    draft(body, "enoxaparin", 40)
    cards = post(client, body)["cards"]
    assert any("heparin allergy record could not be read" in c["summary"] for c in cards)
