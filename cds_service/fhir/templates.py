"""Prefetch templates (fhir-data-requirements.md §10), generated from the code data.

Only CDS Hooks 2.0 tokens are used ({{context.patientId}}); no date tokens, so the
service applies the lookback windows itself.
"""
from __future__ import annotations

from .codes import Codes, load_codes

# Observation keys with their page sizes: three keys so hourly bedside values do not
# push 72-h labs and 30-day weights off the first page.
OBSERVATION_KEYS = {"labs": 100, "bedside": 200, "body": 20}


def prefetch_templates(codes: Codes | None = None) -> dict[str, str]:
    codes = codes or load_codes()
    pid = "{{context.patientId}}"
    templates = {"patient": f"Patient/{pid}"}
    for key, count in OBSERVATION_KEYS.items():
        code_list = ",".join(codes.prefetch_codes(key))
        templates[key] = f"Observation?patient={pid}&code={code_list}&_sort=-date&_count={count}"
    templates.update({
        "conditions": f"Condition?patient={pid}&_count=200",
        "medications": f"MedicationRequest?patient={pid}&status=active&_count=100",
        "administrations": f"MedicationAdministration?patient={pid}&_sort=-effective-time&_count=100",
        "allergies": f"AllergyIntolerance?patient={pid}&_count=100",
        "procedures": f"Procedure?patient={pid}&_sort=-date&_count=50",
    })
    return templates
