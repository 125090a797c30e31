"""Builders of minimal valid FHIR R4B resources for extraction tests."""
from __future__ import annotations

from datetime import datetime, timezone
from itertools import count
from typing import Any

from cds_service.logic.policy import Policy

LOINC, SCT, UCUM = "http://loinc.org", "http://snomed.info/sct", "http://unitsofmeasure.org"
RXNORM, ATC = "http://www.nlm.nih.gov/research/umls/rxnorm", "http://www.whocc.no/atc"
ICD10, ICD10CM = "http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm"
GTS = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"
NOW = datetime(2024, 3, 10, 12, 0, tzinfo=timezone.utc)
PID = "p1"
_ids = count(1)


def policy(**overrides: Any) -> Policy:
    return Policy.default().with_overrides({k.replace("__", "."): v for k, v in overrides.items()})


def cc(system: str, code: str) -> dict:
    return {"coding": [{"system": system, "code": code}]}


def qty(value: Any, code: str | None = None, *, unit: str | None = None, system: str | None = UCUM,
        comparator: str | None = None) -> dict:
    q: dict[str, Any] = {"value": value}
    if code is not None:
        q["system"], q["code"] = system, code
        if system is None:
            del q["system"]
    if unit is not None:
        q["unit"] = unit
    if comparator:
        q["comparator"] = comparator
    return q


def patient(pid: str = PID, birth: str | None = "1960-03-10", gender: str | None = "male") -> dict:
    p: dict[str, Any] = {"resourceType": "Patient", "id": pid}
    if birth:
        p["birthDate"] = birth
    if gender:
        p["gender"] = gender
    return p


def obs(code: str, value: dict | None = None, *, at: str | None = "2024-03-10T08:00:00Z",
        system: str = LOINC, status: str = "final", issued: str | None = None, subject: str | None = PID,
        oid: str | None = None, **extra: Any) -> dict:
    o: dict[str, Any] = {"resourceType": "Observation", "id": oid or f"o{next(_ids)}",
                         "status": status, "code": cc(system, code)}
    if subject:
        o["subject"] = {"reference": f"Patient/{subject}"}
    if at:
        o["effectiveDateTime"] = at
    if issued:
        o["issued"] = issued
    if value is not None:
        o["valueQuantity"] = value
    o.update(extra)
    return o


def condition(system: str, code: str, *, clinical: str | None = "active", verification: str | None = None,
              subject: str = PID, cid: str | None = None, **extra: Any) -> dict:
    c: dict[str, Any] = {"resourceType": "Condition", "id": cid or f"c{next(_ids)}", "code": cc(system, code),
                         "subject": {"reference": f"Patient/{subject}"}}
    if clinical:
        c["clinicalStatus"] = cc("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical)
    if verification:
        c["verificationStatus"] = cc("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                     verification)
    c.update(extra)
    return c


def allergy(system: str, code: str, *, clinical: str | None = "active", verification: str | None = None,
            manifestation: str | None = None, **extra: Any) -> dict:
    a: dict[str, Any] = {"resourceType": "AllergyIntolerance", "id": f"a{next(_ids)}",
                         "code": cc(system, code), "patient": {"reference": f"Patient/{PID}"}}
    if clinical:
        a["clinicalStatus"] = cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", clinical)
    if verification:
        a["verificationStatus"] = cc(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", verification)
    if manifestation:
        a["reaction"] = [{"manifestation": [cc(SCT, manifestation)]}]
    a.update(extra)
    return a


def procedure(code: str, *, status: str = "in-progress", start: str | None = "2024-03-09T20:00:00Z",
              end: str | None = None, used: str | None = None, extra_codes: tuple[str, ...] = (),
              **extra: Any) -> dict:
    p: dict[str, Any] = {"resourceType": "Procedure", "id": f"pr{next(_ids)}", "status": status,
                         "code": {"coding": [{"system": SCT, "code": c} for c in (code, *extra_codes)]},
                         "subject": {"reference": f"Patient/{PID}"}}
    if start or end:
        p["performedPeriod"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    if used:
        p["usedCode"] = [cc(SCT, used)]
    p.update(extra)
    return p


def med_request(code: str | None = "67108", *, system: str = RXNORM, dose: dict | None = None,
                timing: dict | None = None, route: str | None = "34206005", status: str = "active",
                intent: str = "order", rid: str | None = None, dosage_extra: dict | None = None,
                **extra: Any) -> dict:
    dosage: dict[str, Any] = {}
    if dose is not None:
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
    if timing is not None:
        dosage["timing"] = timing
    if route:
        dosage["route"] = cc(SCT, route)
    dosage.update(dosage_extra or {})
    r: dict[str, Any] = {"resourceType": "MedicationRequest", "id": rid or f"mr{next(_ids)}",
                         "status": status, "intent": intent, "subject": {"reference": f"Patient/{PID}"}}
    if code is not None:
        r["medicationCodeableConcept"] = cc(system, code)
    if dosage:
        r["dosageInstruction"] = [dosage]
    r.update(extra)
    return r


def every(period: float, unit: str, frequency: int | None = None) -> dict:
    repeat: dict[str, Any] = {"period": period, "periodUnit": unit}
    if frequency is not None:
        repeat["frequency"] = frequency
    return {"repeat": repeat}
