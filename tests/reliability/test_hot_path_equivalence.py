"""Issue 25: the hot-path work must not change what a hook call gives back or leaves behind.

Every synthetic patient (cds_service/data/patients/, 35) is sent to the three hooks
(patient-view; order-select and order-sign with one draft from draft-orders/, chosen by the
patient's place in the sorted list) through the ASGI front `serve` runs (serving.Front, JWT
required, CDS_AUDIT on SQLite), with the clock and the card/suggestion uuids fixed. For each call
the golden file keeps:

- the full response: status, every header, the body;
- every log record the call wrote at INFO or above under `cds_service` (logger, level, message,
  fields), the access line included, without its timings (`ms`, `duration_ms`);
- the rows it added to `hook_call`, `card`, `suggestion` and `card_lifecycle`.

The test fails on any difference. The golden file was generated from `main` before the issue-25
changes. When card text changes on purpose (a clinical branch merged), regenerate it, with one
command from the repository root, and review the diff like any other change:

    CDS_GOLDEN_REGENERATE=1 PYTHONPATH=$PWD python -m pytest -q tests/reliability/test_hot_path_equivalence.py

Not a timed test: speed is measured in `python -m bench`.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import sqlite3
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cds_service.cli.integration.fire import load_draft  # noqa: E402
from cds_service.cli.integration.fixtures import DEFAULT_DIR, load_template, render  # noqa: E402
from cds_service.web.serving import Front  # noqa: E402
from security_helpers import ISS, es_key, jwks, make_app, mint, rs_key  # noqa: E402,F401  (fixtures)
from integration.test_order_matrix import prefetch_for  # noqa: E402
from tests.run_async import run_async

GOLDEN = Path(__file__).resolve().parent / "golden" / "hot_path_equivalence.json"
REGENERATE = os.environ.get("CDS_GOLDEN_REGENERATE") == "1"
NOW = datetime(2025, 3, 14, 10, 0, tzinfo=timezone.utc)
HOST = "cds.example"
ORIGIN = "https://ehr.example"
SERVICES = (("patient-view", "coagulopathy-risk"), ("order-select", "anticoagulant-order-check"),
            ("order-sign", "anticoagulant-order-sign"))
TABLES = ("hook_call", "card", "suggestion", "card_lifecycle")
TIMINGS = ("ms", "duration_ms")
PATIENTS = sorted(p.stem for p in DEFAULT_DIR.glob("cov-*.json"))
DRAFTS = sorted((DEFAULT_DIR / "draft-orders").glob("*.json"))


class _FixedDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        return NOW if tz is not None else NOW.replace(tzinfo=None)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = {k: v for k, v in (getattr(record, "fields", None) or {}).items() if k not in TIMINGS}
        self.lines.append(json.loads(json.dumps({"logger": record.name, "level": record.levelname,
                                                 "message": record.getMessage(), "fields": fields},
                                                default=str)))


def _asgi(front: Front, path: str, headers: dict[str, str], body: bytes) -> dict:
    sent = [body]

    async def receive():
        return {"type": "http.request", "body": sent.pop() if sent else b"", "more_body": False}

    out: dict = {"body": b""}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in message["headers"]]
        else:
            out["body"] += message.get("body", b"")

    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "scheme": "https", "http_version": "1.1", "server": (HOST, 443),
             "client": ("127.0.0.1", 5555),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    run_async(front(scope, receive, send))
    return out


def _rows(db: Path, seen: dict[str, int]) -> dict[str, list]:
    conn = sqlite3.connect(db)
    try:
        out = {}
        for table in TABLES:
            cur = conn.execute(f"SELECT * FROM {table} ORDER BY rowid")  # noqa: S608 (fixed names)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
            out[table] = [dict(zip(names, r)) for r in rows[seen.get(table, 0):]]
            seen[table] = len(rows)
        return out
    finally:
        conn.close()


def _body(hook: str, pid: str, n: int, templates: dict[str, str]) -> dict:
    bundle = render(load_template(DEFAULT_DIR / f"{pid}.json"), NOW)
    resources = [e["resource"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)]
    context: dict = {"userId": "Practitioner/equivalence", "patientId": pid, "encounterId": f"{pid}-enc"}
    if hook != "patient-view":
        draft = load_draft(DRAFTS[n % len(DRAFTS)], pid, f"{pid}-enc")
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}
        if hook == "order-select":
            context["selections"] = [f"MedicationRequest/{draft['id']}"]
    return {"hook": hook, "hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{hook}|{pid}")),
            "fhirServer": "https://fhir.invalid/r4", "context": context,
            "prefetch": prefetch_for(templates, resources, pid)}


def _record_all(make_app, mint, monkeypatch, tmp_path) -> dict:
    from cds_service.cards import build as cards, templates
    from cds_service.evaluation import state as registry
    from cds_service.storage import base
    counter = itertools.count(1)
    monkeypatch.setattr(cards, "new_id", lambda: str(uuid.UUID(int=next(counter))))
    monkeypatch.setattr(registry, "datetime", _FixedDatetime)
    monkeypatch.setattr(templates, "datetime", _FixedDatetime)
    monkeypatch.setattr(base, "_now", lambda: base.utc_iso(NOW))
    monkeypatch.setattr(base, "full_version", lambda: "equivalence")  # the git commit otherwise
    app = make_app(audit_pepper="equivalence-test", cors_origins=ORIGIN)
    state = app.extensions["cds"]
    front = Front(app, max_body_bytes=state.config.max_body_bytes, body_timeout=5.0, threads=2)
    store = state.extensions["storage"]
    db = Path(state.config.database)
    handler = _Records()
    logger = logging.getLogger("cds_service")
    logger.addHandler(handler)
    seen: dict[str, int] = {}  # the database is created on the first write (storage.init_app)
    recorded: dict = {}
    try:
        for n, pid in enumerate(PATIENTS):
            for hook, service_id in SERVICES:
                service = state.registry.get(service_id)
                path = f"/cds-services/{service_id}"
                body = json.dumps(_body(hook, pid, n, dict(service.prefetch))).encode()
                token = mint(f"https://{HOST}{path}")
                handler.lines.clear()
                out = _asgi(front, path, {"Host": HOST, "Origin": ORIGIN, "Content-Type": "application/json",
                                          "Authorization": f"Bearer {token}", "Content-Length": str(len(body))},
                            body)
                assert store.flush(10.0)
                recorded[f"{pid} {hook}"] = {
                    "status": out["status"], "headers": out["headers"],
                    "body": json.loads(out["body"]) if out["body"] else None,
                    "logs": list(handler.lines), "rows": _rows(db, seen)}
    finally:
        logger.removeHandler(handler)
        front.pool.shutdown(wait=True)
    return recorded


def test_every_patient_and_hook_answers_logs_and_stores_as_the_golden_file(make_app, mint, monkeypatch, tmp_path):
    assert len(PATIENTS) == 35 and DRAFTS
    recorded = _record_all(make_app, mint, monkeypatch, tmp_path)
    if REGENERATE:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(recorded, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        pytest.skip(f"golden file regenerated: {GOLDEN}")
    golden = json.loads(GOLDEN.read_text())
    assert sorted(recorded) == sorted(golden)
    # One call at a time, so a failure names the patient and hook and shows only its difference.
    for key in golden:
        assert json.loads(json.dumps(recorded[key], sort_keys=True, ensure_ascii=False)) == golden[key], key
