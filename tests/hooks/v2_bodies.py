"""Request-body edits for the v2 card tests: the example bodies (cds_service/examples.py) with an
order, a condition, a lab value or an oxygen record added or removed, as an EHR would send them."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
INGREDIENT_RXNORM = {"enoxaparin": "67108", "heparin": "5224", "fondaparinux": "321208",
                     "apixaban": "1364430", "warfarin": "11289", "argatroban": "15202"}
PER_DAY = {1: (1, 1, "d"), 2: (1, 12, "h"), 3: (1, 8, "h")}


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _entries(body: dict, key: str) -> list:
    bundle = body["prefetch"].setdefault(key, {"resourceType": "Bundle", "type": "searchset"})
    return bundle.setdefault("entry", [])


def add_order(body: dict, order_id: str, ingredient: str, *, dose: float | None, unit: str = "mg",
              per_day: int = 1, hours_ago: float = 24, status: str = "active", route: str | None = "SC",
              kind: str = "MedicationRequest") -> dict:
    """An active MedicationRequest (or MedicationStatement) of `ingredient` (RxNorm ingredient code)."""
    pid = body["context"]["patientId"]
    now = datetime.now(timezone.utc)
    resource: dict = {"resourceType": kind, "id": order_id, "status": status,
                      "subject": {"reference": f"Patient/{pid}"},
                      "medicationCodeableConcept": {"coding": [{"system": RXNORM,
                                                                "code": INGREDIENT_RXNORM[ingredient]}],
                                                    "text": ingredient}}
    dosage: dict = {"timing": {"repeat": dict(zip(("frequency", "period", "periodUnit"), PER_DAY[per_day]))}}
    if dose is not None:
        code = {"mg": "mg", "units": "[iU]"}[unit]
        dosage["doseAndRate"] = [{"doseQuantity": {"value": dose, "unit": unit, "system": UCUM, "code": code}}]
    if route == "SC":
        dosage["route"] = {"coding": [{"system": "http://snomed.info/sct", "code": "34206005"}]}
    if kind == "MedicationRequest":
        resource["intent"] = "order"
        resource["authoredOn"] = iso(now - timedelta(hours=hours_ago))
        resource["dosageInstruction"] = [dosage]
        if body["context"].get("encounterId"):
            resource["encounter"] = {"reference": f"Encounter/{body['context']['encounterId']}"}
        key = "medications"
    else:
        resource["effectivePeriod"] = {"start": iso(now - timedelta(hours=hours_ago))}
        resource["dosage"] = [dosage]
        key = "statements" if "statements" in body["prefetch"] else "medications"
    _entries(body, key).append({"resource": resource, "search": {"mode": "match"}})
    return resource


def add_condition(body: dict, cond_id: str, code: str, *, system: str = ICD10, days_ago: float = 1,
                  status: str = "active", text: str = "") -> dict:
    pid = body["context"]["patientId"]
    resource = {"resourceType": "Condition", "id": cond_id,
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                               "code": status}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                                   "code": "confirmed"}]},
                "code": {"coding": [{"system": system, "code": code}], "text": text or code},
                "subject": {"reference": f"Patient/{pid}"},
                "onsetDateTime": iso(datetime.now(timezone.utc) - timedelta(days=days_ago))}
    _entries(body, "conditions").append({"resource": resource, "search": {"mode": "match"}})
    return resource


def set_lab(body: dict, key_part: str, value: float) -> None:
    """Change the value of every lab Observation whose id contains `key_part` (e.g. "platelets")."""
    for group in ("labs", "bedside", "body"):
        for e in (body["prefetch"].get(group) or {}).get("entry", []):
            if key_part in e["resource"]["id"]:
                e["resource"]["valueQuantity"]["value"] = value


def drop(body: dict, group: str, key_part: str) -> None:
    bundle = body["prefetch"].get(group) or {}
    bundle["entry"] = [e for e in bundle.get("entry", []) if key_part not in e["resource"]["id"]]


def as_patient_view(body: dict) -> dict:
    body["hook"] = "patient-view"
    body["context"].pop("selections", None)
    body["context"].pop("draftOrders", None)
    return body


def add_encounter(body: dict, *, days_ago: float = 3) -> dict:
    """The context's Encounter: in progress, inpatient (IMP)."""
    pid, eid = body["context"]["patientId"], body["context"]["encounterId"]
    resource = {"resourceType": "Encounter", "id": eid, "status": "in-progress",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                "subject": {"reference": f"Patient/{pid}"},
                "period": {"start": iso(datetime.now(timezone.utc) - timedelta(days=days_ago))}}
    entries = _entries(body, "encounters")
    entries[:] = [e for e in entries if e["resource"].get("id") != eid]
    entries.append({"resource": resource, "search": {"mode": "match"}})
    return resource


def add_hit(body: dict, *, days_ago: float, status: str = "active") -> dict:
    return add_condition(body, f"{body['context']['patientId']}-hit-new", "73397007", system="http://snomed.info/sct",
                         days_ago=days_ago, status=status, text="heparin-induced thrombocytopenia")


def platelet_history(body: dict, values_days_ago: list[tuple[float, float]]) -> None:
    """Earlier platelet counts (value, days ago) in the platelet_trend key, with the latest one."""
    latest = next(e["resource"] for e in body["prefetch"]["labs"]["entry"] if "platelets" in e["resource"]["id"])
    entries = _entries(body, "platelet_trend")
    entries.append({"resource": latest, "search": {"mode": "match"}})
    for n, (value, days) in enumerate(values_days_ago):
        old = json.loads(json.dumps(latest))
        old["id"] = f"{latest['id']}-old-{n}"
        stamp = iso(datetime.now(timezone.utc) - timedelta(days=days))
        old["effectiveDateTime"] = old["issued"] = stamp
        old["valueQuantity"]["value"] = value
        entries.append({"resource": old, "search": {"mode": "match"}})
