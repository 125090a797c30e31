"""Order check v2 (clinical rules §11, §13.1, §18.4), from the rules."""
from __future__ import annotations

import pytest

from cds_service.logic.inputs import MedicationOrder
from cds_service.logic.order_check import Proposed, check_draft
from cds_service.logic.policy import Policy
from order_helpers import DRAFT, ctx, enox

P = Policy.default()


def ufh(units, per_day):
    return MedicationOrder("heparin", "anticoagulant", dose_units=units, doses_per_day=per_day,
                           route="subcutaneous", status="draft", source=DRAFT)


def fonda(mg, per_day=1):
    return MedicationOrder("fondaparinux", "anticoagulant", dose_mg=mg, doses_per_day=per_day,
                           route="subcutaneous", status="draft", source=DRAFT)


def kinds(result):
    return [f.kind for f in result.findings]


# -- obesity equivalents and low-weight doses: accepted, never corrected ----------------------
@pytest.mark.parametrize("draft", [enox(80, 1), enox(40, 2)])
def test_bmi_40_equivalents_are_accepted(draft):
    r = check_draft(draft, ctx(weight_kg=130.0, bmi=45.0), P)
    assert r.intent == "prophylactic" and "dose_change" not in kinds(r)
    assert not any(k.startswith("escalation") for k in kinds(r))


def test_bmi_40_equivalent_accepted_even_when_critically_ill():
    r = check_draft(enox(40, 2), ctx(weight_kg=130.0, bmi=45.0, critically_ill=True), P)
    assert kinds(r) == []


@pytest.mark.parametrize("dose", [30, 40])
def test_low_weight_doses_accepted_under_50_kg(dose):
    r = check_draft(enox(dose, 1), ctx(weight_kg=45.0, bmi=18.0), P)
    assert "dose_change" not in kinds(r)


def test_never_suggest_increasing_a_dose_under_50_kg():
    r = check_draft(enox(20, 1), ctx(weight_kg=49.9, bmi=18.0), P)
    assert "dose_change" not in kinds(r)
    # at 50 kg the ordinary rule applies again: 20 mg -> 40 mg
    r = check_draft(enox(20, 1), ctx(weight_kg=50.0, bmi=18.0), P)
    assert kinds(r) == ["dose_change"] and r.findings[0].proposed.dose_mg == 40


@pytest.mark.parametrize("bmi, urgency", [(30.0, "info"), (39.9, "info"), (40.0, "warning")])
def test_bmi_tier_urgency(bmi, urgency):
    r = check_draft(enox(40, 1), ctx(weight_kg=110.0, bmi=bmi), P)
    assert r.finding("dose_change").urgency == urgency


def test_bmi_tier_urgency_is_a_policy_key():
    p = P.with_overrides({"cards.bmi_tier1_indicator": "warning"})
    assert check_draft(enox(40, 1), ctx(weight_kg=100.0, bmi=32.0), p).finding(
        "dose_change").urgency == "warning"


# -- CrCl < 15 and renal replacement: UFH, as in patient-view ---------------------------------
@pytest.mark.parametrize("kw", [dict(crcl_ml_min=14.9, crcl_lt_30=True),
                                dict(crcl_ml_min=70.0, renal_replacement=True)])
def test_lmwh_prophylaxis_switches_to_ufh(kw):
    r = check_draft(enox(40, 1), ctx(**kw), P)
    f = r.finding("switch_product")
    assert f.proposed.ingredient == "heparin" and f.proposed.dose_units == 5000 \
        and f.proposed.doses_per_day == 2


def test_crcl_15_keeps_enoxaparin_30():
    r = check_draft(enox(40, 1), ctx(crcl_ml_min=15.0, crcl_lt_30=True), P)
    assert r.finding("dose_change").proposed.dose_mg == 30


def test_ufh_draft_at_crcl_below_15_is_fine():
    assert check_draft(ufh(5000, 2), ctx(crcl_ml_min=10.0, crcl_lt_30=True), P).findings == ()


# -- fondaparinux label floors: warning ------------------------------------------------------
@pytest.mark.parametrize("kw, reason", [
    (dict(weight_kg=49.9), "fondaparinux_weight_lt_50"),
    (dict(crcl_ml_min=29.9, crcl_lt_30=True), "fondaparinux_crcl_lt_30"),
])
def test_fondaparinux_floors(kw, reason):
    f = check_draft(fonda(2.5), ctx(**kw), P).finding("contraindicated")
    assert reason in f.reasons and f.urgency == "warning"


def test_fondaparinux_at_50_kg_and_crcl_30_is_fine():
    assert check_draft(fonda(2.5), ctx(weight_kg=50.0, crcl_ml_min=30.0), P).finding(
        "contraindicated") is None


# -- no escalation warning: ECMO, other indication, therapeutic candidate ---------------------
@pytest.mark.parametrize("kw", [dict(critically_ill=True, ecmo=True),
                                dict(critically_ill=True, other_indication=True),
                                dict(cautions=("platelets_lt_50",), other_indication=True)])
def test_no_escalation_warning(kw):
    r = check_draft(enox(80, 2), ctx(**kw), P)
    assert not any(k.startswith("escalation") for k in kinds(r))


def test_escalation_warning_still_given_otherwise():
    assert "above_prophylactic" in kinds(check_draft(enox(80, 2), ctx(critically_ill=True), P))


def test_therapeutic_draft_for_a_therapeutic_candidate():
    r = check_draft(enox(80, 2), ctx(pathway="therapeutic_candidate"), P)
    assert not any(k.startswith("escalation") for k in kinds(r))


# -- HIT and running non-heparin anticoagulants -----------------------------------------------
@pytest.mark.parametrize("code", ["hit_acute", "hit_recent", "hit_suspected"])
@pytest.mark.parametrize("draft", [enox(40, 1), ufh(5000, 2)])
def test_recent_hit_and_heparin_draft_is_critical(code, draft):
    # §19.6 changes two rows: hit_suspected with a heparin draft is a warning (critical only with
    # 4Ts >= 4), and hit_recent with platelets known and a prophylactic draft gets fondaparinux
    # 2.5 mg (create + delete in one suggestion)
    r = check_draft(draft, ctx(contraindications=(code,)), P)
    if code == "hit_recent":
        f = r.finding("switch_product")
        assert f.urgency == "critical" and f.proposed == Proposed("fondaparinux", 2.5, None, 1)
        return
    f = r.finding("contraindicated")
    assert f.urgency == ("warning" if code == "hit_suspected" else "critical") and code in f.reasons
    assert f.action == "delete" and r.finding("switch_product") is None
    if code == "hit_suspected":
        r = check_draft(draft, ctx(contraindications=(code,), four_ts=4), P)
        assert r.finding("contraindicated").urgency == "critical"


@pytest.mark.parametrize("running", ["argatroban", "bivalirudin", "fondaparinux"])
def test_heparin_draft_while_non_heparin_anticoagulant_runs(running):
    r = check_draft(enox(40, 1), ctx(non_heparin_running=(running,)), P)
    f = r.finding("contraindicated")
    assert f.urgency == "critical" and "non_heparin_anticoagulant_running" in f.reasons


def test_hit_history_prophylactic_draft_switches_to_fondaparinux_as_a_warning():
    f = check_draft(enox(40, 1), ctx(contraindications=("hit_history",)), P).finding("switch_product")
    assert f.proposed.ingredient == "fondaparinux" and f.urgency == "warning"


def test_hit_history_switch_only_when_row_1_gives_fondaparinux():
    r = check_draft(enox(40, 1), ctx(contraindications=("hit_history",), weight_kg=45.0, bmi=17.0), P)
    f = r.finding("contraindicated")
    assert r.finding("switch_product") is None and f.urgency == "warning"
    assert "fondaparinux_low_weight" in r.notes and "hit_non_heparin_agent" not in r.notes


def test_hit_history_therapeutic_draft_does_not_blame_crcl_when_crcl_is_fine():
    # v1 said "fondaparinux not possible (CrCl below 30 or unknown)" at CrCl 66
    # §19.6 changes the v2 delete: a therapeutic draft gets treatment-dose fondaparinux (75 kg: 7.5 mg)
    r = check_draft(enox(60, 2), ctx(contraindications=("hit_history",), crcl_ml_min=66.0), P)
    f = r.finding("switch_product")
    assert f.urgency == "warning" and f.proposed == Proposed("fondaparinux", 7.5, None, 1)
    assert "hit_non_heparin_agent" not in r.notes


def test_hit_history_at_low_crcl_names_the_renal_reason():
    r = check_draft(enox(30, 1), ctx(contraindications=("hit_history",), crcl_ml_min=20.0,
                                     crcl_lt_30=True), P)
    assert "hit_non_heparin_agent" in r.notes


def test_crcl_below_15_same_answer_in_patient_view_and_order_check():
    from datetime import datetime, timezone
    from cds_service.logic.assessment import assess
    from cds_service.logic.inputs import Measurement, PatientInputs
    from cds_service.logic.order_check import check_order
    now = datetime(2024, 3, 1, tzinfo=timezone.utc)
    # male 70 y, 70 kg, 175 cm, creatinine 4.0 mg/dL: CrCl = 70 x 70 / (72 x 4) = 17.0 on
    # IBW 70.5 -> 70 kg actual (TBW < IBW): (140-70) x 70 / 288 = 17.0; use 5.0 mg/dL -> 13.6
    inputs = PatientInputs(now=now, age_years=70, sex="male", weight=Measurement(70, "kg", now),
                           height=Measurement(175, "cm", now),
                           creatinine=Measurement(5.0, "mg/dL", now))
    a = assess(inputs, P)
    assert a.renal.crcl_ml_min < 15
    reg = a.regimen
    proposed = check_order(enox(30, 1), a, P).finding("switch_product").proposed
    assert (reg.drug, reg.dose_units, reg.doses_per_day) == \
        (proposed.ingredient, proposed.dose_units, proposed.doses_per_day) == ("heparin", 5000, 2)
