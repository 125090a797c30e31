"""Card text v2 (clinical-rules §18.2): per card kind, the summary template, the why line, the
dose line, the missing-checks line and the evidence line, built once per policy.

A v2 card's detail is at most DETAIL_MAX characters of Markdown, in this order and nothing else:
1. **Why**: the deciding values as the lab reported them (value, unit, date; a converted value
   only in parentheses, only when a rule used the conversion);
2. **Dose**: one line of dose rationale;
3. **Check**: at most one line of missing checks;
4. extra check lines the catalogue asks for (neuraxial timing; no antiplatelet for COVID-19);
5. **Evidence**: one line naming the pathway's source (one or two citations); the same keys
   give the card's links.
No input table, no score arithmetic, no reference list, no disclaimer. Data values pass `md`.

Summaries name the deciding signal and the action with its dose, under 140 characters
(cards.summary_text shortens the data parts when a long drug name pushes past it).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from ..logic.inputs import Measurement
from ..logic.policy import Policy
from .build import md, num

DETAIL_MAX = 600

DRUG = {"enoxaparin": "enoxaparin", "heparin": "heparin (UFH)", "fondaparinux": "fondaparinux",
        "dalteparin": "dalteparin", "tinzaparin": "tinzaparin", "argatroban": "argatroban",
        "bivalirudin": "bivalirudin", "apixaban": "apixaban", "rivaroxaban": "rivaroxaban",
        "dabigatran": "dabigatran", "edoxaban": "edoxaban", "warfarin": "warfarin",
        "phenprocoumon": "phenprocoumon", "acenocoumarol": "acenocoumarol",
        "unmapped": "an unmapped anticoagulant"}
FREQ = {1: "daily", 2: "q12h", 3: "q8h", 4: "q6h"}
FREQ_LONG = {1: "once daily", 2: "every 12 h", 3: "every 8 h", 4: "every 6 h"}

# Units as labs send them (UCUM codes) -> how a clinician reads them.
_UNIT_TEXT = {"10*9/L": "×10⁹/L", "10*3/uL": "×10³/µL", "10^3/uL": "×10³/µL", "10*3/mm3": "×10³/mm³",
              "/uL": "/µL", "/mm3": "/mm³", "umol/L": "µmol/L", "ug/mL": "µg/mL", "ug/L": "µg/L",
              "ng/mL": "ng/mL", "mg/L": "mg/L", "mg/dL": "mg/dL", "g/dL": "g/dL", "g/L": "g/L",
              "mmol/L": "mmol/L", "{INR}": "", "{ratio}": "", "1": "", "kg": "kg", "cm": "cm",
              "[lb_av]": "lb", "[in_i]": "in", "mg/L{FEU}": "mg/L FEU", "ug/mL{FEU}": "µg/mL FEU",
              "ng/mL{FEU}": "ng/mL FEU", "ug/L{FEU}": "µg/L FEU", "ng/mL{DDU}": "ng/mL DDU"}


# -- values as the lab reported them ----------------------------------------------------------
def when(moment: datetime | None, *, time: bool = True) -> str:
    """"4 Dec 08:00 UTC" (the zone said: a clinician reads local time otherwise; issue 22); the
    year is added when it is not this year ("30 Nov 2023"); "" when unknown."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    m = moment.astimezone(timezone.utc)
    text = f"{m.day} {m.strftime('%b')}"
    if m.year != datetime.now(timezone.utc).year:
        return f"{text} {m.year}"
    return f"{text} {m.strftime('%H:%M')} UTC" if time else text


def unit_text(unit: str | None) -> str:
    if not unit:
        return ""
    return _UNIT_TEXT.get(unit, unit)


def reported(m: Measurement | None, dp: int = 2, *, dated: bool = True) -> str:
    """"190 µmol/L (4 Dec 08:00)": the value and unit the lab sent, escaped."""
    if m is None:
        return "not available"
    value = m.reported_value if m.reported_value is not None else m.value
    unit = unit_text(m.reported_unit if m.reported_value is not None else m.unit)
    comparator = f"{m.comparator} " if getattr(m, "comparator", None) else ""
    text = f"{comparator}{num(value, dp)}" + (f" {unit}" if unit else "")
    stamp = when(m.time) if dated else ""
    return md(text) + (f" ({stamp})" if stamp else "")


def dose_text(drug: str | None, dose_mg: float | None, dose_units: float | None,
              doses_per_day: float | None, *, route: str | None = "SC", long: bool = False) -> str:
    """"enoxaparin 60 mg SC daily"; "dose not readable" replaces a dose that cannot be read,
    "frequency not readable" a frequency (never "dose unknown daily")."""
    name = DRUG.get(drug or "", drug or "anticoagulant")
    if dose_mg is not None:
        amount = f"{num(dose_mg, 1)} mg"
    elif dose_units is not None:
        amount = f"{num(dose_units, 0)} units"
    else:
        return f"{name} (dose not readable)"
    per_day = int(doses_per_day) if doses_per_day is not None and float(doses_per_day).is_integer() else None
    if per_day in FREQ:
        freq = (FREQ_LONG if long else FREQ)[per_day]
    elif doses_per_day is not None:
        freq = f"{num(doses_per_day, 2)} doses a day"
    else:
        freq = "(frequency not readable)"
    return " ".join(x for x in (name, amount, route or "", freq) if x)


def order_text(order: Any) -> str:
    """An active order or draft (logic.inputs.MedicationOrder) for card text."""
    if getattr(order, "continuous", False):
        return f"{DRUG.get(order.ingredient, order.ingredient)} infusion"
    route = {"subcutaneous": "SC", "intravenous": "IV"}.get(getattr(order, "route", None) or "", "")
    if order.dose_mg is None and order.dose_units is None and order.doses_per_day is None:
        return DRUG.get(order.ingredient, order.ingredient)
    return dose_text(order.ingredient, order.dose_mg, order.dose_units, order.doses_per_day, route=route)


def names(items: Sequence[str]) -> str:
    items = list(dict.fromkeys(i for i in items if i))
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# -- evidence lines: one per pathway / kind (§18.2) -----------------------------------------------
@dataclass(frozen=True)
class Evidence:
    text: str                    # the line, without the "Evidence:" lead
    keys: tuple[str, ...]        # vocabulary.EVIDENCE keys: the card's links

    def line(self) -> str:
        return f"**Evidence:** {self.text}"


NEURAXIAL = "Neuraxial catheter or puncture: follow the timing rules (boxed warning)."
# §19.13 card text
DEESCALATE_TIMING = "Start the prophylactic dose when the next therapeutic dose would be due."
LOCAL_CAP = "above 150 mg per dose: local policy, use the UFH protocol"
CRITERIA_TEXT = {"vasopressor_procedure": "vasopressor therapy", "ECMO": "ECMO", "low-flow": "low-flow oxygen"}
NO_ANTIPLATELET = "Do not add an antiplatelet for COVID-19 [ISTH 2023]."
# v3-exposure (§19.12, §19.8)
POSSIBLE_OTHER_INDICATION = ("Possible other indication (history of VTE / long-term anticoagulant): review with "
                             "the treating team.")


def age_approximate_line(birth_date: str | None) -> str:
    """§19.8: a card that shows a CrCl computed from a partial birth date."""
    return f"CrCl: age approximate (birth date {md(birth_date or 'partial')})."


def age_uncertain_line(birth_date: str | None) -> str:
    """§19.8: every card for a patient whose partial birth date straddles 18."""
    return (f"Age uncertain (birth date {md(birth_date or 'partial')}): adult prophylactic dosing assumed; "
            "confirm the age.")


class Templates:
    """The v2 text for one policy: thresholds are filled in once, here."""

    def __init__(self, policy: Policy):
        self.policy = policy
        v = getattr(policy, "values", {})

        def val(key: str, dp: int = 1, default: Any = None) -> str:
            x = v.get(key, default)
            return num(x, dp) if isinstance(x, (int, float)) else str(x)

        self.evidence = {
            "contraindicated": Evidence("ISTH interim guidance 2020; enoxaparin label.",
                                        ("isth_interim_2020", "enoxaparin_label")),
            "hit_acute": Evidence("ASH 2018 HIT guideline: stop heparin, therapeutic non-heparin "
                                  "anticoagulant until platelet recovery.", ("ash_hit_2018",)),
            "hit_suspected": Evidence("ASH 2018 HIT guideline (4Ts score, then immunoassay).", ("ash_hit_2018",)),
            "heparin_specific": Evidence("ASH 2018 HIT guideline; re-exposure risk within 100 days "
                                         "(Warkentin 2001).", ("ash_hit_2018", "warkentin_2001")),
            "duplicate_anticoagulant": Evidence("combined anticoagulants add bleeding risk (enoxaparin label); "
                                                "ISTH 2022.", ("enoxaparin_label", "isth_2022")),
            "deescalate": Evidence("NIH 2024 final (archived); ASH 2022 (critically ill: prophylactic over "
                                   "therapeutic dose).", ("nih_2024", "ash_2022_critical")),
            "review_therapeutic": Evidence("NIH 2024 final (archived): these are contraindications to therapeutic "
                                           "dosing.", ("nih_2024",)),
            "therapeutic_candidate": Evidence("ASH 2022 update (conditional, very low certainty); "
                                              "ATTACC/ACTIV-4a/REMAP-CAP 2021.",
                                              ("ash_2022_acute", "attacc_noncritical_2021")),
            # §19.13: current evidence lines (v2 cited "ISTH interim 2020; ASH 2021")
            "prophylaxis_critical": Evidence("ASH 2022 (critically ill: prophylactic dose); ISTH 2022 and its 2023 "
                                             "update; CHEST 2022.", ("ash_2022_critical", "isth_2023", "chest_2022")),
            "prophylaxis": Evidence("ASH 2022; ISTH 2022 and its 2023 update; CHEST 2022.",
                                    ("ash_2022_acute", "isth_2023", "chest_2022")),
            "pregnancy": Evidence("RCOG Green-top Guideline 37a (obstetric thromboprophylaxis, weight-banded).",
                                  ("rcog_37a",)),
            "dose_review": Evidence("Piagnerelli 2020 (BMI-adjusted dose); enoxaparin label.",
                                    ("piagnerelli_2020", "enoxaparin_label")),
            "renal_dose": Evidence("enoxaparin label (renal dosing below CrCl 30 mL/min).", ("enoxaparin_label",)),
            "escalation": Evidence("INSPIRATION; REMAP-CAP/ACTIV-4a/ATTACC critically ill 2021.",
                                   ("inspiration_2021", "attacc_critical_2021")),
            "anti_xa": Evidence("enoxaparin label; LMWH-calibrated anti-Xa, peak after a dose.",
                                ("enoxaparin_label",)),
            "product_switch_renal": Evidence("HEP-COVID excluded CrCl below 15; enoxaparin label.",
                                             ("hep_covid_2021", "enoxaparin_label")),
            "fondaparinux_label": Evidence("fondaparinux label (contraindicated below 50 kg and at CrCl "
                                           "below 30 mL/min).", ("fondaparinux_label",)),
            "not_determinable": Evidence("ISTH interim guidance 2020.", ("isth_interim_2020",)),
            # v3-exposure (§19.4)
            "ecmo": Evidence("ELSO 2021 anticoagulation guideline; ASH 2021-2022 exclude ECMO circuits.",
                             ("elso_2021",)),
        }
        # Summary templates (§18.1), filled per card with str.format.
        self.summary = {
            "contraindicated_active": "Anticoagulation contraindicated ({reason}) but {active} is active",
            "contraindicated_none": "Pharmacological prophylaxis contraindicated ({reason}): consider mechanical",
            "hit_acute": "Acute HIT (onset {onset}, platelets {platelets}): stop all heparin; "
                         "therapeutic non-heparin agent",
            "hit_suspected": "Platelets fell {fall} % on heparin: assess for HIT (4Ts)",
            "heparin_specific_active": "{hit} but {active} is active",
            "duplicate": "Two anticoagulants active: {first} and {second}",
            "avoidance": "{hit}: avoid heparins; consider {dose}",
            "avoidance_specialist": "{hit}: avoid heparins; non-heparin agent with haematology advice",
            "avoidance_platelets": "{hit}, no recent platelet count: check platelets, haematology advice",
            "deescalate": "Critically ill on therapeutic {drug}: consider prophylactic dose unless VTE",
            "review_therapeutic": "On therapeutic {drug} with {caution}: consider prophylactic dose",
            "candidate_none": "Ward, O2, D-dimer {multiple}× ULN: consider therapeutic {dose}",
            "candidate_protocol": "Ward, O2, D-dimer {multiple}× ULN: therapeutic heparin is an option "
                                  "(local protocol)",
            "candidate_on": "On {active}; ward, O2, D-dimer {multiple}× ULN: therapeutic dose is an option",
            # §19.13: the summary names the dose reason; the 2020 signal moves to the why line
            "prophylaxis_signal": "No prophylaxis ordered; {reason}: consider {dose}",
            "standard": "No prophylaxis ordered; {reason}: consider {dose}",
            "standard_pregnant": "No VTE prophylaxis ordered: follow the obstetric protocol",
            "dose_review": "{active} ordered; {context}: consider {dose}",
        }
        self.caution = {
            "platelets_lt_50": "platelets {platelets}",
            "hemoglobin_lt_8": "Hb {hemoglobin}",
            "fibrinogen_lt_1.0": "fibrinogen {fibrinogen}",
            "dual_antiplatelet_therapy": "dual antiplatelet therapy",
            "recent_bleeding": "recent bleeding",
            "bleeding_disorder": "a bleeding disorder",
            "recent_intracranial_haemorrhage": "recent intracranial bleed",
            "severe_liver_disease": "severe liver disease",
        }
        self.reason = {
            "active_bleeding": "active bleeding",
            "platelets_lt_25": f"platelets < {val('safety.platelets_abs_min', 0)}",
            "fibrinogen_lt_0.5": f"fibrinogen < {val('safety.fibrinogen_abs_min_g_l', 2)} g/L",
            "hit_acute": "acute HIT",
            "hit_recent": "recent HIT",
            "hit_suspected": "possible HIT",
            "hit_history": "HIT history",
            "heparin_allergy": "heparin allergy",
            "fondaparinux_crcl_lt_30": f"CrCl < {val('hit.fondaparinux_min_crcl', 0)}",
            "fondaparinux_weight_lt_50": f"weight < {val('hit.fondaparinux_min_weight_kg', 0, 50)} kg",
            "non_heparin_anticoagulant_running": "non-heparin anticoagulant running",
        }
        self.basis = {
            "standard": f"standard dose (BMI below {val('dosing.bmi_tier1')})",
            "bmi_ge_30": f"BMI {val('dosing.bmi_tier1')} or more",
            "bmi_ge_40": f"BMI {val('dosing.bmi_tier2')} or more",
            "bmi_ge_50": f"BMI {val('dosing.bmi_tier3')} or more (site option)",
            "crcl_lt_30": f"renal dose, CrCl below {val('renal.crcl_cutoff', 0)} mL/min",
            "crcl_lt_15": f"CrCl below {val('renal.severe_crcl_cutoff', 0, 15)} mL/min or renal replacement: UFH",
            "pending_weight": "no recorded weight or height yet: standard dose until one is",
            "hit_history": "heparin-specific contraindication: fondaparinux",
            "heparin_allergy": "heparin allergy: fondaparinux",
        }
        self.signal_multiple = val("d_dimer.marked_multiple")

    def evidence_for(self, key: str) -> Evidence:
        return self.evidence[key]


_CACHE: dict[int, tuple[Policy, Templates]] = {}


def for_policy(policy: Policy) -> Templates:
    """The templates of `policy`, built once (policies live as long as the app)."""
    hit = _CACHE.get(id(policy))
    if hit is not None and hit[0] is policy:
        return hit[1]
    if len(_CACHE) > 32:
        _CACHE.clear()
    made = Templates(policy)
    _CACHE[id(policy)] = (policy, made)
    return made


def detail(why: str | None, dose: str | None = None, check: str | None = None,
           extra: Iterable[str | None] = (), evidence: Evidence | None = None) -> str:
    """The §18.2 detail: why, dose, at most one missing-checks line, the catalogue's extra check
    lines, the evidence line; one paragraph each. Over DETAIL_MAX, the why and dose lines are cut
    at a word (they are the longest; the action lines and the evidence always stay)."""
    tail = [x for x in (check, *extra, evidence.line() if evidence else None) if x]
    head = [x for x in (why, dose) if x]
    text = "\n\n".join(head + tail)
    budget = DETAIL_MAX - len("\n\n".join(tail)) - 2 * len(head)
    if len(text) > DETAIL_MAX and head:
        share = max(40, budget // len(head))
        head = [h if len(h) <= share else h[:share - 1].rsplit(" ", 1)[0] + "…" for h in head]
        text = "\n\n".join(head + tail)
    return text[:DETAIL_MAX]


def stop_reasons(inputs, codes) -> str:
    """The deciding values of the absolute stops (§10.1) among `codes`, as the lab reported them."""
    parts = []
    for c in codes:
        if c == "active_bleeding":
            moment = when(getattr(inputs.active_bleeding, "time", None))
            parts.append("active bleeding recorded" + (f" ({moment})" if moment else ""))
        elif c == "platelets_lt_25":
            parts.append(f"platelets {reported(inputs.platelets, 0)}")
        elif c == "fibrinogen_lt_0.5":
            parts.append(f"fibrinogen {reported(inputs.fibrinogen, 2)}")
    return "; ".join(parts) + "."


# -- v3 order check (clinical-rules §19.1-§19.3, §19.6, §19.7; v3-orders) ----------------------------
# Action lines of the v3 findings, by finding kind and first reason; {fields} filled per card.
V3_ACTION = {
    "stop_review": "{stop}: review anticoagulation with haematology today.",
    "stop_delete": "do not sign this order; consider mechanical prophylaxis.",
    "hit_vka": ("do not start warfarin until platelets ≥ 150 ×10⁹/L and a therapeutic non-heparin "
                "anticoagulant is running; overlap ≥ 5 days."),
    "hit_prophylactic_acute": ("prophylactic intensity is not enough; therapeutic-intensity non-heparin "
                               "anticoagulant with haematology."),
    "hit_prophylactic_suspected": "if 4Ts ≥ 4: therapeutic intensity unless bleeding risk is high.",
    "pregnancy_vka": ("LMWH is the agent of choice in pregnancy (warfarin only for some mechanical valves, "
                      "with specialist advice)."),
    "pregnancy_doac": "DOACs are not recommended in pregnancy: LMWH.",
    "liver": ("avoid rivaroxaban and edoxaban in Child-Pugh B/C and apixaban in C; check the cause of the "
              "raised INR (DIC, sepsis, liver)."),
    "argatroban_start": ("start at 0.5 µg/kg/min (hepatic impairment or critical illness; label and ASH 2018) "
                         "or prefer bivalirudin."),
    "ecmo_oral": "on ECMO: anticoagulation by the ECMO protocol (a titratable parenteral agent).",
    "ecmo_lmwh": "on ECMO: anticoagulation by the ECMO protocol (usually a UFH infusion).",
    "ecmo_hit": "on ECMO with HIT: bivalirudin or argatroban by the ECMO protocol.",
    "interaction_halve": "{inhibitor} with apixaban: halve the dose (label).",
    "interaction_avoid": "{inhibitor} with {drug}: avoid, or follow the label.",
    "renal_ufh_protocol": ("UFH per protocol: an infusion if a therapeutic indication is confirmed, otherwise "
                           "5,000 U SC."),
    "renal_obesity": "renal impairment with obesity: anti-Xa-guided dose or UFH 7,500 U q8h.",
    "lmwh_iu_crcl_lt_30": "renal impairment: anti-Xa-guided dose or UFH.",
    "rivaroxaban_crcl_lt_50": ("above 15 mg a day at CrCl below 50 mL/min (actual weight): check the "
                               "indication-specific label dose (the first 21 days of VTE treatment excepted)."),
    "dabigatran_renal": "dabigatran at this CrCl (actual weight) is outside the label: check the dose or the agent.",
    "edoxaban_crcl_15_50": "edoxaban 60 mg at CrCl 15-50 mL/min (actual weight): the label dose is 30 mg.",
    "edoxaban_crcl_lt_15": "edoxaban is not recommended at CrCl below 15 mL/min or on renal replacement.",
    "edoxaban_crcl_gt_95": "edoxaban above CrCl 95 mL/min: reduced efficacy (boxed warning); another agent.",
    "weight_unknown": "weigh the patient today; then re-check this dose.",
    "renal_unknown": "renal function {state} ({creatinine}): check before this dose.",
    "fondaparinux_band": "not a labelled regimen for this weight (treatment dose {band} mg daily).",
    "doac_max": "above the labelled maximum ({per_dose} mg per dose, {per_day} mg a day). Loading dose: confirm the start date.",
    "lmwh_iu_max": "above the labelled maximum (about {max_iu} IU a day at this weight).",
    "above_ward": ("record the indication (VTE, AF, valve, ACS, arterial thrombus) or use the prophylactic "
                   "dose."),
    "above_critical": ("critically ill COVID-19: prophylactic dose is recommended unless VTE or another "
                       "indication [ASH 2021/2022; NIH 2024]."),
    "possible_other": "possible other indication (history of VTE / long-term anticoagulant): confirm.",
    "hit_intermediate": "intermediate dosing is not recommended; discuss obesity dosing with pharmacy.",
    "hit_treatment_delete": ("treatment-intensity non-heparin agent (argatroban at CrCl < 30) with "
                             "haematology."),
    "hit_mechanical": "mechanical prophylaxis until a non-heparin plan is agreed.",
    "anti_xa_line": ("Anti-Xa (expert opinion and institutional practice; no guideline recommendation): peak "
                     "{hours} h after a dose from the {nth} dose on, target {target}."),
}
V3_EVIDENCE = {
    "hit": Evidence("ASH 2018 HIT guideline (Cuker 2018).", ("ash_hit_2018",)),
    "pregnancy": Evidence("ASH 2018 VTE in pregnancy (Bates 2018); warfarin label.", ("bates_2018", "warfarin_label")),
    "doac": Evidence("DOAC labels; ASH 2018 anticoagulation management (Witt 2018).", ("doac_labels", "witt_2018")),
    "argatroban": Evidence("argatroban label; ASH 2018 HIT guideline.", ("argatroban_label", "ash_hit_2018")),
    "enoxaparin": Evidence("enoxaparin label (treatment 1 mg/kg q12h or 1.5 mg/kg q24h; 1 mg/kg q24h and 30 mg "
                           "at CrCl < 30).", ("enoxaparin_label",)),
    "fondaparinux": Evidence("fondaparinux label (treatment 5 / 7.5 / 10 mg by weight).", ("fondaparinux_label",)),
    "lmwh_iu": Evidence("dalteparin / tinzaparin labels (unverified).", ("lmwh_labels",)),
    "renal_severe": Evidence("enoxaparin label (not studied in dialysis); HEP-COVID excluded CrCl < 15.",
                             ("enoxaparin_label", "hep_covid_2021")),
    "ecmo": Evidence("ECMO protocol; ASH 2021/2022 exclude circuit anticoagulation.", ("ash_2021",)),
    "above_ward": Evidence("NIH 2024 (final, archived); ACTION trial: no therapeutic DOACs.", ("nih_2024",)),
    "above_critical": Evidence("ASH 2021/2022; NIH 2024 (final, archived).", ("ash_2022_critical", "nih_2024")),
    "unknown": Evidence("enoxaparin label; fail-closed order check (§19.2).", ("enoxaparin_label",)),
}


def rrt_phrase(inputs) -> str:
    """§19.3 (v3): "On haemodialysis (last session D)", "On CRRT", ... never a post-dialysis CrCl."""
    flag = getattr(inputs, "renal_replacement", None)
    moment = when(getattr(flag, "time", None)) if flag is not None else ""
    mode = getattr(inputs, "renal_replacement_mode", None)
    if mode == "crrt":
        return "On CRRT"
    if mode == "eskd":
        return "End-stage kidney disease (renal replacement)"
    name = {"haemodialysis": "haemodialysis", "peritoneal": "peritoneal dialysis"}.get(mode, "dialysis")
    return f"On {name} (last session {moment})" if moment else f"On {name}"
