"""The recommendation pathway (clinical rules §13.1, v2), from the rules."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cds_service.logic.assessment import assess
from cds_service.logic.inputs import (DDimer, EncounterInfo, Flag, HitRecord, Measurement,
                                      MedicationOrder, PatientInputs, RespiratorySupport)
from cds_service.logic.policy import Policy
from cds_service.logic.recommendation import therapeutic_dose

P = Policy.default()
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
ENC = EncounterInfo("enc-1", "in-progress", "IMP", NOW - timedelta(days=4))
LOW_FLOW = RespiratorySupport(modalities=frozenset({"low-flow"}))
IMV = RespiratorySupport(modalities=frozenset({"IMV"}))


def m(value, unit=""):
    return Measurement(value, unit, NOW)


def dd(value_mg_l):
    return DDimer(m(value_mg_l, "mg/L"), basis_from_code="FEU", reference_high_mg_l=0.5)


def ward(**kw):
    """Ward patient on low-flow O2, D-dimer 4x ULN, labs checkable: a therapeutic candidate."""
    args = dict(now=NOW, age_years=60, sex="male", weight=m(84, "kg"), height=m(178, "cm"),
                creatinine=m(1.0, "mg/dL"), platelets=m(220), hemoglobin=m(13, "g/dL"),
                d_dimer=dd(2.0), respiratory=LOW_FLOW, encounters=(ENC,))
    args.update(kw)
    return PatientInputs(**args)


def rec(policy=P, **kw):
    return assess(ward(**kw), policy).to_json()["recommendation"]


def enox(dose, per_day, **kw):
    kw.setdefault("source", "MedicationRequest/enox")
    kw.setdefault("encounter_id", "enc-1")
    return MedicationOrder("enoxaparin", "lmwh", dose_mg=dose, doses_per_day=per_day,
                           route="subcutaneous", **kw)


# -- therapeutic candidate and its dose -------------------------------------------------------
def test_ward_candidate_gets_1_mg_kg_q12h():
    r = rec()
    assert r["pathway"] == "therapeutic_candidate" and r["not_therapeutic_because"] == []
    assert r["therapeutic"] == {"drug": "enoxaparin", "dose_mg": 80.0, "doses_per_day": 2}


@pytest.mark.parametrize("weight, dose", [(84, 80.0), (85, 90.0), (150, 150.0), (154.9, 150.0),
                                          (155, None)])
def test_dose_rounding_and_ceiling(weight, dose):
    r = rec(weight=m(weight, "kg"))
    got = r["therapeutic"]["dose_mg"] if r["therapeutic"] else None
    assert got == dose
    if dose is None:
        assert r["pathway"] == "therapeutic_candidate" and "therapeutic_needs_protocol" in r["notes"]


@pytest.mark.parametrize("crcl, per_day", [(14.9, None), (15.0, 1), (29.9, 1), (30.0, 2)])
def test_therapeutic_frequency_by_crcl(crcl, per_day):
    dose = therapeutic_dose(weight_kg=84.0, crcl_ml_min=crcl, crcl_bound=None,
                            renal_replacement=False, creatinine_rising=False, policy=P)
    assert (dose.doses_per_day if dose else None) == per_day


@pytest.mark.parametrize("kw", [
    dict(weight_kg=None, crcl_ml_min=80.0),
    dict(weight_kg=84.0, crcl_ml_min=None),
    dict(weight_kg=84.0, crcl_ml_min=80.0, renal_replacement=True),
    dict(weight_kg=84.0, crcl_ml_min=80.0, creatinine_rising=True),
])
def test_therapeutic_dose_null_cases(kw):
    args = dict(crcl_bound=None, renal_replacement=False, creatinine_rising=False, policy=P)
    args.update(kw)
    assert therapeutic_dose(**args) is None


def test_rising_creatinine_of_0_3_in_48h_nulls_the_dose_but_0_29_does_not():
    def series(delta):
        return (Measurement(1.0, "mg/dL", NOW - timedelta(hours=30)),
                Measurement(1.0 + delta, "mg/dL", NOW))
    assert rec(creatinine_series=series(0.29))["therapeutic"] is not None
    r = rec(creatinine_series=series(0.3))
    assert r["therapeutic"] is None and "therapeutic_needs_protocol" in r["notes"]


@pytest.mark.parametrize("value, pathway", [(0.5, "prophylaxis"), (0.505, "therapeutic_candidate")])
def test_d_dimer_exactly_uln_vs_1_01x(value, pathway):
    r = rec(d_dimer=dd(value))
    assert r["pathway"] == pathway
    if pathway == "prophylaxis":
        assert r["not_therapeutic_because"] == ["d_dimer_not_above_uln"]


def test_anti_xa_targets_for_the_recommended_dose_in_obesity():
    r = rec(weight=m(125, "kg"))
    assert r["therapeutic"]["dose_mg"] == 130.0
    assert r["therapeutic_anti_xa"] == {"target_low": 0.5, "target_high": 1.0}
    assert rec()["therapeutic_anti_xa"] is None


# -- not_therapeutic_because: every failing condition, in order -------------------------------
def test_ventilated_patient_lists_both_critically_ill_and_no_low_flow():
    r = rec(respiratory=IMV)
    assert r["pathway"] == "prophylaxis"
    assert r["not_therapeutic_because"] == ["critically_ill", "no_low_flow_oxygen"]
    assert r["therapeutic"] is None


def test_many_failing_conditions_in_rule_order():
    r = rec(respiratory=IMV, d_dimer=None, hemoglobin=m(7.5, "g/dL"), platelets=None,
            pregnancy=Flag(True), heparin_allergy=Flag(True),
            renal_replacement=Flag(True), policy=P.with_overrides({"escalation.enabled": False}))
    assert r["not_therapeutic_because"] == [
        "critically_ill", "no_low_flow_oxygen", "d_dimer_unknown", "escalation_caution",
        "cautions_unchecked", "pregnancy", "heparin_specific_contraindication",
        "renal_replacement", "disabled"]


def test_severity_unknown():
    assert rec(respiratory=RespiratorySupport())["not_therapeutic_because"] == ["severity_unknown"]


def test_pregnancy_is_never_a_candidate():
    assert rec(pregnancy=Flag(True))["not_therapeutic_because"] == ["pregnancy"]


def test_running_argatroban_counts_as_heparin_specific():
    # argatroban is therapeutic-class: keep_therapeutic, never a candidate nor de-escalated
    r = rec(orders=(MedicationOrder("argatroban", "dti", continuous=True, encounter_id="enc-1"),))
    assert r["pathway"] == "keep_therapeutic"


# -- pathway order ------------------------------------------------------------------------------
def test_acute_hit_with_bleeding_is_contraindicated():
    r = rec(active_bleeding=Flag(True), hit_records=(HitRecord(NOW - timedelta(days=3)),),
            platelets=m(60))
    assert r["pathway"] == "contraindicated"


def test_acute_hit():
    r = rec(hit_records=(HitRecord(NOW - timedelta(days=3)),), platelets=m(60))
    assert r["pathway"] == "hit_acute" and r["therapeutic"] is None


def test_deescalate_critically_ill_on_therapeutic_lmwh_of_this_encounter():
    assert rec(respiratory=IMV, orders=(enox(80, 2),))["pathway"] == "deescalate"


@pytest.mark.parametrize("kw", [
    dict(orders=(enox(80, 2), MedicationOrder("argatroban", "dti", continuous=True))),
    dict(orders=(MedicationOrder("argatroban", "dti", continuous=True, encounter_id="enc-1"),)),
    dict(orders=(MedicationOrder("apixaban", "doac", dose_mg=5, doses_per_day=2,
                                 encounter_id="enc-1"),)),
    dict(orders=(enox(80, 2),), statements=(MedicationOrder("apixaban", "doac"),)),
    dict(orders=(MedicationOrder("warfarin", "vka", dose_mg=5, doses_per_day=1,
                                 encounter_id="enc-1"),)),
])
def test_deescalate_never_with_argatroban_doac_or_vka(kw):
    assert rec(respiratory=IMV, **kw)["pathway"] == "keep_therapeutic"


@pytest.mark.parametrize("kw", [
    dict(other_anticoagulation_indication=Flag(True, "Condition/af")),
    dict(respiratory=RespiratorySupport(modalities=frozenset({"IMV"}), ecmo=True)),
    dict(renal_replacement=Flag(True, "Procedure/crrt")),
    dict(orders=(enox(80, 2, encounter_id="enc-previous"),)),
])
def test_deescalate_blocked(kw):
    args = dict(respiratory=IMV, orders=(enox(80, 2),))
    args.update(kw)
    assert rec(**args)["pathway"] == "keep_therapeutic"


def test_authored_during_the_encounter_by_date_when_no_encounter_reference():
    inside = enox(80, 2, encounter_id=None, authored_on=NOW - timedelta(days=1))
    before = enox(80, 2, encounter_id=None, authored_on=NOW - timedelta(days=10))
    assert rec(respiratory=IMV, orders=(inside,))["pathway"] == "deescalate"
    assert rec(respiratory=IMV, orders=(before,))["pathway"] == "keep_therapeutic"


def test_review_therapeutic_on_the_ward_with_a_caution():
    assert rec(orders=(enox(80, 2),), platelets=m(42))["pathway"] == "review_therapeutic"
    assert rec(orders=(enox(80, 2),), platelets=m(42),
               other_anticoagulation_indication=Flag(True))["pathway"] == "keep_therapeutic"


def test_keep_therapeutic_on_the_ward_without_caution():
    assert rec(orders=(enox(80, 2),))["pathway"] == "keep_therapeutic"


def test_not_therapeutic_because_is_empty_outside_prophylaxis():
    assert rec(orders=(enox(80, 2),))["not_therapeutic_because"] == []
