"""Request-body edits for the v3 (§19) patient-view tests: a Procedure, a heparin order given as
the EHR sends it (product strength, rate, text), a partial birth date."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from v2_bodies import UCUM, _entries, iso

SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ECMO, CRRT = "233573008", "714749008"


def add_procedure(body: dict, code: str, *, hours_ago: float = 30, pid_suffix: str = "") -> dict:
    pid = body["context"]["patientId"]
    resource = {"resourceType": "Procedure", "id": f"{pid}-proc-{code}{pid_suffix}", "status": "in-progress",
                "code": {"coding": [{"system": SNOMED, "code": code}]},
                "subject": {"reference": f"Patient/{pid}"},
                "performedPeriod": {"start": iso(datetime.now(timezone.utc) - timedelta(hours=hours_ago))}}
    _entries(body, "procedures").append({"resource": resource, "search": {"mode": "match"}})
    return resource


def add_heparin(body: dict, order_id: str, *, units_per_ml: float, bag_ml: float = 1,
                rate_u_h: float | None = None, dose_units: float | None = None, dose_ml: float | None = None,
                text: str | None = None, hours_ago: float = 24) -> dict:
    """An active heparin MedicationRequest with a contained Medication of `units_per_ml` U/mL
    (stated over `bag_ml` mL), given at a rate (U/h) or as a dose (U or mL)."""
    pid = body["context"]["patientId"]
    med = {"resourceType": "Medication", "id": "med", "code": {"coding": [{"system": RXNORM, "code": "5224"}]},
           "ingredient": [{"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "5224"}]},
                           "strength": {"numerator": {"value": units_per_ml * bag_ml, "system": UCUM, "code": "[iU]"},
                                        "denominator": {"value": bag_ml, "system": UCUM, "code": "mL"}}}]}
    dosage: dict = {"route": {"coding": [{"system": SNOMED, "code": "47625008"}]}}
    if rate_u_h is not None:
        dosage["doseAndRate"] = [{"rateQuantity": {"value": rate_u_h, "system": UCUM, "code": "[iU]/h"}}]
    elif dose_units is not None:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": dose_units, "system": UCUM, "code": "[iU]"}}]
        dosage["timing"] = {"repeat": {"frequency": 1, "period": 8, "periodUnit": "h"}}
    elif dose_ml is not None:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": dose_ml, "system": UCUM, "code": "mL"}}]
        dosage["timing"] = {"repeat": {"frequency": 1, "period": 8, "periodUnit": "h"}}
    if text:
        dosage["text"] = text
    resource = {"resourceType": "MedicationRequest", "id": order_id, "status": "active", "intent": "order",
                "subject": {"reference": f"Patient/{pid}"}, "contained": [med],
                "medicationReference": {"reference": "#med"}, "dosageInstruction": [dosage],
                "authoredOn": iso(datetime.now(timezone.utc) - timedelta(hours=hours_ago))}
    if body["context"].get("encounterId"):
        resource["encounter"] = {"reference": f"Encounter/{body['context']['encounterId']}"}
    _entries(body, "medications").append({"resource": resource, "search": {"mode": "match"}})
    return resource


def add_atc_order(body: dict, order_id: str, atc: str, text: str) -> dict:
    pid = body["context"]["patientId"]
    resource = {"resourceType": "MedicationRequest", "id": order_id, "status": "active", "intent": "order",
                "subject": {"reference": f"Patient/{pid}"},
                "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": atc}],
                                              "text": text}}
    _entries(body, "medications").append({"resource": resource, "search": {"mode": "match"}})
    return resource


def set_birth_date(body: dict, value: str) -> None:
    body["prefetch"]["patient"]["birthDate"] = value
