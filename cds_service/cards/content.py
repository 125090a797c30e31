"""Shared card vocabulary text: drug and dose names, contraindication / caution / anti-Xa /
note labels filled from the policy, decision-edge display (`shown`), missing-input names, and the
anti-Xa ServiceRequest suggestion. The v2 card text itself (§18.2) is in templates.py; the v1
detail blocks (input table, score arithmetic, evidence notes, reference list, disclaimer) are
retired: that detail stays in the audit row and in `cds-service assess`.
"""
from __future__ import annotations

from typing import Iterable

from ..logic.inputs import MedicationOrder
from ..logic.policy import Policy
from .build import FREQUENCY_TEXT, action_create, anti_xa_request, md, num, num_edge, suggestion

# -- names ---------------------------------------------------------------------------------------
DRUG_NAMES = {"enoxaparin": "enoxaparin", "heparin": "heparin (UFH)", "fondaparinux": "fondaparinux",
              "dalteparin": "dalteparin", "tinzaparin": "tinzaparin"}
SHORT_FREQUENCY = {1: "daily", 2: "every 12 h", 3: "every 8 h", 4: "every 6 h"}


def dose_text(drug: str, dose_mg: float | None, dose_units: float | None,
              doses_per_day: float | None, route: str = "SC", short: bool = True) -> str:
    """"enoxaparin 60 mg SC daily", "heparin (UFH) 5,000 units SC every 12 h"."""
    amount = f"{num(dose_mg, 1)} mg" if dose_mg is not None else \
        f"{num(dose_units, 0)} units" if dose_units is not None else "dose unknown"
    per_day = int(doses_per_day) if doses_per_day is not None and float(doses_per_day).is_integer() else None
    if per_day in SHORT_FREQUENCY:
        freq = SHORT_FREQUENCY[per_day] if short else FREQUENCY_TEXT[per_day]
    elif doses_per_day is not None:
        freq = f"{num(doses_per_day, 2)} doses a day"
    else:
        freq = "frequency unknown"
    route_text = f" {route}" if route else ""
    return f"{DRUG_NAMES.get(drug, drug)} {amount}{route_text} {freq}"


def order_text(order: MedicationOrder) -> str:
    route = {"subcutaneous": "SC", "intravenous": "IV"}.get(order.route or "", "")
    if order.continuous:
        return f"{DRUG_NAMES.get(order.ingredient, order.ingredient)} infusion"
    return dose_text(order.ingredient, order.dose_mg, order.dose_units, order.doses_per_day, route)


# -- labels ------------------------------------------------------------------------------------
CONTRAINDICATION_TEXT = {
    "active_bleeding": "active bleeding",
    "platelets_lt_25": "platelets below {platelets_abs_min} ×10⁹/L",
    "fibrinogen_lt_0.5": "fibrinogen below {fibrinogen_abs_min_g_l} g/L",
    "hit_acute": "acute heparin-induced thrombocytopenia (HIT, recent onset, platelets not recovered)",
    "hit_recent": "heparin-induced thrombocytopenia (HIT) within the last {hit_acute_days} days",
    "hit_suspected": "platelet fall on heparin: possible HIT (assess 4Ts)",
    "hit_history": "history of heparin-induced thrombocytopenia (HIT)",
    "heparin_allergy": "heparin, LMWH or pork-product hypersensitivity",
    "fondaparinux_crcl_lt_30": "CrCl below {fondaparinux_min_crcl} mL/min (fondaparinux)",
    "fondaparinux_weight_lt_50": "weight below 50 kg (fondaparinux label)",
    "non_heparin_anticoagulant_running": "a non-heparin therapeutic anticoagulant is running",
}
# Short forms for summaries (< 140 characters).
CONTRAINDICATION_SHORT = {
    "active_bleeding": "active bleeding",
    "platelets_lt_25": "platelets < {platelets_abs_min}",
    "fibrinogen_lt_0.5": "fibrinogen < {fibrinogen_abs_min_g_l} g/L",
    "hit_acute": "acute HIT",
    "hit_recent": "recent HIT",
    "hit_suspected": "possible HIT",
    "hit_history": "HIT history",
    "heparin_allergy": "heparin allergy",
    "fondaparinux_crcl_lt_30": "CrCl < {fondaparinux_min_crcl}",
    "fondaparinux_weight_lt_50": "weight < 50 kg",
    "non_heparin_anticoagulant_running": "non-heparin anticoagulant running",
}
CAUTION_TEXT = {
    "platelets_lt_50": "platelets below {platelets_caution_min} ×10⁹/L",
    "hemoglobin_lt_8": "haemoglobin below {hemoglobin_caution_min_g_dl} g/dL",
    "fibrinogen_lt_1.0": "fibrinogen below {fibrinogen_caution_min_g_l} g/L",
    "dual_antiplatelet_therapy": "dual antiplatelet therapy",
    "recent_bleeding": "bleeding within {recent_bleeding_days} days",
    "bleeding_disorder": "known bleeding disorder",
    "recent_intracranial_haemorrhage": "recent intracranial haemorrhage",
    "severe_liver_disease": "severe liver disease (INR and bilirubin raised)",
}
ANTI_XA_REASON_TEXT = {
    "bmi_ge_40": "BMI ≥ {trigger_bmi}",
    "weight_gt_120kg": "weight > {trigger_weight_high_kg} kg",
    "weight_lt_50kg": "weight < {trigger_weight_low_kg} kg",
    "crcl_lt_30": "CrCl < {crcl_cutoff} mL/min",
    "renal_replacement": "renal replacement",
    "pregnancy": "pregnancy",
    "escalated_dose": "BMI-escalated dose",
    "current_intermediate_dose": "intermediate-dose LMWH",
    "current_therapeutic_dose": "therapeutic-dose LMWH",
}
INPUT_LABELS = {
    "weight": "body weight", "height": "height", "age_years": "age (Patient.birthDate)",
    "sex": "sex (Patient.gender male/female)", "creatinine": "serum creatinine",
    "platelets": "platelet count", "inr": "INR", "d_dimer": "D-dimer",
    "d_dimer_basis": "D-dimer reference range or FEU/DDU basis", "fibrinogen": "fibrinogen",
    "hemoglobin": "haemoglobin", "pt": "prothrombin time (s)", "pt_reference": "PT reference range",
    "pf_ratio": "PaO2/FiO2", "respiratory_support": "oxygen or respiratory support record",
    "map": "mean arterial pressure", "vasoactive_rate": "vasopressor rate", "bilirubin": "bilirubin",
    "urine_output_24h": "24-h urine output", "gcs": "Glasgow Coma Scale", "bmi": "BMI",
    "dose": "dose", "frequency": "frequency",
}
# Input -> the policy window it must fall in (fhir-data-requirements §1.2).
INPUT_WINDOWS = {
    "creatinine": "window.labs_hours", "platelets": "window.labs_hours", "inr": "window.labs_hours",
    "d_dimer": "window.labs_hours", "fibrinogen": "window.labs_hours", "hemoglobin": "window.labs_hours",
    "pt": "window.labs_hours", "bilirubin": "window.labs_hours", "pf_ratio": "window.blood_gas_hours",
    "map": "window.vitals_hours", "gcs": "window.vitals_hours",
    "urine_output_24h": "window.urine_output_hours",
    "respiratory_support": "window.respiratory_support_hours", "weight": "window.weight_days",
}
NOTE_TEXT = {
    "mechanical_prophylaxis": "Consider mechanical prophylaxis (intermittent pneumatic compression).",
    "hit_non_heparin_agent": "HIT and fondaparinux not possible (CrCl below {fondaparinux_min_crcl} "
                             "mL/min or unknown): a non-heparin agent such as argatroban, with specialist "
                             "(haematology) advice.",
    "hit_avoid_heparin": "HIT: avoid heparins; a non-heparin agent with specialist (haematology) advice.",
    "hit_needs_platelets": "Recent HIT and no platelet count: obtain one and haematology advice.",
    "fondaparinux_needs_weight": "Fondaparinux needs a recorded weight (not below 50 kg).",
    "fondaparinux_low_weight": "Weight below 50 kg: fondaparinux is contraindicated (label).",
    "fondaparinux_moderate_renal": "CrCl 30-50 mL/min: fondaparinux with caution (EU SmPC 1.5 mg daily).",
    "renal_obesity": "Renal impairment with obesity: see CrCl on actual weight; consider anti-Xa-guided dosing.",
    "crcl_unreliable": "Creatinine changed by 0.3 mg/dL or more within 48 h: CrCl is unreliable.",
    "therapeutic_needs_protocol": "Therapeutic dose: follow the local protocol (e.g. UFH infusion).",
    "other_anticoagulation_indication": "Another indication for anticoagulation is recorded.",
    "confirm_renal_function": "Renal function (CrCl) unknown: confirm it before relying on this dose.",
    "crcl_lt_15": "CrCl below {severe_crcl_cutoff} mL/min: UFH is preferred; HEP-COVID excluded these "
                  "patients.",
    "renal_trough_anti_xa": "CrCl below {crcl_cutoff} mL/min: also check a trough anti-Xa before the next dose.",
    "weight_lt_50kg": "Weight below {trigger_weight_low_kg} kg: the fixed dose is kept; exposure is higher "
                      "at low weight, so monitor anti-Xa (enoxaparin label).",
    "weight_gt_120kg": "Weight above {trigger_weight_high_kg} kg: the BMI tier applies; monitor anti-Xa.",
    "d_dimer_pregnancy_caveat": "D-dimer rises in normal pregnancy; no pregnancy-specific ULN is applied.",
    "d_dimer_basis_conflict": "The D-dimer code and unit disagree on FEU/DDU; the basis is treated as "
                              "unknown.",
    "enoxaparin_rule_not_applied": "The BMI and renal dose rules are enoxaparin rules; the product's "
                                   "standard prophylactic dose is used.",
    "renal_preferred_heparin": "Local policy prefers UFH at CrCl below {crcl_cutoff} mL/min; the enoxaparin renal "
                               "dose is shown for this enoxaparin order.",
    "pending_weight": "Weight or height unknown: {pending_weight_mg} mg pending a recorded weight.",
    "ecmo": "On ECMO: anticoagulation is usually protocol-driven; check the local ECMO protocol.",
    "severity_unknown": "Severity unknown (no oxygen or organ-support record in the last "
                        "{respiratory_support_hours} h).",
}


_FILL_VALUES: dict[int, tuple[Policy, dict[str, object]]] = {}


def _policy_values(policy: Policy) -> dict[str, object]:
    """Display values of every policy key by its short name, built once per Policy (the
    formatting is not free, and labels are filled several times per card)."""
    hit = _FILL_VALUES.get(id(policy))
    if hit is None or hit[0] is not policy:
        values: dict[str, object] = {}
        for key, value in policy.values.items():
            values.setdefault(key.split(".", 1)[1], num(value, 2) if isinstance(value, (int, float))
                              and not isinstance(value, bool) else value)
        hit = _FILL_VALUES[id(policy)] = (policy, values)
    return hit[1]


def _fill(template: str, policy: Policy, **extra: object) -> str:
    """Put policy values (and `extra` values) into a label: {platelets_abs_min} ->
    safety.platelets_abs_min."""
    if "{" not in template:
        return template
    return template.format(**{**_policy_values(policy), **extra})


def label(kind: dict[str, str], code: str, policy: Policy) -> str:
    return _fill(kind.get(code, code.replace("_", " ")), policy)


def labels(kind: dict[str, str], codes: Iterable[str], policy: Policy) -> list[str]:
    return [label(kind, c, policy) for c in codes]


def join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def note_lines(codes: Iterable[str], policy: Policy) -> list[str]:
    return [f"- {label(NOTE_TEXT, c, policy)}" for c in dict.fromkeys(codes)]


# -- sections ------------------------------------------------------------------------------------
# Decision edges near which a displayed number gets more decimals (cards.num_edge).
_EDGES = {"bmi": ("dosing.bmi_tier1", "dosing.bmi_tier2", "antixa.trigger_bmi"),
          "crcl": ("renal.crcl_cutoff", "hit.fondaparinux_min_crcl", "renal.severe_crcl_cutoff"),
          "d_dimer": ("d_dimer.marked_multiple", "escalation.d_dimer_multiple",
                      "dic.d_dimer_moderate_above_multiple", "dic.d_dimer_strong_above_multiple")}


def shown(kind: str, value: float | None, dp: int, policy: Policy | None) -> str:
    """A BMI, CrCl or D-dimer multiple for card text (§0 display decimals), never rounded onto
    a decision edge it is not on."""
    if policy is None:
        return num(value, dp)
    return num_edge(value, dp, [policy[k] for k in _EDGES[kind]], policy["numeric.compare_decimals"])


BASIS_WORDS = {"standard": "standard dose", "bmi_ge_30": "BMI-adjusted dose, BMI {bmi_tier1} or more",
               "bmi_ge_40": "BMI-adjusted dose, BMI {bmi_tier2} or more",
               "bmi_ge_50": "BMI-adjusted dose, BMI {bmi_tier3} or more (site option)",
               "crcl_lt_30": "renal dose, CrCl below {crcl_cutoff} mL/min",
               "pending_weight": "dose pending a recorded weight", "hit_history": "HIT history: fondaparinux",
               "crcl_lt_15": "UFH, CrCl below {severe_crcl_cutoff} mL/min or renal replacement",
               "heparin_allergy": "heparin allergy: fondaparinux"}
def anti_xa_plan(anti_xa, policy: Policy) -> str | None:
    if not anti_xa or anti_xa.indicated is not True:
        return None
    reasons = join(labels(ANTI_XA_REASON_TEXT, anti_xa.reasons, policy))
    target = f"target {num(anti_xa.target_low, 2)}–{num(anti_xa.target_high, 2)} IU/mL" \
        if anti_xa.target_low is not None else "no validated target range for this dose: discuss with haematology"
    text = f"**Anti-Xa monitoring indicated** ({reasons}): {sampling_text(anti_xa)}; {target}."
    if anti_xa.sampling and anti_xa.sampling.trough:
        text += f" Also a trough just before the next dose, target below {num(anti_xa.sampling.trough_max, 2)} IU/mL."
    return text + " Use an LMWH-calibrated assay."


def sampling_text(anti_xa) -> str:
    s = anti_xa.sampling  # set whenever anti-Xa is indicated (logic/anti_xa.py, from the policy)
    hours, after = num(s.peak_hours_post_dose, 1), s.after_dose
    return f"peak level {hours} h after a subcutaneous dose, from the {_ordinal(after)} dose on (steady state)"


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def missing_text(names: Iterable[str], policy: Policy) -> str:
    """"D-dimer, platelet count and INR (none usable in the last 72 h)"."""
    parts = []
    for name in dict.fromkeys(names):
        text = INPUT_LABELS.get(name, name.replace("_", " "))
        window = INPUT_WINDOWS.get(name)
        if window:
            span = policy[window]
            unit = "d" if window.endswith("_days") else "h"
            text += f" (none usable in the last {num(span, 0)} {unit})"
        parts.append(text)
    return join(parts)


def rejected_lines(a, names: Iterable[str]) -> list[str]:
    """Why a value that was sent could not be used (unknown unit, absurd value, ...)."""
    rejected = a.inputs.rejected
    return [f"- {INPUT_LABELS.get(n, n)}: {md(rejected[n])}" for n in dict.fromkeys(names) if n in rejected]


def anti_xa_suggestion(ev, anti_xa) -> dict:
    """A create-ServiceRequest suggestion for an LMWH-calibrated anti-Xa level."""
    call = ev.call
    sampling = sampling_text(anti_xa)
    note = anti_xa_plan(anti_xa, ev.policy).replace("**", "")
    resource = anti_xa_request(ev.codes, patient_id=call.patient_id, encounter_id=call.encounter_id,
                               authored_on=ev.now, sampling=sampling[0].upper() + sampling[1:], note=note)
    return suggestion("Order anti-Xa level (LMWH-calibrated)",
                      action_create("Draft order: anti-Xa, LMWH-calibrated, " + sampling, resource))
