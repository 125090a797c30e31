"""Regimen v2 (clinical rules §11): rows 0, 1 (fondaparinux floors), 3a; renal v2 fields."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cds_service.logic.assessment import assess
from cds_service.logic.inputs import Flag, Measurement, PatientInputs
from cds_service.logic.policy import Policy
from cds_service.logic.regimen import recommend_regimen
from cds_service.logic.renal import creatinine_change
from order_helpers import reg, row

P = Policy.default()
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


# -- row 0 -----------------------------------------------------------------------------------
def test_row0_hit_acute_no_drug():
    r = reg(contraindications=("hit_acute",))
    assert row(r) == (None, None, None, None, "hit_acute")


# -- row 1: fondaparinux floors --------------------------------------------------------------
@pytest.mark.parametrize("weight, drug", [(49.9, None), (50.0, "fondaparinux")])
def test_fondaparinux_weight_floor(weight, drug):
    r = reg(contraindications=("hit_history",), weight_kg=weight)
    assert r.drug == drug and r.basis == "hit_history"
    assert ("fondaparinux_low_weight" in r.notes) is (drug is None)


@pytest.mark.parametrize("crcl, drug", [(29.9, None), (30.0, "fondaparinux")])
def test_fondaparinux_crcl_floor(crcl, drug):
    r = reg(contraindications=("hit_history",), crcl_ml_min=crcl, crcl_lt_30=crcl < 30)
    assert r.drug == drug


def test_fondaparinux_needs_weight():
    r = reg(contraindications=("hit_history",), weight_kg=None, bmi=None)
    assert r.drug is None and "fondaparinux_needs_weight" in r.notes


@pytest.mark.parametrize("crcl, note", [(49.9, True), (50.0, False)])
def test_fondaparinux_moderate_renal(crcl, note):
    r = reg(contraindications=("hit_history",), crcl_ml_min=crcl)
    assert r.drug == "fondaparinux" and ("fondaparinux_moderate_renal" in r.notes) is note


def test_fondaparinux_moderate_dose_is_a_policy_choice():
    r = recommend_regimen(contraindications=("hit_history",), already_therapeutic=False,
                          crcl_ml_min=40.0, crcl_lt_30=False, bmi=25.0, weight_kg=75.0,
                          policy=P.with_overrides({"hit.fondaparinux_moderate_mg": 1.5}))
    assert r.dose_mg == 1.5


def test_hit_recent_without_platelets_gives_no_drug():
    r = reg(contraindications=("hit_recent",), platelets_known=False)
    assert r.drug is None and "hit_needs_platelets" in r.notes and r.basis == "hit_history"
    assert reg(contraindications=("hit_recent",)).drug == "fondaparinux"


@pytest.mark.parametrize("codes, basis", [
    (("heparin_allergy",), "heparin_allergy"),
    (("hit_history", "heparin_allergy"), "hit_history"),
])
def test_row1_basis(codes, basis):
    assert reg(contraindications=codes).basis == basis


def test_hit_suspected_is_row_0b_with_no_drug():
    # §19.6 changes v2 (row 1, fondaparinux): hit_suspected -> drug null, basis "hit_suspected"
    r = reg(contraindications=("hit_suspected",))
    assert (r.drug, r.dose_mg, r.doses_per_day, r.basis) == (None, None, None, "hit_suspected")


@pytest.mark.parametrize("bmi, enabled, expected", [
    (50.0, False, ("enoxaparin", 80, 1, "bmi_ge_40")),      # row 6a off by default: row 6 stays
    (50.0, True, ("enoxaparin", 60, 2, "bmi_ge_50")),
    (49.9, True, ("enoxaparin", 80, 1, "bmi_ge_40")),
])
def test_optional_row_6a(bmi, enabled, expected):
    from cds_service.logic.policy import Policy
    p = Policy.default().with_overrides({"dosing.bmi_tier3_enabled": enabled})
    r = reg(p, bmi=bmi, weight_kg=150.0)
    assert (r.drug, r.dose_mg, r.doses_per_day, r.basis) == expected


def test_heparin_specific_with_a_general_stop_is_row2():
    assert reg(contraindications=("platelets_lt_25", "hit_recent")).basis == "contraindicated"


# -- row 3a ----------------------------------------------------------------------------------
@pytest.mark.parametrize("crcl, basis", [(14.9, "crcl_lt_15"), (15.0, "crcl_lt_30"),
                                         (29.9, "crcl_lt_30"), (30.0, "standard")])
def test_crcl_bands(crcl, basis):
    r = reg(crcl_ml_min=crcl, crcl_lt_30=crcl < 30)
    assert r.basis == basis
    if basis == "crcl_lt_15":
        assert row(r) == ("heparin", None, 5000, 2, "crcl_lt_15") and "crcl_lt_15" in r.notes


def test_renal_replacement_takes_row_3a_whatever_the_crcl():
    r = reg(crcl_ml_min=90.0, renal_replacement=True)
    assert row(r) == ("heparin", None, 5000, 2, "crcl_lt_15") and "crcl_lt_15" in r.notes


def test_already_therapeutic_beats_row_3a():
    assert reg(crcl_ml_min=10.0, crcl_lt_30=True, already_therapeutic=True).basis == \
        "already_therapeutic"


@pytest.mark.parametrize("kw, note", [
    (dict(crcl_ml_min=20.0, crcl_lt_30=True, bmi=40.0, weight_kg=110.0), True),
    (dict(crcl_ml_min=20.0, crcl_lt_30=True, bmi=39.9, weight_kg=120.1), True),
    (dict(crcl_ml_min=20.0, crcl_lt_30=True, bmi=39.9, weight_kg=120.0), False),
    (dict(crcl_ml_min=10.0, crcl_lt_30=True, bmi=45.0, weight_kg=140.0), True),
    (dict(crcl_ml_min=60.0, bmi=45.0, weight_kg=140.0), False),
])
def test_renal_obesity_note(kw, note):
    assert ("renal_obesity" in reg(**kw).notes) is note


def test_crcl_unreliable_note():
    assert "crcl_unreliable" in reg(creatinine_unstable=True).notes
    assert "crcl_unreliable" not in reg(creatinine_unstable=False).notes


# -- renal v2 fields ------------------------------------------------------------------------
def scr(value, hours_ago):
    return Measurement(value, "mg/dL", NOW - timedelta(hours=hours_ago))


@pytest.mark.parametrize("series, expected", [
    ((scr(1.00, 40), scr(1.29, 0)), (False, False)),      # 0.29 in 40 h
    ((scr(1.00, 40), scr(1.30, 0)), (True, True)),        # 0.30 in 40 h: rising
    ((scr(1.30, 40), scr(1.00, 0)), (True, False)),       # falling 0.30: unstable, not rising
    ((scr(1.00, 49), scr(1.50, 0)), (False, False)),      # more than 48 h apart
    ((scr(1.00, 48), scr(1.30, 0)), (True, True)),        # exactly 48 h
    ((scr(1.00, 0),), (None, False)),
    ((), (None, False)),
])
def test_creatinine_change(series, expected):
    assert creatinine_change(series, P) == expected


def inputs(**kw):
    args = dict(now=NOW, age_years=60, sex="male", weight=Measurement(140, "kg", NOW),
                height=Measurement(178, "cm", NOW), creatinine=Measurement(2.0, "mg/dL", NOW))
    args.update(kw)
    return PatientInputs(**args)


def test_renal_json_fields():
    out = assess(inputs(renal_replacement=Flag(False)), P).to_json()
    renal = out["renal"]
    # actual weight: (140 - 60) x 140 / (72 x 2.0) = 77.8 mL/min; the policy weight is AdjBW
    assert renal["crcl_actual_weight_ml_min"] == 77.8
    assert renal["crcl_weight_basis"] == "adjusted" and renal["crcl_ml_min"] < 77.8
    assert renal["creatinine_unstable"] is None and renal["renal_replacement"] is False
    assert assess(inputs(), P).to_json()["renal"]["renal_replacement"] is None
    assert isinstance(out["regimen"]["notes"], list)


def test_rrt_in_the_assessment_gives_ufh():
    out = assess(inputs(renal_replacement=Flag(True, "Procedure/hd")), P).to_json()
    assert out["regimen"]["drug"] == "heparin" and out["regimen"]["basis"] == "crcl_lt_15"
    assert out["renal"]["renal_replacement"] is True
