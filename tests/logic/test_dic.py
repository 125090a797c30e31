"""ISTH overt DIC (clinical rules §7): item edges, PT reference order, missing-item bounds."""
import pytest
from score_helpers import DEFAULT, m, pin, pol

from cds_service.logic import d_dimer, dic
from cds_service.logic.inputs import DDimer, ProthrombinTime


def run(plt=None, dd=None, pt=None, ref=13.0, control=None, fib=None, dd_basis="FEU",
        dd_cmp=None, policy=DEFAULT):
    kw = {}
    if plt is not None:
        kw["platelets"] = m(plt)
    if dd is not None:
        kw["d_dimer"] = DDimer(m(dd, "mg/L", dd_cmp), basis_from_code=dd_basis)
    if pt is not None:
        kw["pt"] = ProthrombinTime(m(pt, "s"), reference_high_s=ref, normal_control_s=control)
    if fib is not None:
        kw["fibrinogen"] = m(fib, "g/L")
    inputs = pin(**kw)
    return dic.compute(inputs, d_dimer.compute(inputs, policy), policy)


NORMAL = dict(plt=200, dd=0.4, pt=13.0, fib=3.0)      # every item 0


@pytest.mark.parametrize("plt,points", [(100, 0), (99.9, 1), (50, 1), (49.9, 2)])
def test_platelet_edges(plt, points):
    assert run(**{**NORMAL, "plt": plt}).platelet_points == points


@pytest.mark.parametrize("dd,points", [(0.5, 0), (0.51, 2), (5.0, 2), (5.01, 3)])
def test_d_dimer_edges(dd, points):
    # FEU, default ULN 0.5: 1.0x, 1.02x, 10.0x, 10.02x
    assert run(**{**NORMAL, "dd": dd}).d_dimer_points == points


@pytest.mark.parametrize("pt,points", [
    (15.9, 0),   # 2.9 s above 13
    (16.0, 1),   # 3.0 s
    (18.9, 1),   # 5.9 s
    (19.0, 2),   # 6.0 s
])
def test_pt_edges(pt, points):
    r = run(**{**NORMAL, "pt": pt})
    assert r.pt_points == points and r.pt_reference_used == "reference_range_high"


@pytest.mark.parametrize("fib,points", [(1.0, 0), (0.99, 1)])
def test_fibrinogen_edge(fib, points):
    assert run(**{**NORMAL, "fib": fib}).fibrinogen_points == points


def test_fibrinogen_cut_off_is_policy():
    assert run(**{**NORMAL, "fib": 1.2}, policy=pol({"dic.fibrinogen_low_g_l": 1.5})).fibrinogen_points == 1


def test_pt_reference_order():
    # PT 15 s: 2 s above a 13 s range high (0 points), 3 s above a 12 s control (1 point)
    both = run(**{**NORMAL, "pt": 15.0, "ref": 13.0, "control": 12.0})
    assert both.pt_points == 0 and both.pt_reference_used == "reference_range_high"
    control_only = run(**{**NORMAL, "pt": 15.0, "ref": None, "control": 12.0})
    assert control_only.pt_points == 1 and control_only.pt_reference_used == "normal_control"
    assert control_only.pt_prolongation_s == pytest.approx(3.0)
    swapped = run(**{**NORMAL, "pt": 15.0, "ref": 13.0, "control": 12.0},
                  policy=pol({"dic.pt_reference": ["normal_control", "reference_range_high"]}))
    assert swapped.pt_points == 1 and swapped.pt_reference_used == "normal_control"
    only_range = run(**{**NORMAL, "pt": 15.0, "ref": None, "control": 12.0},
                     policy=pol({"dic.pt_reference": ["reference_range_high"]}))
    assert only_range.pt_points is None and "pt_reference" in only_range.missing


def test_pt_without_reference_is_never_scored_against_12_s():
    # PT 20 s would be 8 s above an assumed 12 s; with no reference the item is unknown
    r = run(plt=200, dd=0.4, fib=3.0, pt=20.0, ref=None)
    assert r.pt_points is None and r.pt_prolongation_s is None
    assert r.missing == ("pt_reference",)
    assert r.overt is False and r.determinable is True    # 0 + max 2 < 5


@pytest.mark.parametrize("items,total,overt", [
    (dict(plt=49, dd=5.01, pt=14.0, fib=1.5), 5, True),    # 2 + 3 + 0 + 0
    (dict(plt=60, dd=5.01, pt=14.0, fib=1.5), 4, False),   # 1 + 3
    (dict(plt=60, dd=2.0, pt=16.0, fib=0.9), 5, True),     # 1 + 2 + 1 + 1
    (dict(plt=40, dd=6.0, pt=20.0, fib=0.5), 8, True),     # 2 + 3 + 2 + 1
    (NORMAL, 0, False),
])
def test_overt_threshold(items, total, overt):
    r = run(**items)
    assert r.total == total and r.overt is overt and r.determinable is True


def test_overt_threshold_is_policy():
    r = run(plt=49, dd=5.01, pt=14.0, fib=1.5, policy=pol({"dic.overt_threshold": 6}))
    assert r.total == 5 and r.overt is False


# -- missing items: bounds -------------------------------------------------------------

def test_known_points_already_overt():
    r = run(plt=40, dd=6.0)                # 2 + 3 = 5; PT, fibrinogen missing
    assert r.total is None and r.overt is True and r.determinable is True
    assert set(r.missing) == {"pt", "fibrinogen"} and r.total_range == (5, 8)


def test_missing_maxima_cannot_reach_overt():
    r = run(plt=200, dd=0.4)               # 0 + 0 + max PT 2 + max fibrinogen 1 = 3
    assert r.total is None and r.overt is False and r.determinable is True
    r = run(dd=0.4, fib=3.0, pt=13.0)      # platelets missing: 0 + 2 = 2
    assert r.overt is False and r.missing == ("platelets",)


def test_undetermined_when_missing_items_could_tip_it():
    r = run(plt=60, dd=2.0)                # 1 + 2 known = 3; + 2 + 1 = 6 possible
    assert (r.total, r.determinable, r.overt) == (None, False, None)
    assert r.total_range == (3, 6)


def test_d_dimer_without_uln_counts_as_missing():
    low = run(plt=200, pt=13.0, fib=3.0, dd=9.0, dd_basis=None)      # 0..3
    assert low.d_dimer_points is None and low.overt is False and low.determinable
    assert low.missing == ("d_dimer_basis",)
    tip = run(plt=40, pt=19.0, fib=3.0, dd=9.0, dd_basis=None)       # 4..7
    assert tip.overt is None and tip.determinable is False


def test_everything_missing():
    r = run()
    assert (r.total, r.determinable, r.overt) == (None, False, None)
    assert set(r.missing) == {"platelets", "d_dimer", "pt", "fibrinogen"}


def test_bounded_values_narrow_items():
    r = run(plt=20, dd=20.0, dd_cmp=">", pt=13.0, fib=3.0)      # d-dimer > 40x -> 3
    assert r.d_dimer_points == 3 and r.total == 5 and r.overt is True
    r = run(plt=60, dd=2.0, dd_cmp=">", pt=19.0, fib=3.0)       # > 4x: 2 or 3
    assert r.d_dimer_points is None and r.total_range == (5, 6) and r.overt is True


def test_to_json_keys():
    j = run(**NORMAL).to_json()
    assert {"platelet_points", "d_dimer_points", "pt_points", "fibrinogen_points", "total",
            "determinable", "overt"} <= set(j)
    assert j["total"] == 0 and j["pt_prolongation_s"] == 0.0
