"""Anti-Xa monitoring: when, why, target and sampling time (clinical-rules.md §12).

Rubric
- `indicated` = LMWH in play (the regimen recommends enoxaparin, or an LMWH order is active or
  being drafted) AND at least one reason. Reasons, in §15 order:
  `bmi_ge_40` (BMI >= antixa.trigger_bmi), `weight_gt_120kg` (> antixa.trigger_weight_high_kg),
  `weight_lt_50kg` (< antixa.trigger_weight_low_kg), `crcl_lt_30`, `pregnancy` (only with
  antixa.pregnancy_trigger, default false in v2: ASH 2018 advises against routine monitoring),
  `escalated_dose` (recommended basis bmi_ge_30/bmi_ge_40), `current_intermediate_dose` /
  `current_therapeutic_dose` (an LMWH order of that class).
  No LMWH in play: false. LMWH in play, no reason, but a trigger cannot be evaluated (BMI,
  weight or CrCl unknown, or an LMWH order without a class): null. Otherwise false.
- Targets (IU/mL peak; null when not indicated), first row that applies, judged on the
  highest-class LMWH order:
  therapeutic enoxaparin >= 2 doses/day: antixa.target_therapeutic_q12h [Garcia, Chest 2012];
  therapeutic enoxaparin once daily: antixa.target_therapeutic_q24h;
  therapeutic dalteparin/tinzaparin: null (product-specific, unverified);
  intermediate order and no LMWH recommended: antixa.target_intermediate (default null);
  otherwise: antixa.target_prophylactic.
- Sampling: peak antixa.peak_hours_post_dose h after an SC dose, no earlier than after dose
  number antixa.steady_state_after_dose; with CrCl < 30 also a trough just before the next
  dose, target < antixa.trough_max. LMWH-calibrated assay.
v3 (§19.7): therapeutic LMWH gets no routine anti-Xa [Witt 2018, ASH anticoagulation
management]; `current_intermediate_dose` / `current_therapeutic_dose` are no longer reasons;
`escalated_dose` only for the BMI >= 40 tiers (the 60 mg BMI 30-<40 tier is removed);
`renal_replacement` while an LMWH continues. The prophylactic reasons are expert opinion and
institutional practice, not a guideline recommendation. The target follows the intent: the order
check passes the §19.0 intensity as the class.
Sources: Piagnerelli 2020 letter (peak for escalated doses, trough in renal failure); Quest
Diagnostics FAQ; UW Medicine anticoagulation services.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .inputs import MedicationOrder
from . import numeric as nm
from .policy import Policy
from .safety import CLASS_RANK, LMWH, OrderClass

REASONS = ("bmi_ge_40", "weight_gt_120kg", "weight_lt_50kg", "crcl_lt_30", "renal_replacement",
           "pregnancy", "escalated_dose", "current_intermediate_dose", "current_therapeutic_dose")


@dataclass(frozen=True)
class Sampling:
    peak_hours_post_dose: float
    after_dose: int
    trough: bool
    trough_max: float | None

    def to_json(self) -> dict:
        return {"peak_hours_post_dose": self.peak_hours_post_dose, "after_dose": self.after_dose,
                "trough_before_next_dose": self.trough, "trough_max": self.trough_max}


@dataclass(frozen=True)
class AntiXa:
    indicated: bool | None
    reasons: tuple[str, ...] = ()
    target_low: float | None = None
    target_high: float | None = None
    sampling: Sampling | None = None

    def to_json(self) -> dict:
        return {"indicated": self.indicated, "reasons": list(self.reasons),
                "target_low": self.target_low, "target_high": self.target_high,
                "sampling": self.sampling.to_json() if self.sampling else None}


def _target(lmwh: list[tuple[MedicationOrder, OrderClass | None]], recommends_lmwh: bool,
            p: Policy) -> list | None:
    classed = [(o, c) for o, c in lmwh if c is not None]
    top = max(classed, key=lambda oc: CLASS_RANK[oc[1]], default=(None, None))
    order, cls = top
    if cls == "therapeutic":
        if order.ingredient != "enoxaparin":
            return None
        twice = order.doses_per_day is not None and nm.cmp_ge(order.doses_per_day, 2, p)
        return p["antixa.target_therapeutic_q12h" if twice else "antixa.target_therapeutic_q24h"]
    if cls == "intermediate" and not recommends_lmwh:
        return p["antixa.target_intermediate"]
    return p["antixa.target_prophylactic"]


def assess_anti_xa(*, recommended_drug: str | None, recommended_basis: str | None,
                   lmwh_orders: Iterable[tuple[MedicationOrder, OrderClass | None]],
                   bmi: float | None, weight_kg: float | None, crcl_lt_30: bool | None,
                   pregnant: bool, policy: Policy, renal_replacement: bool | None = None) -> AntiXa:
    """`lmwh_orders`: (order, class) pairs; non-LMWH orders are ignored."""
    p = policy
    # §19.7: therapeutic LMWH, no routine anti-Xa (in obesity and renal impairment too)
    lmwh = [(o, c) for o, c in lmwh_orders if o.ingredient in LMWH and c != "therapeutic"]
    recommends_lmwh = recommended_drug == "enoxaparin"
    if not (recommends_lmwh or lmwh):
        return AntiXa(False)
    classes = {c for _, c in lmwh}
    hits = {
        "bmi_ge_40": bmi is not None and nm.cmp_ge(bmi, p["antixa.trigger_bmi"], p),
        "weight_gt_120kg": weight_kg is not None
        and nm.cmp_gt(weight_kg, p["antixa.trigger_weight_high_kg"], p),
        "weight_lt_50kg": weight_kg is not None
        and nm.cmp_lt(weight_kg, p["antixa.trigger_weight_low_kg"], p),
        "crcl_lt_30": crcl_lt_30 is True,
        "pregnancy": pregnant and p["antixa.pregnancy_trigger"],   # v2: off by default
        "renal_replacement": renal_replacement is True and bool(lmwh),
        "escalated_dose": recommends_lmwh and recommended_basis in ("bmi_ge_40", "bmi_ge_50"),
        "current_intermediate_dose": False,    # §19.7: no longer a reason
        "current_therapeutic_dose": False,
    }
    reasons = tuple(r for r in REASONS if hits[r])
    if not reasons:
        unknown = bmi is None or weight_kg is None or crcl_lt_30 is None or None in classes
        return AntiXa(None if unknown else False)
    target = _target(lmwh, recommends_lmwh, p)
    trough = crcl_lt_30 is True
    sampling = Sampling(p["antixa.peak_hours_post_dose"], p["antixa.steady_state_after_dose"],
                        trough, p["antixa.trough_max"] if trough else None)
    low, high = target if target else (None, None)
    return AntiXa(True, reasons, low, high, sampling)
