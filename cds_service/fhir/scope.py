"""Scope evidence (data requirements v2 §2a, §3.2): the patient's Encounters and positive
SARS-CoV-2 test results. logic/scope judges them; this module only reads them.

- Encounter: status, class (R4: one Coding; v3-ActCode read directly, another system only
  through the data file's `encounter_classes` map), id, period.start. A malformed Encounter
  (not valid R4B, or no usable status) is dropped with a reason in `rejected`.
- SARS-CoV-2 tests: the codes of codes.json `observations.sars_cov_2` (94531-1 is a panel:
  its components are read with the panel's time and status). Positive when
  valueCodeableConcept is SNOMED 10828004/260373001, or an interpretation is POS/DET; any
  other value is not positive. Window scope.covid_test_days (14) of `now`, status as §1.1.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Mapping

from ..logic.inputs import EncounterInfo, Flag
from .context import SARS_COV_2, Context, first_time, source_of
from .read import codings, items

ENCOUNTER_STATUSES = frozenset({"planned", "arrived", "triaged", "in-progress", "onleave", "finished",
                                "cancelled", "entered-in-error", "unknown"})


def _class_code(cls: Any, ctx: Context) -> str | None:
    """The v3-ActCode code of Encounter.class (R4: a Coding); a list (R5 shape) is read too."""
    actcode = ctx.codes.systems.get("ACTCODE", "http://terminology.hl7.org/CodeSystem/v3-ActCode")
    mapping = {ctx.codes.resolve(k): v for k, v in ctx.codes.data.get("encounter_classes", {}).items()
               if not k.startswith("_") and isinstance(v, str)}
    found: list[tuple[str, str]] = []
    for coding in ([cls] if isinstance(cls, dict) else items(cls)):
        if isinstance(coding, dict) and isinstance(coding.get("coding"), list):
            found.extend(codings(coding))      # a CodeableConcept (R5 shape)
        elif isinstance(coding, dict) and isinstance(coding.get("system"), str) \
                and isinstance(coding.get("code"), str):
            found.append((coding["system"], coding["code"]))
    for system, code in found:
        if system == actcode:
            return code
        if (system, code) in mapping:
            return mapping[(system, code)]
    return None


def read_encounters(encounters: list[dict], ctx: Context) -> tuple[EncounterInfo, ...]:
    out: list[EncounterInfo] = []
    for enc in encounters:
        status = enc.get("status")
        problem = ctx.validator.problem(enc)
        if problem is None and (not isinstance(status, str) or status not in ENCOUNTER_STATUSES):
            problem = "no usable status"
        if problem is not None:
            ctx.reject("encounter", f"{source_of(enc) or 'Encounter'}: {problem}; dropped")
            continue
        period = enc.get("period") if isinstance(enc.get("period"), dict) else {}
        out.append(EncounterInfo(
            id=enc.get("id") if isinstance(enc.get("id"), str) else None, status=status,
            class_code=_class_code(enc.get("class"), ctx), period_start=first_time(period.get("start")),
            source=source_of(enc)))
    return tuple(out)


def _positive(holder: Mapping[str, Any], ctx: Context) -> bool:
    values = ctx.sets.obs_values
    if values.get("sars_cov_2_positive") and values["sars_cov_2_positive"].matches_any(
            codings(holder.get("valueCodeableConcept"))):
        return True
    interp = values.get("positive_interpretation")
    return bool(interp) and any(interp.matches_any(codings(c)) for c in items(holder.get("interpretation")))


def covid_test_span(ctx: Context) -> timedelta | None:
    """The SARS-CoV-2 test window (scope.covid_test_days), None when the code data has no tests."""
    if SARS_COV_2 not in ctx.codes.data.get("observations", {}):
        return None
    return timedelta(days=ctx.policy["scope.covid_test_days"])


def read_covid_tests(tests: list[tuple[dict, list[dict], datetime]], ctx: Context) -> tuple[Flag, ...]:
    """Positive SARS-CoV-2 results in the window, newest first, one per Observation. `tests`:
    (Observation, test holders, time) as observations.collect found them in its single pass
    (status and window already applied)."""
    found: list[Flag] = []
    for obs, holders, time in tests:
        if not any(_positive(h, ctx) for h in holders):
            continue
        problem = ctx.validator.problem(obs)
        if problem is not None:
            ctx.reject("covid_test", f"{source_of(obs) or 'Observation'}: {problem}; dropped")
            continue
        found.append(Flag(present=True, source=source_of(obs), time=time))
    found.sort(key=lambda f: f.time, reverse=True)  # type: ignore[arg-type, return-value]
    return tuple(found)
