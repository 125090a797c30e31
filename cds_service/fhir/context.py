"""Shared machinery of FHIR extraction (extract.py and its readers).

The read spec of every codes.json observation key, the resolved code sets, the check of the
resources actually used (model.py's structs, msgspec), the R4B validation of what the service
emits (R4BValidator, off the hot path) and the per-call context (now, policy, rejections).
"""
from __future__ import annotations

import hashlib
import re
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from importlib import import_module
from typing import Any, Mapping

import orjson
from cachetools import LRUCache

from ..logic.policy import Policy
from . import model
from .codes import CodeSet, Codes, Coding
from .read import parse_datetime, reference_target
from .typed import TypedObservation

log = logging.getLogger("cds_service.fhir.extract")

OBSERVATION_OK = frozenset({"final", "amended", "corrected"})
VERIFICATION_IGNORED = frozenset({"refuted", "entered-in-error"})
ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})


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
    # v3 §19.6 (data requirements §8a): a site's 4Ts score code (codes.extra_file; no LOINC code is
    # verified), read within hit.four_ts_clear_hours: an older score clears nothing.
    "four_ts": ObsSpec("four_ts", "four_ts", "hit.four_ts_clear_hours"),
    "on_oxygen": ObsSpec("on_oxygen", None, "window.respiratory_support_hours"),
    "weight": ObsSpec("weight", "weight", "window.weight_days"),
    "height": ObsSpec("height", "height", "window.height_days"),
    "bmi": ObsSpec("recorded_bmi", "recorded_bmi", "window.weight_days"),
    "pregnancy_status": ObsSpec("pregnancy_status", None, "window.pregnancy_status_days"),
}

_MODELS = {
    "Observation": "observation", "Patient": "patient", "Condition": "condition",
    "AllergyIntolerance": "allergyintolerance", "Procedure": "procedure",
    "MedicationRequest": "medicationrequest", "MedicationAdministration": "medicationadministration",
    "Medication": "medication", "Encounter": "encounter", "MedicationStatement": "medicationstatement",
}


# --------------------------------------------------------------------------- codes


@dataclass(frozen=True)
class Sets:
    obs_index: dict[Coding, tuple[str, ...]]
    basis: dict[str, str | None]
    obs_values: dict[str, CodeSet]
    conditions: dict[str, CodeSet]
    allergies: dict[str, CodeSet]
    procedures: dict[str, CodeSet]
    rr: dict[str, CodeSet]


# The codes.json key of SARS-CoV-2 tests (scope.py): not a measurement, but matched in the
# same single pass over the Observations (observations.collect).
SARS_COV_2 = "sars_cov_2"


@lru_cache(maxsize=8)
def code_sets(codes: Codes) -> Sets:
    """`obs_index`: (system, code) -> the codes.json observation keys it codes, for every key
    with a read spec and SARS_COV_2; the one lookup per coding of the single pass."""
    index: dict[Coding, list[str]] = {}
    for key in codes.observation_keys():
        if key not in OBS_SPECS and key != SARS_COV_2:
            continue
        for entry in codes.data["observations"][key]["codes"]:
            index.setdefault(codes.resolve(entry), []).append(key)
    return Sets(
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
def model_for(rtype: str) -> Any:
    module = _MODELS.get(rtype)
    return getattr(import_module(f"fhir.resources.R4B.{module}"), rtype) if module else None


def preload_models() -> None:
    """Import the R4B models used for validation (about 0.3 s once per process), so the
    first hook call does not pay for it. Call at app start-up."""
    for rtype in _MODELS:
        model_for(rtype)


# R4B verdicts by content digest, shared by all calls of the process: pydantic validation
# is ~0.1 ms per resource, and order-select re-fires on every edit with the same prefetch.
VERDICT_CACHE_SIZE = 4096
_verdicts: LRUCache = LRUCache(maxsize=VERDICT_CACHE_SIZE)
_verdicts_lock = threading.Lock()


def _log_dropped(resource: Mapping[str, Any], reason: str | None) -> None:
    # Never the resource id: ids are, or embed, the patient id (Patient/<mrn>,
    # Observation/<mrn>-plt), and no raw patient id may reach a log line (issue 14).
    if reason is not None:
        rtype = resource.get("resourceType")  # a type the service reads: reasons exist only for those
        log.warning("dropped a %s resource: %s", rtype[:40] if isinstance(rtype, str) else "(no type)",
                    loggable_reason(reason))


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|unknown field `[^`]*`")


def loggable_reason(reason: str) -> str:
    """A validation reason without the input it quotes (issue 21 M5): msgspec says
    "Invalid enum value 'x'" and "unknown field `x`", and x may be a name or an id."""
    return _QUOTED.sub(lambda m: "unknown field" if m.group(0).startswith("unknown") else "'…'", reason)[:200]


class Checker:
    """The hot-path check of used resources against what the service reads (model.py),
    memoised per resource object for one call. A dropped resource is logged with its reason."""

    def __init__(self) -> None:
        self._seen: dict[int, str | None] = {}

    def problem(self, resource: Mapping[str, Any]) -> str | None:
        key = id(resource)
        try:
            return self._seen[key]
        except KeyError:
            pass
        reason = self._seen[key] = self._reason(resource)
        _log_dropped(resource, reason)
        return reason

    @staticmethod
    def _reason(resource: Mapping[str, Any]) -> str | None:
        return model.problem(resource)


class R4BValidator:
    """Full fhir.resources R4B validation, for what the service emits (the updated draft of
    hooks/order_check.py), `cds-service assess --strict` and the tests; never on the hot path
    of reading data (Checker). Memoised per resource object and, process-wide, by content."""

    def __init__(self) -> None:
        self._seen: dict[int, str | None] = {}

    def problem(self, resource: Mapping[str, Any]) -> str | None:
        key = id(resource)
        if key not in self._seen:
            self._seen[key] = self._verdict(resource)
        return self._seen[key]

    @classmethod
    def _verdict(cls, resource: Mapping[str, Any]) -> str | None:
        try:
            digest = hashlib.blake2b(orjson.dumps(resource), digest_size=16).digest()
        except (orjson.JSONEncodeError, TypeError):  # e.g. an integer beyond 64 bits
            reason = cls._check(resource)
            _log_dropped(resource, reason)
            return reason
        with _verdicts_lock:
            cached = _verdicts.get(digest, _verdicts)
        if cached is not _verdicts:
            return cached
        reason = cls._check(resource)
        _log_dropped(resource, reason)  # once per content; a re-fired hook does not repeat it
        with _verdicts_lock:
            _verdicts[digest] = reason
        return reason

    @staticmethod
    def _check(resource: Mapping[str, Any]) -> str | None:
        rtype = resource.get("resourceType")
        model = model_for(rtype)  # type: ignore[arg-type]
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
            return f"not valid FHIR R4B ({reason})"
        return None


Validator = R4BValidator   # the name hooks/order_check.py imports


class StrictChecker(Checker):
    """`cds-service assess --strict`: the hot-path check, then full fhir.resources R4B
    validation of every used resource (the pre-issue-15 behaviour, plus the struct rules)."""

    @staticmethod
    def _reason(resource: Mapping[str, Any]) -> str | None:
        return model.problem(resource) or R4BValidator._check(resource)


# --------------------------------------------------------------------------- helpers


def source_of(resource: Mapping[str, Any]) -> str | None:
    rid = resource.get("id")
    return f"{resource.get('resourceType')}/{rid}" if isinstance(rid, str) else None


def window_span(policy: Policy, key: str) -> timedelta | None:
    value = policy[key]
    if value is None:
        return None
    return timedelta(days=value) if key.endswith("_days") else timedelta(hours=value)


class Candidate:
    """One value an Observation may give an input: `key` (codes.json observation key), the
    Observation, the `holder` carrying the value (the Observation itself or its component
    number order[2]; found when first read), the time and the tie-break `order`
    (issued, position, component number). The Observation of a typed prefetch
    (typed.TypedObservation) is decoded to its dict when first read."""

    __slots__ = ("key", "_resource", "_holder", "time", "order")

    def __init__(self, key: str, resource: Any, holder: dict | None, time: datetime,
                 order: tuple[datetime, int, int]):
        self.key, self._resource, self._holder, self.time, self.order = key, resource, holder, time, order

    @property
    def resource(self) -> dict:
        resource = self._resource
        if type(resource) is TypedObservation:
            resource = self._resource = resource.resource
        return resource

    @property
    def holder(self) -> dict:
        holder = self._holder
        if holder is None:
            n = self.order[2]
            resource = self.resource
            holder = self._holder = resource if n == 0 else resource["component"][n - 1]
        return holder

    def __repr__(self) -> str:
        return f"Candidate({self.key!r}, time={self.time.isoformat()}, order={self.order!r})"


@dataclass
class Context:
    now: datetime
    policy: Policy
    codes: Codes
    sets: Sets
    validator: Checker
    sex: str | None = None
    age: int | None = None
    rejected: dict[str, str] = field(default_factory=dict)
    # literal references (a Bundle entry's `urn:uuid:` fullUrl) -> "Type/id" (assess CLI)
    aliases: Mapping[str, str] = field(default_factory=dict)
    _bounds: dict[str | None, tuple[datetime, datetime | None]] = field(default_factory=dict)

    def in_window(self, time: datetime | None, window_key: str | None) -> bool:
        if time is None:
            return False
        # Bounds computed once per window key (this runs for every Observation).
        bounds = self._bounds.get(window_key)
        if bounds is None:
            latest = self.now + timedelta(minutes=self.policy["window.future_tolerance_minutes"])
            span = window_span(self.policy, window_key) if window_key else None
            bounds = self._bounds[window_key] = (latest, None if span is None else self.now - span)
        latest, earliest = bounds
        return time <= latest and (earliest is None or time >= earliest)

    def target(self, reference: Any) -> tuple[str | None, str | None]:
        """reference_target, with a `urn:uuid:` literal read through the Bundle's aliases."""
        if isinstance(reference, dict) and isinstance(reference.get("reference"), str) \
                and reference["reference"] in self.aliases:
            reference = {"reference": self.aliases[reference["reference"]]}
        return reference_target(reference)

    def reject(self, name: str, reason: str) -> None:
        self.rejected.setdefault(name, reason)


MIN_TIME = datetime.min.replace(tzinfo=timezone.utc)   # sorts an absent `issued` first


def first_time(*values: Any) -> datetime | None:
    for value in values:
        dt = parse_datetime(value)
        if dt is not None:
            return dt
    return None
