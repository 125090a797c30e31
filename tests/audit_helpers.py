"""Builders shared by the audit-store tests on the storage interface
(tests/storage/test_storage_backends.py, tests/hooks/test_storage.py)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=timezone.utc)
PV = "coagulopathy-risk"
OS = "anticoagulant-order-check"


def card(uuid: str, *suggestions: str, indicator="warning") -> dict:
    """A CDS card `uuid`; each suggestion id gets a create and a delete action."""
    body: dict[str, Any] = {"uuid": uuid, "summary": f"card {uuid}", "indicator": indicator}
    if suggestions:
        body["suggestions"] = [{"uuid": s, "label": "do it", "actions": [
            {"type": "create", "description": "d", "resource": {"resourceType": "MedicationRequest"}},
            {"type": "delete", "description": "d", "resourceId": "MedicationRequest/x"}]} for s in suggestions]
    return body


def record(store, service=PV, hook_instance="hi-1", patient="pat-1", cards=(), assessment=None):
    """One patient-view call evaluated at NOW, through `store.record_call`."""
    return store.record_call(service_id=service, hook="patient-view", hook_instance=hook_instance,
                             patient_id=patient, evaluated_at=NOW, cards=list(cards),
                             assessment=assessment or {"x": 1})


def fb(card, outcome="overridden", ts="2025-01-15T12:05:00Z", **extra):
    """One feedback item for `card` (a card uuid)."""
    return {"card": card, "outcome": outcome, "outcomeTimestamp": ts, **extra}
