"""Safety checks: contraindications, escalation cautions, order classes (clinical-rules.md §10).

Rubric (every threshold a policy key; values compared after rounding to 6 dp)
- Contraindications (§10.1), absolute stops for pharmacological prophylaxis, emitted in §15
  order: `active_bleeding`; `platelets_lt_25` (platelets < safety.platelets_abs_min);
  `fibrinogen_lt_0.5` (< safety.fibrinogen_abs_min_g_l); `hit_history`; `heparin_allergy`.
  Sources: ISTH interim guidance 2020; ASH 2020 COVID FAQ; enoxaparin label; HEP-COVID.
- Escalation cautions (§10.2), allow prophylaxis and block anything above it: `platelets_lt_50`
  (< safety.platelets_caution_min; also listed when < 25); `hemoglobin_lt_8`
  (< safety.hemoglobin_caution_min_g_dl); `fibrinogen_lt_1.0` (< safety.fibrinogen_caution_min_g_l);
  `dual_antiplatelet_therapy` (>= 2 distinct antiplatelet ingredients among active orders);
  `recent_bleeding`; `bleeding_disorder`. Source: NIH COVID-19 Guidelines 2022.
  A lab reported as a bound (">20") counts only if the bound settles the comparison. A
  missing or unsettled lab raises nothing; its codes are listed in `Safety.undetermined`.
- Order class (§10.3), by dose per kg of ACTUAL body weight [Clin Transl Sci 2023,
  PMC10499427 Table 1; INSPIRATION, JAMA 2021;325:1620]:
  - enoxaparin, >= 2 doses/day: per dose >= 0.7 mg/kg therapeutic, >= 0.4 intermediate, else
    prophylactic; fewer than 2 doses/day: daily total > 1.4 mg/kg therapeutic, or >= 0.7 when
    CrCl < 30; >= 0.7 intermediate; else prophylactic;
  - enoxaparin, weight unknown: <= 40 mg/day once daily prophylactic; <= 40 mg twice daily or
    <= 80 mg once daily intermediate; otherwise therapeutic;
  - UFH: IV or continuous infusion therapeutic (dose not needed); otherwise (SC, or route not
    stated and not an infusion) >= 7,500 U per dose intermediate, else prophylactic;
  - dalteparin/tinzaparin (unverified): >= 140 IU/kg/day therapeutic; <= 5,000/4,500 IU once
    daily prophylactic; otherwise intermediate. Weight unknown and above the prophylactic dose:
    no class (therapeutic and intermediate cannot be told apart);
  - fondaparinux (unverified): >= 5 mg/day therapeutic, <= 2.5 mg/day prophylactic; a dose in
    between (no published band) is classed intermediate, above prophylaxis;
  - rivaroxaban > 10 mg/day, apixaban > 5 mg/day therapeutic, else prophylactic; dabigatran,
    edoxaban, VKA, argatroban, bivalirudin: therapeutic for any active order;
  - an order whose dose or frequency is needed and unknown has no class; antiplatelets have none.
- `current_order_class` = the highest class over active anticoagulant orders (null if none);
  `already_therapeutic` = that class is "therapeutic".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

from . import numeric as nm
from .inputs import Flag, Measurement, MedicationOrder
from .policy import Policy

OrderClass = Literal["prophylactic", "intermediate", "therapeutic"]
CLASS_RANK = {"prophylactic": 1, "intermediate": 2, "therapeutic": 3}

CONTRAINDICATIONS = ("active_bleeding", "platelets_lt_25", "fibrinogen_lt_0.5", "hit_history",
                     "heparin_allergy")
CAUTIONS = ("platelets_lt_50", "hemoglobin_lt_8", "fibrinogen_lt_1.0", "dual_antiplatelet_therapy",
            "recent_bleeding", "bleeding_disorder")
LMWH = frozenset({"enoxaparin", "dalteparin", "tinzaparin"})
HEPARINS = LMWH | {"heparin"}
ALWAYS_THERAPEUTIC = frozenset({"dabigatran", "edoxaban", "warfarin", "phenprocoumon",
                                "argatroban", "bivalirudin"})


def present(flag: Flag | None) -> bool:
    return flag is not None and flag.present


def lab_below(m: Measurement | None, limit: float, policy: Policy) -> bool | None:
    """Is the lab value < limit? None when missing or a bound does not settle it."""
    points = nm.exact(nm.band_range(m, [("<", limit, 1)], policy, floor=0.0))
    return None if points is None else points == 1


def _below(m: Measurement | None, limit: float, policy: Policy) -> bool:
    return lab_below(m, limit, policy) is True


def contraindications(*, active_bleeding: bool, platelets: Measurement | None,
                      fibrinogen_g_l: Measurement | None, hit_history: bool,
                      heparin_allergy: bool, policy: Policy) -> tuple[str, ...]:
    hits = {
        "active_bleeding": active_bleeding,
        "platelets_lt_25": _below(platelets, policy["safety.platelets_abs_min"], policy),
        "fibrinogen_lt_0.5": _below(fibrinogen_g_l, policy["safety.fibrinogen_abs_min_g_l"], policy),
        "hit_history": hit_history,
        "heparin_allergy": heparin_allergy,
    }
    return tuple(code for code in CONTRAINDICATIONS if hits[code])


def antiplatelet_ingredients(orders: Iterable[MedicationOrder]) -> tuple[str, ...]:
    return tuple(sorted({o.ingredient for o in orders
                         if o.drug_class == "antiplatelet" and o.status == "active"}))


def escalation_cautions(*, platelets: Measurement | None, hemoglobin_g_dl: Measurement | None,
                        fibrinogen_g_l: Measurement | None, orders: Iterable[MedicationOrder],
                        recent_bleeding: bool, bleeding_disorder: bool,
                        policy: Policy) -> tuple[str, ...]:
    hits = {
        "platelets_lt_50": _below(platelets, policy["safety.platelets_caution_min"], policy),
        "hemoglobin_lt_8": _below(hemoglobin_g_dl, policy["safety.hemoglobin_caution_min_g_dl"],
                                  policy),
        "fibrinogen_lt_1.0": _below(fibrinogen_g_l, policy["safety.fibrinogen_caution_min_g_l"],
                                    policy),
        "dual_antiplatelet_therapy": len(antiplatelet_ingredients(orders)) >= 2,
        "recent_bleeding": recent_bleeding,
        "bleeding_disorder": bleeding_disorder,
    }
    return tuple(code for code in CAUTIONS if hits[code])


def _enoxaparin(order: MedicationOrder, weight_kg: float | None, crcl_lt_30: bool | None,
                p: Policy) -> OrderClass | None:
    dose, per_day = order.dose_mg, order.doses_per_day
    if dose is None or per_day is None:
        return None
    le, ge = (lambda a, b: nm.cmp_le(a, b, p)), (lambda a, b: nm.cmp_ge(a, b, p))
    if weight_kg is None:
        if le(per_day, 1):
            daily = dose * per_day
            if le(daily, p["orders.no_weight_prophylactic_daily_mg"]):
                return "prophylactic"
            if le(daily, p["orders.no_weight_intermediate_daily_mg"]):
                return "intermediate"
            return "therapeutic"
        if le(per_day, 2) and le(dose, p["orders.no_weight_intermediate_q12h_mg"]):
            return "intermediate"
        return "therapeutic"
    if ge(per_day, 2):
        per_kg = dose / weight_kg
        if ge(per_kg, p["orders.q12h_therapeutic_mg_kg"]):
            return "therapeutic"
        return "intermediate" if ge(per_kg, p["orders.q12h_intermediate_mg_kg"]) else "prophylactic"
    daily_per_kg = dose * per_day / weight_kg
    if nm.cmp_gt(daily_per_kg, p["orders.daily_therapeutic_above_mg_kg"], p):
        return "therapeutic"
    if crcl_lt_30 is True and ge(daily_per_kg, p["orders.daily_therapeutic_renal_mg_kg"]):
        return "therapeutic"
    return "intermediate" if ge(daily_per_kg, p["orders.daily_intermediate_mg_kg"]) else "prophylactic"


def _iu_lmwh(order: MedicationOrder, weight_kg: float | None, p: Policy) -> OrderClass | None:
    dose, per_day = order.dose_units, order.doses_per_day
    if dose is None or per_day is None:
        return None
    if weight_kg is not None and \
            nm.cmp_ge(dose * per_day / weight_kg, p["orders.lmwh_iu_therapeutic_iu_kg_day"], p):
        return "therapeutic"
    prophylactic_iu = p[f"orders.{order.ingredient}_prophylactic_iu"]
    if nm.cmp_le(per_day, 1, p) and nm.cmp_le(dose * per_day, prophylactic_iu, p):
        return "prophylactic"
    return "intermediate" if weight_kg is not None else None


def classify_order(order: MedicationOrder, weight_kg: float | None, crcl_lt_30: bool | None,
                   policy: Policy) -> OrderClass | None:
    """The §10.3 class of one anticoagulant order, or None when it cannot be classed."""
    p, name = policy, order.ingredient
    if weight_kg is not None and weight_kg <= 0:  # absurd; fhir/ should have rejected it
        weight_kg = None
    if name in ALWAYS_THERAPEUTIC or order.drug_class in ("vka", "dti"):
        return "therapeutic"
    if name == "enoxaparin":
        return _enoxaparin(order, weight_kg, crcl_lt_30, p)
    if name in ("dalteparin", "tinzaparin"):
        return _iu_lmwh(order, weight_kg, p)
    if name == "heparin":
        if order.continuous or order.route == "intravenous":
            return "therapeutic"
        if order.dose_units is None or order.doses_per_day is None:
            return None
        return ("intermediate" if nm.cmp_ge(order.dose_units, p["orders.ufh_sc_intermediate_units"], p)
                else "prophylactic")
    if order.dose_mg is None or order.doses_per_day is None:
        return None
    daily = order.dose_mg * order.doses_per_day
    if name == "fondaparinux":
        if nm.cmp_ge(daily, p["orders.fondaparinux_therapeutic_mg_day"], p):
            return "therapeutic"
        return ("prophylactic" if nm.cmp_le(daily, p["orders.fondaparinux_prophylactic_mg_day"], p)
                else "intermediate")
    if name in ("rivaroxaban", "apixaban"):
        return ("therapeutic" if nm.cmp_gt(daily, p[f"orders.{name}_prophylactic_mg_day"], p)
                else "prophylactic")
    return None


def highest_class(classes: Iterable[OrderClass | None]) -> OrderClass | None:
    known = [c for c in classes if c is not None]
    return max(known, key=CLASS_RANK.__getitem__) if known else None


def is_anticoagulant(order: MedicationOrder) -> bool:
    return order.drug_class != "antiplatelet" and order.drug_class != "vasoactive"


def classified_orders(orders: Iterable[MedicationOrder], weight_kg: float | None,
                      crcl_lt_30: bool | None,
                      policy: Policy) -> tuple[tuple[MedicationOrder, OrderClass | None], ...]:
    """Active anticoagulant orders with their class, in input order."""
    return tuple((o, classify_order(o, weight_kg, crcl_lt_30, policy)) for o in orders
                 if o.status == "active" and is_anticoagulant(o))


@dataclass(frozen=True)
class Safety:
    contraindications: tuple[str, ...]
    escalation_cautions: tuple[str, ...]
    current_order_class: OrderClass | None
    # Active anticoagulant orders and their classes (anti-Xa targets, card text).
    orders: tuple[tuple[MedicationOrder, OrderClass | None], ...] = ()
    # Lab-based codes that could not be checked (lab missing, or a bound that does not settle).
    undetermined: tuple[str, ...] = ()

    @property
    def already_therapeutic(self) -> bool:
        return self.current_order_class == "therapeutic"

    def to_json(self) -> dict:
        return {
            "contraindications": list(self.contraindications),
            "escalation_cautions": list(self.escalation_cautions),
            "current_order_class": self.current_order_class,
            "already_therapeutic": self.already_therapeutic,
            "current_orders": [{"ingredient": o.ingredient, "class": c, "source": o.source}
                               for o, c in self.orders],
            "undetermined": list(self.undetermined),
        }


def assess_safety(*, active_bleeding: bool, recent_bleeding: bool, bleeding_disorder: bool,
                  hit_history: bool, heparin_allergy: bool, platelets: Measurement | None,
                  fibrinogen_g_l: Measurement | None, hemoglobin_g_dl: Measurement | None,
                  orders: Iterable[MedicationOrder], weight_kg: float | None,
                  crcl_lt_30: bool | None, policy: Policy) -> Safety:
    orders = tuple(orders)
    classed = classified_orders(orders, weight_kg, crcl_lt_30, policy)
    return Safety(
        contraindications=contraindications(
            active_bleeding=active_bleeding, platelets=platelets, fibrinogen_g_l=fibrinogen_g_l,
            hit_history=hit_history, heparin_allergy=heparin_allergy, policy=policy),
        escalation_cautions=escalation_cautions(
            platelets=platelets, hemoglobin_g_dl=hemoglobin_g_dl, fibrinogen_g_l=fibrinogen_g_l,
            orders=orders, recent_bleeding=recent_bleeding, bleeding_disorder=bleeding_disorder,
            policy=policy),
        current_order_class=highest_class(c for _, c in classed),
        orders=classed,
        undetermined=tuple(code for code, m, key in (
            ("platelets_lt_25", platelets, "safety.platelets_abs_min"),
            ("fibrinogen_lt_0.5", fibrinogen_g_l, "safety.fibrinogen_abs_min_g_l"),
            ("platelets_lt_50", platelets, "safety.platelets_caution_min"),
            ("hemoglobin_lt_8", hemoglobin_g_dl, "safety.hemoglobin_caution_min_g_dl"),
            ("fibrinogen_lt_1.0", fibrinogen_g_l, "safety.fibrinogen_caution_min_g_l"),
        ) if lab_below(m, policy[key], policy) is None),
    )
