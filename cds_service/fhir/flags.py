"""Conditions (§6), AllergyIntolerance (§7) and pregnancy -> safety flags.

A flag is `Flag(present=True)` with its most recent evidence when a record supports it, and
None when none does; `pregnancy` is `Flag(present=False)` when the later source says not
pregnant.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

from ..logic.inputs import CovidCondition, Flag, HitRecord
from .context import (ACTIVE_CLINICAL, MIN_TIME, VERIFICATION_IGNORED, Candidate, Context, first_time,
                      source_of)
from .read import codings, concept_codes, items, parse_datetime

OTHER_INDICATION_SETS = ("vte", "af_flutter", "mechanical_valve", "intracardiac_thrombus",
                         # v3 firm indications (clinical rules §19.12): ACS, arterial thrombosis, APS
                         "acs", "arterial_thrombosis", "antiphospholipid_syndrome")


def dated_onset(resource: Mapping[str, Any]) -> datetime | None:
    """A *dated* onset only: onsetDateTime, else onsetPeriod.start (§6 v2: HIT recency).
    recordedDate, onsetAge and onsetString never date an onset."""
    period = resource.get("onsetPeriod") if isinstance(resource.get("onsetPeriod"), dict) else {}
    return first_time(resource.get("onsetDateTime"), period.get("start"))


@dataclass
class ConditionFindings:
    """The v2 Condition readings that are not a simple Flag (§6)."""

    covid_conditions: list[CovidCondition] = field(default_factory=list)
    hit_records: list[HitRecord] = field(default_factory=list)
    eskd: Flag | None = None

def _clinical(resource: Mapping[str, Any]) -> set[str]:
    return concept_codes(resource.get("clinicalStatus"))


def _period_time(resource: Mapping[str, Any], prefix: str) -> tuple[bool, datetime | None]:
    """(present, time) of onset[x]/abatement[x]: the DateTime, else the Period's end or start."""
    present = any(k.startswith(prefix) for k in resource)
    period = resource.get(f"{prefix}Period") if isinstance(resource.get(f"{prefix}Period"), dict) else {}
    return present, first_time(resource.get(f"{prefix}DateTime"), period.get("end"), period.get("start"))


def _flag_update(flags: dict[str, Flag], name: str, source: str | None, time: datetime | None) -> None:
    """Keep the most recent evidence for a flag (undated evidence loses to dated)."""
    current = flags.get(name)
    if current is None or (time is not None and (current.time is None or time > current.time)):
        flags[name] = Flag(present=True, source=source, time=time)


def _hit_in_lookback(time: datetime | None, ctx: Context) -> bool:
    days = ctx.policy["safety.hit_lookback_days"]
    # Unknown onset counts: HIT history is a safety stop.
    return days is None or time is None or time >= ctx.now - timedelta(days=days)


# Condition sets whose record, when unreadable, is said rather than dropped in silence (review-v3 H10)
SAFETY_SETS = {"hit": "HIT", "bleeding": "bleeding", "intracranial_haemorrhage": "intracranial haemorrhage",
               "pregnancy": "pregnancy"}


def read_conditions(conditions: list[dict], ctx: Context, flags: dict[str, Flag],
                    found_v2: ConditionFindings | None = None) -> tuple[Flag | None, datetime | None]:
    """Condition flags (§6). Returns the latest active pregnancy Condition as a Flag and its
    time (MIN_TIME when undated), for the tie-break with the 82810-3 Observation.

    v2 (into `found_v2` and `flags`): COVID-19 Conditions (active/recurrence/relapse, with their
    Encounter and onset else recordedDate), HIT records (dated onset only; any clinicalStatus),
    other indication for anticoagulation (active/recurrence/relapse or no clinicalStatus),
    recent intracranial haemorrhage (onset, else recordedDate, within safety.recent_ich_days;
    any clinicalStatus; undated: not recent), end-stage kidney disease (active)."""
    found_v2 = found_v2 if found_v2 is not None else ConditionFindings()
    sets = ctx.sets.conditions
    recent_days = timedelta(days=ctx.policy["safety.recent_bleeding_days"])
    ich_days = timedelta(days=ctx.policy["safety.recent_ich_days"])
    pregnancy: Flag | None = None
    pregnancy_time: datetime | None = None
    for cond in conditions:
        if concept_codes(cond.get("verificationStatus")) & VERIFICATION_IGNORED:
            continue
        found = list(codings(cond.get("code")))
        matched = [name for name, cs in sets.items() if cs.matches_any(found)]
        if not matched:
            continue
        problem = ctx.validator.problem(cond)
        if problem:
            # §19.0 fails closed (review-v3 H10): a HIT, bleeding or pregnancy record that must be
            # dropped is said (hooks: 'could not be read'), never silence
            safety = [m for m in matched if m in SAFETY_SETS]
            if safety:
                # (no resource id: it would reach card text)
                ctx.reject("conditions.unreadable_safety", f"{SAFETY_SETS[safety[0]]} record: {problem}")
            continue
        status = _clinical(cond)
        active = bool(status & ACTIVE_CLINICAL)
        _, onset = _period_time(cond, "onset")
        abated, abatement = _period_time(cond, "abatement")
        recorded = parse_datetime(cond.get("recordedDate"))
        when = onset or recorded
        src = source_of(cond)
        if "covid19" in matched and active:
            _flag_update(flags, "covid19", src, when)
            enc_type, enc_id = ctx.target(cond.get("encounter"))
            found_v2.covid_conditions.append(CovidCondition(
                encounter_id=enc_id if enc_type == "Encounter" else None, time=when, source=src))
        if any(name in matched for name in OTHER_INDICATION_SETS) and (active or not status):
            _flag_update(flags, "other_anticoagulation_indication", src, when)
        # v3 (§19.12): history of VTE / long-term anticoagulant (Z79.01, Z86.711, Z86.718), active
        if "possible_other_indication" in matched and (active or not status):
            _flag_update(flags, "possible_other_indication", src, when)
        if "intracranial_haemorrhage" in matched and when is not None \
                and ctx.now - ich_days <= when <= ctx.now + timedelta(minutes=ctx.policy["window.future_tolerance_minutes"]):
            _flag_update(flags, "recent_intracranial_haemorrhage", src, when)
        if "eskd" in matched and active:
            _flag_update(flags, "eskd", src, when)
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
        if "hit" in matched:
            dated = dated_onset(cond)
            if dated is None or _hit_in_lookback(dated, ctx):
                found_v2.hit_records.append(HitRecord(onset=dated, source=src))
        if "pregnancy" in matched and active:
            t = recorded or onset or MIN_TIME
            if pregnancy_time is None or t > pregnancy_time:
                pregnancy_time = t
                pregnancy = Flag(True, src, recorded or onset)
    return pregnancy, pregnancy_time


def read_allergies(allergies: list[dict], ctx: Context, flags: dict[str, Flag],
                   found_v2: ConditionFindings | None = None) -> None:
    """heparin_allergy and HIT (§7). v2: a HIT reaction is a HitRecord dated by the reaction's
    onset, else the AllergyIntolerance's dated onset (never its recordedDate)."""
    found_v2 = found_v2 if found_v2 is not None else ConditionFindings()
    sets = ctx.sets.allergies
    for allergy in allergies:
        if concept_codes(allergy.get("verificationStatus")) & VERIFICATION_IGNORED:
            continue
        heparin = sets["heparin_allergy"].matches_any(codings(allergy.get("code")))
        reactions = [r for r in items(allergy.get("reaction")) if isinstance(r, dict)]
        hit = any(sets["hit_reaction"].matches_any(codings(m))
                  for r in reactions for m in items(r.get("manifestation")))
        if not (heparin or hit):
            continue
        problem = ctx.validator.problem(allergy)
        if problem:   # §19.0 fails closed (review-v3 H10): said, never silence
            ctx.reject("conditions.unreadable_safety",
                       f"{'HIT' if hit else 'heparin allergy'} record: {problem}")
            continue
        status = _clinical(allergy)
        src = source_of(allergy)
        when = first_time(allergy.get("onsetDateTime"), allergy.get("recordedDate"))
        if heparin and (not status or "active" in status):
            _flag_update(flags, "heparin_allergy", src, when)
        if hit:
            onset = first_time(*(r.get("onset") for r in reactions)) or when
            if _hit_in_lookback(onset, ctx):
                _flag_update(flags, "hit_history", src, onset)
            hit_reactions = [r for r in reactions if any(
                sets["hit_reaction"].matches_any(codings(m)) for m in items(r.get("manifestation")))]
            dated = first_time(*(r.get("onset") for r in hit_reactions)) or dated_onset(allergy)
            if dated is None or _hit_in_lookback(dated, ctx):
                found_v2.hit_records.append(HitRecord(onset=dated, source=src))


def _pregnancy_observation(cands: list[Candidate], ctx: Context) -> tuple[bool, Candidate] | None:
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


def pregnancy_flag(cands: list[Candidate], condition: Flag | None, condition_time: datetime | None,
               ctx: Context) -> Flag | None:
    """The later of the active pregnancy Condition and the latest 82810-3 answer wins (§6)."""
    observed = _pregnancy_observation(cands, ctx)
    if observed and (condition_time is None or observed[1].time >= condition_time):
        answer, cand = observed
        return Flag(present=answer, source=source_of(cand.resource), time=cand.time)
    return condition
