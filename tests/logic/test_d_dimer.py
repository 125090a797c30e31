"""D-dimer (clinical rules §4): basis, ULN, multiple, six-fold flag, DIC points, bounds."""
import pytest
from score_helpers import DEFAULT, m, pin, pol

from cds_service.logic import d_dimer
from cds_service.logic.inputs import DDimer


def run(value, comparator=None, code=None, unit=None, ref=None, policy=DEFAULT):
    dd = DDimer(m(value, "mg/L", comparator), basis_from_code=code, basis_from_unit=unit,
                reference_high_mg_l=ref)
    return d_dimer.compute(pin(d_dimer=dd), policy)


@pytest.mark.parametrize("value,basis,multiple,gt6", [
    (3.0, "FEU", 6.0, False),     # 3.0 / 0.5 = 6.0 exactly: not above
    (3.01, "FEU", 6.02, True),
    (2.99, "FEU", 5.98, False),
    (1.5, "DDU", 6.0, False),     # 1.5 / 0.25
    (1.51, "DDU", 6.04, True),
])
def test_six_fold_edge_on_default_uln(value, basis, multiple, gt6):
    r = run(value, code=basis)
    assert r.determinable and r.basis == basis
    assert r.uln_source == f"default_{basis}"
    assert r.multiple_of_uln == pytest.approx(multiple)
    assert r.gt_6x_uln is gt6


def test_marked_inclusive_counts_exactly_six():
    assert run(3.0, code="FEU", policy=pol({"d_dimer.marked_inclusive": True})).gt_6x_uln is True
    assert run(2.99, code="FEU", policy=pol({"d_dimer.marked_inclusive": True})).gt_6x_uln is False


def test_marked_multiple_and_default_ulns_are_policy():
    p = pol({"d_dimer.marked_multiple": 4.0})
    assert run(2.0, code="FEU", policy=p).gt_6x_uln is False    # 4.0x
    assert run(2.01, code="FEU", policy=p).gt_6x_uln is True    # 4.02x
    p = pol({"d_dimer.default_uln_mg_l_feu": 0.4, "d_dimer.default_uln_mg_l_ddu": 0.2})
    assert run(2.0, code="FEU", policy=p).multiple_of_uln == pytest.approx(5.0)
    assert run(2.0, code="DDU", policy=p).multiple_of_uln == pytest.approx(10.0)


@pytest.mark.parametrize("value,points", [
    (0.5, 0),      # 1.0x: <= 1 -> 0
    (0.51, 2),     # 1.02x
    (5.0, 2),      # 10.0x: <= 10 -> 2
    (5.01, 3),     # 10.02x
])
def test_dic_points_edges(value, points):
    assert run(value, code="FEU").dic_points == points


def test_dic_point_bands_are_policy():
    p = pol({"dic.d_dimer_moderate_above_multiple": 2.0, "dic.d_dimer_strong_above_multiple": 8.0})
    assert run(1.0, code="FEU", policy=p).dic_points == 0   # 2.0x
    assert run(4.0, code="FEU", policy=p).dic_points == 2   # 8.0x
    assert run(4.01, code="FEU", policy=p).dic_points == 3  # 8.02x


@pytest.mark.parametrize("code,unit,basis,conflict", [
    ("FEU", None, "FEU", False),
    (None, "DDU", "DDU", False),
    ("DDU", "DDU", "DDU", False),
    ("FEU", "DDU", None, True),
    (None, None, None, False),
])
def test_basis_resolution(code, unit, basis, conflict):
    r = run(1.0, code=code, unit=unit)
    assert r.basis == basis and r.basis_conflict is conflict
    assert r.determinable is (basis is not None)


def test_reference_range_wins_and_works_without_basis():
    r = run(2.0, code="FEU", ref=0.25)             # 2.0 / 0.25 = 8x (default ULN would say 4x)
    assert r.uln_source == "reference_range" and r.uln_mg_l == 0.25
    assert r.multiple_of_uln == pytest.approx(8.0) and r.gt_6x_uln is True
    no_basis = run(2.0, code="FEU", unit="DDU", ref=0.5)   # basis conflict, range still usable
    assert no_basis.basis is None and no_basis.determinable
    assert no_basis.multiple_of_uln == pytest.approx(4.0) and no_basis.dic_points == 2


def test_use_reference_range_off_falls_back_to_default_uln():
    p = pol({"d_dimer.use_reference_range": False})
    r = run(2.0, code="FEU", ref=0.25, policy=p)
    assert r.uln_source == "default_FEU" and r.multiple_of_uln == pytest.approx(4.0)
    assert r.gt_6x_uln is False
    unknown = run(2.0, ref=0.25, policy=p)          # no basis, range not allowed
    assert not unknown.determinable


def test_no_uln_is_not_determinable():
    r = run(9.0)
    assert r.determinable is False
    assert (r.multiple_of_uln, r.gt_6x_uln, r.dic_points) == (None, None, None)
    assert r.missing == ("d_dimer_basis",)
    assert r.multiple_above(1.0, DEFAULT) is None


def test_missing_d_dimer():
    r = d_dimer.compute(pin(), DEFAULT)
    assert r.determinable is False and r.basis is None and r.missing == ("d_dimer",)
    j = r.to_json()
    assert j["multiple_of_uln"] is None and j["gt_6x_uln"] is None and j["dic_points"] is None


@pytest.mark.parametrize("comparator,value,gt6,points", [
    (">", 20.0, True, 3),      # > 40x
    ("<", 0.3, False, 0),      # < 0.6x
    (">", 3.0, True, None),    # > 6.0x settles the strict flag; 2 or 3 points
    (">=", 3.0, None, None),   # >= 6.0x: exactly 6 is not above
    ("<=", 3.0, False, None),  # <= 6x: 0 or 2 points
    ("<", 3.0, False, None),
    (">", 2.0, None, None),    # > 4x
    (">", 0.5, None, None),    # > 1x: 2 or 3 points
    (">", 5.0, True, 3),       # > 10x: strong
    ("<", 0.5, False, 0),      # < 1x
])
def test_comparator_makes_a_bound(comparator, value, gt6, points):
    r = run(value, comparator, code="FEU")
    assert r.determinable and r.multiple_of_uln is None
    assert r.gt_6x_uln is gt6
    assert r.dic_points == points
    assert r.to_json()["multiple_of_uln_bound"] == {"comparator": comparator, "value": value / 0.5}


def test_inclusive_settles_a_closed_bound():
    p = pol({"d_dimer.marked_inclusive": True})
    assert run(3.0, ">=", code="FEU", policy=p).gt_6x_uln is True


def test_multiple_above_for_other_criteria():
    assert run(0.6, code="FEU").multiple_above(1.0, DEFAULT) is True      # 1.2x
    assert run(0.5, code="FEU").multiple_above(1.0, DEFAULT) is False     # 1.0x, strict
    assert run(0.5, code="FEU").multiple_above(1.0, DEFAULT, inclusive=True) is True
    assert run(0.4, ">", code="FEU").multiple_above(1.0, DEFAULT) is None  # > 0.8x
    assert run(0.6, ">", code="FEU").multiple_above(1.0, DEFAULT) is True  # > 1.2x


def test_to_json_keys_and_rounding():
    j = run(1.23456, code="FEU").to_json()
    assert {"determinable", "basis", "multiple_of_uln", "gt_6x_uln", "dic_points"} <= set(j)
    assert j["multiple_of_uln"] == 2.469    # 1.23456 / 0.5 = 2.46912
    assert j["uln_source"] == "default_FEU" and j["uln_mg_l"] == 0.5
