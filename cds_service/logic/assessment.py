"""The assessment: every clinical result for one patient at `now`, in one object.

`assess(inputs, policy)` follows the evaluation order of clinical-rules.md §1:
1. inputs arrive collected and normalised (fhir/);
2. anthropometrics (§2), renal (§3), D-dimer (§4), SOFA (§5), SIC (§6), ISTH DIC (§7);
3. seed trigger (§8), critical illness (§9), safety (§10), regimen (§11), anti-Xa (§12),
   the recommendation pathway (§13.1, `recommendation.py`) and the v1 evidence note (§13; kept
   until the card redesign retires it);
4. scope (§1a, `scope.py`): decides only whether cards are shown; the assessment is the same
   in and out of scope. `assess(..., hook=, patient_found=)` gives it the hook (order hooks also
   admit EMER Encounters) and whether the context's Patient was found.
Cards and audit records are both built from this object; `to_json()` is the assessment JSON
of the interface contract (the `assess` CLI prints it). It is deterministic: fixed key
order, lists in rule order, no timestamps other than those of the inputs.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from . import anthropometrics as anthro_mod
from . import d_dimer as d_dimer_mod
from . import dic as dic_mod
from . import renal as renal_mod
from . import sic as sic_mod
from . import sofa as sofa_mod
from .anthropometrics import Anthropometrics
from .anti_xa import AntiXa, assess_anti_xa
from .critical import CriticalIllness, critical_illness
from .d_dimer import DDimerResult
from .dic import Dic
from .evidence import EvidenceNote, SeedTrigger, evidence_note, seed_trigger
from .inputs import Flag, Measurement, PatientInputs
from .policy import Policy
from .recommendation import Recommendation, recommend
from .regimen import Regimen, recommend_regimen
from .scope import Scope, assess_scope
from .renal import Renal
from .safety import (CAUTIONS, Safety, assess_safety, four_ts_clears, hit_platelets_known, hit_status, hit_suspected,
                     is_heparin, present)
from .sic import Sic
from .sofa import Sofa

# Input names in the order the inputs table and `missing` list them.
MEASUREMENTS = ("weight", "height", "recorded_bmi", "creatinine", "d_dimer", "platelets", "inr",
                "pt", "fibrinogen", "hemoglobin", "bilirubin", "pf_ratio", "pao2", "fio2", "map",
                "gcs", "urine_output_24h", "anti_xa")
FLAGS = ("covid19", "active_bleeding", "recent_bleeding", "bleeding_disorder", "hit_history",
         "heparin_allergy", "pregnancy")
MISSING_ORDER = ("weight", "height", "age_years", "sex", "creatinine", "platelets", "inr",
                 "d_dimer", "d_dimer_basis", "fibrinogen", "hemoglobin", "pt", "pt_reference",
                 "pf_ratio", "respiratory_support", "map", "vasoactive_rate", "bilirubin",
                 "urine_output_24h", "gcs")
# Which lab each undetermined safety code needs.
_SAFETY_LAB = {"platelets_lt_25": "platelets", "platelets_lt_50": "platelets",
               "fibrinogen_lt_0.5": "fibrinogen", "fibrinogen_lt_1.0": "fibrinogen",
               "hemoglobin_lt_8": "hemoglobin"}


@dataclass(frozen=True)
class Assessment:
    now: datetime
    inputs: PatientInputs
    anthropometrics: Anthropometrics
    renal: Renal
    d_dimer: DDimerResult
    sofa: Sofa
    sic: Sic
    isth_dic: Dic
    seed_trigger: SeedTrigger
    critical_illness: CriticalIllness
    safety: Safety
    regimen: Regimen
    anti_xa: AntiXa
    evidence_note: EvidenceNote
    pregnant: bool
    scope: Scope
    recommendation: Recommendation
    notes: tuple[str, ...]
    # Output -> input names that left it undetermined (only outputs with something missing).
    missing_by_output: dict[str, tuple[str, ...]]

    @property
    def missing(self) -> tuple[str, ...]:
        """Every input name missing for some output, in MISSING_ORDER (others after, sorted)."""
        names = {n for v in self.missing_by_output.values() for n in v}
        known = [n for n in MISSING_ORDER if n in names]
        return tuple(known + sorted(names - set(known)))

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope.to_json(),
            "anthropometrics": self.anthropometrics.to_json(),
            "renal": self.renal.to_json(),
            "d_dimer": self.d_dimer.to_json(),
            "sofa": self.sofa.to_json(),
            "sic": self.sic.to_json(),
            "isth_dic": self.isth_dic.to_json(),
            "seed_trigger": self.seed_trigger.to_json(),
            "safety": self.safety.to_json(),
            "regimen": self.regimen.to_json(),
            "anti_xa": self.anti_xa.to_json(),
            "recommendation": self.recommendation.to_json(),
            "critical_illness": self.critical_illness.to_json(),
            "evidence_note": self.evidence_note.to_json(),
            "notes": list(self.notes),
            "inputs": inputs_json(self.inputs),
            "missing": list(self.missing),
            "missing_by_output": {k: list(v) for k, v in self.missing_by_output.items()},
            "rejected": {k: self.inputs.rejected[k] for k in sorted(self.inputs.rejected)},
        }


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _measurement_json(m: Measurement) -> dict[str, Any]:
    out: dict[str, Any] = {"value": m.value, "unit": m.unit, "time": _iso(m.time),
                           "source": m.source}
    if m.comparator:
        out["comparator"] = m.comparator
    if m.reported_unit is not None and m.reported_unit != m.unit:
        out.update(reported_value=m.reported_value, reported_unit=m.reported_unit)
    return out


def _flag_json(f: Flag) -> dict[str, Any]:
    return {"present": f.present, "time": _iso(f.time), "source": f.source}


def inputs_json(inputs: PatientInputs) -> dict[str, Any]:
    """Each input used, with value, canonical unit, time and source (card table, audit)."""
    out: dict[str, Any] = {"age_years": inputs.age_years, "sex": inputs.sex}
    if getattr(inputs, "birth_date_partial", False):   # §19.8
        out.update(birth_date_partial=True, age_uncertain=inputs.age_uncertain)
    for name in MEASUREMENTS:
        value = getattr(inputs, name)
        if value is None:
            continue
        if name == "d_dimer":
            out[name] = dict(_measurement_json(value.value),
                             basis_from_code=value.basis_from_code,
                             basis_from_unit=value.basis_from_unit,
                             reference_high_mg_l=value.reference_high_mg_l)
        elif name == "pt":
            out[name] = dict(_measurement_json(value.seconds),
                             reference_high_s=value.reference_high_s,
                             normal_control_s=value.normal_control_s)
        else:
            out[name] = _measurement_json(value)
    recorded = {f.name: _measurement_json(getattr(inputs.recorded_sofa, f.name))
                for f in fields(inputs.recorded_sofa)
                if getattr(inputs.recorded_sofa, f.name) is not None}
    if recorded:
        out["recorded_sofa"] = recorded
    for name in FLAGS:
        flag = getattr(inputs, name)
        if flag is not None:
            out[name] = _flag_json(flag)
    resp = inputs.respiratory
    out["respiratory_support"] = {
        "modalities": sorted(resp.modalities), "ecmo": resp.ecmo,
        "vasopressor_procedure": resp.vasopressor_procedure,
        "room_air_documented": resp.room_air_documented, "sources": sorted(resp.sources)}
    out["vasoactives"] = sorted(
        ({"ingredient": v.ingredient, "rate_ug_kg_min": v.rate_ug_kg_min,
          "meets_min_duration": v.meets_min_duration, "source": v.source}
         for v in inputs.vasoactives),
        key=lambda d: (d["ingredient"], d["source"] or "", d["rate_ug_kg_min"] or -1.0))
    out["orders"] = sorted(({k: _iso(v) if isinstance(v, datetime) else v
                             for k, v in asdict(o).items()} for o in inputs.orders),
                           key=lambda d: json.dumps(d, sort_keys=True))
    return out


def _missing_by_output(inputs: PatientInputs, anthro: Anthropometrics, renal: Renal,
                       dd: DDimerResult, sic: Sic, dic: Dic, crit: CriticalIllness,
                       safety: Safety) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    if anthro.bmi is None:
        out["bmi"] = tuple(n for n in ("weight", "height") if n in anthro.missing)
    if renal.crcl_lt_30 is None:
        out["crcl"] = renal.missing
    if not dd.determinable or dd.gt_6x_uln is None:
        out["d_dimer"] = dd.missing or ("d_dimer",)
    if not sic.determinable:
        out["sic"] = sic.missing
    if not dic.determinable:
        out["isth_dic"] = dic.missing
    if crit.critically_ill is None:
        out["critical_illness"] = ("respiratory_support",)
    labs = tuple(dict.fromkeys(_SAFETY_LAB[c] for c in safety.undetermined))
    if labs:
        out["safety"] = labs
    return {k: v for k, v in out.items() if v}


def _recent(flag: Flag | None, days: float, now: datetime) -> bool:
    """Present, and (when dated) within `days` of now (fhir/ applies the window too)."""
    return present(flag) and (flag.time is None or (now - flag.time).total_seconds() <= days * 86400)


def assess(inputs: PatientInputs, policy: Policy, *, hook: str = "patient-view",
           patient_found: bool = True) -> Assessment:
    p = policy
    anthro = anthro_mod.compute(inputs, p)
    renal = renal_mod.compute(inputs, anthro, p)
    dd = d_dimer_mod.compute(inputs, p)
    sofa = sofa_mod.compute(inputs, p)
    sic = sic_mod.compute(inputs.platelets, inputs.inr, sofa, p)
    dic = dic_mod.compute(inputs, dd, p)

    seed = seed_trigger(sic.positive, dd.gt_6x_uln)
    crit = critical_illness(inputs.respiratory, inputs.vasoactives, p)
    hit = hit_status(hit_records=inputs.hit_records, hit_history=present(inputs.hit_history),
                     platelets=inputs.platelets, now=inputs.now, policy=p)
    suspected = hit is None and hit_suspected(
        heparin_started=inputs.heparin_started, platelet_trend=inputs.platelet_trend,
        now=inputs.now, policy=p,
        # §19.4: flushes and locks are heparin for HIT (the hit_suspected start)
        heparin_active=any(o.status == "active" and is_heparin(o.ingredient, o.drug_class)
                           for o in inputs.orders + inputs.heparin_flushes),
        last_heparin_given=max((a.time for a in inputs.administrations
                                if a.time is not None and is_heparin(a.ingredient, a.drug_class)),
                               default=None))
    if suspected and four_ts_clears(inputs.four_ts, inputs.platelet_trend, inputs.now, p):
        suspected = False      # v3 §19.6: a 4Ts <= 3 after the fall clears hit_suspected for 72 h
    safety = assess_safety(
        active_bleeding=present(inputs.active_bleeding),
        recent_bleeding=present(inputs.recent_bleeding),
        bleeding_disorder=present(inputs.bleeding_disorder),
        hit_history=present(inputs.hit_history), heparin_allergy=present(inputs.heparin_allergy),
        platelets=inputs.platelets, fibrinogen_g_l=inputs.fibrinogen,
        hemoglobin_g_dl=inputs.hemoglobin, orders=inputs.orders, weight_kg=anthro.weight_kg,
        crcl_lt_30=renal.crcl_lt_30, policy=p, hit=hit, suspected=suspected,
        statements=inputs.statements,
        recent_ich=_recent(inputs.recent_intracranial_haemorrhage, p["safety.recent_ich_days"],
                           inputs.now),
        inr=inputs.inr, bilirubin_mg_dl=inputs.bilirubin,
        other_indication=present(inputs.other_anticoagulation_indication),
        possible_other_indication=present(getattr(inputs, "possible_other_indication", None)))
    regimen = recommend_regimen(
        contraindications=safety.contraindications, already_therapeutic=safety.already_therapeutic,
        crcl_ml_min=renal.crcl_ml_min, crcl_lt_30=renal.crcl_lt_30, bmi=anthro.bmi,
        weight_kg=anthro.weight_kg, policy=p, crcl_bound=renal.crcl_bound,
        renal_replacement=renal.renal_replacement, creatinine_unstable=renal.creatinine_unstable,
        platelets_known=hit_platelets_known(inputs.platelets, p))
    pregnant = present(inputs.pregnancy)
    scope = assess_scope(inputs, p, hook=hook, patient_found=patient_found)
    anti_xa = assess_anti_xa(
        recommended_drug=regimen.drug, recommended_basis=regimen.basis, lmwh_orders=safety.orders,
        bmi=anthro.bmi, weight_kg=anthro.weight_kg, crcl_lt_30=renal.crcl_lt_30,
        pregnant=pregnant, policy=p)
    note = evidence_note(
        contraindications=safety.contraindications, already_therapeutic=safety.already_therapeutic,
        critically_ill=crit.critically_ill, oxygen=crit.oxygen,
        d_dimer_multiple_range=dd.multiple_range if dd.determinable else None,
        cautions=safety.escalation_cautions, crcl_lt_30=renal.crcl_lt_30, policy=p,
        unchecked_cautions=tuple(c for c in safety.undetermined if c in CAUTIONS))
    rec = recommend(
        safety=safety, critically_ill=crit.critically_ill, oxygen=crit.oxygen,
        ecmo=inputs.respiratory.ecmo,
        d_dimer_multiple_range=dd.multiple_range if dd.determinable else None,
        pregnant=pregnant, renal_replacement=renal.renal_replacement,
        creatinine_rising=renal.creatinine_rising, weight_kg=anthro.weight_kg, bmi=anthro.bmi,
        crcl_ml_min=renal.crcl_ml_min, crcl_bound=renal.crcl_bound, encounter=scope.encounter,
        policy=p, age_uncertain=getattr(inputs, "age_uncertain", False))
    notes = list(regimen.notes) + list(rec.notes)
    if pregnant and inputs.d_dimer is not None:
        notes.append("d_dimer_pregnancy_caveat")  # §4.7: D-dimer rises in normal pregnancy
    if dd.basis_conflict:
        notes.append("d_dimer_basis_conflict")
    return Assessment(
        now=inputs.now, inputs=inputs, anthropometrics=anthro, renal=renal, d_dimer=dd,
        sofa=sofa, sic=sic, isth_dic=dic, seed_trigger=seed, critical_illness=crit,
        safety=safety, regimen=regimen, anti_xa=anti_xa, evidence_note=note, pregnant=pregnant,
        scope=scope, recommendation=rec, notes=tuple(notes),
        missing_by_output=_missing_by_output(inputs, anthro, renal, dd, sic, dic, crit, safety))
