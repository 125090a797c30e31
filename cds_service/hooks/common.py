"""What the three services share: prefetch keys and the data they need."""
from __future__ import annotations

from ..fhir.templates import prefetch_templates

PREFETCH = prefetch_templates()

USAGE = ("Needs FHIR R4 read access to Patient, Observation, Condition, MedicationRequest, "
         "MedicationAdministration, AllergyIntolerance and Procedure "
         "(SMART v1 user/*.read or v2 user/*.rs scopes).")

# [P] Every declared key is required (CDS Hooks notes §6): a safety flag such as HIT or
# bleeding must never be missed silently because a search could not be run. A key
# answered with null or an empty Bundle is satisfied.
REQUIRED_KEYS = frozenset(PREFETCH)
