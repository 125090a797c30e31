"""Site silent mode (issue 24): the cards are built, audited and never shown.

A silent site is `cards.silent = true` in its policy (`site_policy`, applied when the sites file
is loaded); hooks/governance.py (clinical rules §19.14) is then the one rule that decides what
the EHR does not see, and audits the withheld cards under `governance.silent`.
"""
from __future__ import annotations


def site_policy(policy, mode: str):
    """The policy a site runs with: a silent site sets `cards.silent`."""
    if mode == "silent":
        return policy.with_overrides({"cards.silent": True}, source=policy.source)
    return policy
