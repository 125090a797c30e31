"""coagulopathy-risk (patient-view): evaluate, then at most one card from the catalogue
(cards/patient_view.py, clinical-rules §18.1), then the lifecycle and the response (common.respond)."""
from __future__ import annotations

from ..cards.patient_view import build_cards
from ..evaluation.pipeline import evaluate
from ..evaluation.state import HookCall, Service
from .common import PREFETCH, REQUIRED_KEYS, USAGE, respond


def handle(call: HookCall) -> dict:
    ev = evaluate(call)
    cards = build_cards(ev) if ev.in_scope() else []
    return respond(call, cards, ev)


SERVICE = Service(
    id="coagulopathy-risk",
    hook="patient-view",
    title="COVID-19 coagulopathy and heparin prophylaxis",
    description=("For hospitalised adults with COVID-19: at most one card, the first that applies of "
                 "contraindication, HIT, duplicate anticoagulation, de-escalation, therapeutic-dose option, "
                 "prophylaxis suggestion and dose review (clinical rules §18.1)."),
    handler=handle,
    prefetch=PREFETCH,
    usage_requirements=USAGE,
    required_keys=REQUIRED_KEYS,
)
