"""Organ support: respiratory support and oxygen modality (§4), vasoactive drugs (§5)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Mapping

from ..logic.inputs import Measurement, RespiratorySupport, Vasoactive
from .codes import CodeSet
from .context import Candidate, Context, first_time, source_of
from .orders import first_dosage, ingredients_of, medication_codings
from .read import codings, items, number
from .units import RATE_ABSOLUTE, RATE_PER_KG, UCUM, UnitError, convert, read_unit

PROCEDURE_CURRENT, PROCEDURE_DONE = "in-progress", frozenset({"completed", "stopped"})


def _procedure_modalities(proc: Mapping[str, Any], sets: dict[str, CodeSet]) -> tuple[set[str], bool, bool]:
    """(modalities, ecmo, vasopressor therapy) named by one Procedure's codes (§4)."""
    found = list(codings(proc.get("code")))
    mods: set[str] = set()
    for name in ("IMV", "NIV", "CPAP", "HFNC"):
        if sets[name].matches_any(found):
            mods.add(name)
    if sets["nasal_cannula"].matches_any(found) and any(
            sets["HFNC_device"].matches_any(codings(c)) for c in items(proc.get("usedCode"))):
        mods.add("HFNC")
    elif sets["low_flow"].matches_any(found):
        mods.add("low-flow")
    specific = bool(mods) or sets["ECMO"].matches_any(found) or sets["vasopressor_therapy"].matches_any(found)
    if sets["IMV_generic"].matches_any(found) and not specific:
        mods.add("IMV")
    return mods, sets["ECMO"].matches_any(found), sets["vasopressor_therapy"].matches_any(found)


def respiratory_support(procedures: list[dict], cands: dict[str, list[Candidate]], fio2: Measurement | None,
                 ctx: Context) -> RespiratorySupport:
    sets = ctx.sets.procedures
    current, done = [], []
    for proc in procedures:
        status = proc.get("status") if isinstance(proc.get("status"), str) else None
        if status != PROCEDURE_CURRENT and status not in PROCEDURE_DONE:
            continue
        mods, ecmo, vaso = _procedure_modalities(proc, sets)
        if not (mods or ecmo or vaso):
            continue
        period = proc.get("performedPeriod") if isinstance(proc.get("performedPeriod"), dict) else {}
        if status == PROCEDURE_CURRENT:
            start = first_time(proc.get("performedDateTime"), period.get("start"))
            if start is not None and not ctx.in_window(start, None):
                continue   # starts in the future
            bucket = current
        else:
            end = first_time(period.get("end"), proc.get("performedDateTime"))
            if not ctx.in_window(end, "window.respiratory_support_hours"):
                continue
            bucket = done
        if ctx.validator.problem(proc):
            continue
        bucket.append((proc, mods, ecmo, vaso))
    modalities: set[str] = set()
    ecmo = vaso = False
    sources: list[str] = []
    for proc, mods, is_ecmo, is_vaso in current or done:   # in-progress records take precedence
        modalities |= mods
        ecmo, vaso = ecmo or is_ecmo, vaso or is_vaso
        if source_of(proc):
            sources.append(source_of(proc))  # type: ignore[arg-type]
    room_air = False
    for name in ("on_oxygen", "room_air"):
        for cand in cands.get(name, []):
            if cand.holder.get("valueBoolean") is False or ctx.validator.problem(cand.resource):
                continue
            if name == "on_oxygen":
                modalities.add("low-flow")
            else:
                room_air = True
            if source_of(cand.resource):
                sources.append(source_of(cand.resource))  # type: ignore[arg-type]
            break
    has_support_procedure = any(m for _, m, _, _ in current or done)
    if fio2 is not None and not has_support_procedure and fio2.comparator is None \
            and round(fio2.value, 6) <= 0.21:
        room_air = True
        if fio2.source:
            sources.append(fio2.source)
    return RespiratorySupport(modalities=frozenset(modalities), ecmo=ecmo, vasopressor_procedure=vaso,
                              room_air_documented=room_air, sources=tuple(sources))


def _rate(dosage: Mapping[str, Any], weight: Measurement | None) -> tuple[float | None, str | None]:
    """(ug/kg/min, problem) from rateQuantity or rateRatio."""
    quantity = dosage.get("rateQuantity")
    ratio = dosage.get("rateRatio")
    if not isinstance(quantity, dict) and isinstance(ratio, dict):
        quantity = _ratio_quantity(ratio)
    if not isinstance(quantity, dict):
        return None, "no rate"
    try:
        return convert("rate", quantity, table=RATE_PER_KG).value, None
    except UnitError as per_kg_error:
        try:
            per_minute = convert("rate", quantity, table=RATE_ABSOLUTE).value
        except UnitError:
            return None, str(per_kg_error)
    if weight is None:
        return None, "a per-minute rate needs a body weight"
    return per_minute / weight.value, None


def _ratio_quantity(ratio: Mapping[str, Any]) -> dict | None:
    num, den = ratio.get("numerator"), ratio.get("denominator")
    if not isinstance(num, dict) or not isinstance(den, dict):
        return None
    n, d = number(num.get("value")), number(den.get("value"))
    if n is None or d is None or d <= 0:
        return None
    (nu, n_ucum), (du, d_ucum) = read_unit(num), read_unit(den)
    unit = f"{nu}/{du}"
    if n_ucum and d_ucum:
        return {"value": n / d, "system": UCUM, "code": unit}
    return {"value": n / d, "unit": unit}


def read_vasoactives(admins: list[dict], requests: list[dict], medications: Mapping[str, dict],
                 weight: Measurement | None, ctx: Context) -> tuple[Vasoactive, ...]:
    min_minutes = timedelta(minutes=ctx.policy["sofa.vasoactive_min_minutes"])
    records: list[tuple[str, float | None, bool, str | None]] = []

    def ingredient(resource: Mapping[str, Any]) -> str | None:
        named = [n for n, c in ingredients_of(medication_codings(resource, medications), ctx.codes)
                 if c == "vasoactive"]
        return named[0] if named else None

    for admin in admins:
        status = admin.get("status")
        if status not in ("in-progress", "completed"):
            continue
        name = ingredient(admin)
        if name is None:
            continue
        period = admin.get("effectivePeriod") if isinstance(admin.get("effectivePeriod"), dict) else {}
        start = first_time(period.get("start"), admin.get("effectiveDateTime") if status == "in-progress" else None)
        if status == "completed":
            end = first_time(period.get("end"), admin.get("effectiveDateTime"))
            if not ctx.in_window(end, "window.vasoactive_hours"):
                continue
            meets = bool(start and end and end - start >= min_minutes)
        else:
            if start is not None and not ctx.in_window(start, None):
                continue
            meets = start is None or ctx.now - start >= min_minutes
        if ctx.validator.problem(admin):
            continue
        dosage = admin.get("dosage") if isinstance(admin.get("dosage"), dict) else {}
        rate, problem = _rate(dosage, weight)
        if rate is None and problem != "no rate":
            ctx.reject(f"vasoactive.{name}", f"{source_of(admin)}: {problem}")
        records.append((name, rate, meets, source_of(admin)))

    for request in requests:
        if request.get("doNotPerform") is True or request.get("intent") in ("proposal", "plan"):
            continue
        name = ingredient(request)
        if name is None:
            continue
        rated = [dr for d in items(request.get("dosageInstruction")) if isinstance(d, dict)
                 for dr in items(d.get("doseAndRate"))
                 if isinstance(dr, dict) and (isinstance(dr.get("rateQuantity"), dict)
                                              or isinstance(dr.get("rateRatio"), dict))]
        if not rated or ctx.validator.problem(request):
            continue
        dosage = first_dosage(request) or {}
        timing = dosage.get("timing") if isinstance(dosage.get("timing"), dict) else {}
        bounds = (timing.get("repeat") or {}).get("boundsPeriod") if isinstance(timing.get("repeat"), dict) else None
        start = first_time((bounds or {}).get("start") if isinstance(bounds, dict) else None,
                            request.get("authoredOn"))
        meets = start is None or ctx.now - start >= min_minutes
        best: float | None = None
        for dr in rated:
            rate, problem = _rate(dr, weight)
            if rate is None:
                ctx.reject(f"vasoactive.{name}", f"{source_of(request)}: {problem}")
            elif best is None or rate > best:
                best = rate
        records.append((name, best, meets, source_of(request)))

    merged: dict[str, Vasoactive] = {}
    for name in dict.fromkeys(r[0] for r in records):
        mine = [r for r in records if r[0] == name]
        pool = [r for r in mine if r[2]] or mine   # records that ran long enough count first
        rated = [r for r in pool if r[1] is not None]
        best = max(rated, key=lambda r: r[1]) if rated else pool[0]
        merged[name] = Vasoactive(ingredient=name, rate_ug_kg_min=best[1],  # type: ignore[arg-type]
                                  meets_min_duration=best[2], source=best[3])
    return tuple(merged.values())
