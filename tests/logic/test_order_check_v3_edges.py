"""clinical-rules §19 band edges (issue 19 "Tests"), written from the rules: each value on both sides
of its threshold, through `check_draft` with plain inputs."""
from __future__ import annotations

import pytest

from cds_service.logic.inputs import MedicationOrder
from cds_service.logic.intensity import draft_intensity, renal_state
from cds_service.logic.order_check import Proposed, check_draft
from cds_service.logic.order_safety import fondaparinux_band_mg
from cds_service.logic.policy import Policy
from order_helpers import DRAFT, ctx, enox

P = Policy.default()


def drug(name: str, cls: str, mg: float | None, per_day: float | None, **kw) -> MedicationOrder:
    return MedicationOrder(name, cls, dose_mg=mg, doses_per_day=per_day, status="draft", source=DRAFT, **kw)


def findings(result) -> list[tuple]:
    return [(f.kind, f.urgency) for f in result.findings]


def has(result, kind: str, urgency: str | None = None) -> bool:
    return any(f.kind == kind and (urgency is None or f.urgency == urgency) for f in result.findings)


# -- 1.0 mg/kg at the 10 mg rounding step (§19.2: the maximum is rounded UP to the next 10 mg) ----------
@pytest.mark.parametrize("weight, mg, above", [
    (64.0, 70, False),   # 64 mg rounds up to 70: a 70 mg syringe never trips the ceiling
    (64.0, 80, True),
    (70.0, 70, False),
    (70.0, 80, True),
    (70.1, 80, False),   # 70.1 rounds up to 80
])
def test_enoxaparin_twice_daily_ceiling_at_the_rounding_step(weight, mg, above):
    r = check_draft(enox(mg, 2), ctx(weight_kg=weight, bmi=24.0), P)
    assert has(r, "dose_above_maximum", "critical") is above


@pytest.mark.parametrize("weight, mg, above", [(60.0, 90, False), (60.0, 100, True), (60.1, 100, False)])
def test_enoxaparin_once_daily_ceiling_is_1_5_mg_kg_rounded_up(weight, mg, above):
    r = check_draft(enox(mg, 1), ctx(weight_kg=weight, bmi=24.0), P)
    assert has(r, "dose_above_maximum", "critical") is above


def test_the_ceiling_update_is_1_mg_kg_twice_daily_nearest_10_mg_5_up():
    assert check_draft(enox(150, 2), ctx(weight_kg=64.0), P).findings[0].proposed == Proposed("enoxaparin", 60, None, 2)
    assert check_draft(enox(150, 2), ctx(weight_kg=65.0), P).findings[0].proposed == Proposed("enoxaparin", 70, None, 2)


# -- fondaparinux at 49.9 / 50 / 100 / 100.1 kg ---------------------------------------------------------------
@pytest.mark.parametrize("weight, band", [(49.9, 5), (50.0, 7.5), (100.0, 7.5), (100.1, 10)])
def test_fondaparinux_treatment_band(weight, band):
    assert fondaparinux_band_mg(weight, P) == band
    over = check_draft(drug("fondaparinux", "anticoagulant", band + 2.5, 1), ctx(weight_kg=weight), P)
    assert over.findings[0].kind == "dose_above_maximum"
    assert over.findings[0].proposed == Proposed("fondaparinux", band, None, 1)
    right = check_draft(drug("fondaparinux", "anticoagulant", band, 1), ctx(weight_kg=weight), P)
    assert not has(right, "dose_above_maximum")


def test_fondaparinux_prophylaxis_floor_is_for_prophylaxis_only():
    # 2.5 mg at 49.9 kg: the label floor (warning); 5 mg at 49.9 kg: the labelled treatment band
    assert has(check_draft(drug("fondaparinux", "anticoagulant", 2.5, 1), ctx(weight_kg=49.9), P), "contraindicated",
               "warning")
    assert not has(check_draft(drug("fondaparinux", "anticoagulant", 5, 1), ctx(weight_kg=49.9), P), "contraindicated")


def test_fondaparinux_between_prophylaxis_and_the_band_is_a_warning():
    r = check_draft(drug("fondaparinux", "anticoagulant", 5, 1), ctx(weight_kg=75.0), P)
    assert has(r, "fondaparinux_band", "warning")


# -- CrCl 14.9 / 15 / 29.9 / 30, with and without renal replacement -----------------------------------------------
@pytest.mark.parametrize("crcl, rrt, expected", [
    (14.9, False, ("switch_product", Proposed("heparin", None, 5000, 2))),
    (15.0, False, ("dose_change", Proposed("enoxaparin", 30, None, 1))),
    (29.9, False, ("dose_change", Proposed("enoxaparin", 30, None, 1))),
    (30.0, False, None),
    # renal replacement counts as CrCl 10 whatever the computed CrCl (§19.0)
    (15.0, True, ("switch_product", Proposed("heparin", None, 5000, 2))),
    (30.0, True, ("switch_product", Proposed("heparin", None, 5000, 2))),
    (80.0, True, ("switch_product", Proposed("heparin", None, 5000, 2))),
])
def test_prophylactic_enoxaparin_across_the_renal_rows(crcl, rrt, expected):
    r = check_draft(enox(40, 1), ctx(crcl_ml_min=crcl, crcl_lt_30=crcl < 30, renal_replacement=rrt), P)
    got = (r.findings[0].kind, r.findings[0].proposed) if r.findings else None
    assert got == expected
    if expected is not None:
        assert r.findings[0].urgency == "warning"


@pytest.mark.parametrize("crcl, rrt, kind, urgency, action", [
    (14.9, False, "dose_above_maximum", "critical", "delete"),   # therapeutic twice daily at < 15
    (15.0, False, "dose_above_maximum", "critical", "update"),   # CrCl 15-<30: 1 mg/kg once daily
    (29.9, False, "dose_above_maximum", "critical", "update"),
    (30.0, False, None, None, None),
    (30.0, True, "dose_above_maximum", "critical", "delete"),
])
def test_therapeutic_enoxaparin_twice_daily_across_the_renal_rows(crcl, rrt, kind, urgency, action):
    r = check_draft(enox(70, 2), ctx(weight_kg=70.0, crcl_ml_min=crcl, crcl_lt_30=crcl < 30,
                                     renal_replacement=rrt), P)
    renal = [f for f in r.findings if f.kind == "dose_above_maximum"]
    if kind is None:
        assert renal == []
    else:
        assert (renal[0].urgency, renal[0].action) == (urgency, action)
    if action == "update":
        assert renal[0].proposed == Proposed("enoxaparin", 70, None, 1)


def test_intermediate_once_daily_at_crcl_below_15_is_a_warning_delete():
    r = check_draft(enox(70, 1), ctx(weight_kg=70.0, crcl_ml_min=12.0, crcl_lt_30=True), P)
    assert [(f.kind, f.urgency, f.action) for f in r.findings] == [("renal_dose", "warning", "delete")]


def test_renal_state_counts_renal_replacement_as_crcl_10():
    state = renal_state(crcl_ml_min=80.0, renal_replacement=True, creatinine_unstable=None,
                        creatinine_rising=False, policy=P)
    assert state.crcl == 10 and state.rrt and not state.unknown and state.below(15, P)
    assert renal_state(crcl_ml_min=None, renal_replacement=None, creatinine_unstable=None,
                       creatinine_rising=False, policy=P).unknown
    assert renal_state(crcl_ml_min=60.0, renal_replacement=False, creatinine_unstable=True,
                       creatinine_rising=True, policy=P).changing


def test_renal_unknown_or_changing_warns_for_an_intermediate_lmwh_and_doacs_only():
    unknown = ctx(crcl_ml_min=None, crcl_lt_30=None)
    assert has(check_draft(enox(40, 2), unknown, P), "renal_unknown", "warning")
    assert not has(check_draft(enox(40, 1), unknown, P), "renal_unknown")
    assert has(check_draft(drug("apixaban", "doac", 2.5, 2), unknown, P), "renal_unknown", "warning")
    rising = ctx(creatinine_unstable=True, creatinine_rising=True)
    assert has(check_draft(drug("rivaroxaban", "doac", 10, 1), rising, P), "renal_unknown", "warning")


# -- DOACs ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mg, per_day, critical", [(10, 2, False), (12.5, 2, True), (5, 5, True), (10, 3, True)])
def test_apixaban_20_vs_25_mg_a_day(mg, per_day, critical):
    r = check_draft(drug("apixaban", "doac", mg, per_day), ctx(), P)
    assert has(r, "dose_above_maximum", "critical") is critical


@pytest.mark.parametrize("mg, crcl_actual, warned", [
    (15, 49.9, False), (20, 49.9, True), (15, 50.0, False), (20, 50.0, False)])
def test_rivaroxaban_15_vs_20_mg_a_day_at_crcl_49_9_and_50(mg, crcl_actual, warned):
    r = check_draft(drug("rivaroxaban", "doac", mg, 1), ctx(crcl_actual_ml_min=crcl_actual), P)
    assert has(r, "renal_dose", "warning") is warned


@pytest.mark.parametrize("crcl_actual, warned", [(95.0, False), (95.1, True), (50.0, True), (50.1, False)])
def test_edoxaban_60_mg_at_crcl_95_and_95_1(crcl_actual, warned):
    r = check_draft(drug("edoxaban", "doac", 60, 1), ctx(crcl_actual_ml_min=crcl_actual), P)
    assert has(r, "renal_dose", "warning") is warned


def test_doac_intensity_list():
    assert draft_intensity(drug("rivaroxaban", "doac", 10, 1), weight_kg=75, bmi=25, crcl_lt_30=False,
                           policy=P) == "prophylactic"
    assert draft_intensity(drug("apixaban", "doac", 2.5, 2), weight_kg=75, bmi=25, crcl_lt_30=False,
                           policy=P) == "prophylactic"
    assert draft_intensity(drug("dabigatran", "doac", 220, 1), weight_kg=75, bmi=25, crcl_lt_30=False,
                           policy=P) == "prophylactic"
    assert draft_intensity(drug("dabigatran", "doac", 150, 2), weight_kg=75, bmi=25, crcl_lt_30=False,
                           policy=P) == "therapeutic"
    assert draft_intensity(drug("warfarin", "vka", 5, 1), weight_kg=75, bmi=25, crcl_lt_30=False,
                           policy=P) == "therapeutic"


def test_strong_inhibitor_halves_apixaban_above_2_5_mg_and_avoids_the_others():
    inhib = ctx(inhibitors=("nirmatrelvir",))
    assert has(check_draft(drug("apixaban", "doac", 5, 2), inhib, P), "interaction", "warning")
    assert not has(check_draft(drug("apixaban", "doac", 2.5, 2), inhib, P), "interaction")
    assert has(check_draft(drug("rivaroxaban", "doac", 10, 1), inhib, P), "interaction", "warning")
    assert not has(check_draft(drug("apixaban", "doac", 5, 2), ctx(), P), "interaction")


# -- 4Ts 3 vs 4 ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("score, urgency", [(None, "warning"), (3, "warning"), (4, "critical")])
def test_four_ts_raises_a_heparin_draft_in_suspected_hit(score, urgency):
    r = check_draft(enox(40, 1), ctx(contraindications=("hit_suspected",), four_ts=score), P)
    assert [(f.kind, f.urgency, f.action) for f in r.findings][0] == ("contraindicated", urgency, "delete")


# -- platelets 24.9 / 25, with and without HIT -------------------------------------------------------------------
@pytest.mark.parametrize("hit, stop", [((), True), (("hit_acute",), False), (("hit_suspected",), False)])
def test_platelets_below_25_stop_a_doac_except_in_hit(hit, stop):
    r = check_draft(drug("apixaban", "doac", 5, 2), ctx(contraindications=hit + ("platelets_lt_25",)), P)
    assert has(r, "contraindicated", "critical") is stop


def test_platelets_25_is_not_a_stop():
    # the §10.1 code is computed upstream (< 25); at 25 no code, so no stop
    r = check_draft(drug("apixaban", "doac", 5, 2), ctx(), P)
    assert not has(r, "contraindicated")


def test_a_stop_deletes_the_draft_only_without_hit_indication_or_ecmo():
    base = dict(contraindications=("active_bleeding",))
    assert check_draft(drug("apixaban", "doac", 5, 2), ctx(**base), P).findings[0].action == "delete"
    for extra in (dict(other_indication=True), dict(possible_other_indication=True), dict(ecmo=True)):
        assert check_draft(drug("apixaban", "doac", 5, 2), ctx(**base, **extra), P).findings[0].action is None


# -- argatroban at bilirubin 1.5 / 1.51 ----------------------------------------------------------------------------
@pytest.mark.parametrize("bilirubin, critically_ill, warned", [
    (1.5, False, False), (1.51, False, True), (1.0, True, True), (None, False, False)])
def test_argatroban_start_dose(bilirubin, critically_ill, warned):
    arg = MedicationOrder("argatroban", "dti", continuous=True, status="draft", source=DRAFT)
    r = check_draft(arg, ctx(bilirubin_mg_dl=bilirubin, critically_ill=critically_ill, other_indication=True), P)
    assert has(r, "argatroban_start", "warning") is warned


# -- HIT intensities (§19.6) ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("draft, expected", [
    (enox(40, 1), Proposed("fondaparinux", 2.5, None, 1)),       # prophylactic
    (enox(40, 2), Proposed("fondaparinux", 2.5, None, 1)),       # intermediate (0.53 mg/kg at 75 kg)
    (enox(80, 2), Proposed("fondaparinux", 7.5, None, 1)),       # therapeutic: the weight band
])
def test_heparin_draft_with_hit_history_by_intensity(draft, expected):
    r = check_draft(draft, ctx(contraindications=("hit_history",)), P)
    f = r.finding("switch_product")
    assert f.proposed == expected and f.action == "switch" and f.urgency == "warning"


def test_vka_in_acute_or_suspected_hit_is_critical_with_a_delete():
    for code in ("hit_acute", "hit_suspected"):
        r = check_draft(drug("warfarin", "vka", 5, 1), ctx(contraindications=(code,)), P)
        assert [(f.kind, f.urgency, f.action) for f in r.findings][0] == ("hit_vka", "critical", "delete")


def test_pregnancy():
    assert check_draft(drug("warfarin", "vka", 5, 1), ctx(pregnant=True), P).findings[0].urgency == "critical"
    assert check_draft(drug("warfarin", "vka", 5, 1), ctx(pregnant=True, other_indication=True),
                       P).findings[0].action is None
    assert has(check_draft(drug("apixaban", "doac", 2.5, 2), ctx(pregnant=True), P), "pregnancy_doac", "warning")


# -- §19.11 obesity -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("draft, bmi, weight, accepted", [
    (enox(80, 1), 40.0, 115.0, True),
    (enox(40, 2), 40.0, 115.0, True),
    (enox(60, 2), 50.0, 150.0, True),      # accepted at BMI >= 50, never corrected down
    (enox(60, 2), 49.9, 150.0, False),
    (enox(80, 1), 39.9, 115.0, False),
])
def test_obesity_equivalents(draft, bmi, weight, accepted):
    r = check_draft(draft, ctx(bmi=bmi, weight_kg=weight), P)
    assert r.matches_regimen is accepted
    if accepted:
        assert r.findings == ()


def test_ufh_7500_q8h_accepted_above_100_kg_at_bmi_40():
    ufh = MedicationOrder("heparin", "anticoagulant", dose_units=7500, doses_per_day=3, route="subcutaneous",
                          status="draft", source=DRAFT)
    assert check_draft(ufh, ctx(bmi=42.0, weight_kg=120.0), P).findings == ()


def test_half_mg_per_kg_twice_daily_only_when_the_site_accepts_it():
    p = P.with_overrides({"dosing.accept_0_5_mg_kg_bid": True})
    # 0.5 x 110 kg = 55 -> 60 mg twice daily (nearest 10, 5 up), capped at 60 mg
    assert check_draft(enox(60, 2), ctx(bmi=41.0, weight_kg=110.0), p).matches_regimen is True
    assert check_draft(enox(60, 2), ctx(bmi=41.0, weight_kg=110.0), P).matches_regimen is False


@pytest.mark.parametrize("mg, weight, update", [(40, 64.0, True), (20, 64.0, False), (40, 135.0, False)])
def test_more_than_two_doses_a_day_never_updates_to_a_higher_daily_dose(mg, weight, update):
    # review-v3 M4: the 1 mg/kg update of a prophylactic strength needs a treatment context (here the
    # therapeutic-candidate pathway); without one see the test below
    r = check_draft(enox(mg, 4), ctx(weight_kg=weight, pathway="therapeutic_candidate"), P)
    f = r.findings[0]
    assert (f.kind, f.urgency) == ("dose_above_maximum", "critical")
    assert (f.action == "update") is update


def test_prophylactic_strength_four_times_daily_without_indication_is_not_updated_to_a_treatment_dose():
    # review-v3 M4 (deviation from §19.2's literal 'update to 1 mg/kg twice daily', reported)
    r = check_draft(enox(40, 4), ctx(weight_kg=64.0), P)
    f = r.findings[0]
    assert (f.kind, f.urgency, f.action, f.proposed) == ("dose_above_maximum", "critical", None, None)


def test_ufh_infusion_draft_on_crrt_is_circuit_heparin_not_an_escalation():
    ufh = MedicationOrder("heparin", "anticoagulant", continuous=True, route="intravenous", status="draft", source=DRAFT)
    assert not has(check_draft(ufh, ctx(rrt_mode="crrt", renal_replacement=True), P), "above_prophylactic")
    assert has(check_draft(ufh, ctx(rrt_mode="haemodialysis", renal_replacement=True), P), "above_prophylactic")


# -- §19.2/§19.3: a DOAC draft when the creatinine is only a bound (SCr "> 8 mg/dL") -------------------
# Cockcroft-Gault on actual weight cannot be computed (crcl_actual is None) and the CrCl is only a
# bound, so RenalState.unknown is false: the DOAC renal rules and the renal-unknown card were both
# skipped, and dabigatran 150 mg twice daily at CrCl < 10 was answered with silence (pharmacist review).
@pytest.mark.parametrize("name, mg, per_day", [("dabigatran", 150, 2), ("rivaroxaban", 20, 1),
                                               ("edoxaban", 60, 1), ("apixaban", 5, 2)])
def test_doac_draft_with_a_bounded_creatinine_is_never_silent(name, mg, per_day):
    bounded = ctx(crcl_ml_min=None, crcl_lt_30=True, crcl_bound=("<", 9.0), crcl_actual_ml_min=None,
                  other_indication=True)
    result = check_draft(drug(name, "doac", mg, per_day), bounded, P)
    assert has(result, "renal_unknown", "warning") or has(result, "renal_dose", "warning"), findings(result)
