"""SIC (clinical rules §6): item edges, every row of the missing-data table, the
platelet+INR > 2 condition and its policy switch, comparators."""
import pytest
from score_helpers import DEFAULT, m, pin, pol

from cds_service.logic import sic, sofa
from cds_service.logic.inputs import RespiratorySupport, Vasoactive

IMV = RespiratorySupport(modalities=frozenset({"IMV"}))
PF = {0: 450, 1: 350, 2: 250, 3: 150, 4: 50}          # with IMV
MAP = {0: 75, 1: 65}
BILI = {0: 0.5, 1: 1.5, 2: 3.0, 3: 8.0, 4: 13.0}       # mg/dL
CREAT = {0: 1.0, 1: 1.5, 2: 2.5, 3: 4.0, 4: 6.0}       # mg/dL
PLT = {0: 150, 1: 100, 2: 99}                          # SIC platelet points
INR = {0: 1.2, 1: 1.4, 2: 1.41}                        # SIC INR points


def sofa_with(resp=None, cardio=None, hep=None, ren=None, **extra):
    kw = dict(extra)
    if resp is not None:
        kw.update(pf_ratio=m(PF[resp]), respiratory=IMV)
    if cardio is not None:
        kw["map"] = m(MAP[cardio])
    if hep is not None:
        kw["bilirubin"] = m(BILI[hep])
    if ren is not None:
        kw["creatinine"] = m(CREAT[ren])
    return sofa.compute(pin(**kw), DEFAULT)


def run(p_plt, p_inr, s, policy=DEFAULT):
    plt = None if p_plt is None else m(PLT[p_plt])
    inr = None if p_inr is None else m(INR[p_inr])
    return sic.compute(plt, inr, s, policy)


COMPLETE_0 = dict(resp=0, cardio=0, hep=0, ren=0)


@pytest.mark.parametrize("plt,points", [(150, 0), (149.9, 1), (100, 1), (99.9, 2)])
def test_platelet_points_edges(plt, points):
    assert sic.compute(m(plt), m(1.0), sofa_with(**COMPLETE_0), DEFAULT).platelet_points == points


@pytest.mark.parametrize("inr,points", [(1.2, 0), (1.21, 1), (1.4, 1), (1.41, 2)])
def test_inr_points_edges(inr, points):
    assert sic.compute(m(200), m(inr), sofa_with(**COMPLETE_0), DEFAULT).inr_points == points


@pytest.mark.parametrize("sofa4,points", [(0, 0), (1, 1), (2, 2), (3, 2), (9, 2)])
def test_sofa_points_capped_at_2(sofa4, points):
    organs = {0: COMPLETE_0, 1: dict(resp=1, cardio=0, hep=0, ren=0),
              2: dict(resp=1, cardio=1, hep=0, ren=0), 3: dict(resp=1, cardio=1, hep=1, ren=0),
              9: dict(resp=4, cardio=1, hep=2, ren=2)}[sofa4]
    s = sofa_with(**organs)
    assert s.sofa4 == sofa4
    assert run(0, 0, s).sofa_points == points


# -- missing-data table, row by row ----------------------------------------------------

@pytest.mark.parametrize("p_plt,p_inr", [(None, 2), (2, None), (None, None)])
def test_row_platelets_or_inr_missing(p_plt, p_inr):
    r = run(p_plt, p_inr, sofa_with(resp=4, cardio=1, hep=2, ren=2))
    assert (r.sofa_points, r.total, r.determinable, r.positive) == (None, None, False, None)
    assert r.platelet_points == (None if p_plt is None else 2)
    assert r.inr_points == (None if p_inr is None else 2)
    assert set(r.missing) == {n for n, p in (("platelets", p_plt), ("inr", p_inr)) if p is None}


@pytest.mark.parametrize("p_plt,p_inr,organs,total,positive", [
    (2, 1, dict(resp=1, cardio=1, hep=0, ren=0), 5, True),    # P 3 + 2
    (2, 1, dict(resp=1, cardio=0, hep=0, ren=0), 4, True),    # P 3 + 1 = 4
    (2, 1, COMPLETE_0, 3, False),                             # 3 + 0
    (2, 0, dict(resp=1, cardio=1, hep=0, ren=0), 4, False),   # total 4 but P = 2, not > 2
    (1, 1, dict(resp=2, cardio=1, hep=0, ren=0), 4, False),   # P 2
    (2, 2, COMPLETE_0, 4, True),                              # P 4 + 0
])
def test_row_sofa4_complete(p_plt, p_inr, organs, total, positive):
    r = run(p_plt, p_inr, sofa_with(**organs))
    assert r.total == total and r.determinable is True and r.positive is positive


PLT_INR = {(2, 1): 3, (1, 1): 2, (2, 2): 4}


@pytest.mark.parametrize("p_plt,p_inr,positive", [(2, 1, True), (1, 1, False), (2, 2, True)])
def test_row_incomplete_s_at_least_2(p_plt, p_inr, positive):
    s = sofa_with(resp=2)                       # only respiratory known: S = 2
    assert not s.sofa4_complete and s.sofa4_lower_bound == 2
    r = run(p_plt, p_inr, s)
    assert r.sofa_points == 2 and r.total == PLT_INR[(p_plt, p_inr)] + 2
    assert r.determinable is True and r.positive is positive


@pytest.mark.parametrize("s_known", [dict(), dict(resp=1)])   # S = 0, S = 1
def test_row_incomplete_s_below_2_p_4(s_known):
    r = run(2, 2, sofa_with(**s_known))
    assert (r.sofa_points, r.total, r.determinable, r.positive) == (None, None, True, True)


@pytest.mark.parametrize("p_plt,p_inr,s_known", [
    (1, 1, dict(resp=1)), (2, 0, dict()), (0, 0, dict(hep=1)), (1, 0, dict())])
def test_row_incomplete_s_below_2_p_at_most_2(p_plt, p_inr, s_known):
    r = run(p_plt, p_inr, sofa_with(**s_known))
    assert (r.sofa_points, r.total, r.determinable, r.positive) == (None, None, True, False)


def test_row_incomplete_p_3_s_1():
    r = run(2, 1, sofa_with(ren=1, hep=0))
    assert (r.sofa_points, r.total, r.determinable, r.positive) == (None, None, True, True)


def test_row_incomplete_p_3_s_0():
    r = run(2, 1, sofa_with(hep=0, ren=0))
    assert (r.sofa_points, r.total, r.determinable, r.positive) == (None, None, False, None)
    # what would settle it: the unknown SOFA-4 organs
    assert set(r.missing) == {"pf_ratio", "map"}
    assert r.total_range == (3, 5)


def test_cardiovascular_lower_bound_counts_toward_s():
    s = sofa_with(hep=0, vasoactives=(Vasoactive("norepinephrine", None),))
    assert s.cardiovascular is None and s.sofa4_lower_bound == 3
    r = run(2, 1, s)
    assert r.sofa_points == 2 and r.total == 5 and r.positive is True


# -- require_plt_inr_gt_2 = false: decide from P + min(S,2) .. P + 2 -----------------

LOOSE = pol({"sic.require_plt_inr_gt_2": False})


@pytest.mark.parametrize("p_plt,p_inr,s_known,determinable,positive", [
    (2, 0, dict(), False, None),         # 2..4
    (1, 1, dict(resp=1), False, None),   # 3..4
    (1, 0, dict(resp=1), True, False),   # 2..3
    (0, 0, dict(), True, False),         # 0..2
    (2, 1, dict(), False, None),         # 3..5
    (2, 2, dict(), True, True),          # 4..6
    (2, 0, dict(resp=2), True, True),    # S >= 2: 4 exactly
])
def test_loose_rule_bounds(p_plt, p_inr, s_known, determinable, positive):
    r = run(p_plt, p_inr, sofa_with(**s_known), policy=LOOSE)
    assert r.determinable is determinable and r.positive is positive


def test_loose_rule_complete_total_4_with_p_2_is_positive():
    s = sofa_with(resp=1, cardio=1, hep=0, ren=0)
    assert run(2, 0, s).positive is False
    assert run(2, 0, s, policy=LOOSE).positive is True


def test_positive_total_is_policy():
    s = sofa_with(resp=1, cardio=1, hep=0, ren=0)          # sofa points 2
    assert run(2, 1, s, policy=pol({"sic.positive_total": 6})).positive is False   # 5 < 6
    assert run(2, 2, s, policy=pol({"sic.positive_total": 6})).positive is True    # 6


# -- comparators ---------------------------------------------------------------------

def test_bounded_platelets_and_inr():
    s0 = sofa_with(hep=0, ren=0)                             # incomplete, S = 0
    r = sic.compute(m(50, comparator="<"), m(1.5), s0, DEFAULT)
    assert r.platelet_points == 2 and r.positive is True     # P = 4
    r = sic.compute(m(99), m(1.3, comparator=">"), s0, DEFAULT)
    assert r.inr_points is None and r.positive is None       # P 3..4 with S 0..2
    s1 = sofa_with(resp=1, cardio=0, hep=0, ren=0)          # complete, sofa points 1
    r = sic.compute(m(99), m(1.3, comparator=">"), s1, DEFAULT)
    assert r.positive is True and r.total is None and r.total_range == (4, 5)


def test_to_json_keys():
    j = run(2, 1, sofa_with(**COMPLETE_0)).to_json()
    assert {"platelet_points", "inr_points", "sofa_points", "total", "determinable",
            "positive"} <= set(j)
    assert (j["platelet_points"], j["inr_points"], j["sofa_points"], j["total"]) == (2, 1, 0, 3)
