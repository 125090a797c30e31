"""clinical-rules §19 (v3): the order check fails closed. The reviewer's five headline reproductions
(issue 19) and the §19.1-§19.3 / §19.6 rows near them, through HTTP (Flask test client). Written
from the rules; every body is a reference example with the edits an EHR would send."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hook_helpers import actions, body_for, kind, medication, only_card, post
from v2_bodies import RXNORM, UCUM, add_condition, add_hit, add_order, as_patient_view, iso, set_lab

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
CODES = {"enoxaparin": "67108", "fondaparinux": "321208", "apixaban": "1364430", "rivaroxaban": "1114195",
         "warfarin": "11289", "heparin": "5224", "dalteparin": "67109", "argatroban": "15202",
         "edoxaban": "1599538", "dabigatran": "1546356"}


def draft(body: dict, drug: str, dose: float | None, *, per_day: float = 1, unit: str = "mg",
          code: str | None = None, route_sc: bool = True) -> dict:
    """Replace the example's draft with `drug` `dose` `unit`, `per_day` times a day."""
    d = body["context"]["draftOrders"]["entry"][0]["resource"]
    d["medicationCodeableConcept"] = {"coding": [{"system": RXNORM, "code": CODES[drug]}], "text": drug}
    dosage = d["dosageInstruction"][0]
    if dose is None:
        dosage.pop("doseAndRate", None)
    else:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": dose, "unit": unit, "system": UCUM,
                                                   "code": code or {"mg": "mg", "U": "[iU]"}.get(unit, unit)}}]
    dosage["timing"] = {"repeat": {"frequency": 1, "period": 24 / per_day, "periodUnit": "h"}}
    if not route_sc:
        dosage.pop("route", None)
    return d


def example(name: str = "dose-ok", *, weight: float | None = None, creatinine: float | None = None) -> dict:
    body = body_for(name)
    if weight is not None:
        set_lab(body, "weight", weight)
    if creatinine is not None:
        set_lab(body, "creatinine", creatinine)
    return body


def add_dialysis(body: dict, hours_ago: float = 20) -> None:
    """A haemodialysis session (SNOMED 302497006) completed `hours_ago` (renal replacement, §11)."""
    now = datetime.now(timezone.utc)
    pid = body["context"]["patientId"]
    body["prefetch"]["procedures"].setdefault("entry", []).append({"resource": {
        "resourceType": "Procedure", "id": f"{pid}-hd", "status": "completed",
        "code": {"coding": [{"system": SNOMED, "code": "302497006"}], "text": "haemodialysis"},
        "subject": {"reference": f"Patient/{pid}"},
        "performedPeriod": {"start": iso(now - timedelta(hours=hours_ago + 4)), "end": iso(now - timedelta(hours=hours_ago))}},
        "search": {"mode": "match"}})


def pregnant(body: dict) -> None:
    add_condition(body, "preg-1", "77386006", system=SNOMED, days_ago=100, text="pregnancy")


def headline(payload: dict) -> dict:
    """The first (most severe) card; §19 gives each finding its own card."""
    assert payload["cards"], "expected a card"
    return payload["cards"][0]


def kinds_of(payload: dict) -> list[str]:
    return [kind(c) for c in payload["cards"]]


def updated(card: dict) -> tuple:
    (s,) = card["suggestions"]
    (a,) = s["actions"]
    assert a["type"] == "update"
    return medication(a["resource"])


# -- headline 1: gross overdoses ---------------------------------------------------------------------------
def test_enoxaparin_150_mg_q12h_at_64_kg_is_critical_above_maximum_update_to_1_mg_kg(client):
    body = example(weight=64)
    draft(body, "enoxaparin", 150, per_day=2)
    payload = post(client, body)
    card = headline(payload)
    assert (card["indicator"], kind(card)) == ("critical", "dose_above_maximum")
    assert "matches the recommendation" not in card["detail"]
    assert updated(card)[1:3] == (60, "mg")          # 1 mg/kg at 64 kg, nearest 10 mg
    assert updated(card)[3] == (1, 12, "h")
    # the example is a therapeutic candidate (ward, low-flow O2, D-dimer 2.4x ULN): a therapeutic
    # heparin draft is exempt from §19.2's escalation card; the ceiling still fires
    assert kinds_of(payload) == ["dose_above_maximum"]


def test_enoxaparin_40_mg_four_times_daily_is_critical_not_intermediate(client):
    body = example(weight=64)
    draft(body, "enoxaparin", 40, per_day=4)
    payload = post(client, body)
    card = headline(payload)
    assert (card["indicator"], kind(card)) == ("critical", "dose_above_maximum")
    assert "ntermediate" not in card["summary"]


def test_fondaparinux_10_mg_at_64_kg_is_critical_update_to_the_7_5_mg_band(client):
    body = example(weight=64)
    draft(body, "fondaparinux", 10)
    payload = post(client, body)
    card = headline(payload)
    assert (card["indicator"], kind(card)) == ("critical", "dose_above_maximum")
    assert updated(card)[1:3] == (7.5, "mg")


# -- headline 2: dialysis and CrCl < 15 --------------------------------------------------------------------
def test_enoxaparin_40_mg_twice_daily_at_crcl_10_is_not_info(client):
    body = example(weight=64, creatinine=8.0)                # male 52 y, 64 kg: CrCl about 9.8
    draft(body, "enoxaparin", 40, per_day=2)
    card = only_card(post(client, body))
    assert card["indicator"] == "critical"
    assert [a["type"] for a in actions(card)] == ["delete"]
    assert "UFH" in card["detail"]


def test_enoxaparin_80_mg_twice_daily_on_haemodialysis_is_critical_and_names_dialysis_not_crcl(client):
    body = example(weight=78, creatinine=2.6)                # post-dialysis CrCl about 32.9
    add_dialysis(body)
    draft(body, "enoxaparin", 80, per_day=2)
    card = only_card(post(client, body))
    assert (card["indicator"], kind(card)) == ("critical", "dose_above_maximum")
    assert [a["type"] for a in actions(card)] == ["delete"]
    assert "On haemodialysis (last session" in card["detail"]
    assert "CrCl" not in card["summary"] and "32.9" not in card["summary"]


def test_active_enoxaparin_80_mg_twice_daily_on_haemodialysis_gives_a_patient_view_card(client):
    body = example(weight=78, creatinine=2.6)
    add_dialysis(body)
    add_order(body, "enox-hd-1", "enoxaparin", dose=80, per_day=2)
    card = only_card(post(client, as_patient_view(body)))
    assert (card["indicator"], kind(card)) == ("critical", "dose_review")
    assert "CrCl" not in card["summary"]


# -- headline 3: DOACs and VKAs checked ----------------------------------------------------------------------
def test_apixaban_draft_with_platelets_18_is_critical_with_a_delete(client):
    body = example()
    set_lab(body, "platelets", 18)
    draft(body, "apixaban", 5, per_day=2)
    payload = post(client, body)
    card = headline(payload)
    assert (card["indicator"], kind(card)) == ("critical", "contraindicated")
    assert [a["type"] for a in actions(card)] == ["delete"]
    assert kinds_of(payload) == ["contraindicated"]       # a stop: no escalation card beside it


def test_rivaroxaban_draft_with_active_gi_bleeding_is_critical(client):
    body = example()
    add_condition(body, "gib-1", "K92.2", system=ICD10, days_ago=1, text="GI haemorrhage")
    draft(body, "rivaroxaban", 20)
    payload = post(client, body)
    card = headline(payload)
    assert (card["indicator"], kind(card)) == ("critical", "contraindicated")


def test_warfarin_draft_in_pregnancy_is_critical(client):
    body = example()
    pregnant(body)
    draft(body, "warfarin", 5)
    payload = post(client, body)
    card = headline(payload)
    assert card["indicator"] == "critical" and "pregnancy" in card["summary"]
    assert [a["type"] for a in actions(card)] == ["delete"]


def test_rivaroxaban_10_mg_in_acute_hit_is_critical_not_only_a_duplicate(client):
    body = example()
    add_hit(body, days_ago=10)
    set_lab(body, "platelets", 60)
    draft(body, "rivaroxaban", 10)
    cards = post(client, body)["cards"]
    assert cards and cards[0]["indicator"] == "critical" and kind(cards[0]) == "hit_acute"
    assert "not enough" in cards[0]["summary"]


def test_apixaban_draft_with_platelets_18_in_acute_hit_is_not_a_stop(client):
    # §19.1: in acute HIT platelets < 25 is the disease, not a stop for a DOAC
    body = example()
    add_hit(body, days_ago=10)
    set_lab(body, "platelets", 18)
    draft(body, "apixaban", 5, per_day=2)
    cards = post(client, body)["cards"]
    assert all(kind(c) != "contraindicated" for c in cards)


# -- headline 4: HIT history with a treatment order -----------------------------------------------------------
def test_hit_history_with_enoxaparin_70_mg_q12h_switches_to_treatment_dose_fondaparinux(client):
    body = body_for("hit-switch")                           # 64 kg, CrCl normal, HIT 1100 days ago
    draft(body, "enoxaparin", 70, per_day=2)
    card = only_card(post(client, body))
    assert kind(card) == "product_switch"
    (s,) = card["suggestions"]
    assert [a["type"] for a in s["actions"]] == ["create", "delete"]
    assert medication(s["actions"][0]["resource"])[1:3] == (7.5, "mg")   # 50-100 kg band, not 2.5 mg
    assert "7.5" in s["label"] and "2.5" not in s["label"]


# -- headline 5: 40 mg daily at 45 kg and CrCl 18 ---------------------------------------------------------------
def test_enoxaparin_40_mg_daily_at_45_kg_crcl_18_is_a_renal_warning_with_the_prophylactic_target(client):
    body = example(weight=45, creatinine=3.0)                # 52 y male, 45 kg: CrCl about 18.3
    draft(body, "enoxaparin", 40)
    card = only_card(post(client, body))
    assert card["indicator"] == "warning"
    assert updated(card)[1:4] == (30, "mg", (1, 24, "h")) or updated(card)[1:4] == (30, "mg", (1, 1, "d"))
    assert "therapeutic" not in card["detail"].lower()
    assert "1-2" not in card["detail"] and "1.0-2.0" not in card["detail"]
    assert "0.2-0.5" in card["detail"]


# -- "matches the recommendation" only when it does -------------------------------------------------------------
def test_a_draft_equal_to_the_regimen_gives_no_card(client):
    body = example()
    draft(body, "enoxaparin", 40)
    assert post(client, body)["cards"] == []


def test_unreadable_dose_is_said_not_passed(client):
    body = example()
    draft(body, "enoxaparin", 40, unit="tablespoon", code="[tbs_us]")
    card = only_card(post(client, body))
    assert card["indicator"] == "warning" and "dose not readable" in card["summary"]


# -- §19.1: an active VKA in acute HIT (patient-view) ---------------------------------------------------------------
def test_active_warfarin_in_acute_hit_is_critical_stop_and_vitamin_k(client):
    body = example()
    add_hit(body, days_ago=10)
    set_lab(body, "platelets", 60)
    add_order(body, "warf-1", "warfarin", dose=5, route=None)
    card = headline(post(client, as_patient_view(body)))
    assert (card["indicator"], kind(card)) == ("critical", "hit_acute")
    assert "vitamin K" in card["summary"]
    assert [(a["type"], a["resourceId"]) for a in actions(card)] == [("delete", "MedicationRequest/warf-1")]


# -- malformed doses, rates and units: a reason, never a 500 (§19.0 fails closed) ----------------------------------
MALFORMED = [
    {"doseQuantity": {"value": -40, "unit": "mg", "system": UCUM, "code": "mg"}},
    {"doseQuantity": {"value": "forty", "unit": "mg", "system": UCUM, "code": "mg"}},
    {"doseQuantity": {"value": 40, "unit": "furlong", "system": UCUM, "code": "[fur_us]"}},
    {"doseQuantity": {"value": 1e308, "unit": "mg", "system": UCUM, "code": "mg"}},
    {"rateQuantity": {"value": "fast", "unit": "mL/h"}},
    {"doseRange": {"low": {"value": 10, "unit": "mg"}}},
]


@pytest.mark.parametrize("dose_and_rate", MALFORMED)
@pytest.mark.parametrize("drug", ["enoxaparin", "apixaban", "fondaparinux", "dalteparin"])
def test_malformed_dose_is_said_never_a_500(client, drug, dose_and_rate):
    body = example()
    d = draft(body, drug, 40)
    d["dosageInstruction"][0]["doseAndRate"] = [dose_and_rate]
    payload = post(client, body)          # 200, valid CDS Hooks response (post asserts both)
    assert payload["cards"], "an unreadable dose must never be silent"
    assert any("not readable" in c["summary"] or c["indicator"] in ("critical", "warning") for c in payload["cards"])


def test_malformed_dose_reason_is_in_the_audited_problems(tmp_path):
    import json as _json

    from cds_service import create_app
    from hook_helpers import db_rows
    db = str(tmp_path / "cds.sqlite3")
    client = create_app({"database": db}).test_client()
    body = example()
    d = draft(body, "enoxaparin", 40)
    d["dosageInstruction"][0]["doseAndRate"] = [MALFORMED[2]]
    post(client, body)
    ((assessment,),) = db_rows(db, "SELECT assessment FROM hook_call")
    assert _json.loads(assessment)["draft_problems"] == ["draft enoxaparin: dose not readable"]


# -- §19.9 home DOAC + therapeutic heparin draft; a DOAC given in the last 24 h -------------------------------------
def _apixaban_given(body: dict, hours_ago: float) -> None:
    pid = body["context"]["patientId"]
    body["prefetch"].setdefault("administrations", {"resourceType": "Bundle", "type": "searchset"}) \
        .setdefault("entry", []).append({"resource": {
            "resourceType": "MedicationAdministration", "id": "apix-given-1", "status": "completed",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1364430"}], "text": "apixaban"},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": iso(datetime.now(timezone.utc) - timedelta(hours=hours_ago))},
            "search": {"mode": "match"}})


def test_home_apixaban_with_a_therapeutic_heparin_draft_asks_for_the_last_dose(client):
    body = example(weight=80)
    add_order(body, "apix-home-9", "apixaban", dose=5, per_day=2, route=None, kind="MedicationStatement")
    draft(body, "enoxaparin", 80, per_day=2)
    cards = post(client, body)["cards"]
    (dup,) = [c for c in cards if kind(c) == "duplicate_anticoagulant"]
    assert dup["indicator"] == "warning"
    assert "confirm the last apixaban dose" in dup["detail"] and "next apixaban dose would be due" in dup["detail"]


def test_a_doac_given_in_the_last_24_h_with_a_therapeutic_parenteral_draft_is_critical(client):
    body = example(weight=80)
    add_order(body, "apix-home-9", "apixaban", dose=5, per_day=2, route=None, kind="MedicationStatement")
    _apixaban_given(body, hours_ago=6)
    draft(body, "enoxaparin", 80, per_day=2)
    cards = post(client, body)["cards"]
    (dup,) = [c for c in cards if kind(c) == "duplicate_anticoagulant"]
    assert dup["indicator"] == "critical"


# -- §19.6: a recorded 4Ts score (site code through codes.extra_file) -----------------------------------------------
def _four_ts_client(tmp_path):
    import json as _json

    from cds_service import create_app
    extra = tmp_path / "codes-extra.json"
    extra.write_text(_json.dumps({"systems": {"SITE": "http://hospital.example/codes"},
                                  "observations": {"four_ts": {"codes": ["SITE:4ts"]}}}))
    policy = tmp_path / "policy.json"
    policy.write_text(_json.dumps({"codes.extra_file": str(extra)}))
    return create_app({"database": str(tmp_path / "c.sqlite3"), "policy": str(policy)}).test_client()


def _platelet_fall_with_four_ts(score: int | None, hours_ago: float = 1) -> dict:
    from v2_bodies import platelet_history
    body = example()
    add_order(body, "enox-long-4", "enoxaparin", dose=40, hours_ago=8 * 24)
    set_lab(body, "platelets", 110)
    platelet_history(body, [(260, 6)])
    if score is not None:
        pid = body["context"]["patientId"]
        body["prefetch"]["labs"]["entry"].append({"resource": {
            "resourceType": "Observation", "id": "four-ts-1", "status": "final",
            "code": {"coding": [{"system": "http://hospital.example/codes", "code": "4ts"}], "text": "4Ts score"},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": iso(datetime.now(timezone.utc) - timedelta(hours=hours_ago)),
            "valueQuantity": {"value": score, "unit": "{score}", "system": UCUM, "code": "{score}"}},
            "search": {"mode": "match"}})
    return body


@pytest.mark.parametrize("score, expected", [(None, "warning"), (3, None), (4, "critical")])
def test_four_ts_clears_or_raises_a_heparin_draft_in_a_platelet_fall(tmp_path, score, expected):
    client = _four_ts_client(tmp_path)
    cards = post(client, _platelet_fall_with_four_ts(score))["cards"]
    hit = [c for c in cards if kind(c) == "hit_suspected"]
    if expected is None:
        assert hit == []          # 4Ts <= 3 after the fall clears hit_suspected (§19.6)
    else:
        assert [c["indicator"] for c in hit] == [expected]


def test_a_four_ts_older_than_72_h_clears_nothing(tmp_path):
    client = _four_ts_client(tmp_path)
    cards = post(client, _platelet_fall_with_four_ts(2, hours_ago=80))["cards"]
    assert [c["indicator"] for c in cards if kind(c) == "hit_suspected"] == ["warning"]


# -- §19.6 in patient-view: an ACTIVE therapeutic heparin with HIT history is never replaced by prophylaxis --------
def test_active_therapeutic_enoxaparin_with_hit_history_is_replaced_by_treatment_dose_fondaparinux(client):
    body = body_for("hit-switch")                            # 64 kg, CrCl normal, HIT 1100 days ago
    add_order(body, "enox-70-bid", "enoxaparin", dose=70, per_day=2)
    card = headline(post(client, as_patient_view(body)))
    (s,) = card["suggestions"]
    creates = [a for a in s["actions"] if a["type"] == "create"]
    assert [medication(a["resource"])[1:3] for a in creates] == [(7.5, "mg")]     # not 2.5 mg
    assert [a["resourceId"] for a in s["actions"] if a["type"] == "delete"] == ["MedicationRequest/enox-70-bid"]
    assert s["label"] == "Replace with fondaparinux"


def test_active_40_mg_daily_at_45_kg_crcl_18_is_prophylactic_not_therapeutic(tmp_path):
    """Headline 5 in patient-view: the active order is prophylactic intensity (§19.0), the renal
    dose review offers 30 mg, and the anti-Xa target is the prophylactic one (§19.7)."""
    import json as _json

    from cds_service import create_app
    from hook_helpers import db_rows
    db = str(tmp_path / "cds.sqlite3")
    client = create_app({"database": db}).test_client()
    body = example(weight=45, creatinine=3.0)
    add_order(body, "enox-40-daily", "enoxaparin", dose=40)
    cards = post(client, as_patient_view(body))["cards"]
    ((assessment,),) = db_rows(db, "SELECT assessment FROM hook_call")
    a = _json.loads(assessment)
    assert a["safety"]["current_order_class"] == "prophylactic" and a["safety"]["already_therapeutic"] is False
    assert (a["anti_xa"]["target_low"], a["anti_xa"]["target_high"]) == (0.2, 0.5)
    # the example is a ward therapeutic candidate: the card is the candidate's, never keep_therapeutic
    assert a["recommendation"]["pathway"] != "keep_therapeutic" and cards


def test_treatment_dose_fondaparinux_create_is_coded_with_its_own_product():
    """The 7.5 mg create carries the 7.5 mg SCD and text, never the 2.5 mg syringe's text."""
    from cds_service.fhir.codes import load_codes
    from cds_service.cards.build import product, product_key
    codes = load_codes(None)
    concept = product(codes, product_key("fondaparinux", 7.5, None, codes))
    assert concept["coding"][0]["code"] == "861365" and "7.5 mg" in concept["text"]
    assert "2.5" not in concept["text"]
