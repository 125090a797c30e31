"""Anticoagulant exposure (data requirements v2 §8): active orders, MedicationStatements,
MedicationAdministrations, the heparin start, renal replacement and circuit heparin.

- Orders: active MedicationRequests through orders.read_medication. Heparin flushes/locks
  are never anticoagulants; neither is circuit heparin (a heparin infusion while an ECMO or
  renal-replacement Procedure is in progress, ordered for the circuit: its text says so). An anticoagulant-class code the data file
  cannot map is exposure (ingredient "unmapped") and named once in `rejected`; an
  RxNorm-coded order or statement that maps to nothing is listed once too.
- Statements: status active, effectivePeriod.end absent or after now; exposure only.
- Administrations: anticoagulant MedicationAdministrations completed or in-progress (not in
  the future; circuit heparin included: it is heparin for HIT, §10.1), oldest first; `heparin_started` is the first heparin/LMWH administration,
  else the earliest authoredOn of an active heparin/LMWH order.
- Renal replacement: a dialysis/CRRT Procedure in progress or performed within 72 h, or an
  active end-stage kidney disease Condition.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Mapping

from ..logic.inputs import Administration, Flag, MedicationOrder
from .context import Context, first_time, source_of
from .orders import (ORDER_CLASSES, first_dosage, ingredients_of, is_heparin_flush, medication_codings,
                     order_dose, read_medication, _scd_for)
from .read import codings, items, parse_datetime

RENAL_REPLACEMENT_HOURS = 72   # data requirements §6 (v2)
HEPARINS = frozenset({"heparin"})


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


class _Problems:
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


# "Ordered for the circuit" (clinical rules §10.4): the order's own text names the circuit.
_CIRCUIT_WORDS = re.compile(r"circuit|(?<![a-z])(?:pre|post)?-?\s?filter|crrt|cvvh[a-z]*|extracorporeal"
                            r"|oxygenator|ha?emofilt[a-z]*", re.IGNORECASE)


def ordered_for_circuit(resource: Mapping[str, Any]) -> bool:
    """The dosage text/patientInstruction, a note or a reasonCode text says the heparin is for
    the ECMO or renal-replacement circuit (pre-/post-filter, CRRT, CVVH*, extracorporeal)."""
    texts: list[Any] = []
    for d in items(resource.get("dosageInstruction")) + items(resource.get("dosage")):
        if isinstance(d, dict):
            texts += [d.get("text"), d.get("patientInstruction")]
    texts += [n.get("text") for n in items(resource.get("note")) if isinstance(n, dict)]
    texts += [r.get("text") for r in items(resource.get("reasonCode")) if isinstance(r, dict)]
    return any(isinstance(t, str) and _CIRCUIT_WORDS.search(t) for t in texts)


def _circuit(order: MedicationOrder, circuit: bool, resource: Mapping[str, Any]) -> bool:
    """Circuit heparin (§10.4): a heparin infusion while an ECMO or renal-replacement Procedure
    is in progress, *ordered for the circuit*. An unmarked heparin infusion is anticoagulation."""
    return circuit and order.ingredient == "heparin" and order.continuous and ordered_for_circuit(resource)


def read_orders(requests: list[dict], meds: Mapping[str, dict], circuit: bool, ctx: Context,
                problems: _Problems) -> list[MedicationOrder]:
    orders: list[MedicationOrder] = []
    for request in requests:
        found = read_medication(request, ctx.codes, meds, allow_unmapped=True)
        if not (found.orders or found.unknown_rxnorm) or ctx.validator.problem(request):
            continue
        problems.note(source_of(request), found)
        orders.extend(o for o in found.orders if not _circuit(o, circuit, request))
    return orders


def read_statements(statements: list[dict], meds: Mapping[str, dict], circuit: bool, ctx: Context,
                    problems: _Problems) -> list[MedicationOrder]:
    out: list[MedicationOrder] = []
    for st in statements:
        if st.get("status") != "active":
            continue
        period = st.get("effectivePeriod") if isinstance(st.get("effectivePeriod"), dict) else {}
        if "end" in period:
            end = parse_datetime(period.get("end"))
            if end is None or end <= ctx.now:
                continue   # ended (an unreadable end is not "still taken")
        found = read_medication(st, ctx.codes, meds, allow_unmapped=True)
        if not (found.orders or found.unknown_rxnorm):
            continue
        problem = ctx.validator.problem(st)
        if problem is not None:
            ctx.reject("medication_statement", f"{source_of(st) or 'MedicationStatement'}: {problem}; dropped")
            continue
        problems.note(source_of(st), found)
        out.extend(o for o in found.orders if not _circuit(o, circuit, st))
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
        if any(n == "heparin" for n, _ in named) and is_heparin_flush(admin, found, dosage, ctx.codes, meds):
            continue
        period = admin.get("effectivePeriod") if isinstance(admin.get("effectivePeriod"), dict) else {}
        time = first_time(admin.get("effectiveDateTime"), period.get("start"), period.get("end"))
        if time is not None and not ctx.in_window(time, None):
            continue   # in the future
        # Circuit heparin given is kept: it is not anticoagulant exposure (§10.4, orders only),
        # but it is heparin for hit_suspected (§10.1 "a heparin (any dose) ... given").
        problem = ctx.validator.problem(admin)
        if problem is not None:
            ctx.reject("medication_administration",
                       f"{source_of(admin) or 'MedicationAdministration'}: {problem}; dropped")
            continue
        for ingredient, cls in named:
            dose_mg, dose_units = order_dose(dosage.get("dose"), ingredient, _scd_for(found, ingredient, ctx.codes))
            out.append((time, position, Administration(
                ingredient=ingredient, drug_class=cls, time=time, dose_mg=dose_mg, dose_units=dose_units,
                source=source_of(admin))))
    out.sort(key=lambda t: (t[0] is None, t[0] or datetime.min, t[1]))  # undated last
    return [a for _, _, a in out]


def heparin_started(administrations: list[Administration], orders: list[MedicationOrder]) -> datetime | None:
    def heparin(ingredient: str, cls: str) -> bool:
        return ingredient in HEPARINS or cls == "lmwh"

    given = [a.time for a in administrations if heparin(a.ingredient, a.drug_class) and a.time]
    if given:
        return min(given)
    authored = [o.authored_on for o in orders if heparin(o.ingredient, o.drug_class) and o.authored_on]
    return min(authored) if authored else None
