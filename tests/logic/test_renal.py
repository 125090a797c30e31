"""Renal (clinical rules §3): Cockcroft-Gault, weight basis, crcl_lt_30."""
import pytest
from score_helpers import DEFAULT, m, pin, pol

from cds_service.logic import anthropometrics, renal


def run(policy=DEFAULT, **kw):
    inputs = pin(**kw)
    return renal.compute(inputs, anthropometrics.compute(inputs, policy), policy)


def test_cockcroft_gault_male_and_female():
    # no height: IBW unknown -> actual weight. (140-60) x 72 / (72 x 1.0) = 80
    r = run(age_years=60, sex="male", weight=m(72, "kg"), creatinine=m(1.0, "mg/dL"))
    assert r.crcl_ml_min == pytest.approx(80.0)
    assert r.crcl_weight_basis == "actual" and r.weight_used_kg == 72
    f = run(age_years=60, sex="female", weight=m(72, "kg"), creatinine=m(1.0, "mg/dL"))
    assert f.crcl_ml_min == pytest.approx(68.0)   # 80 x 0.85


@pytest.mark.parametrize("scr,crcl,lt30", [
    (2.0, 30.0, False),                 # (140-80) x 72 / (72 x 2.0) = 30.0 exactly
    (2.01, 60 * 72 / (72 * 2.01), True),  # 29.85
    (1.99, 60 * 72 / (72 * 1.99), False),  # 30.15
])
def test_crcl_30_edge(scr, crcl, lt30):
    r = run(age_years=80, sex="male", weight=m(72, "kg"), creatinine=m(scr, "mg/dL"))
    assert r.crcl_ml_min == pytest.approx(crcl)
    assert r.crcl_lt_30 is lt30


def test_crcl_cutoff_is_policy():
    r = run(age_years=80, sex="male", weight=m(72, "kg"), creatinine=m(2.0, "mg/dL"),
            policy=pol({"renal.crcl_cutoff": 30.5}))
    assert r.crcl_lt_30 is True


# male 152.4 cm: IBW 50 kg; 1.2 x IBW = 60 kg. age 60, SCr 1.0: CrCl = 80 x W / 72.
@pytest.mark.parametrize("tbw,basis,used", [
    (49.99, "actual", 49.99),     # TBW < IBW
    (50.0, "ideal", 50.0),        # TBW == IBW
    (60.0, "ideal", 50.0),        # TBW == 1.2 x IBW: not above
    (60.01, "adjusted", 54.004),  # 50 + 0.4 x 10.01
    (100.0, "adjusted", 70.0),    # 50 + 0.4 x 50
])
def test_pharmacy_rule_weight_basis(tbw, basis, used):
    r = run(age_years=60, sex="male", height=m(152.4, "cm"), weight=m(tbw, "kg"),
            creatinine=m(1.0, "mg/dL"))
    assert r.crcl_weight_basis == basis
    assert r.weight_used_kg == pytest.approx(used)
    assert r.crcl_ml_min == pytest.approx(80 * used / 72)


def test_adjbw_trigger_ratio_is_policy():
    r = run(age_years=60, sex="male", height=m(152.4, "cm"), weight=m(62, "kg"),
            creatinine=m(1.0, "mg/dL"), policy=pol({"crcl.adjbw_trigger_ratio": 1.3}))
    assert r.crcl_weight_basis == "ideal" and r.weight_used_kg == 50   # 62 <= 65


@pytest.mark.parametrize("rule,tbw,basis,used", [
    ("actual", 100, "actual", 100),
    ("actual", 45, "actual", 45),
    ("ideal", 100, "ideal", 50),
    ("ideal", 45, "ideal", 50),
    ("adjusted", 100, "adjusted", 70),      # no 1.2 trigger
    ("adjusted", 55, "adjusted", 52),       # 50 + 0.4 x 5 (pharmacy_rule would say ideal)
    ("adjusted", 45, "actual", 45),         # AdjBW only when TBW > IBW
    ("lower_of_actual_ideal", 100, "ideal", 50),
    ("lower_of_actual_ideal", 45, "actual", 45),
])
def test_weight_basis_policy_variants(rule, tbw, basis, used):
    r = run(age_years=60, sex="male", height=m(152.4, "cm"), weight=m(tbw, "kg"),
            creatinine=m(1.0, "mg/dL"), policy=pol({"crcl.weight_basis": rule}))
    assert (r.crcl_weight_basis, r.weight_used_kg) == (basis, pytest.approx(used))
    assert r.crcl_ml_min == pytest.approx(80 * used / 72)


@pytest.mark.parametrize("rule", ["ideal", "adjusted", "lower_of_actual_ideal"])
def test_explicit_ibw_rules_need_height(rule):
    r = run(age_years=60, sex="male", weight=m(100, "kg"), creatinine=m(1.0, "mg/dL"),
            policy=pol({"crcl.weight_basis": rule}))
    assert r.crcl_ml_min is None and r.crcl_lt_30 is None and r.crcl_weight_basis is None
    assert r.missing == ("height",)


def test_weight_choice_flips_the_30_edge():
    # male 152.4 cm, TBW 100, age 80, SCr 2.5: AdjBW 70 -> 60 x 70 / 180 = 23.3;
    # actual 100 -> 60 x 100 / 180 = 33.3
    kw = dict(age_years=80, sex="male", height=m(152.4, "cm"), weight=m(100, "kg"),
              creatinine=m(2.5, "mg/dL"))
    assert run(**kw).crcl_lt_30 is True
    assert run(policy=pol({"crcl.weight_basis": "actual"}), **kw).crcl_lt_30 is False


@pytest.mark.parametrize("drop,name", [
    ("age_years", "age_years"), ("sex", "sex"), ("weight", "weight"), ("creatinine", "creatinine")])
def test_missing_inputs_make_crcl_null(drop, name):
    kw = dict(age_years=60, sex="male", weight=m(72, "kg"), creatinine=m(1.0, "mg/dL"))
    kw[drop] = None
    r = run(**kw)
    assert r.crcl_ml_min is None and r.crcl_lt_30 is None and r.crcl_weight_basis is None
    assert r.weight_used_kg is None
    assert r.missing == (name,)


def test_creatinine_kept_even_when_crcl_is_null():
    r = run(creatinine=m(1.23456, "mg/dL"))
    assert r.creatinine_mg_dL == 1.23456
    assert r.to_json()["creatinine_mg_dL"] == 1.235
    assert set(r.missing) == {"age_years", "sex", "weight"}


def test_scr_floor():
    kw = dict(age_years=60, sex="male", weight=m(72, "kg"), creatinine=m(0.5, "mg/dL"))
    assert run(**kw).crcl_ml_min == pytest.approx(160.0)                 # 80 x 72 / 36
    floored = run(policy=pol({"renal.scr_floor_mg_dl": 0.8}), **kw)
    assert floored.crcl_ml_min == pytest.approx(100.0)                  # 80 x 72 / 57.6
    assert floored.creatinine_mg_dL == 0.5 and floored.scr_used_mg_dl == 0.8


@pytest.mark.parametrize("comparator,value,lt30,bound", [
    (">", 10.0, True, ("<", 8.0)),     # CrCl < 80 x 72 / 720 = 8
    ("<", 0.5, False, (">", 160.0)),   # CrCl > 160
    (">", 1.0, None, ("<", 80.0)),     # CrCl < 80: could be either side of 30
    (">=", 2.0, None, ("<=", 40.0)),   # CrCl <= 80 x 72 / 144 = 40
    (">=", 3.0, True, ("<=", 26.666667)),  # CrCl <= 80 x 72 / 216 = 26.7
])
def test_bounded_creatinine(comparator, value, lt30, bound):
    r = run(age_years=60, sex="male", weight=m(72, "kg"),
            creatinine=m(value, "mg/dL", comparator))
    assert r.crcl_ml_min is None and r.creatinine_mg_dL is None
    assert r.crcl_lt_30 is lt30
    assert r.crcl_weight_basis == "actual" and r.weight_used_kg == 72   # no height
    assert r.crcl_bound[0] == bound[0] and r.crcl_bound[1] == pytest.approx(bound[1])
    assert r.to_json()["creatinine_bound"] == {"comparator": comparator, "value": value}


def test_to_json_keys():
    r = run(age_years=60, sex="male", weight=m(72, "kg"), creatinine=m(1.1, "mg/dL"))
    j = r.to_json()
    assert {"creatinine_mg_dL", "crcl_ml_min", "crcl_weight_basis", "crcl_lt_30"} <= set(j)
    assert j["crcl_ml_min"] == 72.7    # 80 x 72 / 79.2 = 72.727
