"""FHIR resources -> `PatientInputs` (fhir-data-requirements.md, all sections).

The same extraction serves prefetch, self-fetched results and `cds-service assess`.
What it applies, so that logic/ never sees FHIR:

- Patient scope: a resource whose subject/patient points to another Patient (or to
  anything that is not a Patient) is ignored; a missing subject is accepted.
- Status: Observations final/amended/corrected; anything entered-in-error, and
  Conditions/AllergyIntolerances verified refuted/entered-in-error, are ignored.
- Time: effectiveDateTime > effectivePeriod.end > .start > effectiveInstant > issued.
  Values more than window.future_tolerance_minutes after `now`, or older than their
  window (window.* keys; the edge itself is inside), are skipped.
- Choice: the most recent valid value per input; ties go to the later `issued`, then to
  the one listed later. Panel components count as the input they code, with the panel's
  time and status. A candidate that fails R4B validation, has an unaccepted unit or an
  absurd value is skipped (the next one is used) and the reason kept in `rejected`.
- Units (units.py), comparators (kept as bounds), referenceRange (D-dimer ULN, PT upper
  limit: untyped or normal, no foreign appliesTo, unit inherited from the value).
- P/F: a recorded 50984-4 in the window, else the latest PaO2 paired with the FiO2
  nearest in time within bloodgas.fio2_pairing_minutes.
- Conditions (§6), AllergyIntolerance (§7), Procedures and oxygen Observations (§4),
  vasoactives (§5), active orders (§8, via orders.py).

Flags (covid19, active_bleeding, ...) are a `Flag(present=True)` with their evidence when
a record supports them and None when none does; `pregnancy` is `Flag(present=False)` when
the latest source says not pregnant.

Only the resources whose values are used are validated with fhir.resources R4B models.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from importlib import import_module
from typing import Any, Iterable, Mapping

from ..logic.inputs import (DDimer, Flag, Measurement, MedicationOrder, PatientInputs,
                            ProthrombinTime, RecordedSofa, RespiratorySupport, Vasoactive)
from ..logic.policy import Policy
from .codes import CodeSet, Codes, Coding, load_codes
from .orders import (first_dosage, ingredients_of, is_current_order, medication_codings,
                     normalise_orders)
from .read import aware, codings, concept_codes, number, parse_date, parse_datetime, reference_target
from .units import RATE_ABSOLUTE, RATE_PER_KG, TABLES, UCUM, UnitError, convert, read_unit

log = logging.getLogger(__name__)

OBSERVATION_OK = frozenset({"final", "amended", "corrected"})
VERIFICATION_IGNORED = frozenset({"refuted", "entered-in-error"})
ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})
PROCEDURE_CURRENT, PROCEDURE_DONE = "in-progress", frozenset({"completed", "stopped"})
MODALITY_RANK = ("IMV", "NIV", "CPAP", "HFNC", "low-flow")


@dataclass(frozen=True)
class ObsSpec:
    """How one codes.json observation key is read: the input it fills, its unit table
    (None: a coded/no-value observation) and its window policy key."""

    input: str
    table: str | None
    window: str


# codes.json observation key -> spec. Keys an institution adds without a spec are ignored.
OBS_SPECS: dict[str, ObsSpec] = {
    "d_dimer_feu": ObsSpec("d_dimer", "d_dimer", "window.labs_hours"),
    "d_dimer_ddu": ObsSpec("d_dimer", "d_dimer", "window.labs_hours"),
    "d_dimer_unspecified": ObsSpec("d_dimer", "d_dimer", "window.labs_hours"),
    "platelets": ObsSpec("platelets", "platelets", "window.labs_hours"),
    "inr": ObsSpec("inr", "inr", "window.labs_hours"),
    "pt_seconds": ObsSpec("pt", "pt", "window.labs_hours"),
    "pt_normal_control": ObsSpec("pt_normal_control", "pt", "window.labs_hours"),
    "fibrinogen": ObsSpec("fibrinogen", "fibrinogen", "window.labs_hours"),
    "creatinine_mass": ObsSpec("creatinine", "creatinine", "window.labs_hours"),
    "creatinine_moles": ObsSpec("creatinine", "creatinine", "window.labs_hours"),
    "bilirubin_mass": ObsSpec("bilirubin", "bilirubin", "window.labs_hours"),
    "bilirubin_moles": ObsSpec("bilirubin", "bilirubin", "window.labs_hours"),
    "hemoglobin_mass": ObsSpec("hemoglobin", "hemoglobin", "window.labs_hours"),
    "hemoglobin_moles": ObsSpec("hemoglobin", "hemoglobin", "window.labs_hours"),
    "anti_xa": ObsSpec("anti_xa", "anti_xa", "window.anti_xa_hours"),
    "pao2": ObsSpec("pao2", "pao2", "window.blood_gas_hours"),
    "fio2": ObsSpec("fio2", "fio2", "window.blood_gas_hours"),
    "pf_ratio": ObsSpec("pf_ratio", "pf_ratio", "window.blood_gas_hours"),
    "map": ObsSpec("map", "map", "window.vitals_hours"),
    "gcs": ObsSpec("gcs", "gcs", "window.vitals_hours"),
    "urine_24h": ObsSpec("urine_output_24h", "urine_output_24h", "window.urine_output_hours"),
    "urine_period": ObsSpec("urine_output_24h", "urine_output_24h", "window.urine_output_hours"),
    "sofa_total": ObsSpec("recorded_sofa.total", "sofa_total", "window.sofa_score_hours"),
    "sofa_respiratory": ObsSpec("recorded_sofa.respiratory", "sofa_subscore", "window.sofa_score_hours"),
    "sofa_coagulation": ObsSpec("recorded_sofa.coagulation", "sofa_subscore", "window.sofa_score_hours"),
    "sofa_hepatic": ObsSpec("recorded_sofa.hepatic", "sofa_subscore", "window.sofa_score_hours"),
    "sofa_cardiovascular": ObsSpec("recorded_sofa.cardiovascular", "sofa_subscore",
                                   "window.sofa_score_hours"),
    "sofa_cns": ObsSpec("recorded_sofa.cns", "sofa_subscore", "window.sofa_score_hours"),
    "sofa_renal": ObsSpec("recorded_sofa.renal", "sofa_subscore", "window.sofa_score_hours"),
    "room_air": ObsSpec("room_air", None, "window.respiratory_support_hours"),
    "on_oxygen": ObsSpec("on_oxygen", None, "window.respiratory_support_hours"),
    "weight": ObsSpec("weight", "weight", "window.weight_days"),
    "height": ObsSpec("height", "height", "window.height_days"),
    "bmi": ObsSpec("recorded_bmi", "recorded_bmi", "window.weight_days"),
    "pregnancy_status": ObsSpec("pregnancy_status", None, "window.pregnancy_status_days"),
}

# A bound is meaningless for these (a weight of "> 80 kg" cannot be dosed on).
NO_COMPARATOR = frozenset({"weight", "height", "recorded_bmi", "gcs", "fio2", "map",
                           "urine_output_24h"}) | {f"recorded_sofa.{k}" for k in
                                                   ("total", "respiratory", "coagulation", "hepatic",
                                                    "cardiovascular", "cns", "renal")}
# With sofa.value_selection = "worst_in_window": inputs used by SOFA alone take the worst
# value (platelets and creatinine also feed SIC/DIC/dosing and stay the latest).
WORST_LOW = frozenset({"pf_ratio", "map", "gcs", "urine_output_24h"})
WORST_HIGH = frozenset({"bilirubin"} | {f"recorded_sofa.{k}" for k in
                                        ("respiratory", "hepatic", "cardiovascular", "cns", "renal",
                                         "coagulation", "total")})

_MODELS = {
    "Observation": "observation", "Patient": "patient", "Condition": "condition",
    "AllergyIntolerance": "allergyintolerance", "Procedure": "procedure",
    "MedicationRequest": "medicationrequest", "MedicationAdministration": "medicationadministration",
    "Medication": "medication",
}


# --------------------------------------------------------------------------- codes


@dataclass(frozen=True)
class _Sets:
    obs_index: dict[Coding, tuple[str, ...]]
    basis: dict[str, str | None]
    obs_values: dict[str, CodeSet]
    conditions: dict[str, CodeSet]
    allergies: dict[str, CodeSet]
    procedures: dict[str, CodeSet]
    rr: dict[str, CodeSet]


@lru_cache(maxsize=8)
def _sets(codes: Codes) -> _Sets:
    index: dict[Coding, list[str]] = {}
    for key in codes.observation_keys():
        if key not in OBS_SPECS:
            continue
        for entry in codes.data["observations"][key]["codes"]:
            index.setdefault(codes.resolve(entry), []).append(key)
    return _Sets(
        obs_index={k: tuple(v) for k, v in index.items()},
        basis={"d_dimer_feu": "FEU", "d_dimer_ddu": "DDU"},
        obs_values=codes.section("observation_values"),
        conditions=codes.section("conditions"),
        allergies=codes.section("allergies"),
        procedures=codes.section("procedures"),
        rr=codes.section("reference_range") if "reference_range" in codes.data else {},
    )


# --------------------------------------------------------------------------- validation


@lru_cache(maxsize=None)
def _model(rtype: str) -> Any:
    module = _MODELS.get(rtype)
    return getattr(import_module(f"fhir.resources.R4B.{module}"), rtype) if module else None


def preload_models() -> None:
    """Import the R4B models used for validation (about 0.3 s once per process), so the
    first hook call does not pay for it. Call at app start-up."""
    for rtype in _MODELS:
        _model(rtype)


class _Validator:
    """R4B validation of used resources only, memoised per resource object."""

    def __init__(self) -> None:
        self._seen: dict[int, str | None] = {}

    def problem(self, resource: Mapping[str, Any]) -> str | None:
        key = id(resource)
        if key not in self._seen:
            self._seen[key] = self._check(resource)
        return self._seen[key]

    @staticmethod
    def _check(resource: Mapping[str, Any]) -> str | None:
        rtype = resource.get("resourceType")
        model = _model(rtype)  # type: ignore[arg-type]
        if model is None:
            return None
        try:
            model.model_validate(resource)
        except Exception as exc:  # pydantic.ValidationError, or anything a model raises
            errors = getattr(exc, "errors", None)
            if callable(errors):
                parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                         for e in errors()[:3]]
                reason = "; ".join(parts)
            else:
                reason = type(exc).__name__
            log.warning("dropped %s/%s: not valid FHIR R4B (%s)", rtype, resource.get("id"), reason)
            return f"not valid FHIR R4B ({reason})"
        return None


# --------------------------------------------------------------------------- helpers


def _source(resource: Mapping[str, Any]) -> str | None:
    rid = resource.get("id")
    return f"{resource.get('resourceType')}/{rid}" if isinstance(rid, str) else None


def observation_time(obs: Mapping[str, Any]) -> datetime | None:
    """Data requirements §1.1 step 2, first present wins."""
    period = obs.get("effectivePeriod") if isinstance(obs.get("effectivePeriod"), dict) else {}
    for raw in (obs.get("effectiveDateTime"), period.get("end"), period.get("start"),
                obs.get("effectiveInstant"), obs.get("issued")):
        if raw is not None:
            return parse_datetime(raw)
    return None


def _window(policy: Policy, key: str) -> timedelta | None:
    value = policy[key]
    if value is None:
        return None
    return timedelta(days=value) if key.endswith("_days") else timedelta(hours=value)


@dataclass
class _Candidate:
    key: str                      # codes.json observation key
    resource: dict
    holder: dict                  # the Observation or the component carrying the value
    time: datetime
    order: tuple[datetime, int, int]


@dataclass
class _Context:
    now: datetime
    policy: Policy
    codes: Codes
    sets: _Sets
    validator: _Validator
    sex: str | None = None
    age: int | None = None
    rejected: dict[str, str] = field(default_factory=dict)

    def in_window(self, time: datetime | None, window_key: str | None) -> bool:
        if time is None:
            return False
        if time > self.now + timedelta(minutes=self.policy["window.future_tolerance_minutes"]):
            return False
        span = _window(self.policy, window_key) if window_key else None
        return span is None or time >= self.now - span

    def reject(self, name: str, reason: str) -> None:
        self.rejected.setdefault(name, reason)


_MIN = datetime.min.replace(tzinfo=timezone.utc)   # sorts an absent `issued` first


# --------------------------------------------------------------------------- observations


def _collect(observations: list[tuple[int, dict]], ctx: _Context) -> dict[str, list[_Candidate]]:
    """Candidates per input, newest first, after status/code/time filters (cheap, no pydantic)."""
    index = ctx.sets.obs_index
    out: dict[str, list[_Candidate]] = {}
    for position, obs in observations:
        if obs.get("status") not in OBSERVATION_OK:
            continue
        holders: list[tuple[str, dict, int]] = []
        for coding in codings(obs.get("code")):
            for key in index.get(coding, ()):
                holders.append((key, obs, 0))
        for n, component in enumerate(obs.get("component") or (), start=1):
            if isinstance(component, dict):
                for coding in codings(component.get("code")):
                    for key in index.get(coding, ()):
                        holders.append((key, component, n))
        if not holders:
            continue
        time = observation_time(obs)
        issued = parse_datetime(obs.get("issued")) or _MIN
        seen: set[tuple[str, int]] = set()
        for key, holder, n in holders:
            if (key, n) in seen:
                continue
            seen.add((key, n))
            spec = OBS_SPECS[key]
            if not ctx.in_window(time, spec.window):
                continue
            if key == "urine_period" and not _spans_a_day(obs):
                continue
            out.setdefault(spec.input, []).append(
                _Candidate(key, obs, holder, time, (issued, position, n)))  # type: ignore[arg-type]
    for candidates in out.values():
        candidates.sort(key=lambda c: (c.time, c.order), reverse=True)
    return out


def _spans_a_day(obs: Mapping[str, Any]) -> bool:
    period = obs.get("effectivePeriod")
    if not isinstance(period, dict):
        return False
    start, end = parse_datetime(period.get("start")), parse_datetime(period.get("end"))
    return bool(start and end and end - start >= timedelta(hours=24))


@dataclass(frozen=True)
class _Value:
    candidate: _Candidate
    measurement: Measurement
    basis: str | None


def _values(name: str, candidates: list[_Candidate], ctx: _Context, *, record: bool = True):
    """Usable values of one input, in candidate order (newest first). The first problem met
    before the first usable value is recorded in ctx.rejected (with a note if an older value
    was then used), unless `record` is False."""
    problem: str | None = None
    for cand in candidates:
        reason = ctx.validator.problem(cand.resource)
        value = None
        if reason is None:
            try:
                value = _measure(name, cand)
            except UnitError as exc:
                reason = str(exc)
        if value is None:
            if reason and problem is None:
                problem = f"{_source(cand.resource) or 'Observation'} ({cand.time.isoformat()}): {reason}"
            continue
        if problem is not None and record:
            ctx.reject(name, problem + "; an older value was used")
        problem = ""
        yield value
    if problem and record:
        ctx.reject(name, problem)


def _measure(name: str, cand: _Candidate) -> _Value | None:
    holder = cand.holder
    if "valueQuantity" not in holder:
        return None  # dataAbsentReason, valueString, valueCodeableConcept: not a value
    spec = OBS_SPECS[cand.key]
    conv = convert(name, holder["valueQuantity"], table=TABLES[spec.table])  # type: ignore[index]
    if conv.comparator and name in NO_COMPARATOR:
        raise UnitError(f"{name}: a bound ({conv.comparator}) cannot be used")
    m = Measurement(value=conv.value, unit=conv.unit, time=cand.time, comparator=conv.comparator,
                    reported_value=conv.reported_value, reported_unit=conv.reported_unit,
                    source=_source(cand.resource))
    return _Value(cand, m, conv.basis)


def _pick(name: str, candidates: list[_Candidate], ctx: _Context) -> _Value | None:
    worst = ctx.policy["sofa.value_selection"] == "worst_in_window" and name in WORST_LOW | WORST_HIGH
    if not worst:
        return next(_values(name, candidates, ctx), None)
    values = list(_values(name, candidates, ctx))
    if not values:
        return None
    sign = -1 if name in WORST_LOW else 1
    # Newest first already; max() keeps the first (newest) among equals.
    return max(values, key=lambda v: sign * v.measurement.value)


def _reference_high(holder: Mapping[str, Any], name: str, value_quantity: Mapping[str, Any],
                    ctx: _Context) -> float | None:
    """referenceRange.high in the canonical unit (data requirements §1.1 step 7)."""
    rr = ctx.sets.rr
    for entry in holder.get("referenceRange") or ():
        if not isinstance(entry, dict) or not isinstance(entry.get("high"), dict):
            continue
        if "type" in entry and not rr.get("normal", CodeSet(frozenset())).matches_any(
                codings(entry.get("type"))):
            continue
        if not _applies_to_patient(entry, ctx):
            continue
        high = dict(entry["high"])
        if not any(isinstance(high.get(k), str) and high.get(k).strip() for k in ("unit", "code")):
            for k in ("unit", "system", "code"):   # a range without a unit takes the value's
                if k in value_quantity:
                    high[k] = value_quantity[k]
        try:
            value = convert(name, high).value
        except UnitError:
            continue
        if value > 0:
            return value
    return None


def _applies_to_patient(entry: Mapping[str, Any], ctx: _Context) -> bool:
    rr = ctx.sets.rr
    for concept in entry.get("appliesTo") or ():
        found = list(codings(concept))
        own = {"male": "applies_male", "female": "applies_female"}.get(ctx.sex or "")
        if not (own and own in rr and rr[own].matches_any(found)):
            return False
    age = entry.get("age")
    if isinstance(age, dict):
        if ctx.age is None:
            return False
        low = number((age.get("low") or {}).get("value"))
        high = number((age.get("high") or {}).get("value"))
        if (low is not None and ctx.age < low) or (high is not None and ctx.age > high):
            return False
    return True


def _observations(cands: dict[str, list[_Candidate]], ctx: _Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    simple = ("platelets", "inr", "fibrinogen", "creatinine", "bilirubin", "hemoglobin", "anti_xa",
              "map", "gcs", "urine_output_24h", "weight", "height", "recorded_bmi")
    for name in simple:
        picked = _pick(name, cands.get(name, []), ctx)
        if picked:
            out[name] = picked.measurement

    picked = _pick("d_dimer", cands.get("d_dimer", []), ctx)
    if picked:
        cand = picked.candidate
        out["d_dimer"] = DDimer(
            value=picked.measurement, basis_from_code=ctx.sets.basis.get(cand.key),
            basis_from_unit=picked.basis,  # type: ignore[arg-type]
            reference_high_mg_l=_reference_high(cand.holder, "d_dimer", cand.holder["valueQuantity"], ctx))

    picked = _pick("pt", cands.get("pt", []), ctx)
    if picked:
        control = _pick("pt_normal_control", cands.get("pt_normal_control", []), ctx)
        out["pt"] = ProthrombinTime(
            seconds=picked.measurement,
            reference_high_s=_reference_high(picked.candidate.holder, "pt",
                                             picked.candidate.holder["valueQuantity"], ctx),
            normal_control_s=control.measurement.value if control else None)

    out.update(_blood_gas(cands, ctx))
    sofa = {}
    for organ in ("respiratory", "cardiovascular", "hepatic", "renal", "coagulation", "cns", "total"):
        picked = _pick(f"recorded_sofa.{organ}", cands.get(f"recorded_sofa.{organ}", []), ctx)
        if picked:
            sofa[organ] = picked.measurement
    out["recorded_sofa"] = RecordedSofa(**sofa)
    return out


def _blood_gas(cands: dict[str, list[_Candidate]], ctx: _Context) -> dict[str, Any]:
    """pao2/fio2 (latest, for display) and pf_ratio: recorded, else the latest PaO2 paired with
    the nearest FiO2 within bloodgas.fio2_pairing_minutes. Lazy: only the FiO2s near a PaO2
    are validated, so hourly bedside data stay cheap."""
    out: dict[str, Any] = {}
    fio2_cands = cands.get("fio2", [])
    latest_fio2 = next(_values("fio2", fio2_cands, ctx), None)
    if latest_fio2:
        out["fio2"] = latest_fio2.measurement
    pf = _pick("pf_ratio", cands.get("pf_ratio", []), ctx)
    gap = timedelta(minutes=ctx.policy["bloodgas.fio2_pairing_minutes"])
    for pao2 in _values("pao2", cands.get("pao2", []), ctx):
        out.setdefault("pao2", pao2.measurement)
        if pf:
            break
        if pao2.measurement.comparator:
            continue
        t = pao2.candidate.time
        # Nearest in time; among equals the newer (candidates are newest first; sort is stable).
        near = sorted((c for c in fio2_cands if abs(c.time - t) <= gap), key=lambda c: abs(c.time - t))
        fio2 = next(_values("fio2", near, ctx, record=False), None)
        if fio2 is None:
            continue
        p, f = pao2.measurement, fio2.measurement
        out["pao2"], out["fio2"] = p, f
        out["pf_ratio"] = Measurement(value=p.value / f.value, unit="mm[Hg]", time=p.time, source=p.source)
        return out
    if pf:
        out["pf_ratio"] = pf.measurement
    elif "pao2" in out and "fio2" in out:
        ctx.reject("pf_ratio", "no FiO2 within bloodgas.fio2_pairing_minutes of a usable PaO2")
    return out


# --------------------------------------------------------------------------- patient


def _age(birth: Any, now: datetime) -> int | None:
    born = parse_date(birth)
    if born is None:
        return None
    today = now.date()
    years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return years if years >= 0 else None


# --------------------------------------------------------------------------- conditions, allergies


def _clinical(resource: Mapping[str, Any]) -> set[str]:
    return concept_codes(resource.get("clinicalStatus"))


def _first_time(*values: Any) -> datetime | None:
    for value in values:
        dt = parse_datetime(value)
        if dt is not None:
            return dt
    return None


def _period_time(resource: Mapping[str, Any], prefix: str) -> tuple[bool, datetime | None]:
    """(present, time) of onset[x]/abatement[x]: the DateTime, else the Period's end or start."""
    present = any(k.startswith(prefix) for k in resource)
    period = resource.get(f"{prefix}Period") if isinstance(resource.get(f"{prefix}Period"), dict) else {}
    return present, _first_time(resource.get(f"{prefix}DateTime"), period.get("end"), period.get("start"))


def _flag_update(flags: dict[str, Flag], name: str, source: str | None, time: datetime | None) -> None:
    """Keep the most recent evidence for a flag (undated evidence loses to dated)."""
    current = flags.get(name)
    if current is None or (time is not None and (current.time is None or time > current.time)):
        flags[name] = Flag(present=True, source=source, time=time)


def _hit_in_lookback(time: datetime | None, ctx: _Context) -> bool:
    days = ctx.policy["safety.hit_lookback_days"]
    # Unknown onset counts: HIT history is a safety stop.
    return days is None or time is None or time >= ctx.now - timedelta(days=days)


def _conditions(conditions: list[dict], ctx: _Context,
                flags: dict[str, Flag]) -> tuple[Flag | None, datetime | None]:
    """Condition flags (§6). Returns the latest active pregnancy Condition as a Flag and its
    time (_MIN when undated), for the tie-break with the 82810-3 Observation."""
    sets = ctx.sets.conditions
    recent_days = timedelta(days=ctx.policy["safety.recent_bleeding_days"])
    pregnancy: Flag | None = None
    pregnancy_time: datetime | None = None
    for cond in conditions:
        if concept_codes(cond.get("verificationStatus")) & VERIFICATION_IGNORED:
            continue
        found = list(codings(cond.get("code")))
        matched = [name for name, cs in sets.items() if cs.matches_any(found)]
        if not matched or ctx.validator.problem(cond):
            continue
        status = _clinical(cond)
        active = bool(status & ACTIVE_CLINICAL)
        _, onset = _period_time(cond, "onset")
        abated, abatement = _period_time(cond, "abatement")
        recorded = parse_datetime(cond.get("recordedDate"))
        when = onset or recorded
        src = _source(cond)
        if "covid19" in matched and active:
            _flag_update(flags, "covid19", src, when)
        if "bleeding" in matched:
            past_abatement = abated and (abatement is None or abatement <= ctx.now)
            if active and not past_abatement:
                _flag_update(flags, "active_bleeding", src, when)
            else:
                ref = abatement or onset or recorded
                if ref is not None and ref >= ctx.now - recent_days:
                    _flag_update(flags, "recent_bleeding", src, ref)
        if "bleeding_disorder" in matched and (active or not status):
            _flag_update(flags, "bleeding_disorder", src, when)
        if "hit" in matched and _hit_in_lookback(when, ctx):
            _flag_update(flags, "hit_history", src, when)
        if "pregnancy" in matched and active:
            t = recorded or onset or _MIN
            if pregnancy_time is None or t > pregnancy_time:
                pregnancy_time = t
                pregnancy = Flag(True, src, recorded or onset)
    return pregnancy, pregnancy_time


def _allergies(allergies: list[dict], ctx: _Context, flags: dict[str, Flag]) -> None:
    sets = ctx.sets.allergies
    for allergy in allergies:
        if concept_codes(allergy.get("verificationStatus")) & VERIFICATION_IGNORED:
            continue
        heparin = sets["heparin_allergy"].matches_any(codings(allergy.get("code")))
        reactions = [r for r in allergy.get("reaction") or () if isinstance(r, dict)]
        hit = any(sets["hit_reaction"].matches_any(codings(m))
                  for r in reactions for m in r.get("manifestation") or ())
        if not (heparin or hit) or ctx.validator.problem(allergy):
            continue
        status = _clinical(allergy)
        src = _source(allergy)
        when = _first_time(allergy.get("onsetDateTime"), allergy.get("recordedDate"))
        if heparin and (not status or "active" in status):
            _flag_update(flags, "heparin_allergy", src, when)
        if hit:
            onset = _first_time(*(r.get("onset") for r in reactions)) or when
            if _hit_in_lookback(onset, ctx):
                _flag_update(flags, "hit_history", src, onset)


def _pregnancy_observation(cands: list[_Candidate], ctx: _Context) -> tuple[bool, _Candidate] | None:
    values = ctx.sets.obs_values
    for cand in cands:   # newest first
        found = list(codings(cand.holder.get("valueCodeableConcept")))
        if values["pregnant"].matches_any(found):
            answer = True
        elif values["not_pregnant"].matches_any(found):
            answer = False
        else:
            continue    # unknown / unmapped answers say nothing
        if ctx.validator.problem(cand.resource):
            continue
        return answer, cand
    return None


def _pregnancy(cands: list[_Candidate], condition: Flag | None, condition_time: datetime | None,
               ctx: _Context) -> Flag | None:
    """The later of the active pregnancy Condition and the latest 82810-3 answer wins (§6)."""
    observed = _pregnancy_observation(cands, ctx)
    if observed and (condition_time is None or observed[1].time >= condition_time):
        answer, cand = observed
        return Flag(present=answer, source=_source(cand.resource), time=cand.time)
    return condition


# --------------------------------------------------------------------------- respiratory support


def _procedure_modalities(proc: Mapping[str, Any], sets: dict[str, CodeSet]) -> tuple[set[str], bool, bool]:
    """(modalities, ecmo, vasopressor therapy) named by one Procedure's codes (§4)."""
    found = list(codings(proc.get("code")))
    mods: set[str] = set()
    for name in ("IMV", "NIV", "CPAP", "HFNC"):
        if sets[name].matches_any(found):
            mods.add(name)
    if sets["nasal_cannula"].matches_any(found) and any(
            sets["HFNC_device"].matches_any(codings(c)) for c in proc.get("usedCode") or ()):
        mods.add("HFNC")
    elif sets["low_flow"].matches_any(found):
        mods.add("low-flow")
    specific = bool(mods) or sets["ECMO"].matches_any(found) or sets["vasopressor_therapy"].matches_any(found)
    if sets["IMV_generic"].matches_any(found) and not specific:
        mods.add("IMV")
    return mods, sets["ECMO"].matches_any(found), sets["vasopressor_therapy"].matches_any(found)


def _respiratory(procedures: list[dict], cands: dict[str, list[_Candidate]], fio2: Measurement | None,
                 ctx: _Context) -> RespiratorySupport:
    sets = ctx.sets.procedures
    current, done = [], []
    for proc in procedures:
        status = proc.get("status")
        if status != PROCEDURE_CURRENT and status not in PROCEDURE_DONE:
            continue
        mods, ecmo, vaso = _procedure_modalities(proc, sets)
        if not (mods or ecmo or vaso):
            continue
        period = proc.get("performedPeriod") if isinstance(proc.get("performedPeriod"), dict) else {}
        if status == PROCEDURE_CURRENT:
            start = _first_time(proc.get("performedDateTime"), period.get("start"))
            if start is not None and not ctx.in_window(start, None):
                continue   # starts in the future
            bucket = current
        else:
            end = _first_time(period.get("end"), proc.get("performedDateTime"))
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
        if _source(proc):
            sources.append(_source(proc))  # type: ignore[arg-type]
    room_air = False
    for name in ("on_oxygen", "room_air"):
        for cand in cands.get(name, []):
            if cand.holder.get("valueBoolean") is False or ctx.validator.problem(cand.resource):
                continue
            if name == "on_oxygen":
                modalities.add("low-flow")
            else:
                room_air = True
            if _source(cand.resource):
                sources.append(_source(cand.resource))  # type: ignore[arg-type]
            break
    has_support_procedure = any(m for _, m, _, _ in current or done)
    if fio2 is not None and not has_support_procedure and fio2.comparator is None \
            and round(fio2.value, 6) <= 0.21:
        room_air = True
        if fio2.source:
            sources.append(fio2.source)
    return RespiratorySupport(modalities=frozenset(modalities), ecmo=ecmo, vasopressor_procedure=vaso,
                              room_air_documented=room_air, sources=tuple(sources))


# --------------------------------------------------------------------------- vasoactives


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


def _vasoactives(admins: list[dict], requests: list[dict], medications: Mapping[str, dict],
                 weight: Measurement | None, ctx: _Context) -> tuple[Vasoactive, ...]:
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
        start = _first_time(period.get("start"), admin.get("effectiveDateTime") if status == "in-progress" else None)
        if status == "completed":
            end = _first_time(period.get("end"), admin.get("effectiveDateTime"))
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
            ctx.reject(f"vasoactive.{name}", f"{_source(admin)}: {problem}")
        records.append((name, rate, meets, _source(admin)))

    for request in requests:
        if request.get("doNotPerform") is True or request.get("intent") in ("proposal", "plan"):
            continue
        name = ingredient(request)
        if name is None:
            continue
        rated = [dr for d in request.get("dosageInstruction") or () if isinstance(d, dict)
                 for dr in d.get("doseAndRate") or ()
                 if isinstance(dr, dict) and (isinstance(dr.get("rateQuantity"), dict)
                                              or isinstance(dr.get("rateRatio"), dict))]
        if not rated or ctx.validator.problem(request):
            continue
        dosage = first_dosage(request) or {}
        timing = dosage.get("timing") if isinstance(dosage.get("timing"), dict) else {}
        bounds = (timing.get("repeat") or {}).get("boundsPeriod") if isinstance(timing.get("repeat"), dict) else None
        start = _first_time((bounds or {}).get("start") if isinstance(bounds, dict) else None,
                            request.get("authoredOn"))
        meets = start is None or ctx.now - start >= min_minutes
        best: float | None = None
        for dr in rated:
            rate, problem = _rate(dr, weight)
            if rate is None:
                ctx.reject(f"vasoactive.{name}", f"{_source(request)}: {problem}")
            elif best is None or rate > best:
                best = rate
        records.append((name, best, meets, _source(request)))

    merged: dict[str, Vasoactive] = {}
    for name in dict.fromkeys(r[0] for r in records):
        mine = [r for r in records if r[0] == name]
        pool = [r for r in mine if r[2]] or mine   # records that ran long enough count first
        rated = [r for r in pool if r[1] is not None]
        best = max(rated, key=lambda r: r[1]) if rated else pool[0]
        merged[name] = Vasoactive(ingredient=name, rate_ug_kg_min=best[1],  # type: ignore[arg-type]
                                  meets_min_duration=best[2], source=best[3])
    return tuple(merged.values())


# --------------------------------------------------------------------------- scope and entry point


class _Scope:
    """Which resources belong to the patient (data requirements §1 'Patient scope')."""

    def __init__(self, patient_id: str | None, aliases: Mapping[str, str]):
        self.patient_id = patient_id
        self.aliases = aliases

    def target(self, reference: Any) -> tuple[str | None, str | None]:
        if isinstance(reference, dict) and isinstance(reference.get("reference"), str) \
                and reference["reference"] in self.aliases:
            reference = {"reference": self.aliases[reference["reference"]]}
        return reference_target(reference)

    def accepts(self, resource: Mapping[str, Any]) -> bool:
        ref = resource.get("patient") if resource.get("resourceType") == "AllergyIntolerance" \
            else resource.get("subject")
        if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
            return True   # missing subject (or identifier only): the Bundle is one patient's
        rtype, rid = self.target(ref)
        if rtype != "Patient":
            return False
        return self.patient_id is None or rid == self.patient_id


def extract_inputs(resources: Iterable[dict], *, now: datetime, policy: Policy,
                   codes: Codes | None = None, patient_id: str | None = None,
                   aliases: Mapping[str, str] | None = None,
                   medications: Mapping[str, dict] | None = None) -> PatientInputs:
    """Normalise one patient's FHIR resources (dicts) to `PatientInputs`.

    `patient_id`: the patient (hooks: context.patientId); default the first Patient given.
    `aliases`: literal references (e.g. a Bundle entry's `urn:uuid:` fullUrl) -> "Type/id".
    `medications`: extra Medication resources keyed by "Medication/<id>" or fullUrl, for
    medicationReference targets not among `resources` (e.g. fetched separately).
    Never raises on data: unusable resources are skipped and the reasons kept in `rejected`.
    """
    now = aware(now)
    codes = codes or load_codes(policy["codes.extra_file"])
    aliases = dict(aliases or {})
    by_type: dict[str, list[tuple[int, dict]]] = {}
    for position, resource in enumerate(resources):
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            by_type.setdefault(resource["resourceType"], []).append((position, resource))

    ctx = _Context(now=now, policy=policy, codes=codes, sets=_sets(codes), validator=_Validator())

    patients = [r for _, r in by_type.get("Patient", [])]
    if patient_id is None and patients and isinstance(patients[0].get("id"), str):
        patient_id = patients[0]["id"]
    patient = next((p for p in patients if p.get("id") == patient_id), None)
    if patient is not None and ctx.validator.problem(patient):
        ctx.reject("patient", f"Patient/{patient_id}: {ctx.validator.problem(patient)}")
        patient = None
    birth = patient.get("birthDate") if patient else None
    ctx.age = _age(birth, now)
    gender = patient.get("gender") if patient else None
    ctx.sex = gender if gender in ("male", "female") else None

    scope = _Scope(patient_id, aliases)

    def mine(rtype: str) -> list[tuple[int, dict]]:
        kept = []
        for position, resource in by_type.get(rtype, []):
            if resource.get("status") == "entered-in-error" or not scope.accepts(resource):
                continue
            kept.append((position, resource))
        return kept

    meds: dict[str, dict] = dict(medications or {})
    for _, med in by_type.get("Medication", []):
        if isinstance(med.get("id"), str):
            meds.setdefault(f"Medication/{med['id']}", med)
    for literal, target in aliases.items():
        if target in meds:
            meds.setdefault(literal, meds[target])

    cands = _collect(mine("Observation"), ctx)
    values = _observations(cands, ctx)

    flags: dict[str, Flag] = {}
    pregnant_condition, pregnant_since = _conditions([r for _, r in mine("Condition")], ctx, flags)
    _allergies([r for _, r in mine("AllergyIntolerance")], ctx, flags)
    pregnancy = _pregnancy(cands.get("pregnancy_status", []), pregnant_condition, pregnant_since, ctx)

    respiratory = _respiratory([r for _, r in mine("Procedure")], cands, values.get("fio2"), ctx)

    requests = [r for _, r in mine("MedicationRequest")]
    active = [r for r in requests if is_current_order(r)]
    vasoactives = _vasoactives([r for _, r in mine("MedicationAdministration")], active, meds,
                               values.get("weight"), ctx)
    orders: list[MedicationOrder] = []
    for request in active:
        found = normalise_orders(request, codes, meds)
        if found and not ctx.validator.problem(request):
            orders.extend(found)

    return PatientInputs(
        now=now, patient_id=patient_id, age_years=ctx.age, sex=ctx.sex,  # type: ignore[arg-type]
        birth_date=birth if isinstance(birth, str) else None,
        **values, vasoactives=vasoactives, respiratory=respiratory,
        covid19=flags.get("covid19"), active_bleeding=flags.get("active_bleeding"),
        recent_bleeding=flags.get("recent_bleeding"), bleeding_disorder=flags.get("bleeding_disorder"),
        hit_history=flags.get("hit_history"), heparin_allergy=flags.get("heparin_allergy"),
        pregnancy=pregnancy, orders=tuple(orders), rejected=ctx.rejected)

