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
- v2: Encounters and SARS-CoV-2 tests (scope.py), COVID-19 Conditions, HIT records (dated
  onset only), other indications, recent ICH, renal replacement, MedicationStatements,
  administrations and the heparin start, flushes and circuit heparin (exposure.py),
  platelet_trend and creatinine_series (observations.series).

Flags (covid19, active_bleeding, ...) are a `Flag(present=True)` with their evidence when
a record supports them and None when none does; `pregnancy` is `Flag(present=False)` when
the latest source says not pregnant.

Only the resources whose values are used are checked, against the structs of model.py (what
the service reads, msgspec); fhir.resources R4B validation is off this path (context.R4BValidator).
"""
from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Mapping

from ..logic.inputs import Flag, MedicationOrder, PatientInputs
from ..logic.policy import Policy
from .codes import Codes, load_codes
from .context import OBS_SPECS, Checker, Context, StrictChecker, code_sets, preload_models
from .context import window_span
from .interactions import interacting_drugs, renal_replacement_mode
from .exposure import (Problems, heparin_started, in_progress_circuit, read_administrations, read_orders,
                       read_statements, renal_replacement)
from .flags import ConditionFindings, pregnancy_flag, read_allergies, read_conditions
from .observations import collect, observation_time, read_observations, series
from .orders import is_current_order
from .scope import covid_test_span, read_covid_tests, read_encounters
from .read import aware, parse_date, reference_target
from .support import read_vasoactives, respiratory_support
from .typed import TypedObservation

__all__ = ["extract_inputs", "preload_models", "observation_time", "OBS_SPECS"]


def _age(birth: Any, now: datetime) -> int | None:
    """Age in completed years at `now`; a partial date uses its earliest possible day (§19.8)."""
    born = parse_date(birth)
    if born is None:
        return None
    return _years(born, now.date())


def _years(born: date, today: date) -> int | None:
    years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return years if years >= 0 else None


def _partial_birth(birth: Any, now: datetime, min_age: float) -> tuple[bool, bool]:
    """(partial, age uncertain) of a birthDate (§19.8): YYYY or YYYY-MM is partial; uncertain when
    its LATEST possible day would make the patient younger than `min_age` while the earliest
    does not."""
    if not isinstance(birth, str) or parse_date(birth) is None or len(birth.strip()) not in (4, 7):
        return False, False
    text = birth.strip()
    year = int(text[:4])
    month = int(text[5:7]) if len(text) == 7 else 12
    last = date(year, month, calendar.monthrange(year, month)[1])
    earliest, latest = _years(parse_date(text), now.date()), _years(last, now.date())
    uncertain = earliest is not None and earliest >= min_age and (latest is None or latest < min_age)
    return True, uncertain


class _Scope:
    """Which resources belong to the patient (data requirements §1 'Patient scope').
    The verdict is memoised per reference string: a chart's resources share one subject."""

    def __init__(self, patient_id: str | None, aliases: Mapping[str, str]):
        self.patient_id = patient_id
        self.aliases = aliases
        self._verdicts: dict[str, bool] = {}

    def target(self, reference: Any) -> tuple[str | None, str | None]:
        if isinstance(reference, dict) and isinstance(reference.get("reference"), str) \
                and reference["reference"] in self.aliases:
            reference = {"reference": self.aliases[reference["reference"]]}
        return reference_target(reference)

    def accepts(self, resource: Mapping[str, Any]) -> bool:
        ref = resource.get("patient") if resource.get("resourceType") == "AllergyIntolerance" \
            else resource.get("subject")
        literal = ref.get("reference") if type(ref) is dict else None
        if type(literal) is not str:
            return True   # missing subject (or identifier only): the Bundle is one patient's
        return self.verdict(literal)

    def verdict(self, literal: str) -> bool:
        """Whether a subject/patient literal reference points to this patient (memoised)."""
        verdict = self._verdicts.get(literal)
        if verdict is None:
            rtype, rid = self.target({"reference": literal})
            verdict = self._verdicts[literal] = rtype == "Patient" and (
                self.patient_id is None or rid == self.patient_id)
        return verdict


def extract_inputs(resources: Iterable[dict], *, now: datetime, policy: Policy,
                   codes: Codes | None = None, patient_id: str | None = None,
                   aliases: Mapping[str, str] | None = None,
                   medications: Mapping[str, dict] | None = None,
                   encounter_id: str | None = None, strict: bool = False) -> PatientInputs:
    """Normalise one patient's FHIR resources (dicts) to `PatientInputs`.

    `patient_id`: the patient (hooks: context.patientId); default the first Patient given.
    `aliases`: literal references (e.g. a Bundle entry's `urn:uuid:` fullUrl) -> "Type/id".
    `medications`: extra Medication resources keyed by "Medication/<id>" or fullUrl, for
    medicationReference targets not among `resources` (e.g. fetched separately).
    `strict`: every used resource is also validated with the fhir.resources R4B models
    (`cds-service assess --strict`; slow, never on the hook path).
    Never raises on data: unusable resources are skipped and the reasons kept in `rejected`.
    """
    now = aware(now)
    codes = codes or load_codes(policy["codes.extra_file"])
    aliases = dict(aliases or {})
    by_type: dict[str, list[tuple[int, dict]]] = {}
    for position, resource in enumerate(resources):
        if type(resource) is dict or isinstance(resource, dict):
            rtype = resource.get("resourceType")
            if type(rtype) is str or isinstance(rtype, str):
                group = by_type.get(rtype)
                if group is None:
                    group = by_type[rtype] = []
                group.append((position, resource))
        elif type(resource) is TypedObservation:   # from a typed prefetch (typed.py)
            by_type.setdefault("Observation", []).append((position, resource))

    ctx = Context(now=now, policy=policy, codes=codes, sets=code_sets(codes),
                  validator=StrictChecker() if strict else Checker(), aliases=aliases)

    patients = [r for _, r in by_type.get("Patient", [])]
    if patient_id is None and patients and isinstance(patients[0].get("id"), str):
        patient_id = patients[0]["id"]
    patient = next((p for p in patients if p.get("id") == patient_id), None)
    if patient is not None and ctx.validator.problem(patient):
        ctx.reject("patient", f"Patient/{patient_id}: {ctx.validator.problem(patient)}")
        patient = None
    birth = patient.get("birthDate") if patient else None
    ctx.age = _age(birth, now)
    partial_birth, age_uncertain = _partial_birth(birth, now, policy["scope.min_age_years"])
    gender = patient.get("gender") if patient else None
    ctx.sex = gender if gender in ("male", "female") else None

    scope = _Scope(patient_id, aliases)

    accepts, verdicts = scope.accepts, scope._verdicts

    def mine(rtype: str) -> list[tuple[int, dict]]:
        field = "patient" if rtype == "AllergyIntolerance" else "subject"
        kept = []
        for position, resource in by_type.get(rtype, ()):
            if resource.get("status") == "entered-in-error":
                continue
            ref = resource.get(field)
            literal = ref.get("reference") if type(ref) is dict else None
            # The memoised verdict of this subject, else the full check (which memoises it).
            verdict = verdicts.get(literal) if type(literal) is str else None
            if verdict is False or (verdict is None and not accepts(resource)):
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

    # The single pass over the Observations: status, patient scope, window candidates, the v2
    # series, SARS-CoV-2 tests.
    trend_span = timedelta(days=ctx.policy["window.platelet_trend_days"])
    labs_span = window_span(policy, "window.labs_hours") or timedelta(days=36500)
    cands = collect(by_type.get("Observation", []), ctx, scope.verdict,
                    series_spans={"platelets": trend_span, "creatinine": labs_span},
                    covid_span=covid_test_span(ctx))
    values = read_observations(cands, ctx)

    flags: dict[str, Flag] = {}
    found_v2 = ConditionFindings()
    pregnant_condition, pregnant_since = read_conditions([r for _, r in mine("Condition")], ctx, flags, found_v2)
    read_allergies([r for _, r in mine("AllergyIntolerance")], ctx, flags, found_v2)
    pregnancy = pregnancy_flag(cands.get("pregnancy_status", []), pregnant_condition, pregnant_since, ctx)

    procedures = [r for _, r in mine("Procedure")]
    respiratory = respiratory_support(procedures, cands, values.get("fio2"), ctx)

    requests = [r for _, r in mine("MedicationRequest")]
    active = [r for r in requests if is_current_order(r)]
    admins = [r for _, r in mine("MedicationAdministration")]
    vasoactives = read_vasoactives(admins, active, meds, values.get("weight"), ctx)
    # v2 (§8): flushes, circuit heparin, unmapped anticoagulants, statements, administrations.
    circuit = in_progress_circuit(procedures, ctx)
    problems = Problems(ctx)
    flushes: list[MedicationOrder] = []
    orders: list[MedicationOrder] = read_orders(active, meds, circuit, ctx, problems, flushes)
    statements = read_statements([r for _, r in mine("MedicationStatement")], meds, circuit, ctx, problems)
    problems.flush()
    administrations = read_administrations(admins, meds, circuit, ctx)

    platelet_trend = series(cands, ctx, "platelets")
    creatinine_series = series(cands, ctx, "creatinine")

    rrt_flag = renal_replacement(procedures, flags.get("eskd"), ctx)
    return PatientInputs(
        now=now, patient_id=patient_id, age_years=ctx.age, sex=ctx.sex,  # type: ignore[arg-type]
        birth_date=birth if isinstance(birth, str) else None,
        **values, vasoactives=vasoactives, respiratory=respiratory,
        covid19=flags.get("covid19"), active_bleeding=flags.get("active_bleeding"),
        recent_bleeding=flags.get("recent_bleeding"), bleeding_disorder=flags.get("bleeding_disorder"),
        hit_history=flags.get("hit_history"), heparin_allergy=flags.get("heparin_allergy"),
        pregnancy=pregnancy, orders=tuple(orders),
        encounter_id=encounter_id,
        encounters=read_encounters([r for _, r in mine("Encounter")], ctx),
        covid_conditions=tuple(found_v2.covid_conditions),
        covid_positive_tests=read_covid_tests(cands.covid, ctx),
        hit_records=tuple(found_v2.hit_records),
        other_anticoagulation_indication=flags.get("other_anticoagulation_indication"),
        recent_intracranial_haemorrhage=flags.get("recent_intracranial_haemorrhage"),
        renal_replacement=rrt_flag,
        statements=tuple(statements), administrations=tuple(administrations),
        platelet_trend=platelet_trend, creatinine_series=creatinine_series,
        interacting_drugs=interacting_drugs(requests, [r for _, r in mine("MedicationStatement")], meds,
                                            ctx.codes),
        renal_replacement_mode=renal_replacement_mode(procedures, rrt_flag),
        heparin_started=heparin_started(administrations, orders, flushes),
        heparin_flushes=tuple(flushes),
        birth_date_partial=partial_birth, age_uncertain=age_uncertain,
        possible_other_indication=flags.get("possible_other_indication"),
        rejected=ctx.rejected)
