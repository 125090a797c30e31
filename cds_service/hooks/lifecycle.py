"""Card lifecycle (clinical-rules §18.3): how often a patient-view card is shown.

- **Fingerprint** = the card kind + its recommendation. A card builder may state the
  recommendation (`IssuedCard.recommendation`); otherwise it is read from the card JSON: each
  suggestion action's type and, for a created/updated resource, its code, dose and timing (a
  delete names the order it removes), plus the assessment's contraindication codes; a card
  without suggestions (a contraindication, a duplicate, a dose review) adds the active
  anticoagulant orders' ingredient, dose and doses per day. The same fingerprint is the same
  card; a changed dose, a new order or a new contraindication is a new card. Only a hash is
  stored.
- **Info repeat**: a patient-view `info` card is shown at most once in
  `cards.info_repeat_hours` per user (`context.userId`), patient, encounter and fingerprint.
- **Override snooze**: after feedback `overridden` on a shown patient-view card, the same
  fingerprint is withheld for that user, patient and encounter for
  `cards.override_snooze_hours[indicator]` from the override; a `critical` card only when the
  override gave a reason (a reason code or a user comment). `accepted` never snoozes.
- **The snooze ends early** when the situation digest differs from the overridden card's:
  active and stopped anticoagulant orders (and statements) with their doses, draft orders, the
  latest platelet count (value and time), contraindication codes.
- **Order-hook cards are never filtered** (a draft is checked every time, for every prescriber).

State lives in the audit database (`card_lifecycle`, storage.py), keyed by pseudonyms: the
patient hash of the audit trail and keyed hashes of the user and encounter ids, so it holds
across gunicorn workers, processes on one database file, restarts and (PostgreSQL) replicas.
The decision reads the committed rows plus this process's rows still queued in the batched
writer (storage/writer.py) and queues its record; across processes the info repeat is exact
once the other's writer has committed (CDS_AUDIT_BATCH_MS; README "Card lifecycle"). Suppressed cards are recorded there (`status = 'suppressed'`,
`reason` info_repeat / override_snooze) and listed in the call's audit row. If the lifecycle
store fails, every card is shown (advice is never withheld because of a storage fault).

Choices where §18.3 is silent: a call without `context.userId` (the schemas require it, so
only non-HTTP callers) counts as one anonymous user; a call without an encounter is one
"no encounter" bucket; the snooze starts at the override's `outcomeTimestamp`, but never later
than its receipt (a client clock ahead cannot lengthen it); when the overridden card and the
current card differ in indicator the more urgent one rules (shorter snooze; a reason is needed
if either is critical); the info repeat does not look at the situation digest (§18.3 ties it to
the fingerprint only); a retried call (the same `hookInstance`) is answered again, not counted
as a repeat.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Sequence

import orjson

from ..runtime import metrics
from ..logging_setup import hide_patient_id, log_event
from ..storage import IssuedCard, StorageError

log = logging.getLogger("cds_service.hooks.lifecycle")

INFO_REPEAT = "info_repeat"
OVERRIDE_SNOOZE = "override_snooze"
ANONYMOUS_USER = "anonymous"
NO_ENCOUNTER = ""
LIFECYCLE_HOOKS = frozenset({"patient-view"})
_URGENCY = {"info": 0, "warning": 1, "critical": 2}


# -- time ---------------------------------------------------------------------------------------
def now_of(call) -> datetime:
    """The lifecycle's "now": the request time, or `state.extensions["clock"]()` when an
    injectable clock is set (tests; a replay tool)."""
    clock = call.state.extensions.get("clock")
    moment = clock() if clock is not None else call.received_at
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


# -- fingerprint ----------------------------------------------------------------------------------
def _digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _num(value: Any) -> Any:
    """40 and 40.0 are the same dose."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _codes(concept: dict | None) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return sorted(f"{c.get('system', '')}|{c.get('code', '')}" for c in concept.get("coding") or ()
                  if isinstance(c, dict))


def _action_recommendation(action: dict) -> list:
    kind = action.get("type")
    if kind == "delete":
        return [kind, action.get("resourceId")]
    resource = action.get("resource") if isinstance(action.get("resource"), dict) else {}
    rtype = resource.get("resourceType")
    item: list = [kind, rtype]
    if rtype == "MedicationRequest":
        item.append(_codes(resource.get("medicationCodeableConcept"))
                    or (resource.get("medicationReference") or {}).get("reference"))
        for dose in resource.get("dosageInstruction") or ():
            quantity = ((dose.get("doseAndRate") or [{}])[0] or {}).get("doseQuantity") or {}
            repeat = (dose.get("timing") or {}).get("repeat") or {}
            item.append([_num(quantity.get("value")), quantity.get("code") or quantity.get("unit"),
                         _num(repeat.get("frequency")), _num(repeat.get("period")), repeat.get("periodUnit"),
                         _codes(dose.get("route"))])
    else:
        item.append(_codes(resource.get("code")))
    if kind == "update":
        item.append(f"{rtype}/{resource.get('id')}")
    return item


def contraindication_codes(assessment: Any) -> list[str]:
    """The assessment's contraindication codes (v1 `safety.contraindications`; objects with a
    `code` are read by it)."""
    safety = getattr(assessment, "safety", None)
    codes = getattr(safety, "contraindications", None) or ()
    return sorted({str(getattr(c, "code", c)) for c in codes})


def _order_key(order: Any) -> list:
    return [getattr(order, "ingredient", None), _num(getattr(order, "dose_mg", None)),
            _num(getattr(order, "dose_units", None)), _num(getattr(order, "doses_per_day", None))]


def recommendation_of(issued: IssuedCard, evaluation: Any = None) -> tuple:
    """What the card recommends: the builder's `recommendation`, else derived (module doc)."""
    if issued.recommendation is not None:
        return tuple(issued.recommendation)
    actions = sorted((_action_recommendation(a) for s in issued.card.get("suggestions") or ()
                      for a in s.get("actions") or ()), key=lambda x: orjson.dumps(x))
    out: list = [("actions", actions)]
    if evaluation is not None:
        out.append(("contraindications", contraindication_codes(evaluation.assessment)))
        if not actions:
            orders = getattr(evaluation.inputs, "orders", ()) or ()
            out.append(("active_orders", sorted((_order_key(o) for o in orders), key=orjson.dumps)))
    return tuple(out)


def fingerprint(kind: str, recommendation: Sequence) -> str:
    return _digest([kind, list(recommendation)])


# -- situation digest -----------------------------------------------------------------------------
def situation_digest(evaluation: Any) -> str:
    """What ends a snooze when it changes: anticoagulant orders and statements (new, stopped,
    another dose), draft orders, the latest platelet count, contraindication codes."""
    inputs = evaluation.inputs

    def orders(items) -> list:
        return sorted(([getattr(o, "source", None), getattr(o, "status", None), *_order_key(o),
                        getattr(o, "route", None), getattr(o, "continuous", None)] for o in items or ()),
                      key=orjson.dumps)

    drafts = (evaluation.call.context.get("draftOrders") or {}) if evaluation.call else {}
    draft_keys = sorted(_digest(e.get("resource")) for e in drafts.get("entry") or () if isinstance(e, dict))
    platelets = getattr(inputs, "platelets", None)
    return _digest({
        "orders": orders(getattr(inputs, "orders", ())),
        "statements": orders(getattr(inputs, "statements", ())),
        "drafts": draft_keys,
        "platelets": None if platelets is None else [
            _num(platelets.value), platelets.time.isoformat() if platelets.time else None],
        "contraindications": contraindication_codes(evaluation.assessment),
    })


# -- the decision (pure) --------------------------------------------------------------------------
def snooze_hours(policy, indicator: str) -> float:
    return float(policy["cards.override_snooze_hours"][indicator])


def decide(candidates: Sequence[dict], history: dict[str, dict], now: datetime, policy) -> list[dict]:
    """Each candidate (fingerprint, indicator, situation, ...) with status and reason.
    `history` is storage.lifecycle_decide's view of earlier cards of the same user, patient and
    encounter."""
    at = now.timestamp()
    repeat_s = float(policy["cards.info_repeat_hours"]) * 3600
    out = []
    for cand in candidates:
        past = history.get(cand["fingerprint"], {})
        reason = None
        for override in past.get("overrides", ()):
            if _snoozes(override, cand, at, policy):
                reason = OVERRIDE_SNOOZE
                break
        if reason is None and cand["indicator"] == "info":
            last = (past.get("shown") or [None])[0]
            if last is not None and last > at - repeat_s:
                reason = INFO_REPEAT
        out.append({**cand, "status": "suppressed" if reason else "shown", "reason": reason})
    return out


def _snoozes(override: dict, cand: dict, at: float, policy) -> bool:
    if override["situation"] != cand["situation"]:
        return False  # the situation changed since the overridden card: the snooze has ended
    indicator = max(override["indicator"], cand["indicator"], key=lambda i: _URGENCY.get(i, 2))
    if indicator == "critical" and not override["reason_given"]:
        return False
    stamps = [t for t in (_epoch(override["outcome_timestamp"]), _epoch(override["received_at"])) if t is not None]
    if not stamps:
        return False
    start = min(stamps)  # never later than its receipt
    return start <= at < start + snooze_hours(policy, indicator) * 3600


# -- the hook point (hooks/common.respond) ----------------------------------------------------------
def metrics_card_suppressed(service_id: str, kind: str, indicator: str, reason: str) -> None:
    """The one call point for metrics on suppressed cards (cds_service/metrics.py)."""
    metrics.card_suppressed(kind, reason)


def _user_key(storage, site: str, user: str | None) -> str:
    """The user part of the lifecycle key, scoped by site (every lookup matches on it): FHIR ids
    are unique per EHR, not across hospitals, so site B's history must never withhold or
    snooze site A's card. The implicit site "default" keeps the unscoped key of its rows."""
    if site == "default":
        return storage.pseudonym("user", user) if user else ANONYMOUS_USER
    return storage.pseudonym("user", f"site\x00{site}\x00{user or ANONYMOUS_USER}")


def apply(call, cards: Sequence[IssuedCard], evaluation: Any = None) -> tuple[list[IssuedCard], dict | None]:
    """(cards to show, the audit entry or None). Only patient-view cards with an evaluation and
    a storage are filtered; anything else passes unchanged."""
    cards = list(cards)
    storage = call.state.extensions.get("storage")
    if call.service.hook not in LIFECYCLE_HOOKS or not cards or storage is None or evaluation is None:
        return cards, None
    now = now_of(call)
    user = call.context.get("userId")
    site = getattr(call.state, "site", "default")
    try:
        # The keyed hashes need the audit key, which may live in an unreachable database.
        key = {
            "user_hash": _user_key(storage, site, user),
            "patient_hash": storage.patient_hash(call.patient_id),
            "encounter_hash": storage.pseudonym("encounter", call.encounter_id) if call.encounter_id else NO_ENCOUNTER,
        }
        situation = situation_digest(evaluation)
        candidates = [{
            "card_uuid": issued.card["uuid"], "hook_instance": call.hook_instance, "service_id": call.service.id,
            "kind": issued.kind, "indicator": issued.card.get("indicator", "info"),
            "fingerprint": fingerprint(issued.kind, recommendation_of(issued, evaluation)),
            "situation": situation, "at_epoch": now.timestamp()} for issued in cards]
        rows = storage.lifecycle_decide(
            key, [c["fingerprint"] for c in candidates],
            lambda history: decide(candidates, history, now, call.state.policy), hook_instance=call.hook_instance)
    except (StorageError, KeyError, TypeError, ValueError) as exc:
        log.error("card lifecycle not applied; every card shown", extra={"fields": {
            "service": call.service.id, "hookInstance": call.hook_instance, "error": str(exc)}})
        return cards, {"error": "not applied; every card shown"}
    shown, suppressed = [], []
    for issued, row in zip(cards, rows):
        if row["status"] == "shown":
            shown.append(issued)
            continue
        metrics_card_suppressed(call.service.id, row["kind"], row["indicator"], row["reason"])
        # One line per withheld card (issue 22: a tester saw "All clear!" and nothing said why).
        # The fingerprint is a hash of kind and recommendation: no patient data.
        log_event(log, logging.INFO, "card withheld", service=call.service.id, hookInstance=hide_patient_id(call.hook_instance, call.patient_id),
                  kind=row["kind"], indicator=row["indicator"], reason=row["reason"], fingerprint=row["fingerprint"])
        suppressed.append({"uuid": row["card_uuid"], "kind": row["kind"], "indicator": row["indicator"],
                           "summary": issued.card.get("summary"), "fingerprint": row["fingerprint"],
                           "reason": row["reason"]})
    audit = {"at": now.isoformat(), "user": "anonymous" if not user else "context.userId",
             "shown": [{"uuid": r["card_uuid"], "kind": r["kind"], "fingerprint": r["fingerprint"]}
                       for r in rows if r["status"] == "shown"],
             "suppressed": suppressed}
    return shown, audit


def with_recommendation(issued: IssuedCard, recommendation: Sequence) -> IssuedCard:
    """The card with a builder-stated recommendation (a helper for card builders)."""
    return replace(issued, recommendation=tuple(recommendation))


__all__ = ["INFO_REPEAT", "OVERRIDE_SNOOZE", "apply", "decide", "fingerprint", "now_of",
           "recommendation_of", "situation_digest", "metrics_card_suppressed", "with_recommendation"]
