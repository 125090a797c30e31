"""The policy defaults are those of clinical-rules.md §16 (the table is copied here by hand, so a
changed default in policy.py fails this test instead of agreeing with itself)."""
from __future__ import annotations

import pytest

from cds_service.logic.policy import DEFAULTS, Policy

RULES_16 = {
    'numeric.compare_decimals': 6,
    'scope.require_covid': True,
    'scope.covid_test_days': 14,
    'scope.covid_condition_days': 21,
    'scope.order_hook_extra_classes': ['EMER'],
    'scope.min_age_years': 18,
    'scope.require_inpatient': True,
    'scope.encounter_statuses': ['in-progress', 'onleave'],
    'scope.inpatient_classes': ['IMP', 'ACUTE', 'NONAC', 'OBSENC', 'SS'],
    'codes.extra_file': None,
    'window.labs_hours': 72,
    'window.blood_gas_hours': 24,
    'window.vitals_hours': 24,
    'window.urine_output_hours': 24,
    'window.sofa_score_hours': 24,
    'window.respiratory_support_hours': 24,
    'window.vasoactive_hours': 24,
    'window.anti_xa_hours': 72,
    'window.weight_days': 30,
    'window.height_days': None,
    'window.pregnancy_status_days': 30,
    'window.future_tolerance_minutes': 5,
    'bloodgas.fio2_pairing_minutes': 60,
    'ibw.extrapolate_below_152_4_cm': True,
    'crcl.weight_basis': 'pharmacy_rule',
    'crcl.adjbw_factor': 0.4,
    'crcl.adjbw_trigger_ratio': 1.2,
    'renal.crcl_cutoff': 30.0,
    'renal.scr_floor_mg_dl': None,
    'renal.overrides_bmi_rule': True,
    'renal.preferred_agent': 'enoxaparin',
    'renal.enoxaparin_mg': 30,
    'renal.ufh_units': 5000,
    'renal.ufh_doses_per_day': 2,
    'd_dimer.marked_multiple': 6.0,
    'd_dimer.marked_inclusive': False,
    'd_dimer.default_uln_mg_l_feu': 0.5,
    'd_dimer.default_uln_mg_l_ddu': 0.25,
    'd_dimer.ddu_to_feu_factor': 2.0,
    'd_dimer.use_reference_range': True,
    'sofa.si_native_bands': True,
    'sofa.respiratory_support_modalities': ['IMV', 'NIV', 'CPAP'],
    'sofa.value_selection': 'latest',
    'sofa.vasoactive_min_minutes': 60,
    'sofa.prefer_recorded_subscores': False,
    'sic.require_plt_inr_gt_2': True,
    'sic.positive_total': 4,
    'dic.d_dimer_moderate_above_multiple': 1.0,
    'dic.d_dimer_strong_above_multiple': 10.0,
    'dic.fibrinogen_low_g_l': 1.0,
    'dic.pt_reference': ['reference_range_high', 'normal_control'],
    'dic.overt_threshold': 5,
    'dosing.standard_mg': 40,
    'dosing.bmi_tier1': 30.0,
    'dosing.bmi_tier1_mg': 60,
    'dosing.bmi_tier2': 40.0,
    'dosing.bmi_tier2_mg': 80,
    'dosing.doses_per_day': 1,
    'dosing.pending_weight_mg': 40,
    'dosing.round_bmi_before_compare': False,
    'hit.fondaparinux_mg': 2.5,
    'hit.fondaparinux_min_crcl': 30.0,
    'hit.fondaparinux_min_weight_kg': 50.0,
    'hit.fondaparinux_moderate_crcl_below': 50.0,
    'hit.fondaparinux_moderate_mg': 2.5,
    'safety.hit_acute_days': 100,
    'safety.recent_ich_days': 90,
    'window.platelet_trend_days': 14,
    'antixa.pregnancy_trigger': False,
    'renal.severe_crcl_cutoff': 15.0,
    'therapeutic.enoxaparin_mg_per_kg': 1.0,
    'orders.low_weight_accepted_mg': [30, 40],
    # §19.16 (v3) replaces the v2 pairs
    'orders.bmi_tier2_equivalents': [{"mg": 80, "per_day": 1}, {"mg": 40, "per_day": 2},
                                     {"drug": "heparin", "units": 7500, "per_day": 3, "min_weight_kg": 100},
                                     {"mg": 60, "per_day": 2, "min_bmi": 50}],
    'cards.bmi_tier1_indicator': 'info',
    'cards.bmi_tier2_indicator': 'warning',
    'safety.platelets_abs_min': 25,
    'safety.fibrinogen_abs_min_g_l': 0.5,
    'safety.platelets_caution_min': 50,
    'safety.hemoglobin_caution_min_g_dl': 8.0,
    'safety.fibrinogen_caution_min_g_l': 1.0,
    'safety.recent_bleeding_days': 30,
    'safety.hit_lookback_days': None,
    'orders.q12h_therapeutic_mg_kg': 0.7,
    'orders.q12h_intermediate_mg_kg': 0.4,
    'orders.daily_therapeutic_above_mg_kg': 1.4,
    'orders.daily_intermediate_mg_kg': 0.7,
    'orders.daily_therapeutic_renal_mg_kg': 0.7,
    'orders.ufh_sc_intermediate_units': 7500,
    'antixa.trigger_bmi': 40.0,
    'antixa.trigger_weight_high_kg': 120.0,
    'antixa.trigger_weight_low_kg': 50.0,
    'antixa.target_prophylactic': [0.2, 0.5],
    'antixa.target_intermediate': None,
    'antixa.target_therapeutic_q12h': [0.5, 1.0],
    'antixa.target_therapeutic_q24h': [1.0, 2.0],
    'antixa.trough_max': 0.5,
    'antixa.peak_hours_post_dose': 4,
    'antixa.steady_state_after_dose': 3,
    'critical.modalities': ['IMV', 'NIV', 'CPAP', 'HFNC', 'ECMO'],
    'critical.vasoactive_counts': True,
    'escalation.enabled': True,
    'escalation.d_dimer_multiple': 1.0,
    'escalation.require_low_flow': True,
    # card lifecycle (§16 v2 rows, §18.3)
    'cards.info_repeat_hours': 24,
    'cards.override_snooze_hours': {'info': 72, 'warning': 24, 'critical': 4},
}


# §19.16 (v3) keys of the order check (v3-orders), copied by hand from the rules.
RULES_19_16 = {
    'orders.safety_checks_ignore_covid_scope': True,
    'renal.rrt_equivalent_crcl': 10,
    'orders.enoxaparin_max_mg_kg_q12h': 1.0,
    'orders.enoxaparin_max_mg_kg_daily': 1.5,
    'orders.doac_max': {"apixaban": {"per_dose": 10, "per_day": 20}, "rivaroxaban": {"per_dose": 20, "per_day": 30},
                        "dabigatran": {"per_dose": 220, "per_day": 300}, "edoxaban": {"per_dose": 60, "per_day": 60}},
    'hit.fondaparinux_treatment_bands': [{"below_kg": 50, "mg": 5}, {"max_kg_inclusive": 100, "mg": 7.5},
                                         {"above_kg": 100, "mg": 10}],
    'hit.four_ts_clear_hours': 72,
    'safety.argatroban_bilirubin_caution_mg_dl': 1.5,
    'dosing.accept_0_5_mg_kg_bid': False,
    'dosing.bmi_tier3_enabled': False,
    'dosing.bmi_tier3': 50.0,
    'dosing.bmi_tier3_mg': 60,
    'dosing.bmi_tier3_doses_per_day': 2,
}
RULES_16.update(RULES_19_16)


@pytest.mark.parametrize("key", sorted(RULES_16))
def test_default_matches_clinical_rules_16(key):
    assert key in DEFAULTS, f"§16 key {key} is missing from the policy"
    assert Policy.default()[key] == RULES_16[key]


# §19.16 (v3) keys of the v3-exposure half (copied by hand from clinical-rules.md §19.16).
RULES_19_16_EXPOSURE = {
    "orders.flush_max_units_per_hour": 50,
    "cards.disabled_kinds": [], "cards.silent_kinds": [], "cards.silent": False,
    "governance.owner": None, "governance.review_by": None,
}


@pytest.mark.parametrize("key", sorted(RULES_19_16_EXPOSURE))
def test_default_matches_clinical_rules_19_16(key):
    assert Policy.default()[key] == RULES_19_16_EXPOSURE[key]


def test_every_policy_key_is_from_16_or_documented_as_added():
    added = set(DEFAULTS) - set(RULES_16) - set(RULES_19_16_EXPOSURE)
    # Keys the product added (README "Policy file" marks them): card choice and §10.3/§11 numbers.
    assert added == {
        "cards.not_determinable", "dosing.info_mg_per_kg",
        "orders.no_weight_prophylactic_daily_mg", "orders.no_weight_intermediate_daily_mg",
        "orders.no_weight_intermediate_q12h_mg", "orders.lmwh_iu_therapeutic_iu_kg_day",
        "orders.dalteparin_prophylactic_iu", "orders.tinzaparin_prophylactic_iu",
        "orders.fondaparinux_therapeutic_mg_day", "orders.fondaparinux_prophylactic_mg_day",
        "orders.rivaroxaban_prophylactic_mg_day", "orders.apixaban_prophylactic_mg_day",
        # v2: numbers §10.1, §10.2, §10.4, §11 and §13.1 state without a key
        "safety.hit_recovered_platelets", "safety.hit_suspected_heparin_days",
        "safety.hit_suspected_fall_fraction", "safety.hit_suspected_low_platelets",
        "safety.hit_suspected_from_platelets", "safety.severe_liver_inr",
        "safety.severe_liver_bilirubin_mg_dl", "safety.bridge_inr_below",
        "renal.creatinine_change_mg_dl", "renal.creatinine_change_hours",
        "therapeutic.round_to_mg", "therapeutic.max_dose_mg",
        # v3: numbers §19.2 and §19.11 state without a key (v3-orders)
        "dosing.accept_0_5_mg_kg_bid_cap_mg", "orders.dalteparin_max_iu_kg_daily", "orders.dalteparin_max_iu_day",
        "orders.tinzaparin_max_iu_kg_daily", "orders.enoxaparin_max_doses_per_day",
        # v3 §19.0 'edoxaban <= 30 mg daily only as a prophylactic regimen where labelled' (review-v3 M18)
        "orders.edoxaban_prophylactic_regimen",
        # review-v3 M14: SC UFH therapeutic class and ceiling (the rules are silent)
        "orders.ufh_sc_therapeutic_units", "orders.ufh_sc_therapeutic_units_day", "orders.ufh_sc_max_units_kg_dose",
        # issue 23 (not clinical): code system base, HTI-1 developer and funding
        "vocabulary.system_base", "governance.developer", "governance.funding",
    }


# The added keys name numbers the rules state without a key (§10.3 rows, §11 equivalents,
# §11 Piagnerelli 50 IU/kg, §10.2/§13 HEP-COVID CrCl 15).
ADDED_FROM_RULES = {
    "orders.no_weight_prophylactic_daily_mg": 40, "orders.no_weight_intermediate_daily_mg": 80,
    "orders.no_weight_intermediate_q12h_mg": 40, "orders.lmwh_iu_therapeutic_iu_kg_day": 140,
    "orders.dalteparin_prophylactic_iu": 5000, "orders.tinzaparin_prophylactic_iu": 4500,
    "orders.fondaparinux_therapeutic_mg_day": 5, "orders.fondaparinux_prophylactic_mg_day": 2.5,
    "orders.rivaroxaban_prophylactic_mg_day": 10, "orders.apixaban_prophylactic_mg_day": 5,
    "renal.severe_crcl_cutoff": 15, "dosing.info_mg_per_kg": 0.5,
    "cards.not_determinable": "none",
    # v2 (§10.1 ASH 2018 HIT: recovery 150, >= 5 days, fall >= 50 %, < 100 from >= 150;
    # §10.2 HEP-COVID INR > 1.5, bilirubin >= 2.0 mg/dL; §10.4 bridge INR < 2; §11 KDIGO 0.3 mg/dL
    # in 48 h; §13.1 nearest 10 mg, at most 150 mg)
    "safety.hit_recovered_platelets": 150, "safety.hit_suspected_heparin_days": 5,
    "safety.hit_suspected_fall_fraction": 0.5, "safety.hit_suspected_low_platelets": 100,
    "safety.hit_suspected_from_platelets": 150, "safety.severe_liver_inr": 1.5,
    "safety.severe_liver_bilirubin_mg_dl": 2.0, "safety.bridge_inr_below": 2,
    "renal.creatinine_change_mg_dl": 0.3, "renal.creatinine_change_hours": 48,
    "therapeutic.round_to_mg": 10, "therapeutic.max_dose_mg": 150,
    # v3 §19.2 (dalteparin 200 IU/kg or 18,000 IU a day; tinzaparin 175 IU/kg; enoxaparin more than
    # 2 doses a day) and §19.11 (0.5 mg/kg twice daily capped at 60 mg)
    "dosing.accept_0_5_mg_kg_bid_cap_mg": 60, "orders.dalteparin_max_iu_kg_daily": 200,
    "orders.dalteparin_max_iu_day": 18000, "orders.tinzaparin_max_iu_kg_daily": 175,
    "orders.enoxaparin_max_doses_per_day": 2,
    # v3 §19.0: edoxaban has no labelled prophylactic regimen (US, EU): false
    "orders.edoxaban_prophylactic_regimen": False,
    # review-v3 M14 (CHEST 2012: SC UFH 17,500 U q12h or 250 U/kg q12h for VTE)
    "orders.ufh_sc_therapeutic_units": 15000, "orders.ufh_sc_therapeutic_units_day": 35000,
    "orders.ufh_sc_max_units_kg_dose": 250,
}


@pytest.mark.parametrize("key", sorted(ADDED_FROM_RULES))
def test_added_key_default_is_the_number_the_rules_state(key):
    assert Policy.default()[key] == ADDED_FROM_RULES[key]


def test_v1_scope_key_is_an_alias_of_require_covid():
    assert Policy.default().with_overrides({"scope.require_covid_condition": False})[
        "scope.require_covid"] is False
    assert Policy.default().with_overrides({"scope": {"require_covid_condition": False}})[
        "scope.require_covid"] is False
    with pytest.raises(Exception):
        Policy.default().with_overrides({"scope.require_covid_condition": False,
                                         "scope.require_covid": True})
