"""assess(): the §1 evaluation order over complete PatientInputs, and the assessment JSON."""
import json
from datetime import datetime, timedelta, timezone

import pytest

from cds_service.logic.assessment import assess
from cds_service.logic.inputs import (DDimer, Flag, Measurement, MedicationOrder, PatientInputs,
                                      RespiratorySupport, Vasoactive)
from cds_service.logic.order_check import check_order
from cds_service.logic.policy import Policy

P = Policy.default()
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
T = NOW - timedelta(hours=6)

CONTRACT = {
    "anthropometrics": ("weight_kg", "height_cm", "bmi", "ibw_kg", "adjbw_kg"),
    "renal": ("creatinine_mg_dL", "crcl_ml_min", "crcl_weight_basis", "crcl_lt_30"),
    "d_dimer": ("determinable", "basis", "multiple_of_uln", "gt_6x_uln", "dic_points"),
    "sofa": ("respiratory", "cardiovascular", "hepatic", "renal", "coagulation", "cns", "sofa4",
             "sofa4_complete"),
    "sic": ("platelet_points", "inr_points", "sofa_points", "total", "determinable", "positive"),
    "isth_dic": ("platelet_points", "d_dimer_points", "pt_points", "fibrinogen_points", "total",
                 "determinable", "overt"),
    "seed_trigger": ("triggered", "reasons"),
    "safety": ("contraindications", "escalation_cautions", "current_order_class",
               "already_therapeutic"),
    "regimen": ("drug", "dose_mg", "dose_units", "doses_per_day", "basis"),
    "anti_xa": ("indicated", "reasons", "target_low", "target_high"),
    "critical_illness": ("critically_ill", "oxygen"),
}


def m(value, unit, source, comparator=None):
    return Measurement(value, unit, T, comparator=comparator, source=f"Observation/{source}")


def ward_obese_patient(**kw):
    """Man, 60 y, 120 kg, 170 cm, SCr 1.0, plt 90, INR 1.5, D-dimer 3.5 mg/L FEU, low-flow O2."""
    base = dict(
        now=NOW, patient_id="p1", age_years=60, sex="male",
        weight=m(120.0, "kg", "w"), height=m(170.0, "cm", "h"),
        creatinine=m(1.0, "mg/dL", "cr"), platelets=m(90.0, "10*9/L", "plt"),
        inr=m(1.5, "1", "inr"), d_dimer=DDimer(m(3.5, "mg/L", "dd"), basis_from_code="FEU"),
        fibrinogen=m(2.0, "g/L", "fib"), hemoglobin=m(11.0, "g/dL", "hb"),
        respiratory=RespiratorySupport(frozenset({"low-flow"}), sources=("Procedure/o2",)))
    base.update(kw)
    return PatientInputs(**base)


def test_contract_keys_present():
    out = assess(ward_obese_patient(), P).to_json()
    for section, keys in CONTRACT.items():
        assert set(keys) <= set(out[section]), section
    for extra in ("evidence_note", "notes", "inputs", "missing"):
        assert extra in out
    json.dumps(out)  # serialisable as is


def test_ward_obese_patient():
    out = assess(ward_obese_patient(), P).to_json()
    # BMI 120 / 1.7^2 = 41.52; IBW 50 + 0.9055 x 17.6 = 65.94; TBW > 1.2 x IBW (79.1), so
    # AdjBW 65.94 + 0.4 x 54.06 = 87.56; CrCl 80 x 87.56 / 72 = 97.3
    assert out["anthropometrics"]["bmi"] == 41.5
    assert out["anthropometrics"]["ibw_kg"] == 65.9
    assert out["anthropometrics"]["adjbw_kg"] == 87.6
    assert out["renal"]["crcl_ml_min"] == 97.3
    assert out["renal"]["crcl_weight_basis"] == "adjusted"
    assert out["renal"]["crcl_lt_30"] is False
    # D-dimer 3.5 / 0.5 = 7.0x > 6; SIC platelets 2 + INR 2 = 4: positive without SOFA
    assert out["d_dimer"]["multiple_of_uln"] == 7.0 and out["d_dimer"]["gt_6x_uln"] is True
    assert out["sic"]["positive"] is True and out["sic"]["determinable"] is True
    assert out["seed_trigger"] == {"triggered": True, "reasons": ["sic_positive", "d_dimer_gt_6x_uln"]}
    assert out["safety"]["contraindications"] == [] and out["safety"]["escalation_cautions"] == []
    assert {k: out["regimen"][k] for k in CONTRACT["regimen"]} == \
        {"drug": "enoxaparin", "dose_mg": 80, "dose_units": None, "doses_per_day": 1,
         "basis": "bmi_ge_40"}
    assert out["regimen"]["weight_based_mg"] == 60.0
    assert out["anti_xa"]["indicated"] is True
    assert out["anti_xa"]["reasons"] == ["bmi_ge_40", "escalated_dose"]
    assert (out["anti_xa"]["target_low"], out["anti_xa"]["target_high"]) == (0.2, 0.5)
    assert out["critical_illness"]["critically_ill"] is False
    assert out["critical_illness"]["oxygen"] == "low-flow"
    # ward, low-flow, D-dimer > ULN, no caution, CrCl >= 30
    assert out["evidence_note"]["code"] == "therapeutic_option"
    assert out["evidence_note"]["therapeutic_hint"] == "enoxaparin_1_mg_kg_q12h"
    # PT missing leaves the ISTH DIC score undetermined: (plt 1 + D-dimer 2 + fib 0) + PT max 2 = 5
    assert out["isth_dic"]["determinable"] is False
    assert out["missing"] == ["pt"]
    assert out["inputs"]["weight"] == {"value": 120.0, "unit": "kg", "time": T.isoformat(),
                                       "source": "Observation/w"}


def test_icu_woman_in_renal_failure():
    """Woman, 70 y, 60 kg, 160 cm, SCr 2.5 mg/dL, platelets 40, on IMV with noradrenaline."""
    inputs = ward_obese_patient(
        age_years=70, sex="female", weight=m(60.0, "kg", "w"), height=m(160.0, "cm", "h"),
        creatinine=m(2.5, "mg/dL", "cr"), platelets=m(40.0, "10*9/L", "plt"),
        respiratory=RespiratorySupport(frozenset({"IMV"})),
        vasoactives=(Vasoactive("norepinephrine", 0.2, source="MedicationAdministration/n"),))
    a = assess(inputs, P)
    out = a.to_json()
    # IBW 45.5 + 0.9055 x 7.6 = 52.38; 60 <= 1.2 x 52.38 = 62.86: ideal weight
    # CrCl 70 x 52.38 / (72 x 2.5) x 0.85 = 17.3
    assert out["renal"]["crcl_weight_basis"] == "ideal"
    assert out["renal"]["crcl_ml_min"] == 17.3 and out["renal"]["crcl_lt_30"] is True
    assert out["safety"]["escalation_cautions"] == ["platelets_lt_50"]
    assert out["safety"]["contraindications"] == []
    assert (out["regimen"]["drug"], out["regimen"]["dose_mg"], out["regimen"]["basis"]) == \
        ("enoxaparin", 30, "crcl_lt_30")
    assert out["notes"] == ["renal_trough_anti_xa"]
    assert out["anti_xa"]["reasons"] == ["crcl_lt_30"]
    assert out["anti_xa"]["sampling"]["trough_before_next_dose"] is True
    assert out["critical_illness"] == {"critically_ill": True, "oxygen": "IMV",
                                       "criteria": ["IMV", "vasoactive:norepinephrine"]}
    assert out["evidence_note"]["code"] == "critically_ill_prophylactic_only"
    # the order check runs on the same assessment: 40 mg -> 30 mg once daily
    draft = MedicationOrder("enoxaparin", "lmwh", dose_mg=40, doses_per_day=1, status="draft",
                            source="MedicationRequest/d1")
    check = check_order(draft, a, P)
    assert [(f.kind, f.proposed.dose_mg, f.proposed.doses_per_day) for f in check.findings] == \
        [("dose_change", 30, 1)]


def test_contraindicated_and_already_therapeutic():
    inputs = ward_obese_patient(
        active_bleeding=Flag(True, "Condition/gi-bleed", T),
        orders=(MedicationOrder("warfarin", "vka", dose_mg=5, doses_per_day=1,
                                source="MedicationRequest/w"),))
    out = assess(inputs, P).to_json()
    assert out["safety"]["contraindications"] == ["active_bleeding"]
    assert out["safety"]["current_order_class"] == "therapeutic"
    assert out["safety"]["already_therapeutic"] is True
    assert out["regimen"]["basis"] == "contraindicated" and out["regimen"]["drug"] is None
    assert out["notes"] == ["mechanical_prophylaxis"]
    assert out["anti_xa"]["indicated"] is False
    assert out["evidence_note"]["code"] == "not_applicable"
    assert out["inputs"]["active_bleeding"] == {"present": True, "time": T.isoformat(),
                                                "source": "Condition/gi-bleed"}


def test_nothing_known():
    a = assess(PatientInputs(now=NOW), P)
    out = a.to_json()
    assert out["anthropometrics"]["bmi"] is None and out["renal"]["crcl_ml_min"] is None
    assert out["regimen"]["basis"] == "pending_weight" and out["regimen"]["dose_mg"] == 40
    assert out["notes"] == ["confirm_renal_function"]
    assert out["anti_xa"]["indicated"] is None
    assert out["seed_trigger"]["triggered"] is None
    assert out["critical_illness"]["critically_ill"] is None
    assert out["evidence_note"]["code"] == "severity_unknown"
    for name in ("weight", "height", "age_years", "sex", "creatinine", "platelets", "inr",
                 "d_dimer", "fibrinogen", "hemoglobin", "respiratory_support"):
        assert name in out["missing"], name
    assert out["missing_by_output"]["bmi"] == ["weight", "height"]
    assert out["missing_by_output"]["safety"] == ["platelets", "fibrinogen", "hemoglobin"]


def test_hit_patient_gets_fondaparinux():
    out = assess(ward_obese_patient(hit_history=Flag(True, "Condition/hit")), P).to_json()
    assert (out["regimen"]["drug"], out["regimen"]["dose_mg"], out["regimen"]["basis"]) == \
        ("fondaparinux", 2.5, "hit_history")
    assert out["anti_xa"]["indicated"] is False     # no LMWH in play


def test_pregnancy_and_bounded_d_dimer():
    inputs = ward_obese_patient(
        sex="female", pregnancy=Flag(True, "Condition/preg"),
        d_dimer=DDimer(m(20.0, "mg/L", "dd", comparator=">"), basis_from_code="FEU"))
    out = assess(inputs, P).to_json()
    assert out["d_dimer"]["multiple_of_uln"] is None and out["d_dimer"]["gt_6x_uln"] is True
    assert "pregnancy" not in out["anti_xa"]["reasons"]   # v2 §12: antixa.pregnancy_trigger false
    assert "d_dimer_pregnancy_caveat" in out["notes"]
    # "> 40x ULN" settles "> 1x" for the evidence note
    assert out["evidence_note"]["code"] == "therapeutic_option"


def test_json_is_deterministic():
    orders = (MedicationOrder("aspirin", "antiplatelet", source="MedicationRequest/a"),
              MedicationOrder("clopidogrel", "antiplatelet", source="MedicationRequest/c"),
              MedicationOrder("enoxaparin", "lmwh", dose_mg=40, doses_per_day=1,
                              source="MedicationRequest/e"))
    one = ward_obese_patient(orders=orders,
                             respiratory=RespiratorySupport(frozenset({"low-flow", "HFNC"}),
                                                            sources=("Procedure/b", "Procedure/a")))
    two = ward_obese_patient(orders=tuple(reversed(orders)),
                             respiratory=RespiratorySupport(frozenset({"HFNC", "low-flow"}),
                                                            sources=("Procedure/a", "Procedure/b")))
    a, b = assess(one, P).to_json(), assess(two, P).to_json()
    assert json.dumps(a) == json.dumps(b)
    assert a["safety"]["escalation_cautions"] == ["dual_antiplatelet_therapy"]
    assert a["evidence_note"]["code"] == "critically_ill_prophylactic_only"   # HFNC


@pytest.mark.parametrize("overrides, basis, dose", [
    ({"renal.preferred_agent": "heparin"}, "bmi_ge_40", 80),   # CrCl 97: renal row not reached
    ({"dosing.bmi_tier2": 45.0}, "bmi_ge_30", 60),
])
def test_policy_reaches_the_assessment(overrides, basis, dose):
    out = assess(ward_obese_patient(), P.with_overrides(overrides)).to_json()
    assert (out["regimen"]["basis"], out["regimen"]["dose_mg"]) == (basis, dose)
