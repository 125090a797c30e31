"""Builders shared by the audit-store tests on the storage interface
(tests/storage/test_storage_backends.py, tests/hooks/test_storage.py)."""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

from cds_service.storage import IssuedCard

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


def write_concurrently(store, threads: int = 6, calls: int = 15) -> list[Exception]:
    """`threads` threads each record `calls` calls (one anti_xa card each, uuid c-<thread>-<i>)
    and store one feedback item per card; the exceptions they raised."""
    errors: list[Exception] = []

    def work(n):
        try:
            for i in range(calls):
                uid = f"c-{n}-{i}"
                record(store, hook_instance=f"h-{n}-{i}", cards=[IssuedCard("anti_xa", card(uid))])
                store.store_feedback(PV, [fb(uid)])
        except Exception as exc:  # pragma: no cover - reported by the caller
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return errors
