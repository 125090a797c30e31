"""anticoagulant-order-check (order-select) and anticoagulant-order-sign (order-sign), v3
(clinical-rules §19, which overrides §18.4, §10.4 and §11 where they differ).

Which drafts: order-select checks the MedicationRequests named in `selections`; order-sign every
MedicationRequest in `draftOrders` (fhir-data-requirements §9). Drafts with status stopped or
cancelled are discontinuations (§19.9), not drafts. EVERY anticoagulant draft is checked
(`logic.order_check` + `logic.order_safety`): heparins, dalteparin, tinzaparin, fondaparinux, DOACs,
VKAs, argatroban, bivalirudin. With no draft left the answer is `{"cards": []}` and no FHIR data is
read. Order-hook cards are never snoozed (§18.3).

Scope (§19.0): the safety layer runs for every adult inpatient; out of COVID-19 scope (only
`no_covid_evidence`) it still runs while `orders.safety_checks_ignore_covid_scope` is true, and the
COVID-19 guidance parts (regimen updates, the above-prophylactic warning) do not.

The cards, one per finding of each draft, are written by cards/orders.py (`draft_cards`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..cards.orders import draft_cards
from ..evaluation.pipeline import Evaluation, codes_for, evaluate
from ..evaluation.state import HookCall, Service
from ..fhir.bundle import bundle_resources
from ..fhir.codes import Codes
from ..fhir.orders import normalise_orders
from ..logic import safety as safety_mod
from ..logic.order_check import check_order
from .common import PREFETCH, REQUIRED_KEYS, USAGE, respond


def handle(call: HookCall) -> dict:
    codes = codes_for(call)
    drafts = select_drafts(call, codes)
    if not drafts:
        return respond(call, [])
    ev = evaluate(call)
    if not ev.in_scope() and not _safety_layer_applies(ev):
        return respond(call, [], ev)
    others = all_drafts(call, codes)
    replaced = replaced_orders(call)
    cards, checks = [], []
    pair_done = False
    for resource, order in drafts:
        check = check_order(order, ev.assessment, ev.policy)
        checks.append(check.to_json())
        for problem in _dose_problems(order, check):
            # said in the call's `problems` (assessment view, audit) and in a card, never guessed
            ev.extra_audit.setdefault("draft_problems", []).append(problem)
            if isinstance(getattr(ev.data, "problems", None), dict):
                ev.data.problems[f"draft {resource.get('id') if isinstance(resource.get('id'), str) else ''}"[:80]] = problem
        other = [o for r, o in others if r is not resource]
        got = draft_cards(ev, resource, order, check, other, replaced)
        if call.service.hook == "order-sign" and any(c.kind == "duplicate_anticoagulant" for c in got) \
                and other and not _has_active(ev, order, replaced):
            # §19.9: two anticoagulant drafts at order-sign give one duplicate card naming both
            if pair_done:
                got = [c for c in got if c.kind != "duplicate_anticoagulant"]
            pair_done = True
        cards.extend(got)
    ev.extra_audit["order_checks"] = checks
    return respond(call, cards, ev)


def _safety_layer_applies(ev: Evaluation) -> bool:
    """§19.0: the order-check safety layer runs for every adult inpatient, whatever the COVID-19
    scope (`orders.safety_checks_ignore_covid_scope`); the guidance parts stay in scope only."""
    scope = ev.assessment.scope
    return bool(ev.policy["orders.safety_checks_ignore_covid_scope"]) \
        and set(scope.reasons) == {"no_covid_evidence"}


def _dose_problems(order, check) -> list[str]:
    """Malformed dose, rate or unit of a checked draft: said in `problems`, never guessed."""
    f = check.finding("undeterminable") if check is not None and check.checked else None
    if f is None or not any(r.endswith("_unreadable") for r in f.reasons):
        return []
    return [f"draft {order.ingredient}: {', '.join(m for m in f.missing)} not readable"]


def _has_active(ev: Evaluation, order, replaced: set[str]) -> bool:
    return any(e.source is None or (e.source != order.source and e.source not in replaced)
               for e in getattr(ev.assessment.safety, "anticoagulants_active", ()))


def replaced_orders(call: HookCall) -> set[str]:
    """§19.9: active orders a draft replaces ("MedicationRequest/<id>"): a draft's
    `priorPrescription`, or an order discontinued in the same draftOrders (status stopped or
    cancelled). A replacement is a dose change, never a duplicate."""
    out: set[str] = set()
    for r in bundle_resources(call.context["draftOrders"]):
        if r.get("resourceType") != "MedicationRequest":
            continue
        prior = r.get("priorPrescription")
        if isinstance(prior, dict) and isinstance(prior.get("reference"), str):
            ref = prior["reference"]
            out.add(ref if ref.startswith("MedicationRequest/") else "MedicationRequest/" + ref.rsplit("/", 1)[-1])
        if r.get("status") in ("stopped", "cancelled") and isinstance(r.get("id"), str):
            out.add(f"MedicationRequest/{r['id']}")
    return out


def _anticoagulant(order) -> bool:
    return safety_mod.is_anticoagulant(order)


def _drafts(call: HookCall, codes: Codes, only_selected: bool) -> list[tuple[dict, Any]]:
    bundle = call.context["draftOrders"]
    resources = list(bundle_resources(bundle))
    medications = {f"Medication/{r['id']}": r for r in resources
                   if r["resourceType"] == "Medication" and isinstance(r.get("id"), str)}
    wanted = set(call.context.get("selections") or ()) \
        if only_selected and call.service.hook == "order-select" else None
    # §19.4 step 1 reads the site's flush limit, as patient-view's extraction does.
    flush_limit = float(call.state.policy["orders.flush_max_units_per_hour"])
    out = []
    for resource in resources:
        if resource["resourceType"] != "MedicationRequest":
            continue
        if resource.get("status") in ("stopped", "cancelled", "entered-in-error"):
            continue   # §19.9: a discontinuation in the same order set, not a new anticoagulant
        if wanted is not None and f"MedicationRequest/{resource.get('id')}" not in wanted:
            continue
        order = next(iter(normalise_orders(resource, codes, medications, flush_max_units_per_hour=flush_limit)), None)
        if order is not None and _anticoagulant(order):
            if order.source is None and isinstance(resource.get("id"), str):
                order = replace(order, source=f"MedicationRequest/{resource['id']}")
            out.append((resource, order))
    return out


def select_drafts(call: HookCall, codes: Codes) -> list[tuple[dict, Any]]:
    """(draft resource, MedicationOrder) for each checked draft: an anticoagulant of any class."""
    return _drafts(call, codes, only_selected=True)


def all_drafts(call: HookCall, codes: Codes) -> list[tuple[dict, Any]]:
    """Every anticoagulant draft of draftOrders (a duplicate may be drafted in the same order set)."""
    return _drafts(call, codes, only_selected=False)


SELECT_SERVICE = Service(
    id="anticoagulant-order-check",
    hook="order-select",
    title="Anticoagulant dose check (order entry)",
    description=("Checks every drafted anticoagulant (heparins, fondaparinux, DOACs, VKAs, argatroban, "
                 "bivalirudin) against dose ceilings, renal function, HIT, bleeding stops, pregnancy and "
                 "duplicates (clinical-rules §19); offers a corrected draft where the rules give one."),
    handler=handle,
    prefetch=PREFETCH,
    usage_requirements=USAGE,
    required_keys=REQUIRED_KEYS,
)

SIGN_SERVICE = Service(
    id="anticoagulant-order-sign",
    hook="order-sign",
    title="Anticoagulant dose check (before signing)",
    description=("Runs the anticoagulant dose, renal and contraindication checks on every draft "
                 "anticoagulant order before signing."),
    handler=handle,
    prefetch=PREFETCH,
    usage_requirements=USAGE,
    required_keys=REQUIRED_KEYS,
)
