"""The view's data: the same data layer, extraction and assessment as the hooks, plus the
trend series over the stay.

`evaluate_for_view` builds a patient-view HookCall for the launched patient (fhirServer =
iss, fhirAuthorization = the SMART token when there is one, no prefetch) and runs the hooks'
own pipeline (`evaluation.pipeline.evaluate`: DataLayer.gather -> extract_inputs -> assess), so the
page shows exactly what a card would be built from at this moment.

`trend_series` reads the gathered Observations again, over the trend window instead of the
72-h labs window, through the same code sets (codes.json), status rule, time rule
(`observation_time`) and unit tables (`units.convert`) as extraction. The D-dimer multiple of
each point comes from `logic.d_dimer.compute` on that point alone (its own referenceRange, else
the policy's default ULN for its basis); each CrCl point from `logic.renal.compute` with that
creatinine and the current weight. Values that cannot be converted are left out of the chart
(they are never guessed).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from ..fhir.context import OBS_SPECS, OBSERVATION_OK, Context, Validator, code_sets
from ..fhir.observations import reference_high, observation_time
from ..fhir.orders import ingredients_of, medication_codings
from ..fhir.read import codings, items, parse_datetime
from ..fhir.units import TABLES, UnitError, convert
from ..evaluation.state import HookCall
from ..logic import d_dimer as d_dimer_mod
from ..logic import renal as renal_mod
from ..logic.inputs import DDimer, Measurement
from ..evaluation.pipeline import evaluate

TREND_DAYS = 14
SERIES = ("d_dimer", "platelets", "inr", "fibrinogen", "creatinine", "weight")
ANTICOAGULANT_CLASSES = frozenset({"anticoagulant", "lmwh", "vka", "doac", "dti"})
VIEW_SERVICE = "coagulopathy-risk"


@dataclass(frozen=True)
class Point:
    time: datetime
    value: float                 # canonical unit (D-dimer: multiple of ULN)
    shown: str                   # as the lab reported it, e.g. "1,850 ng/mL FEU"
    comparator: str | None = None
    reported_value: float | None = None   # the number and unit the lab sent (not for D-dimer)
    reported_unit: str | None = None


@dataclass(frozen=True)
class Dose:
    time: datetime
    text: str


def evaluate_for_view(state, *, iss: str, patient_id: str, encounter_id: str | None,
                      access_token: str | None, scope: str | None):
    """The hooks' Evaluation for this patient now (PreconditionFailed when data is missing)."""
    service = state.registry.get(VIEW_SERVICE)
    context: dict[str, Any] = {"patientId": patient_id, "userId": "Practitioner/assessment-view"}
    if encounter_id:
        context["encounterId"] = encounter_id
    body: dict[str, Any] = {"hook": service.hook, "hookInstance": str(uuid.uuid4()),
                            "fhirServer": iss, "context": context}
    if access_token:
        body["fhirAuthorization"] = {"access_token": access_token, "token_type": "Bearer",
                                     "expires_in": 300, "scope": scope or "", "subject": "assessment-view"}
    call = HookCall(service=service, body=body, state=state)
    return evaluate(call)


def usable(resources: list) -> list[dict]:
    """The resources the hooks would read: JSON objects whose fields that the service reads
    have the right shape (fhir.model.problem, the hooks' own tolerant check). The page reads
    only these (issue 21 L4: it read raw resources and gave a 500 where the hooks did not)."""
    from ..fhir import model
    out = []
    for res in resources:
        if not isinstance(res, dict):
            continue
        try:
            if model.problem(res) is None:
                out.append(res)
        except Exception:  # an unhashable resourceType: not a resource the hooks would read
            continue
    return out


def trend_start(assessment, now: datetime) -> datetime:
    """The later of now - 14 days and the start of the current encounter (when known)."""
    start = now - timedelta(days=TREND_DAYS)
    inputs = assessment.inputs
    wanted = getattr(inputs, "encounter_id", None)
    for enc in getattr(inputs, "encounters", ()) or ():
        period_start = getattr(enc, "period_start", None)
        if period_start and (enc.id == wanted or (wanted is None and enc.status == "in-progress")):
            start = max(start, period_start)
    return start


def trend_series(resources: list[dict], assessment, policy, codes) -> dict[str, list[Point]]:
    now = assessment.now
    start = trend_start(assessment, now)
    latest = now + timedelta(minutes=policy["window.future_tolerance_minutes"])
    inputs = assessment.inputs
    ctx = Context(now=now, policy=policy, codes=codes, sets=code_sets(codes), validator=Validator(),
                  sex=inputs.sex, age=inputs.age_years)
    index = ctx.sets.obs_index
    out: dict[str, list[Point]] = {name: [] for name in SERIES + ("crcl",)}
    seen: set[tuple[str, str]] = set()
    for obs in resources:
        if obs.get("resourceType") != "Observation" or obs.get("status") not in OBSERVATION_OK:
            continue
        if not _mine(obs, inputs.patient_id):
            continue
        when = observation_time(obs)
        if when is None or when < start or when > latest:
            continue
        holders = [(obs, c) for c in codings(obs.get("code"))]
        holders += [(comp, c) for comp in items(obs.get("component")) if isinstance(comp, dict)
                    for c in codings(comp.get("code"))]
        for holder, coding in holders:
            for key in index.get(coding, ()):
                spec = OBS_SPECS[key]
                if spec.input not in SERIES or "valueQuantity" not in holder:
                    continue
                ident = (spec.input, f"{obs.get('id')}:{id(holder)}")
                if ident in seen:
                    continue
                seen.add(ident)
                if ctx.validator.problem(obs):
                    continue
                point = _point(spec, key, holder, when, ctx, policy, inputs)
                if point is not None:
                    out[spec.input].append(point)
    for points in out.values():
        points.sort(key=lambda p: p.time)
    out["crcl"] = _crcl_points(out["creatinine"], resources, assessment, policy, ctx)
    return out


def _mine(resource: dict, patient_id: str | None) -> bool:
    ref = resource.get("subject")
    if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
        return True
    target = ref["reference"].rstrip("/").split("/")
    return len(target) >= 2 and target[-2] == "Patient" and (patient_id is None or target[-1] == patient_id)


def reported_text(value: float | None, unit: str | None, comparator: str | None = None) -> str:
    if value is None:
        return "—"
    text = f"{value:,.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"
    unit = UNIT_TEXT.get(unit or "", unit or "")
    return f"{comparator + ' ' if comparator else ''}{text}{' ' + unit if unit else ''}"


UNIT_TEXT = {"10*9/L": "×10⁹/L", "10^9/L": "×10⁹/L", "10*3/uL": "×10³/µL", "10^3/uL": "×10³/µL",
             "/nL": "/nL", "{INR}": "", "{ratio}": "", "1": "", "mm[Hg]": "mmHg", "{score}": "",
             "[iU]/mL": "IU/mL", "[IU]/mL": "IU/mL", "ug/mL": "µg/mL", "ug/L": "µg/L", "umol/L": "µmol/L",
             "ug/mL{FEU}": "µg/mL FEU", "mg/L{FEU}": "mg/L FEU", "ng/mL{FEU}": "ng/mL FEU",
             "ug/L{FEU}": "µg/L FEU", "ng/mL{DDU}": "ng/mL DDU", "ug/L{DDU}": "µg/L DDU", "mg/L{DDU}": "mg/L DDU",
             "ug/mL{DDU}": "µg/mL DDU", "%": "%", "Cel": "°C", "[degF]": "°F", "[lb_av]": "lb", "[in_i]": "in"}


def _point(spec, key: str, holder: dict, when: datetime, ctx: Context, policy, inputs) -> Point | None:
    quantity = holder["valueQuantity"]
    try:
        conv = convert(spec.input, quantity, table=TABLES[spec.table])
    except (UnitError, KeyError, TypeError, ValueError):
        return None
    shown_value = conv.reported_value if conv.reported_value is not None else conv.value
    shown = reported_text(shown_value, conv.reported_unit or conv.unit, conv.comparator)
    if spec.input != "d_dimer":
        return Point(when, conv.value, shown, conv.comparator, conv.reported_value, conv.reported_unit)
    if conv.basis and conv.basis not in shown:
        shown += f" {conv.basis}"   # the unit's own {FEU}/{DDU} annotation, as reported
    reference = reference_high(holder, "d_dimer", quantity, ctx)
    m = Measurement(value=conv.value, unit=conv.unit, time=when, comparator=conv.comparator)
    dd_inputs = replace(inputs, now=when, d_dimer=DDimer(
        value=m, basis_from_code=ctx.sets.basis.get(key), basis_from_unit=conv.basis,  # type: ignore[arg-type]
        reference_high_mg_l=reference))
    result = d_dimer_mod.compute(dd_inputs, policy)
    if result.uln_mg_l is None or result.value_mg_l is None:
        return None   # ULN unknown (basis unknown and no reference range): no multiple
    multiple = result.value_mg_l / result.uln_mg_l
    return Point(when, multiple, shown, conv.comparator)


def _crcl_points(creatinine: list[Point], resources, assessment, policy, ctx) -> list[Point]:
    out = []
    anthro = assessment.anthropometrics
    for p in creatinine:
        if p.comparator:
            continue
        m = Measurement(value=p.value, unit="mg/dL", time=p.time)
        renal = renal_mod.compute(replace(assessment.inputs, now=p.time, creatinine=m), anthro, policy)
        if renal.crcl_ml_min is not None:
            out.append(Point(p.time, renal.crcl_ml_min, f"{renal.crcl_ml_min:,.0f} mL/min"))
    return out


def administrations(resources: list[dict], assessment, codes) -> list[Dose]:
    """Anticoagulant doses given in the trend window: the v2 inputs' `administrations` when
    extraction provides them, else read here from MedicationAdministration resources."""
    now = assessment.now
    start = trend_start(assessment, now)
    given = getattr(assessment.inputs, "administrations", ()) or ()
    out: list[Dose] = []
    if given:
        for a in given:
            if a.time and start <= a.time <= now:
                amount = f" {a.dose_mg:g} mg" if a.dose_mg is not None else \
                    f" {a.dose_units:,.0f} units" if a.dose_units is not None else ""
                out.append(Dose(a.time, f"{a.ingredient}{amount}"))
        return sorted(out, key=lambda d: d.time)
    meds = {f"Medication/{r['id']}": r for r in resources
            if r.get("resourceType") == "Medication" and isinstance(r.get("id"), str)}
    for res in resources:
        if res.get("resourceType") != "MedicationAdministration" \
                or res.get("status") not in ("completed", "in-progress"):
            continue
        if not _mine(res, assessment.inputs.patient_id):
            continue
        period = res.get("effectivePeriod") if isinstance(res.get("effectivePeriod"), dict) else {}
        when = parse_datetime(res.get("effectiveDateTime") or period.get("start"))
        if when is None or not (start <= when <= now):
            continue
        found = [name for name, cls in ingredients_of(medication_codings(res, meds), codes)
                 if cls in ANTICOAGULANT_CLASSES]
        if not found:
            continue
        dose = (res.get("dosage") or {}).get("dose") if isinstance(res.get("dosage"), dict) else None
        amount = ""
        if isinstance(dose, dict) and isinstance(dose.get("value"), (int, float)):
            amount = " " + reported_text(float(dose["value"]), dose.get("unit") or dose.get("code"))
        out.append(Dose(when.astimezone(timezone.utc), f"{found[0]}{amount}"))
    return sorted(out, key=lambda d: d.time)
