"""What the three services share: prefetch keys and the data they need."""
from __future__ import annotations

from ..fhir.templates import prefetch_templates

PREFETCH = prefetch_templates()

USAGE = ("Needs FHIR R4 read access to Patient, Observation, Condition, MedicationRequest, "
         "MedicationAdministration, AllergyIntolerance and Procedure "
         "(SMART v1 user/*.read or v2 user/*.rs scopes).")

# [P] Every declared key is required (CDS Hooks notes §6): a safety flag such as HIT or
# bleeding must never be missed silently because a search could not be run. A key
# answered with null or an empty Bundle is satisfied. The data layer
# (`state.extensions["data"].gather(call)`, fhir/data.py) answers 412 when a required key
# cannot be had; a key left out of REQUIRED_KEYS would only be reported in `problems`.
REQUIRED_KEYS = frozenset(PREFETCH)
