"""Scope: whom the cards are for (clinical-rules.md §1a, new in v2).

The evidence behind every rule is for hospitalised adults with COVID-19 [NIH COVID-19
Treatment Guidelines, final 29 Feb 2024; ISTH 2023 update, Schulman S et al., J Thromb
Haemost 2024]. Outside that population the service shows no cards; it still computes and
audits the assessment (§1 step 4).

`reasons`, in this order (`in_scope` is true when empty):
- `patient_not_found`: the context's Patient could not be had (prefetch null, 404): the
  caller says so (`patient_found=False`).
- `age_lt_18`: age in completed years at `now` < scope.min_age_years (18). From the full
  `birth_date` when there is one, else `age_years`. Unknown age is not a reason.
- `no_covid_evidence` (scope.require_covid, default true): no current COVID-19 Condition and
  no positive SARS-CoV-2 test within scope.covid_test_days (14). A Condition is current when its
  `encounter` is the current inpatient Encounter, or its onset (else recordedDate) is within
  scope.covid_condition_days (21). (Conditions arrive active/recurrence/relapse only.)
- `not_inpatient` (scope.require_inpatient, default true): no Encounter that is both current
  (status in scope.encounter_statuses) and inpatient (class in scope.inpatient_classes; in the
  order hooks also scope.order_hook_extra_classes, "EMER"). With the context's `encounterId`,
  that Encounter must qualify (an id that matches no Encounter is not inpatient); without it
  any of the patient's Encounters may. No Encounter data is not inpatient.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from .inputs import EncounterInfo, PatientInputs
from .policy import DEFAULTS, Policy

REASONS = ("patient_not_found", "age_lt_18", "no_covid_evidence", "not_inpatient")
SCOPE_KEYS = tuple(k for k in DEFAULTS if k.startswith("scope."))


@dataclass(frozen=True)
class Scope:
    reasons: tuple[str, ...] = ()
    # The current inpatient Encounter that put the patient in scope (the context's one when
    # given); None when none qualifies. Used by §13.1 "authored during the current Encounter".
    encounter: EncounterInfo | None = None

    @property
    def in_scope(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        return {"in_scope": self.in_scope, "reasons": list(self.reasons)}


def is_order_hook(hook: str) -> bool:
    return hook.startswith("order")


def completed_years(birth: date, on: date) -> int:
    """Completed years of age on `on` (a 29 February birthday is reached on 1 March)."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def age_at(inputs: PatientInputs) -> int | None:
    bd = inputs.birth_date
    if isinstance(bd, str) and len(bd) == 10:
        try:
            return completed_years(date.fromisoformat(bd), inputs.now.date())
        except ValueError:
            pass
    return inputs.age_years


def qualifying(enc: EncounterInfo, policy: Policy, hook: str) -> bool:
    classes = list(policy["scope.inpatient_classes"])
    if is_order_hook(hook):
        classes += policy["scope.order_hook_extra_classes"]
    return enc.status in policy["scope.encounter_statuses"] and enc.class_code in classes


def current_encounter(inputs: PatientInputs, policy: Policy, hook: str) -> EncounterInfo | None:
    """The current inpatient Encounter: the context's one if it qualifies, else (no context id)
    the first qualifying one; None otherwise."""
    if inputs.encounter_id is not None:
        enc = next((e for e in inputs.encounters if e.id == inputs.encounter_id), None)
        return enc if enc is not None and qualifying(enc, policy, hook) else None
    return next((e for e in inputs.encounters if qualifying(e, policy, hook)), None)


def _within(t: datetime | None, days: float, now: datetime) -> bool:
    return t is not None and t >= now - timedelta(days=days)


def covid_evidence(inputs: PatientInputs, encounter: EncounterInfo | None, policy: Policy,
                   hook: str = "patient-view") -> bool:
    now = inputs.now
    # The current inpatient Encounter(s) a COVID-19 Condition may be linked to: the context's
    # one when it qualifies; without an encounterId, any qualifying Encounter (§1a).
    if inputs.encounter_id is not None:
        current = {encounter.id} if encounter is not None and encounter.id is not None else set()
    else:
        current = {e.id for e in inputs.encounters if e.id is not None and qualifying(e, policy, hook)}
    if any(f.present and (f.time is None or _within(f.time, policy["scope.covid_test_days"], now))
           for f in inputs.covid_positive_tests):
        return True   # fhir/ applies the window; an undated positive test it kept counts
    for cond in inputs.covid_conditions:
        if cond.encounter_id is not None and cond.encounter_id in current:
            return True
        if _within(cond.time, policy["scope.covid_condition_days"], now):
            return True
    return False


def assess_scope(inputs: PatientInputs, policy: Policy, *, hook: str = "patient-view",
                 patient_found: bool = True) -> Scope:
    reasons = set()
    if not patient_found:
        reasons.add("patient_not_found")
    age = age_at(inputs)
    if age is not None and age < policy["scope.min_age_years"]:
        reasons.add("age_lt_18")
    encounter = current_encounter(inputs, policy, hook)
    if policy["scope.require_covid"] and not covid_evidence(inputs, encounter, policy, hook):
        reasons.add("no_covid_evidence")
    if policy["scope.require_inpatient"] and encounter is None:
        reasons.add("not_inpatient")
    return Scope(tuple(r for r in REASONS if r in reasons), encounter)


def loosened_keys(policy: Policy) -> dict[str, Any]:
    """Each scope key whose value differs from its default (logged at start-up, §1a)."""
    default = Policy.default()
    return {k: policy[k] for k in SCOPE_KEYS if policy[k] != default[k]}
