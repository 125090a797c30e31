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
- v2 HIT (§10.1), at most one of `hit_acute`, `hit_recent`, `hit_history` (first that applies):
  a HIT record with a DATED onset within safety.hit_acute_days (100) of `now` is `hit_acute` when
  the latest platelet count is < safety.hit_recovered_platelets (150), `hit_recent` when it is
  >= 150 or there is none (a bound that does not settle counts as none); every other HIT record
  (older, or undated: a recordedDate never makes HIT recent) is `hit_history`.
  [Cuker 2018 ASH HIT; Warkentin & Kelton, N Engl J Med 2001;344:1286; enoxaparin label]
- `hit_suspected` (v2): no HIT recorded; a heparin (UFH or LMWH, any dose) is active (an active
  order) or was last given within window.platelet_trend_days (14) of `now` (rules: "active or
  given"; a course stopped weeks ago with no active order does not count); heparin started
  >= safety.hit_suspected_heparin_days (5) days before `now`; in the platelet trend
  (window.platelet_trend_days) since heparin started, the latest count fell by
  >= safety.hit_suspected_fall_fraction (50 %) from the highest earlier count, or to
  < safety.hit_suspected_low_platelets (100) from >= 150. [ASH 2018; 4Ts]
- Heparin-specific (stop heparins only): hit_recent, hit_suspected, hit_history, heparin_allergy.
- A running non-heparin therapeutic anticoagulant (argatroban, bivalirudin, fondaparinux
  >= orders.fondaparinux_therapeutic_mg_day) blocks every heparin suggestion:
  `non_heparin_anticoagulant_running`.
- v2 cautions: `recent_intracranial_haemorrhage` (onset within safety.recent_ich_days);
  `severe_liver_disease` (INR > safety.severe_liver_inr with no VKA or DOAC active, and
  bilirubin >= safety.severe_liver_bilirubin_mg_dl) [HEP-COVID exclusion];
  `dual_antiplatelet_therapy` counts active MedicationStatements too.
- §10.4 exposure: `anticoagulants_active` = anticoagulant ingredients of active orders and
  active statements (unmapped anticoagulant codes included; flushes never reach here).
  `duplicate` when there are >= 2 (the same ingredient twice counts), with urgency: `info` for
  one VKA with one parenteral anticoagulant while the latest INR < 2 (the deliberate bridge),
  else `critical` when two orders are therapeutic-class, else `warning`.
- `current_order_class` = the highest class over active anticoagulant orders (null if none);
  `already_therapeutic` = that class is "therapeutic".
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Literal

from . import numeric as nm
from .inputs import Flag, HitRecord, Measurement, MedicationOrder
from .policy import Policy

OrderClass = Literal["prophylactic", "intermediate", "therapeutic"]
CLASS_RANK = {"prophylactic": 1, "intermediate": 2, "therapeutic": 3}

CONTRAINDICATIONS = ("active_bleeding", "platelets_lt_25", "fibrinogen_lt_0.5", "hit_acute",
                     "hit_recent", "hit_suspected", "hit_history", "heparin_allergy")
CAUTIONS = ("platelets_lt_50", "hemoglobin_lt_8", "fibrinogen_lt_1.0", "dual_antiplatelet_therapy",
            "recent_bleeding", "bleeding_disorder", "recent_intracranial_haemorrhage",
            "severe_liver_disease")
HIT_CODES = ("hit_acute", "hit_recent", "hit_suspected", "hit_history")
HEPARIN_SPECIFIC = ("hit_recent", "hit_suspected", "hit_history", "heparin_allergy")
ALL_ANTICOAGULANT_STOPS = ("active_bleeding", "platelets_lt_25", "fibrinogen_lt_0.5")
NON_HEPARIN_THERAPEUTIC = frozenset({"argatroban", "bivalirudin", "fondaparinux"})
PARENTERAL = frozenset({"enoxaparin", "dalteparin", "tinzaparin", "heparin", "fondaparinux",
                        "argatroban", "bivalirudin"})
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


def lab_above(m: Measurement | None, limit: float, policy: Policy) -> bool:
    """Is the lab value > limit, settled (a bound counts only when it settles it)?"""
    if m is None:
        return False
    if m.comparator is None:
        return nm.cmp_gt(m.value, limit, policy)
    if m.comparator == ">":
        return nm.cmp_ge(m.value, limit, policy)
    if m.comparator == ">=":
        return nm.cmp_gt(m.value, limit, policy)
    return False


def _below(m: Measurement | None, limit: float, policy: Policy) -> bool:
    return lab_below(m, limit, policy) is True


def hit_status(*, hit_records: Iterable[HitRecord], hit_history: bool,
               platelets: Measurement | None, now: datetime, policy: Policy) -> str | None:
    """`hit_acute`, `hit_recent`, `hit_history` or None (§10.1 v2; at most one)."""
    records = tuple(hit_records)
    lookback = policy["safety.hit_lookback_days"]
    if lookback is not None:
        records = tuple(r for r in records
                        if r.onset is None or r.onset >= now - timedelta(days=lookback))
    recent_limit = now - timedelta(days=policy["safety.hit_acute_days"])
    if any(r.onset is not None and r.onset >= recent_limit for r in records):
        low = lab_below(platelets, policy["safety.hit_recovered_platelets"], policy)
        return "hit_acute" if low is True else "hit_recent"
    if records or hit_history:
        return "hit_history"
    return None


def hit_platelets_known(platelets: Measurement | None, policy: Policy) -> bool:
    """A platelet count that settles HIT recovery (< or >= safety.hit_recovered_platelets): the
    "platelet count" of hit_recent (§10.1) and §11 row 1; a bound that does not settle is none."""
    return lab_below(platelets, policy["safety.hit_recovered_platelets"], policy) is not None


def is_heparin(ingredient: str, drug_class: str) -> bool:
    """UFH or an LMWH (flushes never reach logic/)."""
    return ingredient in HEPARINS or drug_class == "lmwh"


def hit_suspected(*, heparin_started: datetime | None, platelet_trend: Iterable[Measurement],
                  now: datetime, policy: Policy, heparin_active: bool,
                  last_heparin_given: datetime | None) -> bool:
    """A platelet fall on heparin (§10.1 v2): see the module rubric. `heparin_active`: an
    active heparin order; `last_heparin_given`: the latest heparin administration (or None)."""
    p = policy
    trend_start = now - timedelta(days=p["window.platelet_trend_days"])
    on_heparin = heparin_active or (last_heparin_given is not None and last_heparin_given >= trend_start)
    if not on_heparin or heparin_started is None or \
            now - heparin_started < timedelta(days=p["safety.hit_suspected_heparin_days"]):
        return False
    since = max(heparin_started, trend_start)
    counts = sorted((m for m in platelet_trend
                     if m.comparator is None and m.time is not None and m.time >= since),
                    key=lambda m: m.time)
    if len(counts) < 2:
        return False
    latest = counts[-1].value
    highest = max(m.value for m in counts[:-1])
    if highest <= 0:
        return False
    fall = nm.cmp_ge((highest - latest) / highest, p["safety.hit_suspected_fall_fraction"], p)
    to_low = nm.cmp_lt(latest, p["safety.hit_suspected_low_platelets"], p) and \
        nm.cmp_ge(highest, p["safety.hit_suspected_from_platelets"], p)
    return fall or to_low


def four_ts_clears(four_ts: Measurement | None, platelet_trend: Iterable[Measurement], now: datetime,
                   policy: Policy) -> bool:
    """§19.6 (v3): a recorded 4Ts score <= 3, dated after the latest platelet count (the fall) and
    within hit.four_ts_clear_hours of now, clears hit_suspected [Cuker 2018: low 4Ts, heparin
    continues]."""
    if four_ts is None or four_ts.time is None or four_ts.value > 3:
        return False
    if now - four_ts.time > timedelta(hours=policy["hit.four_ts_clear_hours"]):
        return False
    counts = [m.time for m in platelet_trend if m.time is not None]
    return not counts or four_ts.time >= max(counts)


def contraindications(*, active_bleeding: bool, platelets: Measurement | None,
                      fibrinogen_g_l: Measurement | None, hit_history: bool,
                      heparin_allergy: bool, policy: Policy, hit: str | None = None,
                      suspected: bool = False) -> tuple[str, ...]:
    """`hit`: the §10.1 HIT code (hit_status); when None, `hit_history` (v1 flag) decides."""
    if hit is None and hit_history:
        hit = "hit_history"
    hits = {
        "active_bleeding": active_bleeding,
        "platelets_lt_25": _below(platelets, policy["safety.platelets_abs_min"], policy),
        "fibrinogen_lt_0.5": _below(fibrinogen_g_l, policy["safety.fibrinogen_abs_min_g_l"], policy),
        "hit_acute": hit == "hit_acute",
        "hit_recent": hit == "hit_recent",
        "hit_suspected": hit is None and suspected,
        "hit_history": hit == "hit_history",
        "heparin_allergy": heparin_allergy,
    }
    return tuple(code for code in CONTRAINDICATIONS if hits[code])


def antiplatelet_ingredients(orders: Iterable[MedicationOrder]) -> tuple[str, ...]:
    return tuple(sorted({o.ingredient for o in orders
                         if o.drug_class == "antiplatelet" and o.status == "active"}))


def escalation_cautions(*, platelets: Measurement | None, hemoglobin_g_dl: Measurement | None,
                        fibrinogen_g_l: Measurement | None, orders: Iterable[MedicationOrder],
                        recent_bleeding: bool, bleeding_disorder: bool,
                        policy: Policy, recent_ich: bool = False,
                        severe_liver: bool = False) -> tuple[str, ...]:
    hits = {
        "platelets_lt_50": _below(platelets, policy["safety.platelets_caution_min"], policy),
        "hemoglobin_lt_8": _below(hemoglobin_g_dl, policy["safety.hemoglobin_caution_min_g_dl"],
                                  policy),
        "fibrinogen_lt_1.0": _below(fibrinogen_g_l, policy["safety.fibrinogen_caution_min_g_l"],
                                    policy),
        "dual_antiplatelet_therapy": len(antiplatelet_ingredients(orders)) >= 2,
        "recent_bleeding": recent_bleeding,
        "bleeding_disorder": bleeding_disorder,
        "recent_intracranial_haemorrhage": recent_ich,
        "severe_liver_disease": severe_liver,
    }
    return tuple(code for code in CAUTIONS if hits[code])


INR_RAISING = frozenset({"vka", "doac", "dti"})   # §19.5: VKA, DOAC, argatroban, bivalirudin


def severe_liver_disease(*, inr: Measurement | None, bilirubin_mg_dl: Measurement | None,
                         anticoagulants: Iterable[MedicationOrder], policy: Policy) -> bool:
    """INR > safety.severe_liver_inr and bilirubin >= the limit, ignoring an INR raised while a VKA,
    a DOAC, argatroban or bivalirudin is active (§19.5; v2 ignored VKA and DOAC only). A caution for
    therapeutic dosing only, never a contraindication to prophylaxis."""
    if any(o.drug_class in INR_RAISING or o.ingredient in ("argatroban", "bivalirudin")
           for o in anticoagulants):
        return False
    inr_gt = lab_above(inr, policy["safety.severe_liver_inr"], policy)
    bili_low = lab_below(bilirubin_mg_dl, policy["safety.severe_liver_bilirubin_mg_dl"], policy)
    return inr_gt and bili_low is False


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
    # v3 §19.0: the intensity list decides first; §10.3's mg/kg classes only where it does not
    # (40 mg once daily under 57 kg is prophylactic, not "intermediate"/"therapeutic")
    mg, n = order.dose_mg, order.doses_per_day
    if name == "dabigatran" and mg is not None and n is not None and nm.cmp_le(n, 1, p) \
            and any(round(mg, 6) == v for v in (110.0, 220.0)):
        return "prophylactic"
    if name == "edoxaban" and p["orders.edoxaban_prophylactic_regimen"] and mg is not None and n is not None \
            and nm.cmp_le(n, 1, p) and nm.cmp_le(mg, 30, p):   # §19.0: only where labelled (policy)
        return "prophylactic"
    if name in ALWAYS_THERAPEUTIC or order.drug_class in ("vka", "dti"):
        return "therapeutic"
    if name == "enoxaparin":
        if mg is not None and n is not None and nm.cmp_le(n, 1, p) and nm.cmp_le(mg * n, p["dosing.standard_mg"], p):
            return "prophylactic"
        return _enoxaparin(order, weight_kg, crcl_lt_30, p)
    if name in ("dalteparin", "tinzaparin"):
        return _iu_lmwh(order, weight_kg, p)
    if name == "heparin":
        if order.continuous or order.route == "intravenous":
            return "therapeutic"
        if order.dose_units is None or order.doses_per_day is None:
            return None
        if nm.cmp_ge(order.dose_units, p["orders.ufh_sc_therapeutic_units"], p) or nm.cmp_ge(
                order.dose_units * order.doses_per_day, p["orders.ufh_sc_therapeutic_units_day"], p):
            return "therapeutic"   # review-v3 M14: 25,000 U SC q12h is not "intermediate"
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


def running_non_heparin_therapeutic(orders: Iterable[MedicationOrder],
                                    policy: Policy) -> tuple[str, ...]:
    """Ingredients of active argatroban, bivalirudin or therapeutic fondaparinux orders (§10.1)."""
    out = []
    for o in orders:
        if o.status != "active" or o.ingredient not in NON_HEPARIN_THERAPEUTIC:
            continue
        if o.ingredient == "fondaparinux" and classify_order(o, None, None, policy) != "therapeutic":
            continue
        out.append(o.ingredient)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class Exposure:
    """One active anticoagulant (§10.4): an order (with its §10.3 class) or a statement."""

    ingredient: str
    drug_class: str
    kind: Literal["order", "statement"]
    order_class: OrderClass | None = None
    source: str | None = None

    def to_json(self) -> dict:
        return {"ingredient": self.ingredient, "drug_class": self.drug_class, "kind": self.kind,
                "class": self.order_class, "source": self.source}


def anticoagulant_exposure(classed: Iterable[tuple[MedicationOrder, OrderClass | None]],
                           statements: Iterable[MedicationOrder]) -> tuple[Exposure, ...]:
    out = [Exposure(o.ingredient, o.drug_class, "order", c, o.source) for o, c in classed]
    out += [Exposure(s.ingredient, s.drug_class, "statement", None, s.source)
            for s in statements if s.status == "active" and is_anticoagulant(s)]
    return tuple(out)


def _daily_dose(order: MedicationOrder) -> float | None:
    dose = order.dose_mg if order.dose_mg is not None else order.dose_units
    return None if dose is None or order.doses_per_day is None else dose * order.doses_per_day


def without_continuations(exposure: Iterable[Exposure], classed: Iterable[tuple[MedicationOrder, OrderClass | None]],
                          statements: Iterable[MedicationOrder]) -> tuple[Exposure, ...]:
    """§19.9 (v3): a home statement continued by an inpatient order of the same ingredient at the
    same or a lower daily dose is a continuation, not a duplicate (the statement drops out)."""
    orders = [o for o, _ in classed]
    by_source = {s.source: s for s in statements}
    out = []
    for e in exposure:
        if e.kind == "statement":
            home = by_source.get(e.source)
            home_day = _daily_dose(home) if home is not None else None
            if home_day is not None and any(
                    o.ingredient == e.ingredient and _daily_dose(o) is not None and _daily_dose(o) <= home_day + 1e-9
                    for o in orders):
                continue
        out.append(e)
    return tuple(out)


def duplicate_urgency(exposure: Iterable[Exposure], inr: Measurement | None,
                      policy: Policy) -> str | None:
    """§10.4 urgency of duplicate anticoagulation: None when fewer than two are active."""
    items = tuple(exposure)
    if len(items) < 2:
        return None
    vka = [e for e in items if e.drug_class == "vka"]
    rest = [e for e in items if e.drug_class != "vka"]
    # "a VKA with a parenteral anticoagulant": exactly one of each (a second parenteral agent
    # on top of the bridge is a duplicate of its own, judged below)
    if len(vka) == 1 and len(rest) == 1 and rest[0].ingredient in PARENTERAL \
            and lab_below(inr, policy["safety.bridge_inr_below"], policy) is True:
        return "info"   # the deliberate bridge: a VKA with a parenteral agent while INR < 2
    if sum(1 for e in items if e.kind == "order" and e.order_class == "therapeutic") >= 2:
        return "critical"
    return "warning"


@dataclass(frozen=True)
class Safety:
    contraindications: tuple[str, ...]
    escalation_cautions: tuple[str, ...]
    current_order_class: OrderClass | None
    # Active anticoagulant orders and their classes (anti-Xa targets, card text).
    orders: tuple[tuple[MedicationOrder, OrderClass | None], ...] = ()
    # Lab-based codes that could not be checked (lab missing, or a bound that does not settle).
    undetermined: tuple[str, ...] = ()
    other_anticoagulation_indication: bool = False
    non_heparin_running: tuple[str, ...] = ()
    anticoagulants_active: tuple[Exposure, ...] = ()
    duplicate: str | None = None                  # §10.4 urgency, None when no duplicate
    # v3 (§19.12; contract): Z79.01 / Z86.711 / Z86.718, or an active home anticoagulant
    # statement. Removes one-click suggestions, never a card.
    possible_other_indication: bool = False

    @property
    def heparin_specific(self) -> tuple[str, ...]:
        return tuple(c for c in self.contraindications if c in HEPARIN_SPECIFIC)

    @property
    def hit(self) -> str | None:
        return next((c for c in self.contraindications if c in HIT_CODES), None)

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
            "other_anticoagulation_indication": self.other_anticoagulation_indication,
            "non_heparin_anticoagulant_running": list(self.non_heparin_running),
            "anticoagulants_active": [e.to_json() for e in self.anticoagulants_active],
            "duplicate_anticoagulant": ({"urgency": self.duplicate} if self.duplicate else None),
            "possible_other_indication": self.possible_other_indication,
        }


def assess_safety(*, active_bleeding: bool, recent_bleeding: bool, bleeding_disorder: bool,
                  hit_history: bool, heparin_allergy: bool, platelets: Measurement | None,
                  fibrinogen_g_l: Measurement | None, hemoglobin_g_dl: Measurement | None,
                  orders: Iterable[MedicationOrder], weight_kg: float | None,
                  crcl_lt_30: bool | None, policy: Policy, hit: str | None = None,
                  suspected: bool = False, statements: Iterable[MedicationOrder] = (),
                  recent_ich: bool = False, inr: Measurement | None = None,
                  bilirubin_mg_dl: Measurement | None = None,
                  other_indication: bool = False,
                  possible_other_indication: bool = False) -> Safety:
    orders, statements = tuple(orders), tuple(statements)
    home_anticoagulant = any(s.status == "active" and is_anticoagulant(s) for s in statements)
    classed = classified_orders(orders, weight_kg, crcl_lt_30, policy)
    exposure = anticoagulant_exposure(classed, statements)
    active_anticoagulants = [o for o in orders + statements
                             if o.status == "active" and is_anticoagulant(o)]
    return Safety(
        contraindications=contraindications(
            active_bleeding=active_bleeding, platelets=platelets, fibrinogen_g_l=fibrinogen_g_l,
            hit_history=hit_history, heparin_allergy=heparin_allergy, policy=policy, hit=hit,
            suspected=suspected),
        escalation_cautions=escalation_cautions(
            platelets=platelets, hemoglobin_g_dl=hemoglobin_g_dl, fibrinogen_g_l=fibrinogen_g_l,
            orders=orders + statements, recent_bleeding=recent_bleeding,
            bleeding_disorder=bleeding_disorder, policy=policy, recent_ich=recent_ich,
            severe_liver=severe_liver_disease(inr=inr, bilirubin_mg_dl=bilirubin_mg_dl,
                                              anticoagulants=active_anticoagulants,
                                              policy=policy)),
        other_anticoagulation_indication=other_indication,
        possible_other_indication=possible_other_indication or home_anticoagulant,
        non_heparin_running=running_non_heparin_therapeutic(orders, policy),
        anticoagulants_active=exposure,
        duplicate=duplicate_urgency(without_continuations(exposure, classed, statements), inr, policy),
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
