"""The recommended regimen, §11 table top to bottom, and its card notes."""
import pytest

from cds_service.logic.policy import Policy
from cds_service.logic.regimen import crcl_below, nearest_syringe_mg
from order_helpers import reg, row

P = Policy.default()


@pytest.mark.parametrize("kw, expected", [
    # row 1: HIT only; fondaparinux needs CrCl known and >= 30
    (dict(contraindications=("hit_history",), crcl_ml_min=30.0),
     ("fondaparinux", 2.5, None, 1, "hit_history")),
    (dict(contraindications=("hit_history",), crcl_ml_min=29.9, crcl_lt_30=True),
     (None, None, None, None, "hit_history")),
    (dict(contraindications=("hit_history",), crcl_ml_min=None, crcl_lt_30=None),
     (None, None, None, None, "hit_history")),
    # row 2: any contraindication (HIT with another one is row 2)
    (dict(contraindications=("active_bleeding", "hit_history")),
     (None, None, None, None, "contraindicated")),
    (dict(contraindications=("platelets_lt_25",), already_therapeutic=True),
     (None, None, None, None, "contraindicated")),
    # row 3
    (dict(already_therapeutic=True, crcl_lt_30=True, crcl_ml_min=20.0),
     (None, None, None, None, "already_therapeutic")),
    # row 4 beats the BMI tiers; CrCl 29.9 / 30.0
    (dict(crcl_ml_min=29.9, crcl_lt_30=True, bmi=45.0), ("enoxaparin", 30, None, 1, "crcl_lt_30")),
    (dict(crcl_ml_min=30.0, crcl_lt_30=False, bmi=45.0), ("enoxaparin", 80, None, 1, "bmi_ge_40")),
    (dict(crcl_ml_min=29.9, crcl_lt_30=True, bmi=None), ("enoxaparin", 30, None, 1, "crcl_lt_30")),
    # row 5
    (dict(bmi=None), ("enoxaparin", 40, None, 1, "pending_weight")),
    # rows 6-8, both sides of 30 and 40
    (dict(bmi=40.0), ("enoxaparin", 80, None, 1, "bmi_ge_40")),
    (dict(bmi=39.9), ("enoxaparin", 60, None, 1, "bmi_ge_30")),
    (dict(bmi=115.6 / 1.70 ** 2), ("enoxaparin", 80, None, 1, "bmi_ge_40")),  # exactly 40.0 at 6 dp
    (dict(bmi=39.96), ("enoxaparin", 60, None, 1, "bmi_ge_30")),  # not rounded before compare
    (dict(bmi=30.0), ("enoxaparin", 60, None, 1, "bmi_ge_30")),
    (dict(bmi=29.9), ("enoxaparin", 40, None, 1, "standard")),
    (dict(bmi=18.0), ("enoxaparin", 40, None, 1, "standard")),
    # CrCl unknown: BMI rule applies
    (dict(crcl_ml_min=None, crcl_lt_30=None, bmi=35.0), ("enoxaparin", 60, None, 1, "bmi_ge_30")),
])
def test_rows(kw, expected):
    assert row(reg(**kw)) == expected


def test_renal_preferred_heparin_three_times_daily():
    p = P.with_overrides({"renal.preferred_agent": "heparin", "renal.ufh_doses_per_day": 3})
    r = reg(p, crcl_ml_min=20.0, crcl_lt_30=True)
    assert row(r) == ("heparin", None, 5000, 3, "crcl_lt_30")
    assert "renal_trough_anti_xa" not in r.notes          # trough is an LMWH matter
    assert r.weight_based_mg is None


def test_renal_rule_not_overriding_bmi():
    p = P.with_overrides({"renal.overrides_bmi_rule": False})
    assert row(reg(p, crcl_ml_min=20.0, crcl_lt_30=True, bmi=45.0)) == \
        ("enoxaparin", 80, None, 1, "bmi_ge_40")
    assert row(reg(p, crcl_ml_min=20.0, crcl_lt_30=True, bmi=31.0)) == \
        ("enoxaparin", 60, None, 1, "bmi_ge_30")
    assert row(reg(p, crcl_ml_min=20.0, crcl_lt_30=True, bmi=25.0)) == \
        ("enoxaparin", 30, None, 1, "crcl_lt_30")
    assert row(reg(p, crcl_ml_min=20.0, crcl_lt_30=True, bmi=None)) == \
        ("enoxaparin", 30, None, 1, "crcl_lt_30")


def test_dose_policy_overrides():
    p = P.with_overrides({"dosing.bmi_tier1": 35.0, "dosing.bmi_tier2_mg": 100,
                          "dosing.standard_mg": 30, "hit.fondaparinux_min_crcl": 50.0,
                          "dosing.round_bmi_before_compare": True})
    assert row(reg(p, bmi=34.9)) == ("enoxaparin", 30, None, 1, "standard")
    assert row(reg(p, bmi=39.96)) == ("enoxaparin", 100, None, 1, "bmi_ge_40")  # 40.0 after rounding
    assert reg(p, contraindications=("hit_history",), crcl_ml_min=49.9).drug is None
    assert reg(p, contraindications=("hit_history",), crcl_ml_min=50.0).drug == "fondaparinux"


@pytest.mark.parametrize("kw, notes", [
    (dict(), ()),
    (dict(contraindications=("active_bleeding",)), ("mechanical_prophylaxis",)),
    (dict(contraindications=("hit_history",), crcl_ml_min=29.9, crcl_lt_30=True),
     ("mechanical_prophylaxis", "hit_non_heparin_agent")),
    (dict(contraindications=("hit_history",), crcl_ml_min=None, crcl_lt_30=None),
     ("mechanical_prophylaxis", "hit_non_heparin_agent", "confirm_renal_function")),
    # v2: fondaparinux at CrCl 30-<50 carries the moderate-renal caution note
    (dict(contraindications=("hit_history",), crcl_ml_min=45.0), ("fondaparinux_moderate_renal",)),
    (dict(contraindications=("hit_history",), crcl_ml_min=50.0), ()),
    (dict(already_therapeutic=True, crcl_ml_min=None, crcl_lt_30=None), ()),
    (dict(crcl_ml_min=None, crcl_lt_30=None), ("confirm_renal_function",)),
    (dict(crcl_ml_min=None, crcl_lt_30=None, bmi=None), ("confirm_renal_function",)),
    # v2 row 3a: CrCl < 15 gives UFH, so no LMWH trough note
    (dict(crcl_ml_min=14.9, crcl_lt_30=True), ("crcl_lt_15",)),
    (dict(crcl_ml_min=15.0, crcl_lt_30=True), ("renal_trough_anti_xa",)),
    (dict(weight_kg=49.9, bmi=19.0), ("weight_lt_50kg",)),
    (dict(weight_kg=50.0, bmi=19.0), ()),
    (dict(weight_kg=120.0, bmi=41.0), ()),
    (dict(weight_kg=120.1, bmi=41.0), ("weight_gt_120kg",)),
    (dict(weight_kg=130.0, bmi=45.0, crcl_ml_min=None, crcl_lt_30=None),
     ("confirm_renal_function", "weight_gt_120kg")),
    (dict(weight_kg=45.0, contraindications=("active_bleeding",)), ("mechanical_prophylaxis",)),
])
def test_notes(kw, notes):
    assert reg(**kw).notes == notes


def test_crcl_bound_settles_fondaparinux_and_severe_note():
    # CrCl known only as "> 45" (creatinine "< x"): at least 30, fondaparinux allowed
    r = reg(contraindications=("hit_history",), crcl_ml_min=None, crcl_lt_30=False,
            crcl_bound=(">", 45.0))
    assert r.drug == "fondaparinux" and "confirm_renal_function" not in r.notes
    # CrCl "< 12": below 30 and below 15
    r = reg(crcl_ml_min=None, crcl_lt_30=True, crcl_bound=("<", 12.0))
    assert r.basis == "crcl_lt_15" and r.drug == "heparin" and "crcl_lt_15" in r.notes  # v2 row 3a
    # CrCl "< 40" settles nothing
    assert crcl_below(None, ("<", 40.0), 30.0, P) is None
    assert crcl_below(None, None, 30.0, P) is None
    assert crcl_below(29.9999999, None, 30.0, P) is False   # 30.000000 at 6 dp


@pytest.mark.parametrize("weight, info, syringe", [
    (70.0, 35.0, 30),      # 35 is halfway between 30 and 40: the lower strength
    (90.0, 45.0, 40),
    (130.0, 65.0, 60),
    (250.0, 125.0, 120),
    (400.0, 200.0, 150),
])
def test_informational_weight_based_figure(weight, info, syringe):
    r = reg(weight_kg=weight)
    assert (r.weight_based_mg, r.weight_based_syringe_mg) == (info, syringe)
    assert r.dose_mg == 40   # the figure is informational: the dose stays the BMI-rule dose


def test_no_weight_no_figure():
    r = reg(weight_kg=None, bmi=None)
    assert (r.weight_based_mg, r.weight_based_syringe_mg) == (None, None)
    assert nearest_syringe_mg(50.0) == 40
