"""What the three services share: prefetch keys, the data they need, and the end of the
pipeline: cards -> governance -> lifecycle -> audit -> response (the evaluation before it is
evaluation/pipeline.py)."""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Sequence

from ..evaluation.pipeline import Evaluation
from ..evaluation.state import HookCall
from ..fhir.templates import prefetch_templates
from ..runtime import metrics
from ..storage import IssuedCard, StorageError
from . import governance, lifecycle
from ..storage import synthetic

log = logging.getLogger("cds_service.hooks")

PREFETCH = prefetch_templates()

USAGE = ("Needs FHIR R4 read access to Patient, Observation, Condition, MedicationRequest, "
         "MedicationAdministration, MedicationStatement, AllergyIntolerance, Procedure and Encounter "
         "(SMART v1 user/*.read or v2 user/*.rs scopes).")

# [P] Every declared key is required (CDS Hooks notes §6): a safety flag such as HIT or
# bleeding must never be missed silently because a search could not be run. A key
# answered with null or an empty Bundle is satisfied. The data layer
# (`state.extensions["data"].gather(call)`, fhir/data.py) answers 412 when a required key
# cannot be had; a key left out of REQUIRED_KEYS would only be reported in `problems`.
REQUIRED_KEYS = frozenset(PREFETCH)


def _link_assessment_view(call: HookCall, cards: Sequence[IssuedCard]) -> None:
    """Every card links to the assessment view (SMART app, cds_service/smart/), once."""
    from flask import has_request_context, request

    from ..cards.build import assessment_link
    base = call.state.config.public_base_url or (request.url_root.rstrip("/") if has_request_context() else "")
    if not base:
        return
    for issued in cards:
        links = issued.card.setdefault("links", [])
        if not any(link.get("type") == "smart" for link in links):
            links.append(assessment_link(issued.kind, call.hook_instance, base))


def _with_age_line(cards: Sequence[IssuedCard], evaluation: Evaluation | None) -> list[IssuedCard]:
    """§19.8: every card, in every hook, for a patient whose partial birth date straddles 18 says
    "Age uncertain (birth date YYYY-MM)"; with a partial date that does not straddle 18, a card that
    shows a CrCl says "age approximate". Inserted before the evidence line; the first (why)
    paragraph is shortened at a word if the detail would pass the §18.2 limit."""
    from ..cards import templates as t

    inputs = evaluation.inputs if evaluation is not None else None
    if not cards or not getattr(inputs, "birth_date_partial", False):
        return list(cards)
    uncertain = getattr(inputs, "age_uncertain", False)
    line = t.age_uncertain_line(inputs.birth_date) if uncertain else t.age_approximate_line(inputs.birth_date)
    out = []
    for issued in cards:
        detail = issued.card.get("detail") or ""
        # the CrCl line only on a card that shows a CrCl (§19.8)
        if line in detail or (not uncertain and "CrCl" not in detail):
            out.append(issued)
            continue
        parts = detail.split("\n\n") if detail else []
        at = len(parts) - 1 if parts and parts[-1].startswith("**Evidence:**") else len(parts)
        parts.insert(at, line)
        text = "\n\n".join(parts)
        over = len(text) - t.DETAIL_MAX
        if over > 0 and len(parts) > 1 and len(parts[0]) > over + 40:
            parts[0] = parts[0][:len(parts[0]) - over - 1].rsplit(" ", 1)[0] + "…"
            text = "\n\n".join(parts)
        out.append(replace(issued, card={**issued.card, "detail": text[:t.DETAIL_MAX]}))
    return out


def respond(call: HookCall, cards: Sequence[IssuedCard], evaluation: Evaluation | None = None) -> dict:
    """The response body, after queueing the audit row for the batched writer (same cards, same
    assessment; storage/writer.py). A failed audit write is logged and does not withhold the advice. Patient-view cards first pass the
    card lifecycle (hooks/lifecycle.py, §18.3): repeats and snoozed cards are withheld and
    listed in the audit row under `card_lifecycle`."""
    cards = _with_age_line(cards, evaluation)
    # §19.14: disabled kinds and silent cards never reach the EHR (nor the card lifecycle)
    cards, governance_audit = governance.apply(call, cards, evaluation)
    cards, lifecycle_audit = lifecycle.apply(call, cards, evaluation)
    _link_assessment_view(call, cards)
    audit = evaluation.audit_json() if evaluation else None
    if audit is not None and lifecycle_audit is not None:
        audit["card_lifecycle"] = lifecycle_audit
    if audit is not None:
        audit["governance"] = governance_audit
    audit = synthetic.mark(audit)  # check/replay traffic, left out of feedback-report (review #13)
    storage = call.state.extensions.get("storage")
    if storage is not None:
        try:
            storage.record_call(
                service_id=call.service.id, hook=call.service.hook, hook_instance=call.hook_instance,
                patient_id=call.patient_id, evaluated_at=call.received_at, cards=cards,
                assessment=audit,
                data_origin=evaluation.data.origin if evaluation else None,
                site_id=getattr(call.state, "site", "default"))
        except StorageError as exc:
            log.error("audit row not written", extra={"fields": {
                "service": call.service.id, "hookInstance": call.hook_instance, "error": str(exc)}})
    for issued in cards:
        metrics.card_issued(call.service.id, issued.kind, issued.card.get("indicator"))
    return {"cards": [issued.card for issued in cards]}
