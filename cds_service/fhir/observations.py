"""Observations -> measurements (data requirements §1.1, §3): candidates, choice, units,
referenceRange, P/F pairing."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from ..logic.inputs import DDimer, Measurement, ProthrombinTime, RecordedSofa
from .codes import CodeSet
from .context import (MIN_TIME, OBS_SPECS, OBSERVATION_OK, SARS_COV_2, Candidate, Context, source_of,
                      window_span)
from .read import codings, items, number, parse_datetime
from .typed import TypedObservation
from .units import TABLES, UnitError, convert

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


def observation_time(obs: Mapping[str, Any]) -> datetime | None:
    """Data requirements §1.1 step 2, first present wins."""
    period = obs.get("effectivePeriod") if isinstance(obs.get("effectivePeriod"), dict) else {}
    return _first_time((obs.get("effectiveDateTime"), period.get("end"), period.get("start"),
                        obs.get("effectiveInstant"), obs.get("issued")))


def _first_time(raws: tuple) -> datetime | None:
    """The first present of the §1.1 step 2 times, parsed (raw dict and typed reads share it)."""
    for raw in raws:
        if raw is not None:
            return parse_datetime(raw)
    return None


# v2 series (observations.series): output name -> the codes.json keys it reads.
SERIES_KEYS = {"platelets": ("platelets",), "creatinine": ("creatinine_mass", "creatinine_moles")}
SERIES_OF = {key: name for name, keys in SERIES_KEYS.items() for key in keys}


class Collected(dict):
    """What the single pass over the Observations keeps: per input, its candidates in their
    window, newest first (the dict itself); per v2 series, the first matching holder of each
    Observation within the series span, in Observation order (`series`); and the
    SARS-CoV-2 tests in scope.covid_test_days as (Observation, holders, time) (`covid`)."""

    series: dict[str, list[Candidate]]
    covid: list[tuple[dict, list[dict], datetime]]


def _dict_holders(holders: list[tuple[str, int]], index: Mapping[tuple[str, str], Any],
                  concept: Any, n: int) -> None:
    """Append (key, n) for every codes.json key whose (system, code) is one of the codings of
    `concept` (a CodeableConcept JSON object; anything else matches nothing)."""
    if type(concept) is dict and type(coding_list := concept.get("coding")) is list:
        for coding in coding_list:
            if type(coding) is dict:
                system, value = coding.get("system"), coding.get("code")
                if type(system) is str and type(value) is str:
                    keys = index.get((system, value))
                    if keys:
                        holders.extend((key, n) for key in keys)


def _typed_holders(holders: list[tuple[str, int]], index: Mapping[tuple[str, str], Any],
                   concept: Any, n: int) -> None:
    """_dict_holders for a typed.ObservationHead's concept (str or None leaves; the index
    holds (str, str) keys only, so a None system or code matches nothing)."""
    if concept is not None and concept.coding is not None:
        for coding in concept.coding:
            keys = index.get((coding.system, coding.code))
            if keys:
                holders.extend((key, n) for key in keys)


def _holder(resource: dict, n: int) -> dict:
    return resource if n == 0 else resource["component"][n - 1]


def collect(observations: list[tuple[int, Any]], ctx: Context, scope: Callable[[str], bool] | None = None,
            series_spans: Mapping[str, timedelta] | None = None,
            covid_span: timedelta | None = None) -> Collected:
    """ONE pass over the Observations (issue 15; fused in issue 25): status filter, patient
    scope (`scope`: the verdict on a subject's literal reference; a missing one is accepted),
    codes matched through the precomputed (system, code) -> keys index, the time parsed once
    per Observation (`issued` only once a holder is in a window). Candidates only for matching
    holders; nothing is validated here (see usable_values). An Observation is a JSON dict or a
    typed.TypedObservation (its head read here, its dict decoded only if a candidate is used)."""
    index = ctx.sets.obs_index
    specs = OBS_SPECS
    out = Collected()
    series_spans = series_spans or {}
    series_out: dict[str, list[Candidate]] = {name: [] for name in series_spans}
    covid: list[tuple[dict, list[dict], datetime]] = []
    latest = ctx.now + timedelta(minutes=ctx.policy["window.future_tolerance_minutes"])
    series_from = {name: ctx.now - span for name, span in series_spans.items()}
    covid_from = ctx.now - covid_span if covid_span is not None else None
    # Each window's earliest time, once per call (the same bounds as Context.in_window).
    window_from = {}
    for spec in specs.values():
        if spec.window not in window_from:
            span = window_span(ctx.policy, spec.window)
            window_from[spec.window] = None if span is None else ctx.now - span
    verdicts: dict[str, bool] = {}
    # Times by their text, once per call: a panel's results, and series sampled together, share one.
    times: dict[str, datetime | None] = {}
    for position, obs in observations:
        typed = type(obs) is TypedObservation
        if typed:
            head = obs.head
            status = head.status
            subject = head.subject
            literal = subject.reference if subject is not None else None
        else:
            status = obs.get("status")
            ref = obs.get("subject")
            literal = ref.get("reference") if type(ref) is dict else None
        if type(status) is not str or status not in OBSERVATION_OK:
            continue
        if scope is not None and type(literal) is str:
            verdict = verdicts.get(literal)
            if verdict is None:
                verdict = verdicts[literal] = scope(literal)
            if not verdict:
                continue
        holders: list[tuple[str, int]] = []
        if typed:
            _typed_holders(holders, index, head.code, 0)
            if head.component is not None:
                for n, component in enumerate(head.component, start=1):
                    _typed_holders(holders, index, component.code, n)
            if not holders:
                continue
            raw = head.effectiveDateTime
            if raw is None:
                time = _head_time(head)
            else:
                time = times.get(raw, _UNPARSED)
                if time is _UNPARSED:
                    time = times[raw] = parse_datetime(raw)
        else:
            _dict_holders(holders, index, obs.get("code"), 0)
            components = obs.get("component")
            if type(components) is list:
                for n, component in enumerate(components, start=1):
                    if type(component) is dict:
                        _dict_holders(holders, index, component.get("code"), n)
            if not holders:
                continue
            raw = obs.get("effectiveDateTime")
            time = parse_datetime(raw) if raw is not None else observation_time(obs)
        if time is None:
            continue
        issued: datetime | None = None  # a tie-breaker only: parsed once a holder is in window
        seen: set[tuple[str, int]] | None = set() if len(holders) > 1 else None
        covid_holders: list[int] | None = None
        first_series: dict[str, tuple[str, int]] | None = None
        for key, n in holders:
            name = SERIES_OF.get(key)
            if name is not None and name in series_from:
                # The first holder: the Observation's own code before its components.
                if first_series is None:
                    first_series = {}
                first_series.setdefault(name, (key, n))
            if seen is not None:
                if (key, n) in seen:
                    continue
                seen.add((key, n))
            spec = specs.get(key)
            if spec is None:
                if key == SARS_COV_2 and covid_from is not None:
                    if covid_holders is None:
                        covid_holders = []
                    covid_holders.append(n)   # (key, n) is seen once: each holder once
                continue
            earliest = window_from[spec.window]
            if time > latest or (earliest is not None and time < earliest):
                continue
            if key == "urine_period" and not (_head_spans_a_day(head) if typed else _spans_a_day(obs)):
                continue
            if issued is None:
                raw = head.issued if typed else obs.get("issued")
                if type(raw) is str:
                    issued = times.get(raw, _UNPARSED)
                    if issued is _UNPARSED:
                        issued = times[raw] = parse_datetime(raw)
                    issued = issued or MIN_TIME
                else:
                    issued = parse_datetime(raw) or MIN_TIME
            out.setdefault(spec.input, []).append(Candidate(key, obs, None, time, (issued, position, n)))
        if first_series is not None:
            for name, (key, n) in first_series.items():
                if series_from[name] <= time <= latest:
                    series_out[name].append(Candidate(key, obs, None, time, (MIN_TIME, position, n)))
        if covid_holders and covid_from <= time <= latest:  # type: ignore[operator]
            resource = obs.resource if typed else obs
            covid.append((resource, [_holder(resource, n) for n in covid_holders], time))
    for candidates in out.values():
        if len(candidates) > 1:
            candidates.sort(key=_newest, reverse=True)
    out.series = series_out
    out.covid = covid
    return out


_UNPARSED: Any = object()


def _head_time(head: Any) -> datetime | None:
    """observation_time of a typed.ObservationHead."""
    period = head.effectivePeriod
    return _first_time((head.effectiveDateTime, period.end if period is not None else None,
                        period.start if period is not None else None, head.effectiveInstant, head.issued))


def _head_spans_a_day(head: Any) -> bool:
    """_spans_a_day of a typed.ObservationHead."""
    period = head.effectivePeriod
    if period is None:
        return False
    return _period_spans_a_day(period.start, period.end)


def _newest(c: Candidate) -> tuple:
    return (c.time, c.order)


def _spans_a_day(obs: Mapping[str, Any]) -> bool:
    period = obs.get("effectivePeriod")
    if not isinstance(period, dict):
        return False
    return _period_spans_a_day(period.get("start"), period.get("end"))


def _period_spans_a_day(start_raw: Any, end_raw: Any) -> bool:
    """A collection period of 24 h or more (a 24-h urine), for the raw and the typed read alike."""
    start, end = parse_datetime(start_raw), parse_datetime(end_raw)
    return bool(start and end and end - start >= timedelta(hours=24))


@dataclass(frozen=True)
class _Value:
    candidate: Candidate
    measurement: Measurement
    basis: str | None


def usable_values(name: str, candidates: list[Candidate], ctx: Context, *, record: bool = True):
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
                problem = f"{source_of(cand.resource) or 'Observation'} ({cand.time.isoformat()}): {reason}"
            continue
        if problem is not None and record:
            ctx.reject(name, problem + "; an older value was used")
        problem = ""
        yield value
    if problem and record:
        ctx.reject(name, problem)


def _measure(name: str, cand: Candidate) -> _Value | None:
    holder = cand.holder
    if "valueQuantity" not in holder:
        return None  # dataAbsentReason, valueString, valueCodeableConcept: not a value
    spec = OBS_SPECS[cand.key]
    conv = convert(name, holder["valueQuantity"], table=TABLES[spec.table])  # type: ignore[index]
    if conv.comparator and name in NO_COMPARATOR:
        raise UnitError(f"{name}: a bound ({conv.comparator}) cannot be used")
    m = Measurement(value=conv.value, unit=conv.unit, time=cand.time, comparator=conv.comparator,
                    reported_value=conv.reported_value, reported_unit=conv.reported_unit,
                    source=source_of(cand.resource))
    return _Value(cand, m, conv.basis)


def pick(name: str, candidates: list[Candidate], ctx: Context) -> _Value | None:
    worst = ctx.policy["sofa.value_selection"] == "worst_in_window" and name in WORST_LOW | WORST_HIGH
    if not worst:
        return next(usable_values(name, candidates, ctx), None)
    values = list(usable_values(name, candidates, ctx))
    if not values:
        return None
    sign = -1 if name in WORST_LOW else 1
    # Newest first already; max() keeps the first (newest) among equals.
    return max(values, key=lambda v: sign * v.measurement.value)


def reference_high(holder: Mapping[str, Any], name: str, value_quantity: Mapping[str, Any],
                    ctx: Context) -> float | None:
    """referenceRange.high in the canonical unit (data requirements §1.1 step 7)."""
    rr = ctx.sets.rr
    for entry in items(holder.get("referenceRange")):
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


def _applies_to_patient(entry: Mapping[str, Any], ctx: Context) -> bool:
    rr = ctx.sets.rr
    for concept in items(entry.get("appliesTo")):
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


def read_observations(cands: dict[str, list[Candidate]], ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    simple = ("platelets", "inr", "fibrinogen", "creatinine", "bilirubin", "hemoglobin", "anti_xa",
              "map", "gcs", "urine_output_24h", "weight", "height", "recorded_bmi", "four_ts")
    for name in simple:
        picked = pick(name, cands.get(name, []), ctx)
        if picked:
            out[name] = picked.measurement

    picked = pick("d_dimer", cands.get("d_dimer", []), ctx)
    if picked:
        cand = picked.candidate
        out["d_dimer"] = DDimer(
            value=picked.measurement, basis_from_code=ctx.sets.basis.get(cand.key),
            basis_from_unit=picked.basis,  # type: ignore[arg-type]
            reference_high_mg_l=reference_high(cand.holder, "d_dimer", cand.holder["valueQuantity"], ctx))

    picked = pick("pt", cands.get("pt", []), ctx)
    if picked:
        control = pick("pt_normal_control", cands.get("pt_normal_control", []), ctx)
        out["pt"] = ProthrombinTime(
            seconds=picked.measurement,
            reference_high_s=reference_high(picked.candidate.holder, "pt",
                                             picked.candidate.holder["valueQuantity"], ctx),
            normal_control_s=control.measurement.value if control else None)

    out.update(blood_gas(cands, ctx))
    sofa = {}
    for organ in ("respiratory", "cardiovascular", "hepatic", "renal", "coagulation", "cns", "total"):
        picked = pick(f"recorded_sofa.{organ}", cands.get(f"recorded_sofa.{organ}", []), ctx)
        if picked:
            sofa[organ] = picked.measurement
    out["recorded_sofa"] = RecordedSofa(**sofa)
    return out


def blood_gas(cands: dict[str, list[Candidate]], ctx: Context) -> dict[str, Any]:
    """pao2/fio2 (latest, for display) and pf_ratio: recorded, else the latest PaO2 paired with
    the nearest FiO2 within bloodgas.fio2_pairing_minutes. Lazy: only the FiO2s near a PaO2
    are validated, so hourly bedside data stay cheap."""
    out: dict[str, Any] = {}
    fio2_cands = cands.get("fio2", [])
    latest_fio2 = next(usable_values("fio2", fio2_cands, ctx), None)
    if latest_fio2:
        out["fio2"] = latest_fio2.measurement
    pf = pick("pf_ratio", cands.get("pf_ratio", []), ctx)
    gap = timedelta(minutes=ctx.policy["bloodgas.fio2_pairing_minutes"])
    for pao2 in usable_values("pao2", cands.get("pao2", []), ctx):
        out.setdefault("pao2", pao2.measurement)
        if pf:
            break
        if pao2.measurement.comparator:
            continue
        t = pao2.candidate.time
        # Nearest in time; among equals the newer (candidates are newest first; sort is stable).
        near = sorted((c for c in fio2_cands if abs(c.time - t) <= gap), key=lambda c: abs(c.time - t))
        fio2 = next(usable_values("fio2", near, ctx, record=False), None)
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


def series(collected: Collected, ctx: Context, name: str) -> tuple[Measurement, ...]:
    """Every usable value of input `name` (SERIES_KEYS) measured within its span of now (as
    given to `collect`), oldest first, in canonical units, de-duplicated (the same Observation
    from two prefetch keys, or the same value at the same time). v2: platelet_trend
    (window.platelet_trend_days) and creatinine_series (window.labs_hours)."""
    found: dict[tuple, Measurement] = {}
    for cand in collected.series.get(name, ()):
        if ctx.validator.problem(cand.resource):
            continue
        try:
            value = _measure(name, cand)
        except UnitError:
            continue
        if value is None:
            continue
        m = value.measurement
        found.setdefault((cand.time, round(m.value, 6), m.comparator), m)
    return tuple(sorted(found.values(), key=lambda m: m.time))  # type: ignore[arg-type, return-value]
