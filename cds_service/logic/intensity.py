"""Intensity of an anticoagulant order or draft, and the renal state (clinical-rules §19.0, v3).

Intensity, per drug, on actual body weight; the first rule that decides wins:
- *prophylactic*: the §11 regimen or an accepted equivalent (§19.11; the caller says so with
  `accepted`), or enoxaparin <= 40 mg once daily; UFH SC <= 5,000 U two or three times daily
  (7,500 U q8h at weight > 100 kg or BMI >= 40); dalteparin <= 5,000 IU daily; tinzaparin
  <= 4,500 IU daily; fondaparinux <= 2.5 mg daily; rivaroxaban 10 mg daily; apixaban 2.5 mg twice
  daily; dabigatran 110 mg once or 220 mg once daily; edoxaban <= 30 mg daily.
- *therapeutic*: a UFH infusion, fondaparinux >= 5 mg daily, any other DOAC dose, any VKA,
  argatroban or bivalirudin, or the §10.3 therapeutic class.
- *intermediate*: everything between. §10.3's mg/kg classes decide only where this list does
  not (enoxaparin above 40 mg daily or twice daily, UFH SC above the prophylactic doses,
  dalteparin/tinzaparin above the prophylactic dose).
§19.0 writes "enoxaparin <= 40 mg once daily (<= 30 mg at CrCl < 30)"; §19.3 then calls 40 mg
daily at CrCl < 30 "prophylactic intent above 30 mg a day" (warning, update to 30 mg). Here 40 mg
once daily is prophylactic intent at any CrCl, so the renal rule, not a therapeutic label, speaks.

Renal state: renal replacement counts as CrCl `renal.rrt_equivalent_crcl` (10) in every rule;
renal unknown = CrCl null and no renal replacement; renal changing = creatinine unstable with the
later value higher (`Renal.creatinine_rising`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from . import numeric as nm
from .inputs import MedicationOrder
from .policy import Policy, rounded
from .safety import classify_order

Intensity = Literal["prophylactic", "intermediate", "therapeutic"]
DOACS = frozenset({"apixaban", "rivaroxaban", "dabigatran", "edoxaban"})
VKAS = frozenset({"warfarin", "phenprocoumon", "acenocoumarol"})
DTIS = frozenset({"argatroban", "bivalirudin"})


def is_infusion(order: MedicationOrder) -> bool:
    return order.continuous or (order.ingredient == "heparin" and order.route == "intravenous")


def draft_intensity(order: MedicationOrder, *, weight_kg: float | None, bmi: float | None,
                    crcl_lt_30: bool | None, policy: Policy,
                    accepted: bool = False) -> Intensity | None:
    """§19.0 intensity, or None when the dose or frequency cannot be read (or weight is needed)."""
    p, name = policy, order.ingredient
    le = lambda a, b: nm.cmp_le(a, b, p)  # noqa: E731
    eq = lambda a, b: a is not None and rounded(a, p) == rounded(b, p)  # noqa: E731
    if name in VKAS or name in DTIS or order.drug_class in ("vka", "dti"):
        return "therapeutic"
    if name == "heparin" and is_infusion(order):
        return "therapeutic"
    if accepted:
        return "prophylactic"
    mg, units, n = order.dose_mg, order.dose_units, order.doses_per_day
    if name == "enoxaparin":
        if mg is None or n is None:
            return None
        if le(n, 1) and le(mg * n, p["dosing.standard_mg"]):
            return "prophylactic"
        return _by_class(order, weight_kg, crcl_lt_30, p)
    if name == "heparin":
        if units is None or n is None:
            return None
        if le(units, p["renal.ufh_units"]) and (eq(n, 2) or eq(n, 3) or le(n, 1)):
            return "prophylactic"
        big = (weight_kg is not None and nm.cmp_gt(weight_kg, 100, p)) or \
            (bmi is not None and nm.cmp_ge(bmi, p["dosing.bmi_tier2"], p))
        if big and le(units, 7500) and eq(n, 3):
            return "prophylactic"
        return _by_class(order, weight_kg, crcl_lt_30, p)
    if name in ("dalteparin", "tinzaparin"):
        if units is None or n is None:
            return None
        if le(n, 1) and le(units * n, p[f"orders.{name}_prophylactic_iu"]):
            return "prophylactic"
        return _by_class(order, weight_kg, crcl_lt_30, p)
    if mg is None or n is None:
        return None
    daily = mg * n
    if name == "fondaparinux":
        if le(daily, p["orders.fondaparinux_prophylactic_mg_day"]):
            return "prophylactic"
        if nm.cmp_ge(daily, p["orders.fondaparinux_therapeutic_mg_day"], p):
            return "therapeutic"
        return "intermediate"
    if name == "rivaroxaban":
        return "prophylactic" if eq(mg, 10) and eq(n, 1) else "therapeutic"
    if name == "apixaban":
        return "prophylactic" if eq(mg, 2.5) and eq(n, 2) else "therapeutic"
    if name == "dabigatran":
        return "prophylactic" if eq(n, 1) and (eq(mg, 110) or eq(mg, 220)) else "therapeutic"
    if name == "edoxaban":   # §19.0: prophylactic only where a prophylactic regimen is labelled (policy)
        return "prophylactic" if p["orders.edoxaban_prophylactic_regimen"] and le(daily, 30) and le(n, 1) \
            else "therapeutic"
    return _by_class(order, weight_kg, crcl_lt_30, p)


def _by_class(order, weight_kg, crcl_lt_30, p) -> Intensity | None:
    """Where the list does not decide, §10.3's mg/kg class (§19.0): 60 mg daily at 92 kg is
    prophylactic (0.65 mg/kg/day), 80 mg daily at 75 kg intermediate (1.07)."""
    return classify_order(order, weight_kg, crcl_lt_30, p)


@dataclass(frozen=True)
class RenalState:
    crcl: float | None          # the CrCl the rules use (renal replacement -> rrt_equivalent_crcl)
    rrt: bool                   # renal replacement running (§11)
    unknown: bool               # CrCl null and no renal replacement
    changing: bool              # creatinine unstable and rising

    bound: tuple[str, float] | None = None   # CrCl known only as a bound (Renal.crcl_bound)

    def below(self, limit: float, policy: Policy) -> bool | None:
        from .regimen import crcl_below
        if self.rrt:
            return True     # §19.0: renal replacement counts as CrCl < 15 in every rule
        return crcl_below(self.crcl, None if self.rrt else self.bound, limit, policy)


def renal_state(*, crcl_ml_min: float | None, renal_replacement: bool | None,
                creatinine_unstable: bool | None, creatinine_rising: bool,
                policy: Policy, crcl_bound: tuple[str, float] | None = None) -> RenalState:
    rrt = renal_replacement is True
    crcl = policy["renal.rrt_equivalent_crcl"] if rrt else crcl_ml_min
    return RenalState(crcl=crcl, rrt=rrt, unknown=crcl is None and crcl_bound is None,
                      changing=bool(creatinine_unstable) and bool(creatinine_rising) and not rrt,
                      bound=crcl_bound)


__all__ = ["DOACS", "DTIS", "Intensity", "RenalState", "VKAS", "draft_intensity", "is_infusion",
           "renal_state"]
