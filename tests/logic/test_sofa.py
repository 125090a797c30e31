"""SOFA (clinical rules §5): all six sub-scores at every band edge, support, vasoactives,
SI bands, recorded sub-scores, SOFA-4 and its bounds."""
import pytest
from score_helpers import DEFAULT, m, pin, pol

from cds_service.logic import sofa
from cds_service.logic.inputs import RecordedSofa, RespiratorySupport, Vasoactive

IMV = RespiratorySupport(modalities=frozenset({"IMV"}))
LOW_FLOW = RespiratorySupport(modalities=frozenset({"low-flow"}))


def run(policy=DEFAULT, **kw):
    return sofa.compute(pin(**kw), policy)


# -- respiratory ----------------------------------------------------------------------

@pytest.mark.parametrize("pf,supported,unsupported", [
    (400, 0, 0), (399.9, 1, 1), (300, 1, 1), (299.9, 2, 2),
    (200, 2, 2), (199.9, 3, 2), (100, 3, 2), (99.9, 4, 2),
])
def test_respiratory_edges_with_and_without_support(pf, supported, unsupported):
    assert run(pf_ratio=m(pf, "mm[Hg]"), respiratory=IMV).respiratory == supported
    assert run(pf_ratio=m(pf, "mm[Hg]"), respiratory=LOW_FLOW).respiratory == unsupported


@pytest.mark.parametrize("modalities,score", [
    ({"NIV"}, 4), ({"CPAP"}, 4), ({"IMV"}, 4),
    ({"HFNC"}, 2),               # HFNC does not count for SOFA
    ({"HFNC", "low-flow"}, 2),
])
def test_which_support_unlocks_3_and_4(modalities, score):
    r = run(pf_ratio=m(80), respiratory=RespiratorySupport(modalities=frozenset(modalities)))
    assert r.respiratory == score


def test_room_air_is_known_no_support():
    r = run(pf_ratio=m(150), respiratory=RespiratorySupport(room_air_documented=True))
    assert r.respiratory == 2


def test_support_unknown_below_200_is_a_bound():
    r = run(pf_ratio=m(150))               # no modality, no room air recorded
    assert r.respiratory is None and r.ranges["respiratory"] == (2, 3)
    assert r.sofa4_lower_bound == 2 and "respiratory_support" in r.missing
    assert run(pf_ratio=m(50)).ranges["respiratory"] == (2, 4)
    assert run(pf_ratio=m(250)).respiratory == 2      # support cannot matter at >= 200


def test_support_modalities_are_policy():
    hfnc = RespiratorySupport(modalities=frozenset({"HFNC"}))
    p = pol({"sofa.respiratory_support_modalities": ["IMV", "NIV", "CPAP", "HFNC"]})
    assert run(pf_ratio=m(150), respiratory=hfnc, policy=p).respiratory == 3
    ecmo = RespiratorySupport(modalities=frozenset({"low-flow"}), ecmo=True)
    p = pol({"sofa.respiratory_support_modalities": ["IMV", "ECMO"]})
    assert run(pf_ratio=m(150), respiratory=ecmo, policy=p).respiratory == 3
    assert run(pf_ratio=m(150), respiratory=ecmo).respiratory == 2


def test_respiratory_missing():
    r = run(respiratory=IMV)
    assert r.respiratory is None and r.missing_by_organ["respiratory"] == ("pf_ratio",)


# -- coagulation ---------------------------------------------------------------------

@pytest.mark.parametrize("plt,score", [
    (150, 0), (149.9, 1), (100, 1), (99.9, 2), (50, 2), (49.9, 3), (20, 3), (19.9, 4)])
def test_coagulation_edges(plt, score):
    assert run(platelets=m(plt)).coagulation == score


@pytest.mark.parametrize("comparator,value,score,rng", [
    ("<", 20, 4, (4, 4)), ("<", 100, None, (2, 4)), (">", 150, 0, (0, 0)), (">=", 150, 0, (0, 0)),
    ("<=", 20, None, (3, 4))])
def test_coagulation_bounds(comparator, value, score, rng):
    r = run(platelets=m(value, comparator=comparator))
    assert r.coagulation == score and r.ranges["coagulation"] == rng


# -- hepatic -------------------------------------------------------------------------

@pytest.mark.parametrize("bili,score", [
    (1.19, 0), (1.2, 1), (1.99, 1), (2.0, 2), (5.99, 2), (6.0, 3), (11.99, 3), (12.0, 4)])
def test_hepatic_mg_dl_edges(bili, score):
    assert run(bilirubin=m(bili, "mg/dL")).hepatic == score


def umol_bili(umol, unit="umol/L", comparator=None):
    return m(umol / 17.1, "mg/dL", comparator, reported_value=umol, reported_unit=unit)


@pytest.mark.parametrize("umol,score", [
    (19.9, 0), (20, 1), (32.9, 1), (33, 2), (101.9, 2), (102, 3), (204, 3), (204.1, 4)])
def test_hepatic_si_native_edges(umol, score):
    assert run(bilirubin=umol_bili(umol)).hepatic == score


def test_hepatic_si_bands_differ_from_conversion():
    # 34 umol/L: SI bands 2; converted 34 / 17.1 = 1.988 mg/dL -> 1
    assert run(bilirubin=umol_bili(34)).hepatic == 2
    assert run(bilirubin=umol_bili(34, "µmol/L")).hepatic == 2
    assert run(bilirubin=umol_bili(34), policy=pol({"sofa.si_native_bands": False})).hepatic == 1


# -- renal ---------------------------------------------------------------------------

@pytest.mark.parametrize("creat,score", [
    (1.19, 0), (1.2, 1), (1.99, 1), (2.0, 2), (3.49, 2), (3.5, 3), (4.99, 3), (5.0, 4)])
def test_renal_mg_dl_edges(creat, score):
    assert run(creatinine=m(creat, "mg/dL")).renal == score


def umol_creat(value, unit="umol/L"):
    per_umol = 1000 if unit == "mmol/L" else 1
    return m(value * per_umol / 88.4, "mg/dL", reported_value=value, reported_unit=unit)


@pytest.mark.parametrize("umol,score", [
    (109, 0), (110, 1), (170, 1), (171, 2), (299, 2), (300, 3), (440, 3), (441, 4)])
def test_renal_si_native_edges(umol, score):
    assert run(creatinine=umol_creat(umol)).renal == score


def test_renal_si_vs_converted_and_mmol():
    # 108 umol/L: SI 0; converted 108 / 88.4 = 1.222 mg/dL -> 1
    assert run(creatinine=umol_creat(108)).renal == 0
    assert run(creatinine=umol_creat(108), policy=pol({"sofa.si_native_bands": False})).renal == 1
    assert run(creatinine=umol_creat(0.108, "mmol/L")).renal == 0   # x1000 = 108 umol/L
    assert run(creatinine=umol_creat(0.441, "mmol/L")).renal == 4   # 441 umol/L
    assert run(creatinine=umol_creat(0.44, "mmol/L")).renal == 3    # 440 umol/L


@pytest.mark.parametrize("urine,score", [(500, 0), (499, 3), (200, 3), (199, 4)])
def test_urine_output_alone(urine, score):
    assert run(urine_output_24h=m(urine, "mL")).renal == score


@pytest.mark.parametrize("creat,urine,score", [
    (1.5, 150, 4),    # max(1, 4)
    (5.0, 600, 4),    # max(4, 0)
    (2.5, 450, 3),    # max(2, 3)
    (1.0, 800, 0),
])
def test_renal_is_max_of_creatinine_and_urine(creat, urine, score):
    assert run(creatinine=m(creat), urine_output_24h=m(urine)).renal == score


def test_renal_missing_names_both_inputs():
    r = run()
    assert r.renal is None
    assert r.missing_by_organ["renal"] == ("creatinine", "urine_output_24h")


# -- cardiovascular -------------------------------------------------------------------

def vaso(drug, rate, ok=True):
    return Vasoactive(ingredient=drug, rate_ug_kg_min=rate, meets_min_duration=ok)


@pytest.mark.parametrize("mapv,score", [(70, 0), (69.9, 1)])
def test_map_edge(mapv, score):
    assert run(map=m(mapv)).cardiovascular == score


@pytest.mark.parametrize("drug,rate,score", [
    ("dopamine", 5, 2), ("dopamine", 5.01, 3), ("dopamine", 15, 3), ("dopamine", 15.01, 4),
    ("dobutamine", 1, 2), ("dobutamine", 20, 2),
    ("norepinephrine", 0.1, 3), ("norepinephrine", 0.11, 4), ("norepinephrine", 0.01, 3),
    ("epinephrine", 0.1, 3), ("epinephrine", 0.11, 4),
])
def test_vasoactive_edges(drug, rate, score):
    assert run(map=m(75), vasoactives=(vaso(drug, rate),)).cardiovascular == score


@pytest.mark.parametrize("drug,rng", [
    ("norepinephrine", (3, 4)), ("epinephrine", (3, 4)), ("dopamine", (2, 4))])
def test_unknown_rate_gives_a_lower_bound(drug, rng):
    r = run(map=m(60), vasoactives=(vaso(drug, None),))
    assert r.cardiovascular is None and r.ranges["cardiovascular"] == rng
    assert r.sofa4_lower_bound == rng[0]
    assert r.missing_by_organ["cardiovascular"] == ("vasoactive_rate",)
    assert r.to_json()["bounds"]["cardiovascular"] == list(rng)


def test_dobutamine_unknown_rate_is_still_2():
    assert run(vasoactives=(vaso("dobutamine", None),)).cardiovascular == 2


def test_highest_contribution_wins():
    r = run(map=m(60), vasoactives=(vaso("norepinephrine", 0.05), vaso("dopamine", 16)))
    assert r.cardiovascular == 4
    # a known 0.2 norepinephrine settles 4 whatever the unknown dopamine rate
    r = run(vasoactives=(vaso("norepinephrine", 0.2), vaso("dopamine", None)))
    assert r.cardiovascular == 4


def test_short_infusions_and_non_sofa_drugs_do_not_score():
    assert run(map=m(65), vasoactives=(vaso("norepinephrine", 0.3, ok=False),)).cardiovascular == 1
    r = run(vasoactives=(vaso("vasopressin", 0.03), vaso("phenylephrine", 1.0)))
    assert r.cardiovascular is None and r.missing_by_organ["cardiovascular"] == ("map",)


def test_no_vasoactive_no_map_is_null():
    assert run().cardiovascular is None


# -- CNS -----------------------------------------------------------------------------

@pytest.mark.parametrize("gcs,score", [
    (15, 0), (14, 1), (13, 1), (12, 2), (10, 2), (9, 3), (6, 3), (5, 4), (3, 4)])
def test_cns_edges(gcs, score):
    assert run(gcs=m(gcs)).cns == score


# -- recorded sub-scores ----------------------------------------------------------------

def test_recorded_subscore_fills_only_uncomputable_organs():
    rec = RecordedSofa(respiratory=m(3), hepatic=m(2))
    r = run(recorded_sofa=rec, bilirubin=m(0.5))
    assert r.respiratory == 3 and r.sources["respiratory"] == "recorded"
    assert r.hepatic == 0 and r.sources["hepatic"] == "computed"
    assert "pf_ratio" not in r.missing


def test_prefer_recorded_subscores():
    rec = RecordedSofa(hepatic=m(2))
    r = run(recorded_sofa=rec, bilirubin=m(0.5), policy=pol({"sofa.prefer_recorded_subscores": True}))
    assert r.hepatic == 2 and r.sources["hepatic"] == "recorded"


def test_recorded_subscore_settles_a_bound_unless_it_contradicts_it():
    unknown = (vaso("norepinephrine", None),)
    r = run(vasoactives=unknown, recorded_sofa=RecordedSofa(cardiovascular=m(4)))
    assert r.cardiovascular == 4
    r = run(vasoactives=unknown, recorded_sofa=RecordedSofa(cardiovascular=m(1)))
    assert r.cardiovascular is None and r.ranges["cardiovascular"] == (3, 4)
    assert any("contradicts" in n for n in r.notes)


@pytest.mark.parametrize("value", [2.5, 5, -1])
def test_invalid_recorded_subscores_are_ignored(value):
    assert run(recorded_sofa=RecordedSofa(cns=m(value))).cns is None


# -- SOFA-4 --------------------------------------------------------------------------

def full(**over):
    kw = dict(pf_ratio=m(250), respiratory=IMV, map=m(65), bilirubin=m(2.5),
              creatinine=m(1.0), platelets=m(40), gcs=m(8))
    kw.update(over)
    return kw


def test_sofa4_complete_sums_four_organs():
    r = run(**full())
    # respiratory 2 + cardiovascular 1 + hepatic 2 + renal 0; coagulation 3, cns 3 left out
    assert (r.respiratory, r.cardiovascular, r.hepatic, r.renal) == (2, 1, 2, 0)
    assert (r.coagulation, r.cns) == (3, 3)
    assert r.sofa4 == 5 and r.sofa4_complete is True
    assert r.sofa4_lower_bound == 5 == r.sofa4_upper_bound


def test_sofa4_incomplete():
    r = run(**full(bilirubin=None))
    assert r.sofa4 is None and r.sofa4_complete is False
    assert r.sofa4_lower_bound == 3 and r.sofa4_upper_bound == 7   # 2+1+0, + 4 for liver
    assert r.missing_for() == ("bilirubin",)
    r = run(**full(map=None, vasoactives=(vaso("epinephrine", None),)))
    assert r.sofa4 is None and r.sofa4_lower_bound == 2 + 3 + 2 + 0


def test_worst_in_window_is_noted():
    r = run(**full(), policy=pol({"sofa.value_selection": "worst_in_window"}))
    assert r.sofa4 == 5 and any("worst_in_window" in n for n in r.notes)


def test_to_json_keys():
    j = run(**full()).to_json()
    assert {"respiratory", "cardiovascular", "hepatic", "renal", "coagulation", "cns",
            "sofa4", "sofa4_complete"} <= set(j)
    assert j["sofa4_lower_bound"] == 5 and j["bounds"] == {}
