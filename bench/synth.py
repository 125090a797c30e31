"""Synthetic, realistic patient data for the benchmark, the FHIR stub and the reliability tests.

One hospitalised COVID-19 patient with a sepsis-like coagulopathy, all dates relative to
`now`. Observations come from repeating series (labs 12-hourly, blood gases 6-hourly, MAP
hourly, GCS 4-hourly, urine daily, weight and height), interleaved newest first, so any
count (10 or 10,000) keeps a realistic mix. Codes and units are read from the packaged
codes.json, so the data follows the code file.
"""
from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from cds_service.fhir.codes import load_codes
from cds_service.fhir.templates import prefetch_templates
from cds_service.fhir.units import UCUM



# (codes.json observation key, UCUM unit, value at t=0, change per sample back in time, hours
# between samples, reference range high or None). Values sit near the SIC/DIC band edges.
SERIES = [
    ("d_dimer_feu", "ng/mL", 2400.0, -75.0, 12, 500.0),
    ("platelets", "10*3/uL", 112.0, 9.0, 12, None),
    ("inr", "{INR}", 1.5, -0.05, 12, None),
    ("pt_seconds", "s", 16.2, -0.4, 12, 13.5),
    ("fibrinogen", "g/L", 2.1, 0.3, 12, None),
    ("creatinine_mass", "mg/dL", 1.4, -0.1, 12, None),
    ("bilirubin_mass", "mg/dL", 1.3, -0.1, 12, None),
    ("hemoglobin_mass", "g/dL", 11.8, 0.2, 12, None),
    ("pao2", "mm[Hg]", 72.0, 2.0, 6, None),
    ("fio2", "%", 40.0, -2.0, 6, None),
    ("map", "mm[Hg]", 71.0, 0.5, 1, None),
    ("gcs", "{score}", 15.0, 0.0, 4, None),
    ("urine_24h", "mL", 1150.0, 50.0, 24, None),
    ("weight", "kg", 86.5, 0.2, 24, None),
    ("height", "cm", 178.0, 0.0, 24 * 30, None),
]


ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def encounter_id(pid: str) -> str:
    return f"{pid}-enc"


def _coding(entry: str) -> dict[str, str]:
    system, code = load_codes().resolve(entry)
    return {"system": system, "code": code}


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def prefetch_group(obs_key: str) -> str:
    return load_codes().data["observations"][obs_key]["prefetch"]


def _observation(pid: str, key: str, unit: str, value: float, when: datetime, ref_high: float | None,
                 seq: int) -> dict[str, Any]:
    codes = load_codes().data["observations"][key]["codes"]
    category = "laboratory" if prefetch_group(key) == "labs" else "vital-signs"
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"{pid}-{key.replace('_', '-')}-{seq}",  # FHIR ids allow no '_'
        "meta": {"lastUpdated": _ts(when + timedelta(minutes=20))},
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": category}]}],
        "code": {"coding": [_coding(codes[0])], "text": key.replace("_", " ")},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": _ts(when),
        "issued": _ts(when + timedelta(minutes=20)),
        "valueQuantity": {"value": round(value, 2), "unit": unit, "system": UCUM, "code": unit},
    }
    if ref_high is not None:
        obs["referenceRange"] = [{"high": {"value": ref_high, "unit": unit, "system": UCUM, "code": unit}}]
    return obs


def observations(pid: str, n: int, now: datetime | None = None) -> list[dict[str, Any]]:
    """`n` Observations, newest first across all series (the `_sort=-date` order)."""
    return [obs for _, obs in _keyed_observations(pid, n, now)]


def _keyed_observations(pid: str, n: int, now: datetime | None) -> list[tuple[str, dict[str, Any]]]:
    """(codes.json observation key, Observation) pairs, newest first."""
    now = now or datetime.now(timezone.utc)
    streams = []
    for key, unit, v0, step, every_h, ref in SERIES:
        def stream(key=key, unit=unit, v0=v0, step=step, every_h=every_h, ref=ref) -> Iterator:
            for i in itertools.count():
                when = now - timedelta(hours=every_h * i, minutes=35)
                yield when, (key, _observation(pid, key, unit, max(v0 + step * i, 0.1), when, ref, i))
        streams.append(stream())
    heads = [next(s) for s in streams]
    out: list[tuple[str, dict[str, Any]]] = []
    while len(out) < n:  # merge the series by time, newest first
        i = max(range(len(heads)), key=lambda k: heads[k][0])
        out.append(heads[i][1])
        heads[i] = next(streams[i])
    return out


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "male", "birthDate": "1958-03-14",
            "name": [{"family": "Bench", "given": ["Arthur"]}]}


def _medication_concept(product: str) -> dict[str, Any]:
    spec = load_codes().data["suggestion_products"][product]
    return {"text": spec["text"], "coding": [{**_coding(spec["code"]), "display": spec["display"]}]}


def medication_request(pid: str, rid: str, status: str, product: str = "enoxaparin_40",
                       dose_mg: float = 40) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest", "id": rid, "status": status, "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": _medication_concept(product),
        "dosageInstruction": [{
            "text": f"{dose_mg:g} mg SC once daily",
            "route": {"coding": [_coding(load_codes().data["routes"]["subcutaneous"][0])]},
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}],
        }],
    }


def record(pid: str, n_obs: int = 150, now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
    """Resources by prefetch key (the Patient under 'patient', a one-item list)."""
    now = now or datetime.now(timezone.utc)
    codes = load_codes().data
    by_key: dict[str, list[dict[str, Any]]] = {k: [] for k in prefetch_templates()}
    by_key["patient"] = [patient(pid)]
    for key, obs in _keyed_observations(pid, n_obs, now):
        by_key[prefetch_group(key)].append(obs)
    # v2 scope (clinical rules §1a): an in-progress inpatient Encounter, named in the context
    # (hook_request), with the COVID-19 Condition linked to it.
    by_key["encounters"] = [{
        "resourceType": "Encounter", "id": encounter_id(pid), "status": "in-progress",
        "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
        "subject": {"reference": f"Patient/{pid}"}, "period": {"start": _ts(now - timedelta(days=7))},
    }]
    by_key["conditions"] = [{
        "resourceType": "Condition", "id": f"{pid}-covid", "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{encounter_id(pid)}"},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "code": {"coding": [_coding(codes["conditions"]["covid19"][0])], "text": "COVID-19"},
        "onsetDateTime": _ts(now - timedelta(days=6)),
    }]
    # No anticoagulant ordered yet: patient-view answers with a prophylaxis card (the most work).
    by_key["procedures"] = [{
        "resourceType": "Procedure", "id": f"{pid}-hfnc", "status": "in-progress",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [_coding(codes["procedures"]["HFNC"][0])], "text": "High-flow nasal oxygen"},
        "performedPeriod": {"start": _ts(now - timedelta(days=2))},
    }]
    return by_key


def _ingredient(name: str) -> dict[str, Any]:
    return {"coding": [_coding(load_codes().data["ingredients"][name]["codes"][0])], "text": name}


def rich_extras(pid: str, now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
    """More resource kinds, for the fuzz tests to mutate: an aspirin order, a heparin order
    naming a contained Medication, a norepinephrine infusion, a refuted heparin allergy, a
    refuted bleeding, and a GTS-coded timing. (Not in the benchmark record.)"""
    now = now or datetime.now(timezone.utc)
    codes = load_codes().data
    subject = {"reference": f"Patient/{pid}"}
    refuted = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                           "code": "refuted"}]}
    aspirin = medication_request(pid, f"{pid}-asa", "active")
    aspirin["medicationCodeableConcept"] = _ingredient("aspirin")
    aspirin["dosageInstruction"][0]["timing"] = {"code": {"coding": [_coding("GTS:QD")]}}
    heparin = medication_request(pid, f"{pid}-ufh", "active")
    del heparin["medicationCodeableConcept"]
    heparin["contained"] = [{"resourceType": "Medication", "id": "m1", "code": _ingredient("heparin")}]
    heparin["medicationReference"] = {"reference": "#m1"}
    heparin["dosageInstruction"][0]["doseAndRate"] = [{"doseQuantity": {"value": 5000, "unit": "[iU]",
                                                                        "system": UCUM, "code": "[iU]"}}]
    return {
        "medications": [aspirin, heparin],
        "administrations": [{
            "resourceType": "MedicationAdministration", "id": f"{pid}-ne", "status": "in-progress",
            "subject": subject, "medicationCodeableConcept": _ingredient("norepinephrine"),
            "effectivePeriod": {"start": _ts(now - timedelta(hours=3))},
            "dosage": {"rateQuantity": {"value": 0.08, "unit": "ug/kg/min", "system": UCUM,
                                        "code": "ug/(kg.min)"}},
        }],
        "allergies": [{
            "resourceType": "AllergyIntolerance", "id": f"{pid}-alg", "patient": subject,
            "verificationStatus": refuted, "code": {"coding": [_coding(codes["allergies"]["heparin_allergy"][0])]},
            "reaction": [{"manifestation": [{"coding": [_coding(codes["allergies"]["hit_reaction"][0])]}]}],
        }],
        "conditions": [{
            "resourceType": "Condition", "id": f"{pid}-bleed", "subject": subject,
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}]},
            "code": {"coding": [_coding(codes["conditions"]["bleeding"][0])]},
            "onsetDateTime": _ts(now - timedelta(days=1)),
        }],
    }


def searchset(resources: list[dict[str, Any]], base: str = "http://127.0.0.1/fhir",
              next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle", "type": "searchset", "total": len(resources),
        "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                   "search": {"mode": "match"}} for r in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    if not bundle["entry"]:
        del bundle["entry"]
    return bundle


def prefetch(rec: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The prefetch object a client would send for `rec`: every declared key satisfied.

    Observation keys hold all generated Observations of that group, even beyond the
    template's `_count`, so the size sweep really carries n Observations.
    """
    out: dict[str, Any] = {}
    for key in prefetch_templates():
        out[key] = rec["patient"][0] if key == "patient" else searchset(rec[key])
    return out


def hook_request(hook: str, pid: str, *, with_prefetch: bool = True, n_obs: int = 150,
                 fhir_server: str | None = None, rec: dict | None = None,
                 draft_product: str = "enoxaparin_30", draft_dose_mg: float = 30) -> dict[str, Any]:
    """A complete CDS Hooks request body for patient-view, order-select or order-sign."""
    context: dict[str, Any] = {"userId": "Practitioner/bench-doc", "patientId": pid,
                               "encounterId": encounter_id(pid)}
    if hook in ("order-select", "order-sign"):
        draft = medication_request(pid, "draft-1", "draft", draft_product, draft_dose_mg)
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}
        if hook == "order-select":
            context["selections"] = ["MedicationRequest/draft-1"]
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if fhir_server:
        body["fhirServer"] = fhir_server
    if with_prefetch:
        body["prefetch"] = prefetch(rec if rec is not None else record(pid, n_obs))
    return body


SERVICE_PATH = {
    "patient-view": "/cds-services/coagulopathy-risk",
    "order-select": "/cds-services/anticoagulant-order-check",
    "order-sign": "/cds-services/anticoagulant-order-sign",
}

