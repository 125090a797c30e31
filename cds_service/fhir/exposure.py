"""Anticoagulant exposure (data requirements §8, §8a; clinical rules §19.4): active orders,
MedicationStatements, MedicationAdministrations, the heparin start, renal replacement, heparin
flushes/locks and circuit heparin.

- Flush or lock (§19.4, `heparin_flush_kind`), decided in order:
  1. a rate is present: a flush only if the rate is < orders.flush_max_units_per_hour (50 U/h)
     and the concentration is <= 5 U/mL; otherwise exposure (a rate that cannot be put in U/h,
     e.g. U/kg/h, or an unknown concentration, is exposure: the check fails closed);
  2. no rate, <= 5 U/mL and a bag of >= 100 mL: a pressure-bag flush;
  3. no rate, a lock/flush product code (<= 100 U/mL by definition) or <= 100 U/mL, and
     <= 500 U per administration, and (when the schedule is readable) at most 4 a day: a flush;
  4. no rate, >= 1,000 U/mL with a lock route or "lock" in the text, and (when readable) at most
     once a day: a catheter lock (haemodialysis catheter locks included);
  (The frequency limits of steps 3-4 are not in §19.4, which is silent on frequency: chosen
  conservatively, more often is exposure. With no readable concentration, a dose in units over
  dispenseRequest.quantity in mL gives it, data requirements §8a "units ÷ volume".)
  5. anything else is exposure. Text ("flush", "lock") never overrides steps 1 and 5.
  [Heparin lock-flush labelling "not for anticoagulant therapy", 10 or 100 U/mL; ISMP]
  A flush or lock is never anticoagulant exposure, but it is heparin for HIT: active flush
  orders are kept apart (`PatientInputs.heparin_flushes`) for the acute-HIT delete list and
  the `hit_suspected` heparin start; flush administrations are kept with `flush=True`.
- Orders: active MedicationRequests through orders.read_medication. Circuit heparin (§19.4) IS
  exposure, marked `circuit=True`: UFH while an ECMO or renal-replacement Procedure is in
  progress, or an order whose text says it is for the circuit. An anticoagulant-class code the
  data file cannot map is exposure (ingredient "unmapped") and named once in `rejected`; an
  RxNorm-coded order or statement that maps to nothing is listed once too.
- Statements: status active, effectivePeriod.end absent or after now; exposure only.
- Administrations: anticoagulant MedicationAdministrations completed or in-progress (not in
  the future; circuit heparin and flushes included: they are heparin for HIT, §19.4), oldest
  first; `heparin_started` is the first heparin/LMWH administration (flushes included), else the
  earliest authoredOn of an active heparin/LMWH order or flush.
- Renal replacement: a dialysis/CRRT Procedure in progress or performed within 72 h, or an
  active end-stage kidney disease Condition.
"""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Mapping

from ..logic.inputs import Administration, Flag, MedicationOrder
from .codes import Codes, Coding
from .context import Context, first_time, source_of
from .orders import (ORDER_CLASSES, order_codes, doses_per_day, find_medication, ingredients_of,
                     is_heparin_flush, medication_codings, order_dose, read_medication, scd_for)
from .read import codings, items, number, parse_datetime
from .units import DOSE_UNITS, Table, UnitError, convert

RENAL_REPLACEMENT_HOURS = 72   # data requirements §6 (v2)
HEPARINS = frozenset({"heparin"})

# §19.4 flush/lock steps. Only the rate limit is a §19.16 policy key
# (orders.flush_max_units_per_hour); the other edges are fixed by the rule's text.
FLUSH_DEFAULT_MAX_UNITS_PER_HOUR = 50.0
FLUSH_MAX_UNITS_PER_ML_RATED = 5.0       # step 1 (and step 2's pressure bag)
PRESSURE_BAG_MIN_ML = 100.0              # step 2
FLUSH_MAX_UNITS_PER_ML = 100.0           # step 3 (lock-flush products are 10 or 100 U/mL)
FLUSH_MAX_UNITS_PER_DOSE = 500.0         # step 3
LOCK_MIN_UNITS_PER_ML = 1000.0           # step 4
# Steps 3-4 with a readable schedule: §19.4 is silent on frequency. A heparin flush is given every
# 6-8 h or after each access, a high-strength lock after each dialysis session or at most daily
# (lock-flush labelling; ISMP). More often than this is not plausibly a flush or lock: it is exposure
# (chosen conservatively; review-v3 H9: an hourly "flush" of 500 U is 12,000 U a day).
FLUSH_MAX_ADMINISTRATIONS_PER_DAY = 4.0  # step 3: at most every 6 h
LOCK_MAX_ADMINISTRATIONS_PER_DAY = 1.0   # step 4: at most daily
_LOCK_WORDS = re.compile(r"(?<![a-z])(lock|locks|locking)(?![a-z])", re.IGNORECASE)

RATE_UNITS_PER_HOUR = Table("U/h", {"[iU]/h": 1.0, "[IU]/h": 1.0, "U/h": 1.0, "[iU]/min": 60.0,
                                    "[IU]/min": 60.0, "U/min": 60.0},
                            text={"units/h": 1.0, "units/hr": 1.0, "units/hour": 1.0, "iu/h": 1.0,
                                  "u/hr": 1.0, "units/min": 60.0}, low=0, low_inclusive=False,
                            high=1_000_000)
RATE_ML_PER_HOUR = Table("mL/h", {"mL/h": 1.0, "mL/min": 60.0},
                         text={"ml/hr": 1.0, "ml/hour": 1.0}, low=0, low_inclusive=False, high=10_000)
BAG_VOLUME = Table("mL", {"mL": 1.0, "L": 1000.0}, low=0, low_inclusive=False, high=10_000)
TIME_HOURS = {"h": 1.0, "min": 1 / 60, "s": 1 / 3600, "d": 24.0}


def _quantity(table: Table, q: Any) -> float | None:
    try:
        return convert("heparin", q, table=table).value
    except UnitError:
        return None


def _rate_of(dosage: Mapping[str, Any]) -> tuple[bool, float | None, float | None]:
    """(rate given, U/h, mL/h) of the first doseAndRate that carries a rate (a MedicationAdministration's
    dosage carries rateQuantity/rateRatio itself)."""
    for item in [dosage] + items(dosage.get("doseAndRate")):
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("rateQuantity"), dict):
            q = item["rateQuantity"]
            return True, _quantity(RATE_UNITS_PER_HOUR, q), _quantity(RATE_ML_PER_HOUR, q)
        if isinstance(item.get("rateRatio"), dict):
            num, den = item["rateRatio"].get("numerator"), item["rateRatio"].get("denominator")
            hours = None
            if isinstance(den, dict):
                value, unit = number(den.get("value", 1)), den.get("code") or den.get("unit")
                if value and isinstance(unit, str) and unit in TIME_HOURS:
                    hours = value * TIME_HOURS[unit]
            if not isinstance(num, dict) or not hours:
                return True, None, None
            units = _quantity(DOSE_UNITS, num)
            ml = _quantity(BAG_VOLUME, num)
            return True, (units / hours if units is not None else None), (ml / hours if ml is not None else None)
        if isinstance(item.get("rateRange"), dict):
            high = item["rateRange"].get("high")   # the upper bound decides (fail closed)
            return True, _quantity(RATE_UNITS_PER_HOUR, high), _quantity(RATE_ML_PER_HOUR, high)
    return False, None, None


def _per_ml(ratio: Any) -> float | None:
    """Units per mL of a strength Ratio (a bag of up to 10 L: 1,000 U in 500 mL -> 2)."""
    if not isinstance(ratio, dict) or not isinstance(ratio.get("numerator"), dict):
        return None
    units = _quantity(DOSE_UNITS, ratio["numerator"])
    volume = _ratio_volume(ratio)
    return units / volume if units is not None and volume else None


def _ratio_volume(ratio: Any) -> float | None:
    """The volume a product strength is expressed over (25,000 U in 250 mL -> 250)."""
    if isinstance(ratio, dict) and isinstance(ratio.get("denominator"), dict):
        return _quantity(BAG_VOLUME, ratio["denominator"])
    return None


def heparin_flush_kind(resource: Mapping[str, Any], found: list[Coding], dosage: Mapping[str, Any] | None,
                       codes: Codes, medications: Mapping[str, dict] | None = None, *,
                       max_units_per_hour: float = FLUSH_DEFAULT_MAX_UNITS_PER_HOUR) -> str | None:
    """"flush", "pressure_bag", "lock" or None (exposure) for a heparin order, statement or
    administration, by the five ordered steps of clinical rules §19.4 (module docstring).
    Concentration: the strength map, else the Medication's ingredient strength; bag volume: the
    Medication's amount, the strength's volume (>= 1 mL), the strength map, or
    dispenseRequest.quantity in mL; dose per administration in U, or mL x concentration."""
    oc = order_codes(codes)
    dosage = dosage or {}
    product_flush = any(c in oc.flush_products for c in found)
    concentrations: list[float] = []
    volumes: list[float] = []
    for coding in found:
        spec = oc.scd.get(coding)
        if spec and spec.get("ingredient") == "heparin" and spec.get("unit") == "U" and spec.get("volume_ml"):
            concentrations.append(float(spec["amount"]) / float(spec["volume_ml"]))
            volumes.append(float(spec["volume_ml"]))
    medication = find_medication(resource, medications or {}) if "medicationReference" in resource else None
    if medication:
        for ingredient in items(medication.get("ingredient")):
            strength = ingredient.get("strength") if isinstance(ingredient, dict) else None
            per_ml = _per_ml(strength)
            if per_ml is not None:
                concentrations.append(per_ml)
                volume = _ratio_volume(strength)
                if volume is not None and volume > 1:
                    volumes.append(volume)
        amount = medication.get("amount")
        if isinstance(amount, dict) and isinstance(amount.get("numerator"), dict):
            volume = _quantity(BAG_VOLUME, amount["numerator"])
            if volume is not None:
                volumes.append(volume)
    dispense = resource.get("dispenseRequest") if isinstance(resource.get("dispenseRequest"), dict) else {}
    if isinstance(dispense.get("quantity"), dict):
        volume = _quantity(BAG_VOLUME, dispense["quantity"])
        if volume is not None:
            volumes.append(volume)
    rated, units_h, ml_h = _rate_of(dosage)
    if not concentrations and not rated and volumes and isinstance(dispense.get("quantity"), dict):
        # data requirements §8a: concentration from the strength map "or units ÷ volume": a dose in
        # units over the dispensed bag (1,000 U, dispense 500 mL -> 2 U/mL; review-v3 H8)
        units = _dose_units(dosage, None)
        bag = _quantity(BAG_VOLUME, dispense["quantity"])
        if units is not None and bag:
            concentrations.append(units / bag)
    # the highest concentration decides (two readings that disagree never make a flush)
    per_ml = max(concentrations) if concentrations else None
    per_day = doses_per_day(dosage.get("timing"), codes)
    if rated:                                                                     # step 1
        if units_h is None and ml_h is not None and per_ml is not None:
            units_h = ml_h * per_ml
        if units_h is not None and per_ml is not None and round(units_h, 6) < max_units_per_hour \
                and round(per_ml, 6) <= FLUSH_MAX_UNITS_PER_ML_RATED:
            return "flush"
        return None
    if per_ml is not None and round(per_ml, 6) <= FLUSH_MAX_UNITS_PER_ML_RATED \
            and any(round(v, 6) >= PRESSURE_BAG_MIN_ML for v in volumes):           # step 2
        return "pressure_bag"
    dose_units = _dose_units(dosage, per_ml if per_ml is not None else
                             (FLUSH_MAX_UNITS_PER_ML if product_flush else None))
    if (product_flush or (per_ml is not None and round(per_ml, 6) <= FLUSH_MAX_UNITS_PER_ML)) \
            and dose_units is not None and round(dose_units, 6) <= FLUSH_MAX_UNITS_PER_DOSE \
            and (per_day is None or round(per_day, 6) <= FLUSH_MAX_ADMINISTRATIONS_PER_DAY):  # step 3
        return "flush"
    if per_ml is not None and round(per_ml, 6) >= LOCK_MIN_UNITS_PER_ML and _says_lock(resource, dosage) \
            and (per_day is None or round(per_day, 6) <= LOCK_MAX_ADMINISTRATIONS_PER_DAY):  # step 4
        return "lock"
    return None                                                                    # step 5


def _dose_units(dosage: Mapping[str, Any], per_ml: float | None) -> float | None:
    """Units per administration: a dose in U, else mL x concentration (for a lock-flush product
    with no strength, its labelled maximum of 100 U/mL gives an upper bound)."""
    for item in items(dosage.get("doseAndRate")):
        if not isinstance(item, dict):
            continue
        q = item.get("doseQuantity")
        if not isinstance(q, dict) and isinstance(item.get("doseRange"), dict):
            q = item["doseRange"].get("high")
        if not isinstance(q, dict):
            return None
        units = _quantity(DOSE_UNITS, q)
        if units is not None:
            return units
        ml = _quantity(BAG_VOLUME, q)
        return ml * per_ml if ml is not None and per_ml is not None else None
    q = dosage.get("dose")          # MedicationAdministration.dosage.dose
    if isinstance(q, dict):
        units = _quantity(DOSE_UNITS, q)
        if units is not None:
            return units
        ml = _quantity(BAG_VOLUME, q)
        return ml * per_ml if ml is not None and per_ml is not None else None
    return None


def _says_lock(resource: Mapping[str, Any], dosage: Mapping[str, Any]) -> bool:
    """A lock route (its text or display) or "lock" in the dosage text, patient instruction or a note."""
    route = dosage.get("route") if isinstance(dosage.get("route"), dict) else {}
    texts = [dosage.get("text"), dosage.get("patientInstruction"), route.get("text")]
    texts += [c.get("display") for c in items(route.get("coding")) if isinstance(c, dict)]
    texts += [n.get("text") for n in items(resource.get("note")) if isinstance(n, dict)]
    return any(isinstance(t, str) and _LOCK_WORDS.search(t) for t in texts)


def _procedure_start(proc: Mapping[str, Any]) -> datetime | None:
    period = proc.get("performedPeriod") if isinstance(proc.get("performedPeriod"), dict) else {}
    return first_time(proc.get("performedDateTime"), period.get("start"))


def in_progress_circuit(procedures: list[dict], ctx: Context) -> bool:
    """An ECMO or renal-replacement Procedure in progress (started, if dated, by now)."""
    sets = ctx.sets.procedures
    wanted = [sets[k] for k in ("ECMO", "renal_replacement") if k in sets]
    for proc in procedures:
        if proc.get("status") != "in-progress":
            continue
        if not any(cs.matches_any(codings(proc.get("code"))) for cs in wanted):
            continue
        start = _procedure_start(proc)
        if start is not None and not ctx.in_window(start, None):
            continue
        if ctx.validator.problem(proc) is None:
            return True
    return False


def renal_replacement(procedures: list[dict], eskd: Flag | None, ctx: Context) -> Flag:
    sets = ctx.sets.procedures
    rrt = sets.get("renal_replacement")
    best: Flag | None = None
    if rrt is not None:
        since = ctx.now - timedelta(hours=RENAL_REPLACEMENT_HOURS)
        for proc in procedures:
            status = proc.get("status")
            if status not in ("in-progress", "completed", "stopped") or not rrt.matches_any(codings(proc.get("code"))):
                continue
            period = proc.get("performedPeriod") if isinstance(proc.get("performedPeriod"), dict) else {}
            if status == "in-progress":
                when = _procedure_start(proc)
                if when is not None and not ctx.in_window(when, None):
                    continue
            else:
                when = first_time(period.get("end"), proc.get("performedDateTime"), period.get("start"))
                if when is None or when < since or not ctx.in_window(when, None):
                    continue
            if ctx.validator.problem(proc) is not None:
                continue
            if best is None or (when is not None and (best.time is None or when > best.time)):
                best = Flag(present=True, source=source_of(proc), time=when)
    if best is not None:
        return best
    if eskd is not None:
        return Flag(present=True, source=eskd.source, time=eskd.time)
    return Flag(present=False)


class Problems:
    """`rejected` entries named once per call."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.unmapped: list[str] = []
        self.unknown: list[str] = []

    def note(self, source: str | None, normalised) -> None:
        if normalised.unmapped is not None:
            self.unmapped.append(f"{source or 'a medication'} ({normalised.unmapped[1]})")
        for code in normalised.unknown_rxnorm:
            if code not in self.unknown:
                self.unknown.append(code)

    def flush(self) -> None:
        if self.unmapped:
            self.ctx.reject("medications.unmapped_anticoagulant",
                            "anticoagulant-class code not in the code data file, counted as "
                            "anticoagulant exposure: " + ", ".join(self.unmapped[:10]))
        if self.unknown:
            self.ctx.reject("medications.unmapped_rxnorm",
                            "RxNorm codes not in the code data file (ignored; a site may add them): "
                            + ", ".join(self.unknown[:20]) + (" ..." if len(self.unknown) > 20 else ""))


# "Ordered for the circuit": the order's own text names the circuit.
CIRCUIT_WORDS = re.compile(r"circuit|(?<![a-z])(?:pre|post)?-?\s?filter|crrt|cvvh[a-z]*|extracorporeal"
                            r"|oxygenator|ha?emofilt[a-z]*|ecmo", re.IGNORECASE)


def ordered_for_circuit(resource: Mapping[str, Any]) -> bool:
    """The dosage text/patientInstruction, a note or a reasonCode text says the heparin is for
    the ECMO or renal-replacement circuit (pre-/post-filter, CRRT, CVVH*, extracorporeal)."""
    texts: list[Any] = []
    for d in items(resource.get("dosageInstruction")) + items(resource.get("dosage")):
        if isinstance(d, dict):
            texts += [d.get("text"), d.get("patientInstruction")]
    texts += [n.get("text") for n in items(resource.get("note")) if isinstance(n, dict)]
    texts += [r.get("text") for r in items(resource.get("reasonCode")) if isinstance(r, dict)]
    return any(isinstance(t, str) and CIRCUIT_WORDS.search(t) for t in texts)


def _mark_circuit(order: MedicationOrder, circuit: bool, resource: Mapping[str, Any]) -> MedicationOrder:
    """Circuit heparin (§19.4; contract v3): UFH while an ECMO or renal-replacement Procedure is in
    progress, or a UFH order that says it is for the circuit. It stays exposure."""
    if order.ingredient == "heparin" and (circuit or ordered_for_circuit(resource)):
        return replace(order, circuit=True)
    return order


def _flush_limit(ctx: Context) -> float:
    return float(ctx.policy["orders.flush_max_units_per_hour"])


def read_orders(requests: list[dict], meds: Mapping[str, dict], circuit: bool, ctx: Context,
                problems: Problems, flushes: list[MedicationOrder] | None = None) -> list[MedicationOrder]:
    """Active anticoagulant/antiplatelet orders; heparin flushes/locks go to `flushes`."""
    orders: list[MedicationOrder] = []
    for request in requests:
        found = read_medication(request, ctx.codes, meds, allow_unmapped=True,
                                flush_max_units_per_hour=_flush_limit(ctx))
        if not (found.orders or found.unknown_rxnorm or found.flush_orders) or ctx.validator.problem(request):
            continue
        problems.note(source_of(request), found)
        orders.extend(_mark_circuit(o, circuit, request) for o in found.orders)
        if flushes is not None:
            flushes.extend(found.flush_orders)
    return orders


def read_statements(statements: list[dict], meds: Mapping[str, dict], circuit: bool, ctx: Context,
                    problems: Problems) -> list[MedicationOrder]:
    out: list[MedicationOrder] = []
    for st in statements:
        if st.get("status") != "active":
            continue
        period = st.get("effectivePeriod") if isinstance(st.get("effectivePeriod"), dict) else {}
        if "end" in period:
            end = parse_datetime(period.get("end"))
            if end is None or end <= ctx.now:
                continue   # ended (an unreadable end is not "still taken")
        found = read_medication(st, ctx.codes, meds, allow_unmapped=True,
                                flush_max_units_per_hour=_flush_limit(ctx))
        if not (found.orders or found.unknown_rxnorm):
            continue
        problem = ctx.validator.problem(st)
        if problem is not None:
            ctx.reject("medication_statement", f"{source_of(st) or 'MedicationStatement'}: {problem}; dropped")
            continue
        problems.note(source_of(st), found)
        out.extend(found.orders)
    return out


def read_administrations(admins: list[dict], meds: Mapping[str, dict], circuit: bool,
                         ctx: Context) -> list[Administration]:
    out: list[tuple[datetime | None, int, Administration]] = []
    for position, admin in enumerate(admins):
        if admin.get("status") not in ("completed", "in-progress"):
            continue
        found = medication_codings(admin, meds)
        named = [(n, c) for n, c in ingredients_of(found, ctx.codes) if c in ORDER_CLASSES]
        if not named:
            continue
        dosage = admin.get("dosage") if isinstance(admin.get("dosage"), dict) else {}
        # §19.4: a flush/lock given is kept, marked: heparin for HIT, never anticoagulant exposure
        flush = any(n == "heparin" for n, _ in named) and is_heparin_flush(
            admin, found, dosage, ctx.codes, meds, max_units_per_hour=_flush_limit(ctx))
        period = admin.get("effectivePeriod") if isinstance(admin.get("effectivePeriod"), dict) else {}
        time = first_time(admin.get("effectiveDateTime"), period.get("start"), period.get("end"))
        if time is not None and not ctx.in_window(time, None):
            continue   # in the future
        problem = ctx.validator.problem(admin)
        if problem is not None:
            ctx.reject("medication_administration",
                       f"{source_of(admin) or 'MedicationAdministration'}: {problem}; dropped")
            continue
        for ingredient, cls in named:
            dose_mg, dose_units = order_dose(dosage.get("dose"), ingredient, scd_for(found, ingredient, ctx.codes))
            out.append((time, position, Administration(
                ingredient=ingredient, drug_class=cls, time=time, dose_mg=dose_mg, dose_units=dose_units,
                source=source_of(admin), flush=flush)))
    out.sort(key=lambda t: (t[0] is None, t[0] or datetime.min, t[1]))  # undated last
    return [a for _, _, a in out]


def heparin_started(administrations: list[Administration], orders: list[MedicationOrder],
                    flushes: list[MedicationOrder] = ()) -> datetime | None:
    def heparin(ingredient: str, cls: str) -> bool:
        return ingredient in HEPARINS or cls == "lmwh"

    given = [a.time for a in administrations if heparin(a.ingredient, a.drug_class) and a.time]
    if given:
        return min(given)
    authored = [o.authored_on for o in list(orders) + list(flushes)
                if heparin(o.ingredient, o.drug_class) and o.authored_on]
    return min(authored) if authored else None
