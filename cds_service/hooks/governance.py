"""Governance a CDS committee needs (clinical-rules §19.14): per-kind switches, silent mode, and
the clinical owner / review date.

- `card_mode(policy, kind)` is the one decision: "disabled" when the kind is in
  `cards.disabled_kinds`; "silent" when `cards.silent` is true or the kind is in
  `cards.silent_kinds`; otherwise "shown". (A site in silent mode, issue 24, sets `cards.silent`
  in that site's policy; nothing else decides it.)
- `apply(call, cards, evaluation)`: a silent card is computed, fingerprinted (the lifecycle
  fingerprint, §18.3) and written to the audit row under `governance.silent`; the EHR gets
  nothing. A disabled kind is listed under `governance.disabled` (kind, indicator, fingerprint;
  no text) and is not shown either. Silent and disabled cards never enter the card lifecycle, so
  ending a pilot does not make its first real cards look like repeats. Every audit row also
  carries `governance.encounter` (the keyed pseudonym of the context's encounter, "" without one),
  so the alert-rate report can count patient-days (patient + encounter + day) over all hooks.
- `review_overdue(policy, today)`: `governance.review_by` (YYYY-MM-DD) has passed; the start-up
  log and /docs/rules warn, /readyz stays green.
"""
from __future__ import annotations

import logging
from datetime import date
from typing import Any, Sequence

from ..storage import IssuedCard, StorageError
from . import lifecycle

log = logging.getLogger("cds_service.hooks.governance")

SHOWN, SILENT, DISABLED = "shown", "silent", "disabled"


def card_mode(policy, kind: str) -> str:
    """"shown", "silent" or "disabled" for a card of `kind` under `policy` (§19.14)."""
    if kind in (policy["cards.disabled_kinds"] or ()):
        return DISABLED
    if policy["cards.silent"] or kind in (policy["cards.silent_kinds"] or ()):
        return SILENT
    return SHOWN


def apply(call, cards: Sequence[IssuedCard], evaluation: Any = None) -> tuple[list[IssuedCard], dict]:
    """(cards the EHR may see, the `governance` audit entry)."""
    policy = call.state.policy
    shown: list[IssuedCard] = []
    silent: list[dict] = []
    disabled: list[dict] = []
    for issued in cards:
        mode = card_mode(policy, issued.kind)
        if mode == SHOWN:
            shown.append(issued)
            continue
        indicator = issued.card.get("indicator", "info")
        try:
            fp = lifecycle.fingerprint(issued.kind, lifecycle.recommendation_of(issued, evaluation))
        except (KeyError, TypeError, ValueError):
            fp = None
        if mode == SILENT:
            silent.append({"uuid": issued.card.get("uuid"), "kind": issued.kind, "indicator": indicator,
                           "summary": issued.card.get("summary"), "fingerprint": fp})
        else:
            disabled.append({"kind": issued.kind, "indicator": indicator, "fingerprint": fp})
    audit: dict[str, Any] = {"silent": silent, "disabled": disabled, "encounter": _encounter(call)}
    return shown, audit


def _encounter(call) -> str | None:
    storage = call.state.extensions.get("storage")
    if storage is None or not call.encounter_id:
        return ""
    try:
        return storage.pseudonym("encounter", call.encounter_id)
    except (StorageError, KeyError, TypeError, ValueError):
        return None


def review_by(policy) -> date | None:
    value = policy["governance.review_by"]
    return date.fromisoformat(value) if value else None


def review_overdue(policy, today: date) -> bool:
    due = review_by(policy)
    return due is not None and today > due


def review_warning(policy, today: date) -> str | None:
    """The text of the start-up log and /docs/rules warning, or None."""
    if not review_overdue(policy, today):
        return None
    owner = policy["governance.owner"] or "no clinical owner named"
    return (f"clinical review overdue: governance.review_by {policy['governance.review_by']} has passed "
            f"(owner: {owner}); the CDS committee should review these rules")
