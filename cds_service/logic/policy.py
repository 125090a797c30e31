"""The clinical policy: every threshold, window and dose as one keyed object.

Defaults are those of clinical-rules.md §16 (the source of each is given there and in
the README). An institution overrides any key with a JSON or TOML file (`CDS_POLICY` or
`--policy`). Keys are dotted (`group.name`); a file may write them flat
(`{"dosing.bmi_tier1": 32}`) or nested (`{"dosing": {"bmi_tier1": 32}}`).
An unknown key or an ill-typed value is a PolicyError at load time.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

# Type tags for validation.
NUM, INT, BOOL, STR, NUM_OR_NULL, INT_OR_NULL, STR_OR_NULL = (
    "number", "integer", "boolean", "string", "number|null", "integer|null", "string|null")
RANGE_OR_NULL, STR_LIST = "[low, high]|null", "list[string]"
NUM_LIST, DOSE_PAIRS = "list[number]", "list[[mg, doses/day]]"
# v3 (§19.16): structured values
EQUIVALENTS, BANDS, DOAC_MAX = "list[equivalent]", "list[weight band]", "{drug: {per_dose, per_day}}"

# v1 key names still accepted in a policy file, and the key each one now sets (§16).
ALIASES = {"scope.require_covid_condition": "scope.require_covid"}
# v1 values still accepted, and the value each one now means: key -> (old, new).
VALUE_ALIASES = {"cards.not_determinable": ("no_card", "none")}
INDICATOR_HOURS = "{info, warning, critical: hours}"

_MODALITIES = {"IMV", "NIV", "CPAP", "HFNC", "ECMO", "low-flow"}

# key: (default, type, allowed values or None)
DEFAULTS: dict[str, tuple[Any, str, Any]] = {
    "numeric.compare_decimals": (6, INT, None),
    # §1a scope (v2)
    "scope.require_covid": (True, BOOL, None),
    "scope.covid_test_days": (14, NUM, None),
    "scope.covid_condition_days": (21, NUM, None),
    "scope.order_hook_extra_classes": (["EMER"], STR_LIST, None),
    "scope.min_age_years": (18, NUM, None),
    "scope.require_inpatient": (True, BOOL, None),
    "scope.encounter_statuses": (["in-progress", "onleave"], STR_LIST, None),
    "scope.inpatient_classes": (["IMP", "ACUTE", "NONAC", "OBSENC", "SS"], STR_LIST, None),
    "codes.extra_file": (None, STR_OR_NULL, None),
    "cards.not_determinable": ("none", STR, {"none", "info_card"}),
    "cards.bmi_tier1_indicator": ("info", STR, {"info", "warning", "critical"}),
    "cards.bmi_tier2_indicator": ("warning", STR, {"info", "warning", "critical"}),
    "window.labs_hours": (72, NUM, None),
    "window.blood_gas_hours": (24, NUM, None),
    "window.vitals_hours": (24, NUM, None),
    "window.urine_output_hours": (24, NUM, None),
    "window.sofa_score_hours": (24, NUM, None),
    "window.respiratory_support_hours": (24, NUM, None),
    "window.vasoactive_hours": (24, NUM, None),
    "window.anti_xa_hours": (72, NUM, None),
    "window.weight_days": (30, NUM, None),
    "window.height_days": (None, NUM_OR_NULL, None),
    "window.pregnancy_status_days": (30, NUM, None),
    "window.future_tolerance_minutes": (5, NUM, None),
    "window.platelet_trend_days": (14, NUM, None),
    "bloodgas.fio2_pairing_minutes": (60, NUM, None),
    "ibw.extrapolate_below_152_4_cm": (True, BOOL, None),
    "crcl.weight_basis": ("pharmacy_rule", STR,
                          {"pharmacy_rule", "actual", "ideal", "adjusted", "lower_of_actual_ideal"}),
    "crcl.adjbw_factor": (0.4, NUM, None),
    "crcl.adjbw_trigger_ratio": (1.2, NUM, None),
    "renal.crcl_cutoff": (30.0, NUM, None),
    "renal.scr_floor_mg_dl": (None, NUM_OR_NULL, None),
    "renal.overrides_bmi_rule": (True, BOOL, None),
    "renal.preferred_agent": ("enoxaparin", STR, {"enoxaparin", "heparin"}),
    "renal.enoxaparin_mg": (30, NUM, None),
    "renal.ufh_units": (5000, NUM, None),
    "renal.ufh_doses_per_day": (2, INT, {2, 3}),
    "d_dimer.marked_multiple": (6.0, NUM, None),
    "d_dimer.marked_inclusive": (False, BOOL, None),
    "d_dimer.default_uln_mg_l_feu": (0.5, NUM, None),
    "d_dimer.default_uln_mg_l_ddu": (0.25, NUM, None),
    "d_dimer.ddu_to_feu_factor": (2.0, NUM, None),
    "d_dimer.use_reference_range": (True, BOOL, None),
    "sofa.si_native_bands": (True, BOOL, None),
    "sofa.respiratory_support_modalities": (["IMV", "NIV", "CPAP"], STR_LIST, _MODALITIES),
    "sofa.value_selection": ("latest", STR, {"latest", "worst_in_window"}),
    "sofa.vasoactive_min_minutes": (60, NUM, None),
    "sofa.prefer_recorded_subscores": (False, BOOL, None),
    "sic.require_plt_inr_gt_2": (True, BOOL, None),
    "sic.positive_total": (4, INT, None),
    "dic.d_dimer_moderate_above_multiple": (1.0, NUM, None),
    "dic.d_dimer_strong_above_multiple": (10.0, NUM, None),
    "dic.fibrinogen_low_g_l": (1.0, NUM, None),
    "dic.pt_reference": (["reference_range_high", "normal_control"], STR_LIST,
                         {"reference_range_high", "normal_control"}),
    "dic.overt_threshold": (5, INT, None),
    "dosing.standard_mg": (40, NUM, None),
    "dosing.bmi_tier1": (30.0, NUM, None),
    "dosing.bmi_tier1_mg": (60, NUM, None),
    "dosing.bmi_tier2": (40.0, NUM, None),
    "dosing.bmi_tier2_mg": (80, NUM, None),
    "dosing.doses_per_day": (1, INT, None),
    "dosing.pending_weight_mg": (40, NUM, None),
    "dosing.round_bmi_before_compare": (False, BOOL, None),
    "hit.fondaparinux_mg": (2.5, NUM, None),
    "hit.fondaparinux_min_crcl": (30.0, NUM, None),
    "hit.fondaparinux_min_weight_kg": (50.0, NUM, None),
    "hit.fondaparinux_moderate_crcl_below": (50.0, NUM, None),
    "hit.fondaparinux_moderate_mg": (2.5, NUM, None),
    "safety.platelets_abs_min": (25, NUM, None),
    "safety.fibrinogen_abs_min_g_l": (0.5, NUM, None),
    "safety.platelets_caution_min": (50, NUM, None),
    "safety.hemoglobin_caution_min_g_dl": (8.0, NUM, None),
    "safety.fibrinogen_caution_min_g_l": (1.0, NUM, None),
    "safety.recent_bleeding_days": (30, NUM, None),
    "safety.hit_lookback_days": (None, NUM_OR_NULL, None),
    "safety.hit_acute_days": (100, NUM, None),
    "safety.recent_ich_days": (90, NUM, None),
    # Keys below are not in §16: numbers §10.1/§10.2 state without a key (added keys).
    "safety.hit_recovered_platelets": (150, NUM, None),
    "safety.hit_suspected_heparin_days": (5, NUM, None),
    "safety.hit_suspected_fall_fraction": (0.5, NUM, None),
    "safety.hit_suspected_low_platelets": (100, NUM, None),
    "safety.hit_suspected_from_platelets": (150, NUM, None),
    "safety.severe_liver_inr": (1.5, NUM, None),
    "safety.bridge_inr_below": (2.0, NUM, None),
    "safety.severe_liver_bilirubin_mg_dl": (2.0, NUM, None),
    "orders.low_weight_accepted_mg": ([30, 40], NUM_LIST, None),
    # §19.11 / §19.16 (v3): dicts; the v2 [mg, doses/day] pairs are still accepted (enoxaparin).
    "orders.bmi_tier2_equivalents": ([{"mg": 80, "per_day": 1}, {"mg": 40, "per_day": 2},
                                      {"drug": "heparin", "units": 7500, "per_day": 3, "min_weight_kg": 100},
                                      {"mg": 60, "per_day": 2, "min_bmi": 50}], EQUIVALENTS, None),
    "orders.q12h_therapeutic_mg_kg": (0.7, NUM, None),
    "orders.q12h_intermediate_mg_kg": (0.4, NUM, None),
    "orders.daily_therapeutic_above_mg_kg": (1.4, NUM, None),
    "orders.daily_intermediate_mg_kg": (0.7, NUM, None),
    "orders.daily_therapeutic_renal_mg_kg": (0.7, NUM, None),
    "orders.ufh_sc_intermediate_units": (7500, NUM, None),
    # Keys below are not in clinical-rules.md §16: they name thresholds that §10.3, §11 and
    # §13 state as numbers without a key (source beside each; see README "Policy").
    # §10.3 "Enoxaparin, weight unknown" row: prophylactic <= 40 mg once daily; intermediate
    # <= 40 mg twice daily or <= 80 mg once daily; otherwise therapeutic.
    "orders.no_weight_prophylactic_daily_mg": (40, NUM, None),
    "orders.no_weight_intermediate_daily_mg": (80, NUM, None),
    "orders.no_weight_intermediate_q12h_mg": (40, NUM, None),
    # §10.3 dalteparin/tinzaparin row (unverified): therapeutic >= 140 IU/kg/day; prophylactic
    # <= 5,000 (dalteparin) / 4,500 (tinzaparin) IU once daily; §11 equivalents.
    "orders.lmwh_iu_therapeutic_iu_kg_day": (140, NUM, None),
    "orders.dalteparin_prophylactic_iu": (5000, NUM, None),
    "orders.tinzaparin_prophylactic_iu": (4500, NUM, None),
    # §10.3 fondaparinux row (unverified): therapeutic >= 5 mg/day, prophylactic <= 2.5 mg/day.
    "orders.fondaparinux_therapeutic_mg_day": (5.0, NUM, None),
    "orders.fondaparinux_prophylactic_mg_day": (2.5, NUM, None),
    # §10.3 DOAC row [ISTH 2022 Table 1]: therapeutic above these daily totals.
    "orders.rivaroxaban_prophylactic_mg_day": (10, NUM, None),
    "orders.apixaban_prophylactic_mg_day": (5, NUM, None),
    # §10.2/§13: HEP-COVID excluded CrCl < 15 and Cleveland Clinic 2020 moves to UFH below 10-15;
    # below this an LMWH prophylaxis draft is switched to UFH (order check) and cards say so.
    "renal.severe_crcl_cutoff": (15.0, NUM, None),
    # §11 "creatinine not at steady state": KDIGO AKI rise of >= 0.3 mg/dL in 48 h (added keys).
    "renal.creatinine_change_mg_dl": (0.3, NUM, None),
    "renal.creatinine_change_hours": (48, NUM, None),
    # §13.1 therapeutic dose (the per-kg dose is a §16 key; rounding step and ceiling added keys).
    "therapeutic.enoxaparin_mg_per_kg": (1.0, NUM, None),
    "therapeutic.round_to_mg": (10, NUM, None),
    "therapeutic.max_dose_mg": (150, NUM, None),
    # §11: Piagnerelli's 50 IU/kg = 0.5 mg/kg enoxaparin, shown as an informational figure only.
    "dosing.info_mg_per_kg": (0.5, NUM, None),
    "antixa.trigger_bmi": (40.0, NUM, None),
    "antixa.pregnancy_trigger": (False, BOOL, None),
    "antixa.trigger_weight_high_kg": (120.0, NUM, None),
    "antixa.trigger_weight_low_kg": (50.0, NUM, None),
    "antixa.target_prophylactic": ([0.2, 0.5], RANGE_OR_NULL, None),
    "antixa.target_intermediate": (None, RANGE_OR_NULL, None),
    "antixa.target_therapeutic_q12h": ([0.5, 1.0], RANGE_OR_NULL, None),
    "antixa.target_therapeutic_q24h": ([1.0, 2.0], RANGE_OR_NULL, None),
    "antixa.trough_max": (0.5, NUM, None),
    "antixa.peak_hours_post_dose": (4, NUM, None),
    "antixa.steady_state_after_dose": (3, INT, None),
    "critical.modalities": (["IMV", "NIV", "CPAP", "HFNC", "ECMO"], STR_LIST, _MODALITIES),
    "critical.vasoactive_counts": (True, BOOL, None),
    "escalation.enabled": (True, BOOL, None),
    "escalation.d_dimer_multiple": (1.0, NUM, None),
    "escalation.require_low_flow": (True, BOOL, None),
    # -- card lifecycle (clinical-rules §16, §18.3; hooks/lifecycle.py) --
    "cards.info_repeat_hours": (24, NUM, None),
    "cards.override_snooze_hours": ({"info": 72, "warning": 24, "critical": 4}, INDICATOR_HOURS, None),
    # -- end card lifecycle --
    # -- v3 order check (clinical-rules §19.16; v3-orders) --
    "orders.safety_checks_ignore_covid_scope": (True, BOOL, None),
    "renal.rrt_equivalent_crcl": (10.0, NUM, None),
    "orders.enoxaparin_max_mg_kg_q12h": (1.0, NUM, None),
    "orders.enoxaparin_max_mg_kg_daily": (1.5, NUM, None),
    "orders.doac_max": ({"apixaban": {"per_dose": 10, "per_day": 20},
                         "rivaroxaban": {"per_dose": 20, "per_day": 30},
                         "dabigatran": {"per_dose": 220, "per_day": 300},
                         "edoxaban": {"per_dose": 60, "per_day": 60}}, DOAC_MAX, None),
    "hit.fondaparinux_treatment_bands": ([{"below_kg": 50, "mg": 5}, {"max_kg_inclusive": 100, "mg": 7.5},
                                          {"above_kg": 100, "mg": 10}], BANDS, None),
    "hit.four_ts_clear_hours": (72, NUM, None),
    "safety.argatroban_bilirubin_caution_mg_dl": (1.5, NUM, None),
    "dosing.accept_0_5_mg_kg_bid": (False, BOOL, None),
    "dosing.bmi_tier3_enabled": (False, BOOL, None),
    "dosing.bmi_tier3": (50.0, NUM, None),
    "dosing.bmi_tier3_mg": (60, NUM, None),
    "dosing.bmi_tier3_doses_per_day": (2, INT, None),
    # Added keys: numbers §19.2 and §19.11 state without a key.
    "dosing.accept_0_5_mg_kg_bid_cap_mg": (60, NUM, None),
    "orders.dalteparin_max_iu_kg_daily": (200, NUM, None),
    "orders.dalteparin_max_iu_day": (18000, NUM, None),
    "orders.tinzaparin_max_iu_kg_daily": (175, NUM, None),
    "orders.enoxaparin_max_doses_per_day": (2, NUM, None),
    "orders.edoxaban_prophylactic_regimen": (False, BOOL, None),
    "orders.ufh_sc_therapeutic_units": (15000, NUM, None),
    "orders.ufh_sc_therapeutic_units_day": (35000, NUM, None),
    "orders.ufh_sc_max_units_kg_dose": (250, NUM, None),
    # -- end v3 order check --
    # -- v3 exposure and governance (clinical-rules §19.4, §19.14, §19.16) --
    "orders.flush_max_units_per_hour": (50, NUM, None),
    "cards.disabled_kinds": ([], STR_LIST, None),
    "cards.silent_kinds": ([], STR_LIST, None),
    "cards.silent": (False, BOOL, None),
    "governance.owner": (None, STR_OR_NULL, None),
    "governance.review_by": (None, STR_OR_NULL, None),
    # -- end v3 exposure and governance --
    # -- standards and transparency (issue 23; cds_service/cards/terminology.py, web/docs_page/attributes.py) --
    "vocabulary.system_base": (None, STR_OR_NULL, None),
    "governance.developer": ("Not stated by this site (set governance.developer in the policy file)", STR, None),
    "governance.funding": ("Not stated by this site (set governance.funding in the policy file)", STR, None),
    # -- end standards and transparency --
}


class PolicyError(ValueError):
    """The policy file or an override is unusable. Raised at load time."""


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _equivalent_ok(x: Any) -> bool:
    """An obesity equivalent (§19.16): {"mg"|"units", "per_day", optional "drug", "min_bmi",
    "min_weight_kg"}; a v2 [mg, doses/day] pair means enoxaparin."""
    if isinstance(x, list):
        return len(x) == 2 and all(map(_is_num, x)) and x[0] > 0 and x[1] > 0
    if not isinstance(x, Mapping) or not set(x) <= {"drug", "mg", "units", "per_day", "min_bmi",
                                                    "min_weight_kg"}:
        return False
    amount = [x[k] for k in ("mg", "units") if k in x]
    return (len(amount) == 1 and _is_num(amount[0]) and amount[0] > 0 and _is_num(x.get("per_day"))
            and x["per_day"] > 0 and isinstance(x.get("drug", "enoxaparin"), str)
            and all(_is_num(x[k]) for k in ("min_bmi", "min_weight_kg") if k in x))


def bmi_tier2_equivalents(policy: "Policy") -> list[dict]:
    """`orders.bmi_tier2_equivalents` as dicts (a v2 pair is enoxaparin mg per dose, doses/day)."""
    out = []
    for x in policy["orders.bmi_tier2_equivalents"]:
        if isinstance(x, list):
            x = {"mg": x[0], "per_day": x[1]}
        out.append({"drug": "enoxaparin", **x})
    return out


def _check(key: str, value: Any) -> Any:
    _, kind, allowed = DEFAULTS[key]
    nullable = kind.endswith("|null")
    if value is None:
        if nullable:
            return None
        raise PolicyError(f"policy key {key!r} may not be null (expected {kind})")
    base = kind.split("|")[0]
    ok = {
        "number": _is_num(value),
        "integer": _is_num(value) and float(value).is_integer(),
        "boolean": isinstance(value, bool),
        "string": isinstance(value, str),
        "list[string]": isinstance(value, list) and all(isinstance(x, str) for x in value),
        "[low, high]": isinstance(value, list) and len(value) == 2 and all(map(_is_num, value))
        and value[0] <= value[1],
        "list[number]": isinstance(value, list) and all(map(_is_num, value)),
        "list[[mg, doses/day]]": isinstance(value, list) and all(
            isinstance(x, list) and len(x) == 2 and all(map(_is_num, x)) and x[0] > 0 and x[1] > 0
            for x in value),
        EQUIVALENTS: isinstance(value, list) and all(_equivalent_ok(x) for x in value),
        BANDS: isinstance(value, list) and bool(value) and all(
            isinstance(x, Mapping) and _is_num(x.get("mg")) and x["mg"] > 0
            and sum(k in x for k in ("below_kg", "max_kg_inclusive", "above_kg")) == 1
            and all(_is_num(x[k]) for k in ("below_kg", "max_kg_inclusive", "above_kg") if k in x)
            for x in value),
        DOAC_MAX: isinstance(value, Mapping) and all(
            isinstance(v, Mapping) and set(v) == {"per_dose", "per_day"} and all(map(_is_num, v.values()))
            and min(v.values()) > 0 for v in value.values()),
        INDICATOR_HOURS: isinstance(value, Mapping) and set(value) == {"info", "warning", "critical"}
        and all(_is_num(v) and v >= 0 for v in value.values()),
    }[base]
    if not ok:
        raise PolicyError(f"policy key {key!r} expects {kind}, got {value!r}")
    if base == "integer":
        value = int(value)
    if allowed is not None:
        items = value if isinstance(value, list) else [value]
        bad = [x for x in items if x not in allowed]
        if bad:
            raise PolicyError(f"policy key {key!r}: {bad!r} not among {sorted(map(str, allowed))}")
    if base == INDICATOR_HOURS:
        value = dict(value)
    if key == "governance.review_by":   # §19.14: a calendar date, YYYY-MM-DD
        from datetime import date
        try:
            date.fromisoformat(value)
        except ValueError:
            raise PolicyError(f"policy key {key!r} expects a date YYYY-MM-DD, got {value!r}") from None
    if base == "number" and key.startswith(("window.", "renal.", "dosing.", "safety.", "antixa.",
                                            "scope.", "hit.", "therapeutic.", "cards.")) \
            and value < 0:
        raise PolicyError(f"policy key {key!r} must not be negative, got {value!r}")
    return value


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and key not in DEFAULTS and key not in ALIASES:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


@dataclass(frozen=True)
class Policy:
    values: Mapping[str, Any]
    source: str = "defaults"

    def __getitem__(self, key: str) -> Any:
        try:
            return self.values[key]
        except KeyError:
            raise KeyError(f"unknown policy key {key!r}") from None

    def with_overrides(self, overrides: Mapping[str, Any], source: str = "overrides") -> "Policy":
        flat = _flatten(overrides)
        for old, new in ALIASES.items():
            if old in flat:
                value = flat.pop(old)
                if new in flat and flat[new] != value:
                    raise PolicyError(f"policy keys {old!r} (alias) and {new!r} disagree")
                flat[new] = value
        for key, (old, new) in VALUE_ALIASES.items():   # v1 values still accepted
            if flat.get(key) == old:
                flat[key] = new
        unknown = sorted(set(flat) - set(DEFAULTS))
        if unknown:
            raise PolicyError(f"unknown policy key(s): {', '.join(unknown)}")
        values = dict(self.values)
        for key, value in flat.items():
            values[key] = _check(key, value)
        return Policy(values, source)

    @classmethod
    def default(cls) -> "Policy":
        return cls({k: (list(v[0]) if isinstance(v[0], list) else v[0]) for k, v in DEFAULTS.items()})

    @classmethod
    def load(cls, path: str | None) -> "Policy":
        """Defaults, overridden by the JSON/TOML file at `path` when given."""
        base = cls.default()
        if not path:
            return base
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {path!r}: {exc.strerror}") from None
        try:
            if path.lower().endswith(".toml"):
                import tomllib
                data = tomllib.loads(raw.decode("utf-8"))
            else:
                data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PolicyError(f"policy file {path!r} is not valid JSON/TOML: {exc}") from None
        if not isinstance(data, dict):
            raise PolicyError(f"policy file {path!r} must hold an object of keys")
        return base.with_overrides(data, source=path)


def rounded(value: float, policy: Policy) -> float:
    """The value compared against thresholds (clinical rules §0): rounded to N decimals."""
    return round(value, policy["numeric.compare_decimals"])


# Where each key's default comes from (README "Policy file"). Looked up by the longest
# matching prefix; clinical-rules.md section numbers, then the primary source it cites.
SOURCES: dict[str, str] = {
    "numeric.": "§0 threshold comparison (round to 6 dp, then compare)",
    "scope.": "§1a NIH 2024 (final); ISTH 2023 update: evidence is for hospitalised adults with COVID-19",
    "scope.order_hook_extra_classes": "§1a admission orders written in the emergency department (HIT and duplicate checks)",
    "scope.encounter_statuses": "§1a; fhir-data-requirements §2a (current Encounter)",
    "scope.inpatient_classes": "§1a; HL7 v3-ActCode Encounter classes (fhir-data-requirements §2a)",
    "scope.min_age_years": "§1a Cockcroft-Gault and every dose here are for adults",
    "codes.": "fhir-data-requirements §1 (code data file, merged by union)",
    "cards.": "product decision (issue 5): info card or no card when advice is not determinable",
    "cards.not_determinable": "§16 (v2): no card by default; \"info_card\" shows the order hooks' not-determinable card (v1 default); v1 \"no_card\" means \"none\"",
    "cards.bmi_tier": "§11 v2 urgency of a BMI-tier difference (a standard dose at BMI 30-<40 is not wrong by any guideline)",
    "cards.info_repeat_hours": "§16, §18.3 (card lifecycle: an info card at most once per user, patient, encounter)",
    "cards.override_snooze_hours": "§16, §18.3 (card lifecycle: snooze after a patient-view override, by indicator)",
    "window.": "fhir-data-requirements §1.2 lookback windows; clinical-rules §16",
    "window.future_tolerance_minutes": "fhir-data-requirements §1.1 (clock skew for future-dated data)",
    "window.platelet_trend_days": "§10.1 hit_suspected (platelet history; with no active heparin order, heparin must have been given within it); ASH 2018 HIT (Cuker 2018, platelet monitoring on heparin)",
    "bloodgas.": "fhir-data-requirements §3 (PaO2/FiO2 pairing)",
    "ibw.": "§2 Devine 1974 (unverified)",
    "crcl.": "§3 Cockcroft & Gault 1976; pharmacy weight rule (AdjBW factor 0.4, trigger 1.2 × IBW)",
    "renal.crcl_cutoff": "§3, §11 enoxaparin label (CrCl < 30 mL/min)",
    "renal.scr_floor_mg_dl": "§3 (no SCr floor by default)",
    "renal.overrides_bmi_rule": "§11 row 4 (renal row wins over BMI tiers)",
    "renal.preferred_agent": "§11 row 4: enoxaparin label; UFH per ACC (Bikdeli 2020, unverified)",
    "renal.enoxaparin_mg": "§11 row 4: enoxaparin label, 30 mg once daily at CrCl < 30",
    "renal.ufh_": "§11 row 4: UFH 5,000 U SC q8-12 h (Bikdeli 2020, unverified)",
    "renal.creatinine_change_": "§11 v2 creatinine not at steady state: KDIGO AKI rise >= 0.3 mg/dL in 48 h (added key)",
    "renal.severe_crcl_cutoff": "§10.2/§13: HEP-COVID excluded CrCl < 15; Cleveland Clinic 2020 uses UFH at low CrCl (added key)",
    "d_dimer.marked_": "§4 Tang 2020 (D-dimer > 6× ULN)",
    "d_dimer.default_uln": "§4 Tang 2020 (Tongji ULN 0.5 µg/mL FEU); DDU ≈ FEU/2",
    "d_dimer.ddu_to_feu_factor": "§4 Favaloro & Thachil 2020 (1.7-2.0)",
    "d_dimer.use_reference_range": "§4 Zhang & Zhang 2022 (ratio to the lab's own ULN)",
    "sofa.": "§5 Vincent 1996; Singer 2016 (Sepsis-3 reprint)",
    "sic.": "§6 Iba 2017 (BMJ Open), Iba 2019 (ISTH)",
    "dic.": "§7 Taylor 2001 (ISTH overt DIC); Exeter COVID DIC guidance for the D-dimer bands",
    "dosing.": "§11 Piagnerelli 2020 (BMI tiers); enoxaparin label, Bikdeli 2020, Schulman 2022 (40 mg standard)",
    "dosing.info_mg_per_kg": "§11 Piagnerelli 2020: 50 IU/kg = 0.5 mg/kg, information only (added key)",
    "hit.": "§11 row 1: fondaparinux 2.5 mg daily, not below CrCl 30 (label, unverified)",
    "hit.fondaparinux_min_weight_kg": "§11 v2 fondaparinux (Arixtra) label: prophylaxis contraindicated below 50 kg",
    "hit.fondaparinux_moderate_": "§11 v2 fondaparinux EU SmPC: 1.5 mg daily at CrCl 20-50 (site choice)",
    "therapeutic.": "§13.1 v2 enoxaparin label treatment dosing 1 mg/kg q12h (once daily at CrCl 15-<30); ATTACC/ACTIV-4a/REMAP-CAP 2021",
    "therapeutic.round_to_mg": "§13.1 v2 60-150 mg syringes graduated in 10 mg steps (added key)",
    "therapeutic.max_dose_mg": "§13.1 v2 largest syringe 150 mg; above it the local protocol (added key)",
    "safety.platelets_abs_min": "§10.1 ISTH interim 2020; ASH 2020 FAQ; HEP-COVID exclusion",
    "safety.fibrinogen_abs_min_g_l": "§10.1 ASH 2020 COVID FAQ (as tabulated)",
    "safety.platelets_caution_min": "§10.2 NIH 2022 (trial exclusions)",
    "safety.hemoglobin_caution_min_g_dl": "§10.2 NIH 2022",
    "safety.fibrinogen_caution_min_g_l": "§10.2 ASH 2020 COVID FAQ (as tabulated)",
    "safety.recent_bleeding_days": "§10.2 NIH 2022 (bleeding within 30 days)",
    "safety.hit_lookback_days": "§10.1 enoxaparin label (HIT ever; HEP-COVID used 100 days)",
    "safety.hit_acute_days": "§10.1 v2 Warkentin & Kelton, N Engl J Med 2001;344:1286 (100 days); enoxaparin label",
    "safety.hit_recovered_platelets": "§10.1 v2 Cuker 2018 ASH HIT (acute until platelet recovery, 150) (added key)",
    "safety.hit_suspected_": "§10.1 v2 Cuker 2018 ASH HIT (fall >= 50 % or to < 100 from >= 150 after >= 5 days of heparin; 4Ts) (added key)",
    "safety.bridge_inr_below": "§10.4 v2 duplicate urgency info: a VKA with a parenteral agent while INR < 2 (bridge) (added key)",
    "safety.recent_ich_days": "§10.2 v2 HEP-COVID and multiplatform trials excluded recent intracranial haemorrhage",
    "safety.severe_liver_": "§10.2 v2 HEP-COVID exclusion (hepatic dysfunction with INR > 1.5; bilirubin >= 2.0 mg/dL) (added key)",
    "orders.": "§10.3 trial-pooled mg/kg cut-offs (Clin Transl Sci 2023, PMC10499427); INSPIRATION 2021",
    "orders.no_weight_": "§10.3 'Enoxaparin, weight unknown' row (added key)",
    "orders.lmwh_iu_": "§10.3 dalteparin/tinzaparin row (unverified; added key)",
    "orders.dalteparin_": "§10.3, §11 equivalents: dalteparin 5,000 IU daily (added key)",
    "orders.tinzaparin_": "§10.3, §11 equivalents: tinzaparin 4,500 IU daily (added key)",
    "orders.fondaparinux_": "§10.3 fondaparinux row (unverified; added key)",
    "orders.low_weight_accepted_mg": "§11 v2 weight < 50 kg: 30 or 40 mg once daily accepted (enoxaparin label)",
    "orders.bmi_tier2_equivalents": "§11 v2 obesity equivalents: 40 mg twice daily = 80 mg once daily at BMI >= 40",
    "orders.rivaroxaban_": "§10.3 DOAC row, ISTH 2022 Table 1 (added key)",
    "orders.apixaban_": "§10.3 DOAC row, ISTH 2022 Table 1 (added key)",
    "antixa.trigger_": "§12 Piagnerelli 2020; Quest Diagnostics FAQ; UW Medicine anticoagulation services",
    "antixa.target_prophylactic": "§12 prophylactic peak 0.2-0.5 IU/mL (institutional guidance)",
    "antixa.target_intermediate": "§12 no validated range (unverified)",
    "antixa.target_therapeutic": "§12 Garcia 2012 (CHEST) (unverified)",
    "antixa.pregnancy_trigger": "§12 v2 ASH 2018 VTE in pregnancy: no routine anti-Xa monitoring",
    "antixa.trough_max": "§12 Piagnerelli 2020 (trough in renal failure)",
    "antixa.peak_hours_post_dose": "§12 peak 4 h after an SC dose (range 3-5 h)",
    "antixa.steady_state_after_dose": "§12 steady state after the 3rd dose",
    "orders.flush_max_units_per_hour": "§19.4, §19.16 v3 flush rule: with a rate, a flush only below 50 U/h and at <= 5 U/mL (heparin lock-flush labelling; ISMP)",
    "cards.disabled_kinds": "§19.14, §19.16 v3 governance: card kinds the CDS committee turned off",
    "cards.silent": "§19.14, §19.16 v3 governance: silent mode (computed, fingerprinted, audited as silent; the EHR gets no card); a pilot starts silent",
    "governance.owner": "§19.14, §19.16 v3 governance: clinical owner (shown on /docs/rules and in the overdue-review warning)",
    "governance.review_by": "§19.14, §19.16 v3 governance: next review date, YYYY-MM-DD (start-up log and /docs/rules warn when past)",
    "critical.": "§9 ATTACC/ACTIV-4a/REMAP-CAP, N Engl J Med 2021;385:777 (organ support)",
    # v3 (§19.16)
    "orders.safety_checks_ignore_covid_scope": "§19.0 v3: the order-check safety layer runs for every adult inpatient (an overdose or HIT re-exposure is not a COVID-19 question)",
    "renal.rrt_equivalent_crcl": "§19.0 v3: renal replacement counts as CrCl < 15 (a post-dialysis creatinine overstates clearance)",
    "orders.enoxaparin_max_": "§19.2 v3 enoxaparin label: treatment 1 mg/kg q12h or 1.5 mg/kg q24h (ceilings)",
    "orders.enoxaparin_max_doses_per_day": "§19.2 v3 enoxaparin label: more than 2 doses a day is above any labelled regimen (added key)",
    "orders.ufh_sc_therapeutic_units": "review-v3 M14 (rules silent: §10.3 has no SC UFH therapeutic class): SC UFH >= 15,000 U per dose is treatment intensity (CHEST 2012: SC UFH 17,500 U q12h or 250 U/kg q12h for VTE) (added key)",
    "orders.ufh_sc_therapeutic_units_day": "review-v3 M14: SC UFH >= 35,000 U a day is treatment intensity (CHEST 2012 weight-adjusted SC UFH) (added key)",
    "orders.ufh_sc_max_units_kg_dose": "review-v3 M14: SC UFH above 250 U/kg per dose (rounded up to 5,000 U) is above any SC treatment regimen: critical (CHEST 2012; Kearon 2006 FIDO) (added key)",
    "orders.edoxaban_prophylactic_regimen": "§19.0 v3 'edoxaban <= 30 mg daily only as a prophylactic regimen where labelled': the US and EU labels have none (30 mg daily is the reduced AF/VTE treatment dose), so false; a site where one is labelled sets true (added key, review-v3 M18)",
    "orders.doac_max": "§19.2 v3 apixaban, rivaroxaban, dabigatran, edoxaban labels (maximum per dose and per day; verify before go-live)",
    "orders.dalteparin_max_": "§19.2 v3 dalteparin label: 200 IU/kg once daily, 18,000 IU a day (unverified; added key)",
    "orders.tinzaparin_max_": "§19.2 v3 tinzaparin label: 175 IU/kg once daily (unverified; added key)",
    "hit.fondaparinux_treatment_bands": "§19.2 v3 fondaparinux (Arixtra) label: treatment 5 / 7.5 / 10 mg by weight (< 50, 50-100, > 100 kg)",
    "hit.four_ts_clear_hours": "§19.6 v3 Cuker 2018 ASH HIT: a low 4Ts score (<= 3) makes HIT unlikely; heparin may continue",
    "safety.argatroban_bilirubin_caution_mg_dl": "§19.1 v3 argatroban label and ASH 2018 HIT: reduced start dose in hepatic impairment",
    "orders.bmi_tier2_equivalents": "§19.11 v3 Wang 2014 (Thromb Haemost 2014;111:88-93): 40 mg twice daily or UFH 7,500 U q8h above 100 kg; 60 mg twice daily at BMI >= 50 local policy (unverified)",
    "dosing.accept_0_5_mg_kg_bid": "§19.11 v3 site option: accept 0.5 mg/kg twice daily in obesity (capped at 60 mg per dose)",
    "dosing.accept_0_5_mg_kg_bid_cap_mg": "§19.11 v3: 0.5 mg/kg twice daily is capped at 60 mg per dose (added key)",
    "dosing.bmi_tier3": "§19.11 v3 optional row 6a (site decision): enoxaparin 60 mg twice daily at BMI >= 50 (local policy, unverified)",
    "escalation.": "§13 ATTACC/ACTIV-4a/REMAP-CAP non-critically ill, N Engl J Med 2021;385:790; NIH 2022",
    "vocabulary.system_base": "issue 23: base our code systems are minted under (null: CDS_PUBLIC_BASE_URL); served at BASE/fhir/CodeSystem/NAME",
    "governance.developer": "issue 23: ONC HTI-1 45 CFR 170.315(b)(11)(iv)(A)(2) developer of the intervention (site fills in)",
    "governance.funding": "issue 23: ONC HTI-1 45 CFR 170.315(b)(11)(iv)(A)(3) funding source of the intervention's development (site fills in)",
}


def source_of(key: str) -> str:
    matches = [p for p in SOURCES if key == p or key.startswith(p)]
    if not matches:
        raise KeyError(f"policy key {key!r} has no documented source")
    return SOURCES[max(matches, key=len)]


def markdown_table() -> str:
    """The README's policy table: every key, its default and its source."""
    rows = ["| Key | Default | Source |", "|---|---|---|"]
    for key, (default, _kind, _allowed) in DEFAULTS.items():
        rows.append(f"| `{key}` | `{json.dumps(default)}` | {source_of(key)} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m cds_service.logic.policy > table (README "Policy file")
    print(markdown_table())
