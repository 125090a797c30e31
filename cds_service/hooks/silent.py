"""Site silent mode (issue 24): the cards are built, audited and never shown.

Clinical rules §19.14 adds the policy switches `cards.silent` / `cards.silent_kinds`
(hooks/governance.py on the v3-exposure branch). Once that policy key exists, a silent site is
simply `cards.silent = true` in its policy (`site_policy`, applied when the sites file is
loaded) and `withhold` does nothing: one rule decides what the EHR does not see. Until then
`withhold` is the one place a silent site's cards are held back.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..runtime import metrics
from . import lifecycle


def governance_landed(policy) -> bool:
    """The §19.14 switch `cards.silent` exists in this release's policy."""
    return "cards.silent" in policy.values


def site_policy(policy, mode: str):
    """The policy a site runs with: a silent site sets `cards.silent` when §19.14 has landed."""
    if mode == "silent" and governance_landed(policy):
        return policy.with_overrides({"cards.silent": True}, source=policy.source)
    return policy


def withhold(call, cards: Sequence, audit: dict[str, Any] | None, evaluation: Any = None
             ) -> tuple[list, dict[str, Any] | None]:
    """(cards for the EHR, audit JSON). A silent site answers `{"cards": []}`; the cards it
    would have shown go into the audit row under `silent` with their fingerprints."""
    if getattr(call.state, "site_mode", "live") != "silent" or not cards or governance_landed(call.state.policy):
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
