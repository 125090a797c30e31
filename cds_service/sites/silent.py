"""Site silent mode (issue 24): the cards are built, audited and never shown.

`withhold` is the one place a silent site's cards are held back. Clinical rules §19.14 adds
the policy switches `cards.silent` / `cards.silent_kinds`; when they land, the integrator
points this function at them (a silent site then equals `cards.silent = true`), so one rule
decides what the EHR does not see.
"""
from __future__ import annotations

from typing import Any, Sequence

from .. import metrics
from ..hooks import lifecycle


def withhold(call, cards: Sequence, audit: dict[str, Any] | None, evaluation: Any = None
             ) -> tuple[list, dict[str, Any] | None]:
    """(cards for the EHR, audit JSON). A silent site answers `{"cards": []}`; the cards it
    would have shown go into the audit row under `silent` with their fingerprints."""
    if getattr(call.state, "site_mode", "live") != "silent" or not cards:
        return list(cards), audit
    audit = dict(audit) if audit is not None else {}
    audit["silent"] = {"by": "site", "cards": [{
        "uuid": issued.card.get("uuid"), "kind": issued.kind, "indicator": issued.card.get("indicator"),
        "summary": issued.card.get("summary"),
        "fingerprint": lifecycle.fingerprint(issued.kind, lifecycle.recommendation_of(issued, evaluation)),
    } for issued in cards]}
    for issued in cards:
        metrics.card_suppressed(issued.kind, "silent")
    return [], audit
