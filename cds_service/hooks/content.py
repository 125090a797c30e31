"""Clinical card text, built from one Assessment: the inputs table, the score breakdown, the
dose and why, the anti-Xa plan, the evidence note (clinical-rules.md §13), missing inputs and
sources. Shared by the patient-view and order services. Plain text for summaries, GitHub
Markdown (data values escaped with `md`) for details. Wording is hedged ("consider").
"""
from __future__ import annotations

from typing import Iterable

from ..logic.inputs import Measurement, MedicationOrder
from ..logic.policy import Policy
from .cards import (FREQUENCY_TEXT, action_create, anti_xa_request, md, num, num_edge, suggestion, table,
                    when)
from .vocabulary import CITATIONS

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
    "hit_recent": "heparin-induced thrombocytopenia (HIT) within the last 100 days",
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
_UNITS = {"10^9/L": "×10⁹/L", "10*9/L": "×10⁹/L", "mm[Hg]": "mmHg", "{score}": "", "{INR}": "", "1": ""}


def _unit(m: Measurement) -> str:
    return md(_UNITS.get(m.unit, m.unit))


def _value(m: Measurement, dp: int) -> str:
    return f"{md(m.comparator) + ' ' if m.comparator else ''}{num(m.value, dp)}"


# (label, PatientInputs field, display decimals), in table order after the D-dimer.
_TABLE_ROWS = (("Platelets", "platelets", 0), ("INR", "inr", 2), ("Prothrombin time", "pt", 1),
               ("Fibrinogen", "fibrinogen", 2), ("Haemoglobin", "hemoglobin", 1),
               ("Creatinine", "creatinine", 3), ("Bilirubin", "bilirubin", 2), ("Weight", "weight", 2),
               ("Height", "height", 2), ("BMI (recorded)", "recorded_bmi", 1), ("PaO2/FiO2", "pf_ratio", 0),
               ("Mean arterial pressure", "map", 0), ("Glasgow Coma Scale", "gcs", 0),
               ("Urine output (24 h)", "urine_output_24h", 0), ("Anti-Xa", "anti_xa", 2))


def inputs_table(a) -> str:
    """Value, unit and date of every input the card relies on."""
    i, now = a.inputs, a.now
    rows: list[list[str]] = []

    def add(name: str, m: Measurement | None, dp: int, extra: str = "") -> None:
        if m is not None:
            rows.append([name, _value(m, dp) + extra, _unit(m), when(m.time, now)])

    if i.d_dimer is not None:
        dd = a.d_dimer
        extra = ""
        if dd.uln_mg_l:
            basis = f" {dd.basis}" if dd.basis else ""
            source = "lab reference range" if dd.uln_source == "reference_range" else "default ULN"
            extra = f" (ULN {num(dd.uln_mg_l, 3)} mg/L{basis}, {source})"
        add("D-dimer", i.d_dimer.value, 3, extra)
    for name, attr, dp in _TABLE_ROWS:
        if attr == "pt" and i.pt is not None:
            ref = f" (upper limit {num(i.pt.reference_high_s, 1)} s)" if i.pt.reference_high_s else ""
            add(name, i.pt.seconds, dp, ref)
        elif attr == "recorded_bmi" and i.weight is not None and i.height is not None:
            continue   # used only when BMI cannot be computed
        elif attr != "pt":
            add(name, getattr(i, attr), dp)
    if not rows:
        return "No laboratory or body measurements were available in their windows."
    age = f"Age {a.inputs.age_years} y, " if a.inputs.age_years is not None else ""
    sex = f"{a.inputs.sex}. " if a.inputs.sex else "sex not recorded as male/female. "
    return age + sex + "\n\n" + table(["Input", "Value", "Unit", "Date"], rows)


def _points(*pairs: tuple[str, int | None]) -> str:
    return " + ".join(f"{name} {'?' if pts is None else pts}" for name, pts in pairs)


def scores(a, policy: Policy) -> str:
    """SIC, ISTH overt DIC and the D-dimer multiple, item by item."""
    lines = []
    sic = a.sic
    breakdown = _points(("platelets", sic.platelet_points), ("INR", sic.inr_points),
                        ("SOFA-4", sic.sofa_points))
    if sic.positive is None:
        verdict = "not determinable"
    else:
        total = f"= **{sic.total}**" if sic.total is not None else \
            (f"= {sic.total_range[0]}–{sic.total_range[1]} (an item is missing)" if sic.total_range else "")
        plt_inr = " with platelets + INR ≥ 3" if policy["sic.require_plt_inr_gt_2"] else ""
        verdict = f"{total}, {'positive' if sic.positive else 'negative'} " \
                  f"(positive at ≥ {policy['sic.positive_total']}{plt_inr})"
    lines.append(f"- **SIC** (Iba 2017): {breakdown} {verdict}")
    sofa = a.sofa
    organs = [("respiratory", sofa.respiratory), ("cardiovascular", sofa.cardiovascular),
              ("liver", sofa.hepatic), ("renal", sofa.renal)]
    lines.append("  - SOFA-4: " + ", ".join(f"{n} {'?' if v is None else v}" for n, v in organs)
                 + (f" = {sofa.sofa4}" if sofa.sofa4 is not None else ""))
    dic = a.isth_dic
    breakdown = _points(("platelets", dic.platelet_points), ("D-dimer", dic.d_dimer_points),
                        ("PT", dic.pt_points), ("fibrinogen", dic.fibrinogen_points))
    if dic.overt is None:
        verdict = "not determinable"
    else:
        total = f"= **{dic.total}**" if dic.total is not None else \
            f"= {dic.total_range[0]}–{dic.total_range[1]} (an item is missing)"
        verdict = f"{total}, {'overt DIC' if dic.overt else 'not overt'} " \
                  f"(overt at ≥ {policy['dic.overt_threshold']})"
    lines.append(f"- **ISTH overt DIC** (Taylor 2001): {breakdown} {verdict}")
    lines.append(f"- **D-dimer**: {d_dimer_multiple(a, policy)} (more than {num(policy['d_dimer.marked_multiple'], 1)}× "
                 f"ULN is the Tang 2020 signal)")
    return "\n".join(lines)


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


def d_dimer_multiple(a, policy: Policy | None = None) -> str:
    dd = a.d_dimer
    if dd.multiple_of_uln is not None:
        return f"{shown('d_dimer', dd.multiple_of_uln, 3, policy)}× ULN"
    if dd.comparator and dd.value_mg_l is not None and dd.uln_mg_l:
        return f"{md(dd.comparator)} {num(dd.value_mg_l / dd.uln_mg_l, 3)}× ULN"
    return "multiple of ULN not determinable"


def signal_text(a, policy: Policy | None = None) -> str:
    """"SIC 5 and D-dimer 7.2× ULN" (the seed trigger reasons, for summaries)."""
    parts = []
    if "sic_positive" in a.seed_trigger.reasons:
        total = a.sic.total
        parts.append(f"SIC {total}" if total is not None else "SIC positive")
    if "d_dimer_gt_6x_uln" in a.seed_trigger.reasons:
        parts.append(f"D-dimer {d_dimer_multiple(a, policy)}")
    return " and ".join(parts)


def renal_text(a, policy: Policy | None = None) -> str:
    r = a.renal
    if r.crcl_ml_min is None:
        missing = join([INPUT_LABELS.get(n, n) for n in r.missing]) or "inputs"
        return f"CrCl not determinable (missing: {missing})."
    basis = {"actual": "actual", "ideal": "ideal", "adjusted": "adjusted"}.get(r.crcl_weight_basis or "", "")
    weight = f", {basis} body weight {num(r.weight_used_kg, 1)} kg" if r.weight_used_kg else ""
    return f"CrCl {shown('crcl', r.crcl_ml_min, 1, policy)} mL/min (Cockcroft–Gault{weight})."


BASIS_WORDS = {"standard": "standard dose", "bmi_ge_30": "BMI-adjusted dose, BMI {bmi_tier1} or more",
               "bmi_ge_40": "BMI-adjusted dose, BMI {bmi_tier2} or more",
               "crcl_lt_30": "renal dose, CrCl below {crcl_cutoff} mL/min",
               "pending_weight": "dose pending a recorded weight", "hit_history": "HIT history: fondaparinux",
               "crcl_lt_15": "UFH, CrCl below {severe_crcl_cutoff} mL/min or renal replacement",
               "heparin_allergy": "heparin allergy: fondaparinux"}
_BASIS_TEXT = {
    "standard": "BMI {bmi} is below {bmi_tier1}: standard prophylactic dose.",
    "bmi_ge_30": "BMI {bmi} is at least {bmi_tier1}: BMI-adjusted dose (Piagnerelli 2020).",
    "bmi_ge_40": "BMI {bmi} is at least {bmi_tier2}: BMI-adjusted dose (Piagnerelli 2020).",
    "crcl_lt_30": "CrCl {crcl} mL/min is below {crcl_cutoff}: renal dose, which takes precedence over the "
                  "BMI rule (enoxaparin label).",
    "pending_weight": "Weight or height unknown, so BMI cannot be computed: {pending_weight_mg} mg until a "
                      "weight is recorded.",
    "hit_history": "History of HIT: heparins are contraindicated; fondaparinux at CrCl {crcl} mL/min "
                   "(at least {fondaparinux_min_crcl}).",
    "heparin_allergy": "Heparin allergy: heparins are contraindicated; fondaparinux at CrCl {crcl} mL/min "
                       "(at least {fondaparinux_min_crcl}).",
    "crcl_lt_15": "CrCl {crcl} mL/min is below {severe_crcl_cutoff}, or renal replacement is running: UFH "
                  "(HEP-COVID excluded CrCl < 15).",
}


def dose_rationale(a, policy: Policy, suggested: bool = True) -> str:
    """The recommended regimen and why (BMI, CrCl, weight basis); `suggested=False` gives only
    the body measures and renal function (when a card proposes something else)."""
    reg = a.regimen
    values = {"bmi": shown("bmi", a.anthropometrics.bmi, 1, policy),
              "crcl": shown("crcl", a.renal.crcl_ml_min, 1, policy)}
    lines = []
    if reg.drug and suggested:
        lines.append(f"**Suggested:** {dose_text(reg.drug, reg.dose_mg, reg.dose_units, reg.doses_per_day, short=False)}.")
        why = _BASIS_TEXT.get(reg.basis)
        if why:
            lines.append(_fill(why, policy, **values))
    anthro = a.anthropometrics
    if anthro.bmi is not None:
        src = " (recorded)" if anthro.bmi_source == "recorded" else ""
        lines.append(f"BMI {values['bmi']} kg/m²{src}; weight {num(anthro.weight_kg, 2)} kg.")
    lines.append(renal_text(a, policy))
    if reg.weight_based_mg is not None and suggested:
        iu_per_kg = num(policy["dosing.info_mg_per_kg"] * 100, 0)  # 1 mg enoxaparin = 100 IU (§14)
        lines.append(f"For information: {iu_per_kg} IU/kg would be {num(reg.weight_based_mg, 1)} mg "
                     f"(nearest syringe {num(reg.weight_based_syringe_mg, 0)} mg).")
    return " ".join(lines)


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


def _escalation_criteria(policy: Policy) -> str:
    """The therapeutic-option criteria as this policy applies them (§13, escalation.*)."""
    multiple = policy["escalation.d_dimer_multiple"]
    d_dimer = "D-dimer above ULN" if multiple == 1 else f"D-dimer above {num(multiple, 1)}× ULN"
    return f"on low-flow oxygen with {d_dimer}" if policy["escalation.require_low_flow"] else f"with {d_dimer}"


def evidence_text(a, policy: Policy, code: str | None = None) -> str | None:
    """The §13 evidence note for the card."""
    note = a.evidence_note
    code = code or note.code
    crit = a.critical_illness
    if code == "critically_ill_prophylactic_only":
        criteria = ", ".join(md(c.replace("vasoactive:", "")) for c in crit.criteria) or "organ support"
        return ("**Evidence (critically ill):** on ICU-level organ support (" + criteria + "), use a "
                "prophylactic dose only (weight-adjusted allowed), not intermediate or therapeutic. "
                "INSPIRATION: 1 mg/kg daily vs 40 mg, 30-day composite 45.7 % vs 44.1 %, no benefit. "
                "REMAP-CAP/ACTIV-4a/ATTACC critically ill (n = 1,098): therapeutic heparin stopped for "
                "futility, median organ-support-free days 1 vs 4. ASH 2021-2022, CHEST 2022, ISTH 2022 and "
                "NIH 2022 agree.")
    if code == "therapeutic_option":
        text = (f"**Evidence (not critically ill, {_escalation_criteria(policy)}, no bleeding caution):** "
                "therapeutic-dose heparin is an option (LMWH preferred; 14 days or until discharge). "
                "REMAP-CAP/ACTIV-4a/ATTACC non-critically ill (n = 2,219): probability of superiority "
                "98.6 %, adjusted OR 1.27; NIH 2022, ASH 2022 (conditional), CHEST 2022, ISTH 2022 (selected "
                "patients), NICE NG191; HEP-COVID and RAPID. Therapeutic DOACs are not recommended.")
        if note.therapeutic_hint == "enoxaparin_1_mg_kg_q12h":
            text += " If chosen: enoxaparin 1 mg/kg (actual body weight) SC every 12 h, prescribed separately."
        else:
            text += (f" CrCl is below {num(policy['renal.crcl_cutoff'], 0)} mL/min or unknown: follow local "
                     "protocol (HEP-COVID used 0.5 mg/kg "
                     "every 12 h at CrCl 15-29 and excluded CrCl below 15).")
        return text
    if code == "escalation_blocked":
        cautions = join(labels(CAUTION_TEXT, note.blocking_cautions or a.safety.escalation_cautions, policy))
        return (f"**Evidence:** not critically ill, but {cautions} rule out doses above prophylaxis "
                "(trial exclusions, NIH 2022): prophylactic dose.")
    if code == "prophylactic" and note.unchecked_cautions:
        unchecked = join(labels(CAUTION_TEXT, note.unchecked_cautions, policy))
        return (f"**Evidence:** not critically ill {_escalation_criteria(policy)}, but "
                f"{unchecked} cannot be ruled out (no recent value): therapeutic heparin needs no "
                "bleeding caution (NIH 2022), so prophylactic dose until they are checked.")
    if code == "prophylactic":
        return ("**Evidence:** not critically ill; the criteria for therapeutic heparin ("
                f"{_escalation_criteria(policy)}, no bleeding caution) are not all met: prophylactic dose "
                "(ISTH 2020, ACC 2020, CHEST 2020).")
    if code == "severity_unknown":
        hours = num(policy["window.respiratory_support_hours"], 0)
        return (f"**Evidence:** severity unknown (no oxygen or organ-support record in the last {hours} h). If "
                f"critically ill, prophylactic dose only; if {_escalation_criteria(policy)} and no "
                "bleeding caution, therapeutic heparin may be an option.")
    return None


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


def sources(*keys: str) -> str:
    return "**Sources:** " + "; ".join(CITATIONS[k] for k in keys) + "."


def anti_xa_suggestion(ev, anti_xa) -> dict:
    """A create-ServiceRequest suggestion for an LMWH-calibrated anti-Xa level."""
    call = ev.call
    sampling = sampling_text(anti_xa)
    note = anti_xa_plan(anti_xa, ev.policy).replace("**", "")
    resource = anti_xa_request(ev.codes, patient_id=call.patient_id, encounter_id=call.encounter_id,
                               authored_on=ev.now, sampling=sampling[0].upper() + sampling[1:], note=note)
    return suggestion("Order anti-Xa level (LMWH-calibrated)",
                      action_create("Draft order: anti-Xa, LMWH-calibrated, " + sampling, resource))


def detail(*blocks: str | None) -> str:
    """Card detail: the non-empty blocks, one paragraph each."""
    return "\n\n".join(b for b in blocks if b)


def contraindication_reason(a, code: str, p) -> str:
    """One contraindication with its evidence (record and date, or value and date)."""
    i = a.inputs
    text = label(CONTRAINDICATION_TEXT, code, p)
    evidence = {"active_bleeding": i.active_bleeding, "hit_history": i.hit_history,
                "heparin_allergy": i.heparin_allergy}.get(code)
    if evidence is not None:
        source = f" ({md(evidence.source)}" if evidence.source else " ("
        return text + source + (", " if evidence.source else "") + f"dated {when(evidence.time, a.now)})"
    measured = {"platelets_lt_25": (i.platelets, 0, "×10⁹/L"), "fibrinogen_lt_0.5": (i.fibrinogen, 2, "g/L")}
    if code in measured and measured[code][0] is not None:
        m, dp, unit = measured[code]
        return f"{text}: {num(m.value, dp)} {unit} ({when(m.time, a.now)})"
    return text


DISCLAIMER = "_Decision support only: check against the patient and local protocol before ordering._"
