"""Anthropometrics (clinical rules §2): BMI, Devine IBW, AdjBW, WHO class."""
import pytest
from score_helpers import DEFAULT, m, pin, pol

from cds_service.logic import anthropometrics


def run(policy=DEFAULT, **kw):
    return anthropometrics.compute(pin(**kw), policy)


def test_bmi_40_edge_and_tier_class():
    a = run(weight=m(115.6, "kg"), height=m(170, "cm"), sex="female")
    assert a.bmi == pytest.approx(40.0) and a.bmi_source == "computed"
    assert a.who_class == "obese_III"


@pytest.mark.parametrize("weight,cls", [
    # height 100 cm makes BMI = weight
    (18.49, "underweight"), (18.5, "normal"), (24.99, "normal"), (25.0, "overweight"),
    (29.99, "overweight"), (30.0, "obese_I"), (34.99, "obese_I"), (35.0, "obese_II"),
    (39.99, "obese_II"), (40.0, "obese_III"),
])
def test_who_class_edges(weight, cls):
    a = run(weight=m(weight, "kg"), height=m(100, "cm"))
    assert a.bmi == pytest.approx(weight)
    assert a.who_class == cls


@pytest.mark.parametrize("sex,height,ibw", [
    ("male", 152.4, 50.0),
    ("female", 152.4, 45.5),
    # 180 cm: 27.6 cm above 60 in = 27.6/2.54 in; x 2.3 kg = 63.48/2.54 = 24.992126
    ("male", 180.0, 74.992126),
    ("female", 180.0, 70.492126),
    # 140 cm, line extended: 45.5 - 2.3 x 12.4/2.54 = 45.5 - 11.228346 = 34.271654
    ("female", 140.0, 34.271654),
])
def test_devine_ibw(sex, height, ibw):
    a = run(sex=sex, height=m(height, "cm"))
    assert a.ibw_kg == pytest.approx(ibw, abs=1e-6)


def test_ibw_below_60_in_not_extrapolated_when_policy_says_so():
    a = run(sex="female", height=m(140, "cm"),
            policy=pol({"ibw.extrapolate_below_152_4_cm": False}))
    assert a.ibw_kg == 45.5


@pytest.mark.parametrize("sex,height,missing", [
    (None, m(170, "cm"), "sex"), ("male", None, "height")])
def test_ibw_null_without_sex_or_height(sex, height, missing):
    a = run(sex=sex, height=height, weight=m(80, "kg"))
    assert a.ibw_kg is None and a.adjbw_kg is None
    assert missing in a.missing


@pytest.mark.parametrize("tbw,adjbw", [
    (49.0, None),     # TBW < IBW (50 kg, male 152.4 cm)
    (50.0, None),     # TBW == IBW: not reported
    (50.5, 50.2),     # 50 + 0.4 x 0.5
    (100.0, 70.0),    # 50 + 0.4 x 50
])
def test_adjbw_only_when_tbw_above_ibw(tbw, adjbw):
    a = run(sex="male", height=m(152.4, "cm"), weight=m(tbw, "kg"))
    assert a.adjbw_kg == (None if adjbw is None else pytest.approx(adjbw))


def test_adjbw_factor_is_policy():
    a = run(sex="male", height=m(152.4, "cm"), weight=m(100, "kg"),
            policy=pol({"crcl.adjbw_factor": 0.3}))
    assert a.adjbw_kg == pytest.approx(65.0)   # 50 + 0.3 x 50


def test_recorded_bmi_only_when_bmi_cannot_be_computed():
    both = run(weight=m(80, "kg"), height=m(200, "cm"), recorded_bmi=m(33, "kg/m2"))
    assert both.bmi == pytest.approx(20.0) and both.bmi_source == "computed"   # 80 / 2.0^2
    no_height = run(weight=m(80, "kg"), recorded_bmi=m(33, "kg/m2"))
    assert no_height.bmi == 33 and no_height.bmi_source == "recorded"
    assert no_height.who_class == "obese_I"
    nothing = run(weight=m(80, "kg"))
    assert nothing.bmi is None and nothing.bmi_source is None and nothing.who_class is None
    assert nothing.missing == ("height", "sex")


def test_bounded_weight_is_not_a_number():
    a = run(weight=m(150, "kg", ">"), height=m(170, "cm"), sex="male")
    assert a.weight_kg is None and a.bmi is None and "weight" in a.missing


def test_to_json_keys_and_display_rounding():
    a = run(sex="male", weight=m(70.126, "kg"), height=m(175.004, "cm"))
    j = a.to_json()
    assert {"weight_kg", "height_cm", "bmi", "ibw_kg", "adjbw_kg"} <= set(j)
    assert j["weight_kg"] == 70.13 and j["height_cm"] == 175.0
    # BMI 70.126 / 1.75004^2 = 22.897 -> 22.9; IBW 50 + 22.604 x 2.3/2.54 = 70.468 -> 70.5
    assert j["bmi"] == 22.9 and j["ibw_kg"] == 70.5
    assert j["adjbw_kg"] is None      # 70.126 < 70.468
    assert a.bmi == pytest.approx(70.126 / 1.75004 ** 2)   # unrounded inside
