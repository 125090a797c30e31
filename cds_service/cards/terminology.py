"""Our code systems as FHIR R4 CodeSystem resources, served where their URIs point (issue 23).

- `GET /fhir/CodeSystem/card-kind` and `/fhir/CodeSystem/override-reason` (web/terminology.py)
  answer the CodeSystem (application/fhir+json) whose `url` is the URI our cards carry:
  <base>/fhir/CodeSystem/<name>, <base> being the policy's `vocabulary.system_base` or the
  public base URL (cards/build.py).
- The content is derived from cards/vocabulary.py, the one place card kinds and override
  reasons are declared, so a kind added there is listed here without another edit.
- Each override reason carries the property `non-adherence-category`: the CDS Hooks 3.0
  (ballot) category of http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes it
  falls under ("for cross-organization analytics"). feedback-report groups overrides by it,
  reading the map from the CodeSystem built here (`reason_categories`).
- `our_code` reads a coding written under any of our system URIs (this base, another base,
  or the pre-issue-23 placeholder https://cds.example.org/CodeSystem/...) as the same code.

No authentication (like /docs/rules): it holds no patient data.
"""
from __future__ import annotations

from typing import Any

from . import vocabulary as vocab

NON_ADHERENCE_SYSTEM = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
# The six top-level categories of the CDS Hooks 3.0.0-ballot code system (ValueSet
# non-adherence-reason-category). Displays checked against the ballot build
# (build.fhir.org/ig/HL7/cds-hooks, 2025-12); the display of not-convenient-feasible could
# not be checked and is ours.
NON_ADHERENCE_CATEGORIES = {
    "cds-not-applicable": "PC CDS does not apply to patient",
    "cds-suboptimal-context": "PC CDS delivered in suboptimal context",
    "recipient-disagrees-evidence": "Recipient disagrees with recommendation because of issues with the evidence",
    "recipient-concerns-outcomes": "Recipient has concerns regarding potential health outcomes",
    "does-not-align-preferences": "Recommendation does not align with patient preferences or values",
    "not-convenient-feasible": "Recommended action not convenient or feasible",
}
CATEGORY_PROPERTY = "non-adherence-category"

# Our override reason -> its 3.0 category. Every reason in vocabulary.OVERRIDE_REASONS needs a
# row (a test checks); the ballot's definitions decide:
# - cds-not-applicable: "irrelevant, completed, or the patient does not meet the criteria";
# - recipient-concerns-outcomes: "risk/benefit ratio, potential negative outcomes, or contraindications";
# - recipient-disagrees-evidence: "objection based on the supporting evidence or conflicting advice/policy";
# - does-not-align-preferences: "conflicts with the patient's personal ... beliefs, or they prefer an alternative".
REASON_CATEGORY = {
    "clinical-judgement": "cds-not-applicable",
    "bleeding-risk": "recipient-concerns-outcomes",
    "already-addressed": "cds-not-applicable",
    "data-inaccurate": "cds-not-applicable",
    "specialist-advice": "recipient-disagrees-evidence",
    "contraindication-not-current": "cds-not-applicable",
    "therapeutic-indication": "cds-not-applicable",
    "patient-declined": "does-not-align-preferences",
    "comfort-care": "does-not-align-preferences",
}

TITLES = {
    vocab.CARD_KIND: ("CardKind", "COVID-19 coagulopathy CDS: card kinds",
                      "What a card of this service is about; the card's source.topic. The rule behind each "
                      "kind is on the service's /docs/rules page."),
    vocab.OVERRIDE_REASON: ("OverrideReason", "COVID-19 coagulopathy CDS: override reasons",
                            "Why a clinician did not follow a card; offered in each card's overrideReasons. "
                            "Each maps to a CDS Hooks 3.0 non-adherence category (property "
                            f"{CATEGORY_PROPERTY}) for cross-organisation analytics."),
}


def code_system(name: str, base_url: str, *, version: str = "", publisher: str | None = None) -> dict[str, Any]:
    """The CodeSystem resource (R4 JSON) of our system `name` minted under `base_url`."""
    if name not in TITLES:
        raise KeyError(name)
    resource_name, title, description = TITLES[name]
    if name == vocab.CARD_KIND:
        concepts = [{"code": code, "display": display,
                     "definition": f"{display}. Rule and evidence: {vocab.source_url(code, base_url)}"}
                    for code, display in vocab.CARD_KINDS.items()]
        properties = []
    else:
        properties = [{"code": CATEGORY_PROPERTY, "uri": NON_ADHERENCE_SYSTEM, "type": "Coding",
                       "description": "The CDS Hooks 3.0 (ballot) non-adherence category this reason falls under"}]
        concepts = []
        for code, display in vocab.OVERRIDE_REASONS.items():
            category = REASON_CATEGORY[code]
            concepts.append({"code": code, "display": display, "property": [
                {"code": CATEGORY_PROPERTY, "valueCoding": {
                    "system": NON_ADHERENCE_SYSTEM, "code": category,
                    "display": NON_ADHERENCE_CATEGORIES[category]}}]})
    resource = {
        "resourceType": "CodeSystem",
        "id": name,
        "url": vocab.system_url(name, base_url),
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": vocab.LEGACY_SYSTEMS[name]}],
        "version": version or None,
        "name": resource_name,
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": publisher,
        "description": description,
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "property": properties or None,
        "concept": concepts,
    }
    return {k: v for k, v in resource.items() if v is not None}


def reason_categories(code_system_resource: dict[str, Any] | None = None) -> dict[str, str]:
    """Override reason -> 3.0 category code, read from the CodeSystem's property."""
    resource = code_system_resource or code_system(vocab.OVERRIDE_REASON, "http://localhost")
    out = {}
    for concept in resource["concept"]:
        for prop in concept.get("property", ()):
            if prop["code"] == CATEGORY_PROPERTY:
                out[concept["code"]] = prop["valueCoding"]["code"]
    return out


def our_code(name: str, system: str | None, code: str | None) -> str | None:
    """`code` when `system` is one of our URIs for code system `name` (any base, or the legacy
    placeholder) or absent; None for a coding from another system."""
    if not code:
        return None
    if system is None or system == vocab.LEGACY_SYSTEMS[name] \
            or system.rstrip("/").endswith(f"{vocab.CODE_SYSTEM_PATH}/{name}"):
        return code
    return None


def check_policy(policy) -> None:
    """`vocabulary.system_base`, when set, is an absolute http(s) URL (it becomes every card's
    code system URI); a PolicyError at start-up otherwise."""
    from urllib.parse import urlsplit

    from ..logic.policy import PolicyError
    base = policy.values.get("vocabulary.system_base")
    if base is None:
        return
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise PolicyError(f"policy key 'vocabulary.system_base' must be an absolute http(s) URL without "
                          f"query or fragment, such as https://terminology.hospital.org, got {base!r}")
