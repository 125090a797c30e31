"""The recommendation pathway (clinical-rules.md §13.1, v2).

`pathway`, first row that applies:
| `contraindicated` | a contraindication that is not heparin-specific (active_bleeding,
    platelets_lt_25, fibrinogen_lt_0.5); before hit_acute, so acute HIT with bleeding is never
    told to anticoagulate |
| `hit_acute` | hit_acute [Cuker 2018 ASH HIT] |
| `deescalate` | already_therapeutic, critically_ill true, no other indication, no ECMO, no renal
    replacement, every therapeutic-class order UFH or LMWH authored during the current
    Encounter, and no non-heparin anticoagulant active (order or statement) [NIH 2024; ASH 2021;
    REMAP-CAP/ACTIV-4a/ATTACC critically ill] |
| `review_therapeutic` | already_therapeutic with only UFH/LMWH therapeutic orders, no other
    indication, no ECMO, and an escalation caution (§10.2) [NIH 2024] |
| `keep_therapeutic` | already_therapeutic otherwise |
| `therapeutic_candidate` | every condition below holds [ASH 2022; NIH 2024; CHEST 2022; ISTH
    2023; ATTACC/ACTIV-4a/REMAP-CAP non-critically ill, N Engl J Med 2021;385:790] |
| `prophylaxis` | otherwise (the §11 regimen) |

`not_therapeutic_because` (prophylaxis only; [] otherwise): every failing candidate condition, in
this order: critically_ill (true), severity_unknown (null), no_low_flow_oxygen (oxygen known and
not "low-flow" while escalation.require_low_flow; an unknown oxygen is severity_unknown), d_dimer_not_above_uln (multiple <=
escalation.d_dimer_multiple, settled), d_dimer_unknown, escalation_caution, cautions_unchecked (no
platelet count or haemoglobin in the labs window), pregnancy, heparin_specific_contraindication
(also a running non-heparin therapeutic anticoagulant), on_anticoagulant (v3 §19.10: an active DOAC
or VKA, order or statement, or fondaparinux at any dose; the note `confirm_home_anticoagulant_status`
when only home statements say so), renal_replacement, age_uncertain (v3 §19.8: a partial birth date
whose latest possible day is under 18; the code is this service's, §19.8 names none), disabled
(escalation.enabled false).

`therapeutic` (therapeutic_candidate only; else null): enoxaparin
therapeutic.enoxaparin_mg_per_kg (1 mg/kg) x ACTUAL weight per dose, rounded to the nearest
therapeutic.round_to_mg (10 mg; 5 rounds up), twice daily at CrCl >= renal.crcl_cutoff (30), once
daily at CrCl renal.severe_crcl_cutoff (15) to < 30 [enoxaparin label]. Null with the note
`therapeutic_needs_protocol` when weight or CrCl is unknown, CrCl < 15, renal replacement runs,
creatinine is rising by >= 0.3 mg/dL in 48 h, or the dose would exceed therapeutic.max_dose_mg.
`therapeutic_anti_xa`: at BMI >= antixa.trigger_bmi or weight > antixa.trigger_weight_high_kg the
recommended therapeutic dose gets anti-Xa monitoring with the therapeutic targets of §12.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import numeric as nm
from .inputs import EncounterInfo, MedicationOrder
from .policy import Policy, rounded
from .regimen import crcl_below
from .safety import ALL_ANTICOAGULANT_STOPS, HEPARINS, Safety

PATHWAYS = ("contraindicated", "hit_acute", "deescalate", "review_therapeutic",
            "keep_therapeutic", "therapeutic_candidate", "prophylaxis")
NOT_THERAPEUTIC = ("critically_ill", "severity_unknown", "no_low_flow_oxygen",
                   "d_dimer_not_above_uln", "d_dimer_unknown", "escalation_caution",
                   "cautions_unchecked", "pregnancy", "heparin_specific_contraindication",
                   "on_anticoagulant", "renal_replacement", "age_uncertain", "disabled")
# §19.10: a DOAC or VKA (order or statement) or fondaparinux at any dose makes a patient no candidate.
ON_ANTICOAGULANT_CLASSES = frozenset({"doac", "vka"})


@dataclass(frozen=True)
class TherapeuticDose:
    drug: str
    dose_mg: float
    doses_per_day: int

    def to_json(self) -> dict[str, Any]:
        return {"drug": self.drug, "dose_mg": self.dose_mg, "doses_per_day": self.doses_per_day}


@dataclass(frozen=True)
class Recommendation:
    pathway: str
    not_therapeutic_because: tuple[str, ...] = ()
    therapeutic: TherapeuticDose | None = None
    notes: tuple[str, ...] = ()
    # Anti-Xa for the recommended therapeutic dose: (low, high) IU/mL, or None.
    therapeutic_anti_xa: tuple[float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"pathway": self.pathway,
                "not_therapeutic_because": list(self.not_therapeutic_because),
                "therapeutic": self.therapeutic.to_json() if self.therapeutic else None,
                "notes": list(self.notes),
                "therapeutic_anti_xa": ({"target_low": self.therapeutic_anti_xa[0],
                                         "target_high": self.therapeutic_anti_xa[1]}
                                        if self.therapeutic_anti_xa else None)}


def round_half_up(value: float, step: float, policy: Policy) -> float:
    """Nearest multiple of `step`, halves up (85 -> 90), after the 6-dp rounding of §0."""
    return math.floor(rounded(value / step, policy) + 0.5) * step


def _authored_during(order: MedicationOrder, encounter: EncounterInfo | None) -> bool:
    if encounter is None:
        return False
    if order.encounter_id is not None and encounter.id is not None:
        return order.encounter_id == encounter.id
    return (order.authored_on is not None and encounter.period_start is not None
            and order.authored_on >= encounter.period_start)


def therapeutic_dose(*, weight_kg: float | None, crcl_ml_min: float | None,
                     crcl_bound: tuple[str, float] | None, renal_replacement: bool | None,
                     creatinine_rising: bool, policy: Policy) -> TherapeuticDose | None:
    p = policy
    if weight_kg is None or renal_replacement is True or creatinine_rising:
        return None
    severe = crcl_below(crcl_ml_min, crcl_bound, p["renal.severe_crcl_cutoff"], p)
    low = crcl_below(crcl_ml_min, crcl_bound, p["renal.crcl_cutoff"], p)
    if severe is None or low is None or severe:
        return None
    dose = round_half_up(p["therapeutic.enoxaparin_mg_per_kg"] * weight_kg,
                         p["therapeutic.round_to_mg"], p)
    if nm.cmp_gt(dose, p["therapeutic.max_dose_mg"], p) or dose <= 0:
        return None
    return TherapeuticDose("enoxaparin", float(dose), 1 if low else 2)


def recommend(*, safety: Safety, critically_ill: bool | None, oxygen: str | None, ecmo: bool,
              d_dimer_multiple_range: tuple[float, float] | None, pregnant: bool,
              renal_replacement: bool | None, creatinine_rising: bool,
              weight_kg: float | None, bmi: float | None, crcl_ml_min: float | None,
              crcl_bound: tuple[str, float] | None, encounter: EncounterInfo | None,
              policy: Policy, age_uncertain: bool = False) -> Recommendation:
    p = policy
    ci = safety.contraindications
    if any(c in ALL_ANTICOAGULANT_STOPS for c in ci):
        return Recommendation("contraindicated")
    if "hit_acute" in ci:
        return Recommendation("hit_acute")
    other = safety.other_anticoagulation_indication
    rrt = renal_replacement is True
    if safety.already_therapeutic:
        therapeutic = [o for o, c in safety.orders if c == "therapeutic"]
        heparin_only = all(o.ingredient in HEPARINS for o in therapeutic) and not any(
            e.ingredient not in HEPARINS for e in safety.anticoagulants_active)
        # §19.4: circuit heparin (ECMO/CRRT) never triggers deescalate or review_therapeutic
        circuit = any(getattr(o, "circuit", False) for o in therapeutic)
        if heparin_only and not circuit and critically_ill is True and not other and not ecmo and not rrt \
                and all(_authored_during(o, encounter) for o in therapeutic):
            return Recommendation("deescalate")
        if heparin_only and not circuit and not other and not ecmo and safety.escalation_cautions:
            return Recommendation("review_therapeutic")
        return Recommendation("keep_therapeutic")

    on_anticoagulant = [e for e in safety.anticoagulants_active
                        if e.drug_class in ON_ANTICOAGULANT_CLASSES or e.ingredient == "fondaparinux"]
    threshold = p["escalation.d_dimer_multiple"]
    d_dimer_above = None if d_dimer_multiple_range is None else nm.exact(nm.settle(
        lambda m: nm.cmp_gt(m, threshold, p), *d_dimer_multiple_range))
    unchecked = any(c in safety.undetermined for c in ("platelets_lt_50", "hemoglobin_lt_8"))
    failing = {
        "critically_ill": critically_ill is True,
        "severity_unknown": critically_ill is None,
        # oxygen unknown is already "severity_unknown": not asserted as "not on low-flow"
        "no_low_flow_oxygen": p["escalation.require_low_flow"] and oxygen is not None
        and oxygen != "low-flow",
        "d_dimer_not_above_uln": d_dimer_above is False,
        "d_dimer_unknown": d_dimer_above is None,
        "escalation_caution": bool(safety.escalation_cautions),
        "cautions_unchecked": unchecked,
        "pregnancy": pregnant,
        "heparin_specific_contraindication": bool(safety.heparin_specific
                                                  or safety.non_heparin_running),
        "on_anticoagulant": bool(on_anticoagulant),
        "renal_replacement": rrt,
        "age_uncertain": age_uncertain,
        "disabled": not p["escalation.enabled"],
    }
    because = tuple(code for code in NOT_THERAPEUTIC if failing[code])
    if because:
        notes = ()
        if on_anticoagulant and all(e.kind == "statement" for e in on_anticoagulant):
            notes = ("confirm_home_anticoagulant_status",)   # §19.10: only a home statement
        return Recommendation("prophylaxis", because, notes=notes)
    dose = therapeutic_dose(weight_kg=weight_kg, crcl_ml_min=crcl_ml_min, crcl_bound=crcl_bound,
                            renal_replacement=renal_replacement,
                            creatinine_rising=creatinine_rising, policy=p)
    anti_xa = None
    if dose is not None and (
            (bmi is not None and nm.cmp_ge(bmi, p["antixa.trigger_bmi"], p))
            or nm.cmp_gt(weight_kg, p["antixa.trigger_weight_high_kg"], p)):
        key = "antixa.target_therapeutic_q12h" if dose.doses_per_day == 2 \
            else "antixa.target_therapeutic_q24h"
        if p[key] is not None:
            anti_xa = (p[key][0], p[key][1])
    return Recommendation("therapeutic_candidate", (), dose,
                          () if dose else ("therapeutic_needs_protocol",), anti_xa)
