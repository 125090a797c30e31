"""Example hook requests, generated with dates relative to "now".

The hook evaluates data against windows that count back from the request time (72 h for
labs), so a request body with fixed dates goes stale within days. Each example here is a
scenario (patient, observations with their age in hours, conditions, procedures, orders,
drafts); `build(name, now)` turns it into a full-prefetch request body dated around `now`.

- `cds-service example NAME` prints a fresh body (pipe it into curl with `-d @-`);
- `cds-service example --write-all DIR` rewrites the reference copies in examples/, dated
  at STATIC_NOW so they are reproducible (tests check they are in sync);
- tests build their bodies the same way.

Codes come from codes.json (by key), never typed here, except the v2 scope evidence below
(Encounter class from v3-ActCode, the SARS-CoV-2 test LOINC and its SNOMED result), which is
FHIR furniture rather than a clinical code list.

v2 scope (clinical rules §1a): every scenario is an adult inpatient with COVID-19. Each one has
an in-progress Encounter (class IMP) named in the context's `encounterId`, and COVID-19
evidence: a Condition linked to that Encounter, or (`covid_evidence="test"`) a positive
SARS-CoV-2 PCR within 14 days. The prefetch carries every key the service's templates declare
(v2: `encounters`, `statements`, `covid_tests`, `platelet_trend`); keys the templates do not
declare are not sent.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..fhir.codes import Codes, load_codes
from ..fhir.templates import prefetch_templates
from ..fhir.units import UCUM

STATIC_NOW = datetime(2025, 1, 15, 12, 0, tzinfo=timezone.utc)
_NAMESPACE = uuid.UUID("6f1c8a4e-3b7d-4c1a-9e2f-5d8b7a6c4e30")

# Observation key -> (UCUM code, display unit)
_UNITS = {
    "d_dimer_feu": ("mg/L{FEU}", "mg/L FEU"),
    "platelets": ("10*3/uL", "10^3/uL"),
    "inr": ("{INR}", "INR"),
    "pt_seconds": ("s", "s"),
    "fibrinogen": ("g/L", "g/L"),
    "creatinine_mass": ("mg/dL", "mg/dL"),
    "bilirubin_mass": ("mg/dL", "mg/dL"),
    "hemoglobin_mass": ("g/dL", "g/dL"),
    "pf_ratio": ("mm[Hg]", "mmHg"),
    "map": ("mm[Hg]", "mmHg"),
    "gcs": ("{score}", "score"),
    "weight": ("kg", "kg"),
    "height": ("cm", "cm"),
}
_PREFETCH_OF = {"labs", "bedside", "body"}


@dataclass(frozen=True)
class Obs:
    key: str                      # codes.json observation key
    value: float
    hours_ago: float
    ref_high: float | None = None


@dataclass(frozen=True)
class Draft:
    """A draft MedicationRequest in context.draftOrders."""

    id: str
    product: str | None           # codes.json suggestion_products key; None: no drug picked yet
    dose_mg: float | None = None
    dose_units: float | None = None
    doses_per_day: int = 1
    selected: bool = True


@dataclass(frozen=True)
class Scenario:
    name: str
    hook: str
    title: str
    expect: tuple[str, str] | None   # (indicator, card kind) of the one card expected; None: no cards
    patient_id: str
    gender: str
    age: int
    observations: tuple[Obs, ...]
    conditions: tuple[tuple[str, str, str, float], ...] = ()   # (codes key, alias, status, days ago)
    procedures: tuple[tuple[str, float], ...] = ()             # (codes key, hours since start), in progress
    active_orders: tuple[Draft, ...] = ()                      # active MedicationRequests
    drafts: tuple[Draft, ...] = ()
    extra_drafts: tuple[dict, ...] = ()                        # non-anticoagulant drafts (context only)
    encounter_id: str | None = None                            # default: "<patient_id>-enc"
    covid_evidence: str = "condition"                          # "condition" (linked) or "test" (positive PCR)

    @property
    def encounter(self) -> str:
        return self.encounter_id or f"{self.patient_id}-enc"

    @property
    def file_name(self) -> str:
        return f"{self.hook}-{self.name.removeprefix('sign-')}.json"


def _labs(hours: float, **values: float) -> tuple[Obs, ...]:
    return tuple(Obs(key, value, hours) for key, value in values.items())


_COVID = (("covid19", "ICD10CM", "active", 4),)
_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# data requirements §3.2: LOINC 94500-6 (SARS-CoV-2 RNA, respiratory specimen, NAA with probe
# detection), result SNOMED 260373001 "Detected".
_SARS_COV_2_PCR = {"system": "http://loinc.org", "code": "94500-6",
                   "display": "SARS-CoV-2 (COVID-19) RNA [Presence] in Respiratory system specimen by NAA "
                              "with probe detection"}
_DETECTED = {"system": "http://snomed.info/sct", "code": "260373001", "display": "Detected"}
_LOW_FLOW = (("nasal_cannula", 30),)

_BMI_42 = Scenario(
    "bmi-42", "order-select", "Draft enoxaparin 40 mg daily at BMI 42.2",
    ("warning", "dose_correction"),
    "example-obese", "female", 55,
    (Obs("d_dimer_feu", 1.6, 10, ref_high=0.5),)
    + _labs(10, platelets=260, inr=1.0, fibrinogen=4.0, creatinine_mass=0.8, hemoglobin_mass=12.8)
    + _labs(24, weight=115) + _labs(300, height=165),
    conditions=_COVID, procedures=_LOW_FLOW, encounter_id="enc-obese",
    drafts=(Draft("draft-enox-obese", "enoxaparin_40", dose_mg=40),))

_ALL = [
    Scenario(
        "sic-positive", "patient-view", "ICU patient on high-flow oxygen, SIC 5, D-dimer 7.2x ULN, BMI 30.4",
        ("warning", "prophylaxis_suggestion"),
        "example-sic", "male", 66,
        (Obs("d_dimer_feu", 3.6, 6, ref_high=0.5), Obs("pt_seconds", 15.1, 6, ref_high=13.5))
        + _labs(6, platelets=95, inr=1.3, fibrinogen=3.2, creatinine_mass=1.1, bilirubin_mass=1.0,
                hemoglobin_mass=11.2)
        + _labs(2, pf_ratio=180, map=72, gcs=15) + _labs(48, weight=88) + _labs(240, height=170),
        conditions=_COVID, procedures=(("HFNC", 20),), encounter_id="enc-sic"),
    Scenario(
        "d-dimer-ward", "patient-view", "Ward patient on low-flow oxygen, D-dimer 8.4x ULN, SIC negative",
        ("warning", "prophylaxis_suggestion"),
        "example-ward", "female", 58,
        (Obs("d_dimer_feu", 4.2, 8, ref_high=0.5), Obs("pt_seconds", 12.9, 8, ref_high=13.5))
        + _labs(8, platelets=210, inr=1.1, fibrinogen=4.1, creatinine_mass=0.8, bilirubin_mass=0.6,
                hemoglobin_mass=12.5)
        + _labs(3, pf_ratio=290, map=85, gcs=15) + _labs(24, weight=70) + _labs(300, height=165),
        conditions=_COVID, procedures=_LOW_FLOW, encounter_id="enc-ward"),
    Scenario(
        "contraindicated", "patient-view", "SIC positive with active GI bleeding",
        ("critical", "contraindicated"),
        "example-bleed", "male", 71,
        (Obs("d_dimer_feu", 5.0, 5, ref_high=0.5),)
        + _labs(5, platelets=88, inr=1.6, fibrinogen=2.1, creatinine_mass=1.0, bilirubin_mass=0.9,
                hemoglobin_mass=7.4)
        + _labs(2, pf_ratio=260, map=68, gcs=15) + _labs(30, weight=76) + _labs(500, height=178),
        conditions=_COVID + (("bleeding", "ICD10CM", "active", 1),), procedures=_LOW_FLOW),
    Scenario(
        "hit", "patient-view", "D-dimer 6.8x ULN with a history of heparin-induced thrombocytopenia",
        ("critical", "contraindicated"),
        "example-hit", "female", 49,
        (Obs("d_dimer_feu", 3.4, 10, ref_high=0.5),)
        + _labs(10, platelets=160, inr=1.2, fibrinogen=3.8, creatinine_mass=0.7, bilirubin_mass=0.5,
                hemoglobin_mass=12.1)
        + _labs(4, pf_ratio=310, map=80, gcs=15) + _labs(20, weight=64) + _labs(400, height=160),
        conditions=_COVID + (("hit", "ICD10CM", "resolved", 1100),), procedures=_LOW_FLOW),
    Scenario(
        "not-determinable", "patient-view", "On prophylaxis; no D-dimer, platelet count or INR in 72 h",
        ("info", "not_determinable"),
        "example-stale", "male", 60,
        (Obs("d_dimer_feu", 1.9, 120, ref_high=0.5),)
        + _labs(120, platelets=190, inr=1.1, creatinine_mass=0.9)
        + _labs(20, weight=80) + _labs(600, height=180),
        conditions=_COVID, active_orders=(Draft("active-enox-stale", "enoxaparin_40", dose_mg=40),)),
    Scenario(
        "standard-prophylaxis", "patient-view", "No coagulopathy signal and no anticoagulant ordered",
        ("info", "standard_prophylaxis"),
        "example-standard", "female", 45,
        # D-dimer 0.9x ULN: not above the ULN, so not a v2 therapeutic candidate (rules §13.1)
        (Obs("d_dimer_feu", 0.45, 12, ref_high=0.5),)
        + _labs(12, platelets=240, inr=1.0, fibrinogen=3.5, creatinine_mass=0.7, bilirubin_mass=0.4,
                hemoglobin_mass=13.0)
        + _labs(6, pf_ratio=380, map=88, gcs=15) + _labs(12, weight=62) + _labs(200, height=168),
        procedures=_LOW_FLOW, covid_evidence="test"),
    Scenario(
        "nothing-to-say", "patient-view", "No coagulopathy signal, prophylaxis already ordered",
        None,
        "example-quiet", "male", 52,
        (Obs("d_dimer_feu", 1.2, 12, ref_high=0.5),)
        + _labs(12, platelets=230, inr=1.0, fibrinogen=3.1, creatinine_mass=0.9, bilirubin_mass=0.5,
                hemoglobin_mass=14.0)
        + _labs(6, pf_ratio=400, map=90, gcs=15) + _labs(12, weight=78) + _labs(200, height=176),
        conditions=_COVID, active_orders=(Draft("active-enox-quiet", "enoxaparin_40", dose_mg=40),)),
    _BMI_42,
    Scenario(
        "crcl-22", "order-select", "Draft enoxaparin 40 mg daily at CrCl 22 mL/min",
        ("warning", "dose_correction"),
        "example-renal", "male", 78,
        (Obs("d_dimer_feu", 1.4, 10, ref_high=0.5),)
        + _labs(10, platelets=180, inr=1.1, fibrinogen=3.6, creatinine_mass=2.6, hemoglobin_mass=11.5)
        + _labs(24, weight=70) + _labs(300, height=172),
        conditions=_COVID, procedures=_LOW_FLOW, encounter_id="enc-renal",
        drafts=(Draft("draft-enox-renal", "enoxaparin_40", dose_mg=40),)),
    Scenario(
        "q12h-renal", "order-select", "Ward patient, draft enoxaparin 1 mg/kg every 12 h at CrCl 28.5 mL/min",
        ("critical", "dose_above_maximum"),
        "example-renal-tx", "male", 70,
        (Obs("d_dimer_feu", 2.2, 10, ref_high=0.5),)
        + _labs(10, platelets=210, inr=1.1, fibrinogen=3.9, creatinine_mass=2.4, hemoglobin_mass=12.0)
        + _labs(24, weight=80) + _labs(300, height=175),
        conditions=_COVID, procedures=_LOW_FLOW, encounter_id="enc-renal-tx",
        drafts=(Draft("draft-enox-q12h", "enoxaparin_80", dose_mg=80, doses_per_day=2),)),
    Scenario(
        "hit-switch", "order-select", "Draft enoxaparin 40 mg daily with a history of HIT",
        ("warning", "product_switch"),   # v2 §18.4: HIT history + heparin draft is a warning
        "example-hit-order", "female", 49,
        (Obs("d_dimer_feu", 1.5, 10, ref_high=0.5),)
        + _labs(10, platelets=160, inr=1.2, fibrinogen=3.8, creatinine_mass=0.7, hemoglobin_mass=12.1)
        + _labs(20, weight=64) + _labs(400, height=160),
        conditions=_COVID + (("hit", "ICD10CM", "resolved", 1100),), procedures=_LOW_FLOW,
        drafts=(Draft("draft-enox-hit", "enoxaparin_40", dose_mg=40),)),
    Scenario(
        "escalation-icu", "order-select", "Ventilated patient, draft enoxaparin 80 mg every 12 h",
        ("warning", "escalation_warning"),
        "example-icu", "male", 63,
        (Obs("d_dimer_feu", 2.8, 6, ref_high=0.5),)
        + _labs(6, platelets=170, inr=1.2, fibrinogen=4.4, creatinine_mass=1.0, bilirubin_mass=0.8,
                hemoglobin_mass=11.0)
        + _labs(2, pf_ratio=160, map=74, gcs=15) + _labs(24, weight=82) + _labs(300, height=178),
        conditions=_COVID, procedures=(("IMV", 40),), encounter_id="enc-icu",
        drafts=(Draft("draft-enox-icu", "enoxaparin_80", dose_mg=80, doses_per_day=2),)),
    Scenario(
        "dose-ok", "order-select", "Draft enoxaparin 40 mg daily at BMI 25.2, CrCl normal",
        None,
        "example-dose-ok", "male", 52,
        (Obs("d_dimer_feu", 1.2, 12, ref_high=0.5),)
        + _labs(12, platelets=230, inr=1.0, fibrinogen=3.1, creatinine_mass=0.9, hemoglobin_mass=14.0)
        + _labs(12, weight=78) + _labs(200, height=176),
        conditions=_COVID, procedures=_LOW_FLOW,
        drafts=(Draft("draft-enox-ok", "enoxaparin_40", dose_mg=40),)),
    Scenario(
        "no-medication", "order-select", "Draft order before a drug is picked",
        None,
        "example-no-med", "male", 52,
        _labs(12, platelets=230, inr=1.0) + _labs(12, weight=78) + _labs(200, height=176),
        conditions=_COVID, drafts=(Draft("request-123", None),)),
    replace(_BMI_42, name="sign-bmi-42", hook="order-sign",
            title="Signing a draft enoxaparin 40 mg daily at BMI 42.2 (and a paracetamol draft)",
            drafts=(replace(_BMI_42.drafts[0], selected=False),),
            extra_drafts=({"resourceType": "MedicationRequest", "id": "draft-paracetamol", "status": "draft",
                           "intent": "order", "medicationCodeableConcept": {"text": "paracetamol 1 g tablet"}},)),
]
SCENARIOS: dict[str, Scenario] = {s.name: s for s in _ALL}

# The card each example should give once the v2 cards (clinical rules §18.1 patient-view
# catalogue, §18.4 order hooks) are in place, worked out by hand from the rules: (indicator,
# card kind) or None for no card. `Scenario.expect` keeps the v1 card until then; the test that
# reads this table is gated on the v2 card catalogue (tests/test_integration_kit.py).
EXPECT_V2: dict[str, tuple[str, str] | None] = {
    "sic-positive": ("warning", "prophylaxis_suggestion"),  # HFNC: critically ill; SIC 5: signal; 60 mg
    "d-dimer-ward": ("warning", "therapeutic_candidate"),   # low-flow, D-dimer 8.4x, no caution: 70 mg q12h
    "contraindicated": ("warning", "contraindicated"),      # active bleeding, nothing active: warning
    "hit": ("warning", "heparin_avoidance"),                # HIT onset 1100 d: history; fondaparinux create
    "not-determinable": None,                               # cards.not_determinable = "none"; 40 mg matches
    "standard-prophylaxis": ("info", "standard_prophylaxis"),  # D-dimer 0.9x: not a candidate, no signal
    "nothing-to-say": None,
    "bmi-42": ("warning", "dose_correction"),               # BMI 42.2 >= 40: 40 mg -> 80 mg, warning
    "crcl-22": ("warning", "dose_correction"),              # CrCl 22.4: 40 mg -> 30 mg
    "q12h-renal": ("critical", "dose_above_maximum"),     # §19.3: twice daily above 30 mg at CrCl 15-<30 is critical; 1 mg/kg once daily
    "hit-switch": ("warning", "product_switch"),            # §18.4: hit_history + heparin draft is a warning
    "escalation-icu": ("warning", "escalation_warning"),    # IMV, 80 mg q12h (0.98 mg/kg)
    "dose-ok": None,
    "no-medication": None,
    "sign-bmi-42": ("warning", "dose_correction"),
}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _first(codes: Codes, entries: list[str], alias: str | None = None) -> dict:
    for entry in entries:
        if (alias is None or entry.startswith(alias + ":")) and not entry.endswith("*"):
            system, code = codes.resolve(entry)
            return {"system": system, "code": code}
    raise KeyError(f"no {alias or 'code'} entry among {entries}")


def _observation(codes: Codes, pid: str, index: int, obs: Obs, now: datetime) -> dict:
    ucum, unit = _UNITS[obs.key]
    quantity = {"value": obs.value, "unit": unit, "system": UCUM, "code": ucum}
    at = _iso(now - timedelta(hours=obs.hours_ago))
    resource = {
        "resourceType": "Observation",
        "id": f"{pid}-{obs.key.replace('_', '-')}-{index}",
        "status": "final",
        "code": {"coding": [_first(codes, codes.data["observations"][obs.key]["codes"])],
                 "text": obs.key.replace("_", " ")},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": at,
        "issued": at,
        "valueQuantity": quantity,
    }
    if obs.ref_high is not None:
        resource["referenceRange"] = [{"high": {**quantity, "value": obs.ref_high}}]
    return resource


def _medication_request(codes: Codes, pid: str, encounter_id: str | None, draft: Draft, status: str,
                        now: datetime) -> dict:
    from ..cards.build import dosage, product, references  # the same shapes the service suggests

    resource: dict[str, Any] = {"resourceType": "MedicationRequest", "id": draft.id, "status": status,
                                "intent": "order", **references(pid, encounter_id),
                                "authoredOn": _iso(now - timedelta(hours=24 if status == "active" else 0))}
    if draft.product:
        resource["medicationCodeableConcept"] = product(codes, draft.product)
        resource["dosageInstruction"] = [dosage(codes, dose_mg=draft.dose_mg, dose_units=draft.dose_units,
                                                doses_per_day=draft.doses_per_day)]
    return resource


def _searchset(resources: list[dict]) -> dict:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(resources)}
    if resources:
        bundle["entry"] = [{"fullUrl": f"urn:uuid:{uuid.uuid5(_NAMESPACE, r['resourceType'] + r['id'])}",
                            "resource": r, "search": {"mode": "match"}} for r in resources]
    return bundle


def _key_of(codes: Codes, observation: dict) -> str:
    """The codes.json observation key of an example Observation (its first coding)."""
    coding = observation["code"]["coding"][0]
    for key in codes.observation_keys():
        if any(codes.resolve(e) == (coding["system"], coding["code"])
               for e in codes.data["observations"][key]["codes"]):
            return key
    return ""


def build(name: str, now: datetime | None = None, codes: Codes | None = None) -> dict:
    """The request body of scenario `name`, dated relative to `now` (default: the clock)."""
    if name not in SCENARIOS:
        raise KeyError(f"unknown example {name!r}; known: {', '.join(SCENARIOS)}")
    s = SCENARIOS[name]
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    codes = codes or load_codes()
    pid = s.patient_id
    groups: dict[str, list[dict]] = {key: [] for key in _PREFETCH_OF}
    ordered = sorted(enumerate(s.observations), key=lambda pair: pair[1].hours_ago)  # _sort=-date
    for index, obs in ordered:
        groups[codes.data["observations"][obs.key]["prefetch"]].append(
            _observation(codes, pid, index, obs, now))
    encounter_id = s.encounter
    conditions = [{
        "resourceType": "Condition", "id": f"{pid}-{key}",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": status}]},
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "code": {"coding": [_first(codes, codes.data["conditions"][key], alias)], "text": key},
        "subject": {"reference": f"Patient/{pid}"},
        # The admission diagnosis is linked to this Encounter (clinical rules §1a).
        **({"encounter": {"reference": f"Encounter/{encounter_id}"}} if key == "covid19" else {}),
        "onsetDateTime": _iso(now - timedelta(days=days)),
    } for key, alias, status, days in s.conditions]
    encounters = [{
        "resourceType": "Encounter", "id": encounter_id, "status": "in-progress",
        "class": {"system": _ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": _iso(now - timedelta(days=5))},
    }]
    covid_tests = [] if s.covid_evidence != "test" else [{
        "resourceType": "Observation", "id": f"{pid}-sars-cov-2-pcr", "status": "final",
        "code": {"coding": [_SARS_COV_2_PCR], "text": "SARS-CoV-2 RNA (PCR)"},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": _iso(now - timedelta(days=2)),
        "issued": _iso(now - timedelta(days=2) + timedelta(hours=3)),
        "valueCodeableConcept": {"coding": [_DETECTED], "text": "Detected"},
    }]
    procedures = [{
        "resourceType": "Procedure", "id": f"{pid}-{key.lower().replace('_', '-')}", "status": "in-progress",
        "code": {"coding": [_first(codes, codes.data["procedures"][key])], "text": key},
        "subject": {"reference": f"Patient/{pid}"},
        "performedPeriod": {"start": _iso(now - timedelta(hours=hours))},
    } for key, hours in s.procedures]
    orders = [_medication_request(codes, pid, encounter_id, o, "active", now) for o in s.active_orders]
    available = {
        "patient": {"resourceType": "Patient", "id": pid, "gender": s.gender,
                    "birthDate": f"{now.year - s.age}-01-01"},
        **{key: _searchset(groups[key]) for key in ("labs", "bedside", "body")},
        "conditions": _searchset(conditions),
        "medications": _searchset(orders),
        "administrations": _searchset([]),
        "allergies": _searchset([]),
        "procedures": _searchset(procedures),
        # v2 keys (fhir-data-requirements §10): the platelet counts also answer platelet_trend.
        "encounters": _searchset(encounters),
        "statements": _searchset([]),
        "covid_tests": _searchset(covid_tests),
        "platelet_trend": _searchset([o for o in groups["labs"] if "platelet_trend" in codes.data[
            "observations"][_key_of(codes, o)].get("also_prefetch", ())]),
    }
    templates = prefetch_templates(codes)
    missing = set(templates) - set(available)
    assert not missing, f"examples out of step with the prefetch templates: {missing}"
    prefetch = {key: available[key] for key in available if key in templates}
    context: dict[str, Any] = {"userId": "Practitioner/example", "patientId": pid, "encounterId": encounter_id}
    if s.hook != "patient-view":
        drafts = [_medication_request(codes, pid, encounter_id, d, "draft", now) for d in s.drafts]
        entries = drafts + [dict(extra, subject={"reference": f"Patient/{pid}"}) for extra in s.extra_drafts]
        if s.hook == "order-select":
            context["selections"] = [f"MedicationRequest/{d.id}" for d in s.drafts if d.selected]
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": r} for r in entries]}
    return {
        "hook": s.hook,
        "hookInstance": str(uuid.uuid5(_NAMESPACE, f"{name}|{_iso(now)}")),
        # Full prefetch: the service reads nothing from this server unless a key is removed.
        "fhirServer": "http://127.0.0.1:8080/fhir",
        "context": context,
        "prefetch": prefetch,
    }


def write_all(directory: Path, now: datetime = STATIC_NOW) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, scenario in SCENARIOS.items():
        path = directory / scenario.file_name
        path.write_text(json.dumps(build(name, now), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def run(args) -> int:
    import sys

    if args.list or not (args.name or args.write_all):
        width = max(map(len, SCENARIOS))
        for name, s in SCENARIOS.items():
            print(f"{name:<{width}}  {s.hook:<12}  {s.title}")
        return 0
    now = None
    if args.now:
        try:
            now = datetime.fromisoformat(args.now)
        except ValueError:
            print(f"cds-service example: --now {args.now!r} is not an ISO date-time", file=sys.stderr)
            return 2
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
    if args.write_all:
        for path in write_all(Path(args.write_all), now or STATIC_NOW):
            print(path)
        return 0
    try:
        body = build(args.name, now)
    except KeyError as exc:
        print(f"cds-service example: {exc.args[0]}", file=sys.stderr)
        return 2
    print(json.dumps(body, indent=2))
    return 0
