"""Synthetic traffic (review #13): `cds-service check` and `cds-service replay` mark every
request they send with the header `X-CDS-Synthetic: check|replay`. The hook call's audit row
carries the mark (`cds_synthetic_traffic` in its assessment JSON) and `feedback-report` leaves
those calls, their cards, lifecycle rows and feedback out (`--include-synthetic` keeps them), so
an integrator's check or a replay against a live service does not change the committee's rates.

The header is only a label a caller puts on its own calls: a caller using it can hide its calls
from the report, never anyone else's, and the answer is the same with or without it.
"""
from __future__ import annotations

from typing import Any

HEADER = "X-CDS-Synthetic"
VALUES = ("check", "replay")
AUDIT_KEY = "cds_synthetic_traffic"


def headers(tool: str) -> dict[str, str]:
    return {HEADER: tool}


def mark(audit: dict[str, Any] | None) -> dict[str, Any] | None:
    """The audit JSON with the request's synthetic mark, if it has one (else unchanged)."""
    from flask import has_request_context, request
    if not has_request_context():
        return audit
    value = request.headers.get(HEADER, "").strip().lower()
    if value not in VALUES:
        return audit
    audit = dict(audit) if audit is not None else {}
    audit[AUDIT_KEY] = value
    return audit
