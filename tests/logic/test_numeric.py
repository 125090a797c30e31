"""numeric: 6-dp threshold comparison, bounds and display rounding (clinical rules §0, §4.8)."""
import math

import pytest
from score_helpers import DEFAULT, m, pol

from cds_service.logic import numeric as nm


def test_bmi_40_compares_as_exactly_40():
    bmi = 115.6 / 1.70 ** 2          # 39.99999999999999... in binary
    assert nm.cmp_ge(bmi, 40.0, DEFAULT)
    assert not nm.cmp_lt(bmi, 40.0, DEFAULT)


def test_d_dimer_six_times_is_not_above_six():
    assert not nm.cmp_gt(3.0 / 0.5, 6.0, DEFAULT)
    assert nm.cmp_gt(3.01 / 0.5, 6.0, DEFAULT)


@pytest.mark.parametrize("value,ge_40", [
    (39.9999994, False),   # rounds to 39.999999
    (39.9999995, True),    # rounds to 40.0 at 6 dp
    (39.96, False),        # never rounded to 1 dp before comparing
])
def test_six_decimal_edge(value, ge_40):
    assert nm.cmp_ge(value, 40.0, DEFAULT) is ge_40


def test_compare_decimals_is_a_policy_key():
    # 39.996 rounds to 40.00 at 2 dp
    assert nm.cmp_ge(39.996, 40.0, pol({"numeric.compare_decimals": 2}))
    assert not nm.cmp_ge(39.996, 40.0, DEFAULT)


def test_band_takes_highest_satisfied_edge():
    edges = [("<", 150, 1), ("<", 100, 2), ("<", 50, 3), ("<", 20, 4)]
    assert [nm.band(v, DEFAULT, edges) for v in (150, 149.9, 100, 99, 50, 49, 20, 19)] == \
        [0, 1, 1, 2, 2, 3, 3, 4]


@pytest.mark.parametrize("comparator,expected", [
    (None, (20.0, 20.0)),
    ("<", (0.0, 20.0 - 1e-6)),
    ("<=", (0.0, 20.0)),
    (">", (20.0 + 1e-6, math.inf)),
    (">=", (20.0, math.inf)),
])
def test_interval(comparator, expected):
    lo, hi = nm.interval(20.0, comparator, DEFAULT, floor=0.0)
    assert lo == pytest.approx(expected[0]) and hi == pytest.approx(expected[1])


def test_band_range_settles_only_when_both_ends_agree():
    edges = [("<", 100, 1), ("<", 50, 2)]
    assert nm.band_range(m(20, comparator="<"), edges, DEFAULT) == (2, 2)
    assert nm.band_range(m(60, comparator="<"), edges, DEFAULT) == (1, 2)
    assert nm.band_range(m(50, comparator="<"), edges, DEFAULT) == (2, 2)   # 49.999999
    assert nm.band_range(m(50, comparator="<="), edges, DEFAULT) == (1, 2)
    assert nm.band_range(m(60), edges, DEFAULT, value=40) == (2, 2)        # value replaces
    assert nm.band_range(None, edges, DEFAULT) is None
    assert nm.exact((1, 2)) is None and nm.exact((2, 2)) == 2 and nm.exact(None) is None


@pytest.mark.parametrize("value,decimals,shown", [
    (2.675, 2, 2.68),        # half-up on the decimal text (binary round() gives 2.67)
    (39.96, 1, 40.0),
    (1.23449, 3, 1.234),
    (1.2345, 3, 1.235),
    (None, 1, None),
])
def test_display_rounding(value, decimals, shown):
    assert nm.display(value, decimals) == shown


def test_display_field_uses_the_rules_table():
    assert nm.display_field("weight_kg", 70.126) == 70.13
    assert nm.display_field("bmi", 24.25) == 24.3
    assert nm.display_field("creatinine_mg_dL", 1.0004) == 1.0
    assert nm.display_field("unknown_field", 1.23456) == 1.23456
