"""Plain inputs of the clinical engine: the contract between `fhir/` and `logic/`.

`fhir/extract.py` fills a `PatientInputs` from FHIR resources: it has already applied
status, recency windows, patient scope and unit conversion, so every value here is in
the canonical unit of clinical-rules.md §0 and was measured at `time`. `logic/` never
sees FHIR. Every field may be None/empty: missing data is normal, and logic reports
"not determinable" rather than guessing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Comparator = Literal["<", "<=", ">", ">="]
Sex = Literal["male", "female"]
Modality = Literal["IMV", "NIV", "CPAP", "HFNC", "low-flow", "none"]


@dataclass(frozen=True)
class Measurement:
    """One observed value in canonical units.

    `comparator` makes `value` a bound (e.g. ">" 20 mg/L). `reported_value`/`reported_unit`
    keep what the lab sent (SOFA scores µmol/L on its own SI bands). `source` is a
    "Type/id" reference for display and audit.
    """

    value: float
    unit: str
    time: datetime | None = None
    comparator: Comparator | None = None
    reported_value: float | None = None
    reported_unit: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class DDimer:
    """Latest D-dimer. `value` is in mg/L (any basis).

    `basis_from_code` comes from the LOINC code (FEU/DDU or None for 7799-0/3246-6);
    `basis_from_unit` from a {FEU}/{DDU} annotation or unit text. `reference_high_mg_l` is a
    usable referenceRange.high (normal/untyped, no foreign appliesTo), in mg/L.
    """

    value: Measurement
    basis_from_code: Literal["FEU", "DDU"] | None = None
    basis_from_unit: Literal["FEU", "DDU"] | None = None
    reference_high_mg_l: float | None = None


@dataclass(frozen=True)
class ProthrombinTime:
    seconds: Measurement
    reference_high_s: float | None = None   # from the PT observation's own referenceRange
    normal_control_s: float | None = None   # lab-supplied normal control, if any


@dataclass(frozen=True)
class Vasoactive:
    """A vasoactive infusion running (or run) in the window.

    `rate_ug_kg_min` is None when the rate is unknown or cannot be put per kg.
    `meets_min_duration` is False when it has run less than sofa.vasoactive_min_minutes
    (True when the start is unknown on an in-progress record).
    """

    ingredient: Literal["norepinephrine", "epinephrine", "dopamine", "dobutamine",
                        "vasopressin", "phenylephrine"]
    rate_ug_kg_min: float | None = None
    meets_min_duration: bool = True
    source: str | None = None


@dataclass(frozen=True)
class RespiratorySupport:
    """Support recorded in window.respiratory_support_hours (Procedures + Observations)."""

    modalities: frozenset[str] = frozenset()   # subset of {"IMV","NIV","CPAP","HFNC","low-flow"}
    ecmo: bool = False
    vasopressor_procedure: bool = False         # SNOMED 870386000: support with no known rate
    room_air_documented: bool = False           # Observation 722742002, or FiO2 <= 0.21
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class MedicationOrder:
    """An anticoagulant/antiplatelet MedicationRequest, normalised (data requirements §8).

    Doses are per administration: `dose_mg` for mass-dosed agents, `dose_units` for
    heparin (U) and dalteparin/tinzaparin (IU). None when not determinable.
    `doses_per_day` None when the timing cannot be read.
    """

    ingredient: str
    drug_class: str                      # "lmwh", "anticoagulant", "doac", "vka", "dti", "antiplatelet"
    dose_mg: float | None = None
    dose_units: float | None = None
    doses_per_day: float | None = None
    route: Literal["subcutaneous", "intravenous"] | None = None
    continuous: bool = False             # rate given, or IV UFH
    status: str = "active"
    source: str | None = None            # "MedicationRequest/id" or "MedicationStatement/id"
    # v2 (data requirements §8; clinical rules §10.4, §13.1)
    authored_on: datetime | None = None  # MedicationRequest.authoredOn (statements: effective start)
    encounter_id: str | None = None      # id of MedicationRequest.encounter, when a literal reference
    # A code in an anticoagulant class that codes.json cannot map to an ingredient (ATC B01A*, or
    # an RxNorm product of an anticoagulant the file does not know): ingredient "unmapped",
    # drug_class UNMAPPED_ANTICOAGULANT. It is exposure (§10.4) and is never classified.
    # v3 (§19.4): ECMO/CRRT circuit heparin. It IS exposure, but never triggers the escalation
    # warning, `deescalate` or `review_therapeutic`.
    circuit: bool = False


UNMAPPED_ANTICOAGULANT = "unmapped_anticoagulant"


@dataclass(frozen=True)
class Flag:
    """A safety/condition flag with its evidence (for card text)."""

    present: bool
    source: str | None = None
    time: datetime | None = None


@dataclass(frozen=True)
class EncounterInfo:
    """One of the patient's Encounters (data requirements §2a), as read; logic/scope judges it.

    `class_code` is the v3-ActCode code of `Encounter.class` (or a code the data file maps to
    one); None when the class is absent or in another system.
    """

    id: str | None
    status: str | None
    class_code: str | None
    period_start: datetime | None = None
    source: str | None = None


@dataclass(frozen=True)
class CovidCondition:
    """An active (or recurrence/relapse) COVID-19 Condition (§6). `time` is the onset, else the
    recordedDate. logic/scope decides whether it is current (linked to the Encounter, or recent)."""

    encounter_id: str | None = None
    time: datetime | None = None
    source: str | None = None


@dataclass(frozen=True)
class HitRecord:
    """A HIT Condition or AllergyIntolerance reaction (§6, §7). `onset` only from a *dated* onset
    (onsetDateTime, onsetPeriod.start, reaction onset): a recordedDate never sets it."""

    onset: datetime | None = None
    source: str | None = None


@dataclass(frozen=True)
class Administration:
    """An anticoagulant MedicationAdministration (completed or in-progress), for the heparin
    start of `hit_suspected` and the assessment view's dose markers."""

    ingredient: str
    drug_class: str
    time: datetime | None = None
    dose_mg: float | None = None
    dose_units: float | None = None
    source: str | None = None
    flush: bool = False          # v3 §19.4: a heparin flush/lock given (heparin for HIT, not exposure)


@dataclass(frozen=True)
class RecordedSofa:
    respiratory: Measurement | None = None
    cardiovascular: Measurement | None = None
    hepatic: Measurement | None = None
    renal: Measurement | None = None
    coagulation: Measurement | None = None
    cns: Measurement | None = None
    total: Measurement | None = None


@dataclass(frozen=True)
class PatientInputs:
    now: datetime
    patient_id: str | None = None
    age_years: int | None = None
    sex: Sex | None = None                       # None for other/unknown/missing
    birth_date: str | None = None

    # Anthropometrics
    weight: Measurement | None = None            # kg
    height: Measurement | None = None            # cm
    recorded_bmi: Measurement | None = None      # kg/m2; used only when BMI cannot be computed

    # Labs (window.labs_hours)
    d_dimer: DDimer | None = None
    platelets: Measurement | None = None         # 10^9/L
    inr: Measurement | None = None               # ratio
    pt: ProthrombinTime | None = None            # seconds
    fibrinogen: Measurement | None = None        # g/L
    creatinine: Measurement | None = None        # mg/dL; reported_* keeps umol/L if so reported
    bilirubin: Measurement | None = None         # mg/dL; reported_* keeps umol/L if so reported
    hemoglobin: Measurement | None = None        # g/dL
    anti_xa: Measurement | None = None           # IU/mL (display only)

    # Bedside (SOFA)
    pf_ratio: Measurement | None = None          # mmHg: recorded P/F, or PaO2/FiO2 paired in fhir/
    pao2: Measurement | None = None              # mmHg (for display)
    fio2: Measurement | None = None              # fraction 0.21-1.0 (for display)
    map: Measurement | None = None               # mmHg
    gcs: Measurement | None = None               # 3-15
    urine_output_24h: Measurement | None = None  # mL/24 h
    recorded_sofa: RecordedSofa = field(default_factory=RecordedSofa)
    vasoactives: tuple[Vasoactive, ...] = ()

    respiratory: RespiratorySupport = field(default_factory=RespiratorySupport)

    # Conditions and allergies (data requirements §6-§7)
    covid19: Flag | None = None
    active_bleeding: Flag | None = None
    recent_bleeding: Flag | None = None
    bleeding_disorder: Flag | None = None
    hit_history: Flag | None = None
    heparin_allergy: Flag | None = None
    pregnancy: Flag | None = None

    # Current (active) orders; drafts are never current (data requirements §9). Heparin
    # flushes/locks and circuit heparin are never here (§8).
    orders: tuple[MedicationOrder, ...] = ()

    # ---- v2 (clinical rules v2; data requirements v2) ----
    # The hook context's encounterId (or `assess --encounter`); None when not given.
    encounter_id: str | None = None
    encounters: tuple[EncounterInfo, ...] = ()                # §2a, not entered-in-error
    covid_conditions: tuple[CovidCondition, ...] = ()         # §6, active/recurrence/relapse
    # Positive SARS-CoV-2 tests (§3.2) inside scope.covid_test_days, as Measurement-free events.
    covid_positive_tests: tuple[Flag, ...] = ()
    hit_records: tuple[HitRecord, ...] = ()                   # every HIT record (hit_history kept too)
    other_anticoagulation_indication: Flag | None = None     # VTE, AF/flutter, valve, thrombus
    recent_intracranial_haemorrhage: Flag | None = None      # onset within safety.recent_ich_days
    # Dialysis/CRRT Procedure in progress or within 72 h, or active ESKD: Flag(present=True);
    # Flag(present=False) when none is found.
    renal_replacement: Flag | None = None
    # Active MedicationStatements (home/reported medicines): exposure only, never classified.
    statements: tuple[MedicationOrder, ...] = ()
    administrations: tuple[Administration, ...] = ()          # anticoagulants, oldest first
    # Platelet counts in window.platelet_trend_days (platelet_trend + labs keys), oldest first.
    platelet_trend: tuple[Measurement, ...] = ()
    # Creatinine results in window.labs_hours, oldest first (mg/dL; reported_* as for creatinine).
    creatinine_series: tuple[Measurement, ...] = ()
    # Earliest heparin (UFH or LMWH, any dose; v3 §19.4: flushes and locks included) exposure:
    # first administration, else the earliest authoredOn of an active heparin order or flush.
    heparin_started: datetime | None = None
    # v3 (§19.4): active heparin flush/lock orders. Never anticoagulant exposure, but heparin
    # for HIT (the acute-HIT delete list, the hit_suspected heparin start).
    heparin_flushes: tuple[MedicationOrder, ...] = ()
    # v3 (§19.8): a partial birthDate (YYYY or YYYY-MM). `age_years` is from its earliest possible
    # day; `age_uncertain` when the latest possible day would make the patient under
    # scope.min_age_years (in scope, but never a therapeutic candidate; every card says so).
    birth_date_partial: bool = False
    age_uncertain: bool = False
    # v3 (§19.12): an active Z79.01 / Z86.711 / Z86.718 Condition (the home-statement half of
    # `possible_other_indication` is judged in logic/safety.py).
    possible_other_indication: Flag | None = None

    # v3 (clinical rules §19.3, §19.6; data requirements §8a), read by v3-orders:
    # active strong CYP3A4/P-gp inhibitors (orders or statements), by ingredient name;
    interacting_drugs: tuple[str, ...] = ()
    # the modality of the renal replacement evidence (§19.3 card text): "haemodialysis", "crrt",
    # "peritoneal", "dialysis" or "eskd"; None without renal replacement.
    renal_replacement_mode: str | None = None
    # the latest 4Ts score (site code via codes.extra_file) in the platelet-trend window.
    four_ts: Measurement | None = None

    # Why inputs were dropped (unknown unit, absurd value, ...): input name -> reason.
    rejected: dict[str, str] = field(default_factory=dict)
