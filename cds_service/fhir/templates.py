"""Prefetch templates (fhir-data-requirements.md §10), generated from the code data.

Only CDS Hooks 2.0 tokens are used ({{context.patientId}}); no date tokens, so the
service applies the lookback windows itself.
"""
from __future__ import annotations

import re

from .codes import Codes, load_codes

# Observation keys with their page sizes: three keys so hourly bedside values do not
# push 72-h labs and 30-day weights off the first page.
OBSERVATION_KEYS = {"labs": 100, "bedside": 200, "body": 20}
# v2 (§10): a 14-day-old SARS-CoV-2 test and 14 days of platelet counts would fall off the
# labs page, so they have their own keys.
V2_OBSERVATION_KEYS = {"covid_tests": 10, "platelet_trend": 60}


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
        "encounters": f"Encounter?patient={pid}&_sort=-date&_count=10",
        "statements": f"MedicationStatement?patient={pid}&status=active&_count=100",
    })
    for key, count in V2_OBSERVATION_KEYS.items():
        code_list = ",".join(codes.prefetch_codes(key))
        templates[key] = f"Observation?patient={pid}&code={code_list}&_sort=-date&_count={count}"
    return templates


# CDS Hooks 2.0 prefetch tokens (cds-hooks-notes §6). Context tokens are root-level
# primitives of our three hooks; user tokens are derived from context.userId.
CONTEXT_TOKENS = ("patientId", "userId", "encounterId")
USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}
_TOKEN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_REFERENCE = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})")


class TemplateError(ValueError):
    """A template token cannot be filled from this request's context (the key cannot be had)."""


def _safe_id(value: object, what: str) -> str:
    # A FHIR id, never '.' or '..': the value is pasted into a URL path or query.
    if not isinstance(value, str) or not _FHIR_ID.fullmatch(value) or value in (".", ".."):
        raise TemplateError(f"{what} is missing or not a FHIR id")
    return value


def _token_value(token: str, context: dict) -> str:
    if token.startswith("context."):
        field = token[len("context."):]
        if field not in CONTEXT_TOKENS:
            raise TemplateError(f"{{{{{token}}}}} is not a supported prefetch token")
        value = context.get(field)
        if field == "userId":
            if not isinstance(value, str) or not _REFERENCE.fullmatch(value):
                raise TemplateError("context.userId is missing or not a Type/id reference")
            return value
        return _safe_id(value, f"context.{field}")
    if token in USER_TOKENS:
        match = _REFERENCE.fullmatch(context.get("userId") or "") if isinstance(
            context.get("userId"), str) else None
        if not match or match.group(1) != USER_TOKENS[token]:
            raise TemplateError(f"{{{{{token}}}}} needs a context.userId of type {USER_TOKENS[token]}")
        return _safe_id(match.group(2), f"{{{{{token}}}}}")
    raise TemplateError(f"{{{{{token}}}}} is not a supported prefetch token")


def fill_template(template: str, context: dict) -> str:
    """The relative FHIR query for `template` in this context, or TemplateError."""
    return _TOKEN.sub(lambda m: _token_value(m.group(1), context), template)


def query_resource_type(query: str) -> tuple[str, bool]:
    """(resource type, is_read) of a relative query: `Patient/1` -> ('Patient', True)."""
    path = query.split("?", 1)[0]
    parts = path.split("/")
    return parts[0], "?" not in query and len(parts) == 2 and bool(parts[1])
