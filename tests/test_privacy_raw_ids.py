"""Issue 14, finding 7: no raw patient id in any log line or anywhere in the audit database.

Before: a Patient dropped as invalid was logged as "dropped Patient/<id>", and the audit row
kept resource ids that embed the patient id (`Observation/<pid>-plt`): 37 occurrences of
the MRN after 3 calls with the shipped examples.

Every example of `cds_service/examples.py` is run through the app (with feedback on every
card), plus variants that reach the other logging paths: the Patient invalid (dropped and
logged), every resource invalid, and self-fetch against a failing FHIR server (412, logged).
Then every log record (message, structured fields, traceback) at DEBUG, every row of every
table, and the raw bytes of the database files are searched for every raw patient id.
"""
from __future__ import annotations

import copy
import json
import logging
import re
import sqlite3

import pytest
import responses

from cds_service import create_app
from cds_service.cli.examples import SCENARIOS, build

SERVICE_OF = {"patient-view": "coagulopathy-risk", "order-select": "anticoagulant-order-check",
              "order-sign": "anticoagulant-order-sign"}


def _post(client, path, body):
    return client.post(path, data=json.dumps(body), content_type="application/json")


def _invalid_patient(body):
    body = copy.deepcopy(body)
    body["prefetch"]["patient"]["gender"] = ["not", "a", "code"]
    body["prefetch"]["patient"]["birthDate"] = "yesterday"
    return body


def _invalid_everything(body):
    """Every resource in the prefetch made invalid R4B (status of the wrong type)."""
    body = copy.deepcopy(body)
    for value in body["prefetch"].values():
        for entry in (value or {}).get("entry", []):
            entry["resource"]["status"] = {"oops": True}
    return body


def _self_fetch(body):
    body = copy.deepcopy(body)
    for key in ("labs", "bedside", "medications"):
        body["prefetch"].pop(key)
    return body


def _record_text(record: logging.LogRecord) -> str:
    return " ".join([record.getMessage(), json.dumps(getattr(record, "fields", None), default=str),
                     record.exc_text or "", str(record.args or "")])


@responses.activate
def test_no_raw_patient_id_in_logs_or_database(tmp_path, caplog):
    # Any FHIR read (the self-fetch variants) fails: the 412 path logs its reasons.
    responses.add(responses.GET, re.compile(r"http://127\.0\.0\.1:8080/fhir/.*"), status=500)
    responses.add(responses.POST, re.compile(r"http://127\.0\.0\.1:8080/fhir/?"), status=500)
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "cds.sqlite3"
    client = create_app({"database": str(db), "log_level": "DEBUG"}).test_client()

    patient_ids, statuses = set(), []
    for name, scenario in SCENARIOS.items():
        patient_ids.add(scenario.patient_id)
        base = build(name)
        path = f"/cds-services/{SERVICE_OF[scenario.hook]}"
        for variant in (lambda b: b, _invalid_patient, _invalid_everything, _self_fetch):
            body = variant(base)
            resp = _post(client, path, body)
            statuses.append(resp.status_code)
            assert resp.status_code in (200, 412), (name, resp.get_data(as_text=True)[:500])
            for card in (resp.get_json().get("cards") or []) if resp.status_code == 200 else []:
                feedback = {"card": card["uuid"], "outcome": "overridden",
                            "outcomeTimestamp": "2025-01-15T12:00:00Z",
                            "overrideReason": {"reason": {"code": "other"}, "userComment": "seen"}}
                assert _post(client, path + "/feedback", {"feedback": [feedback]}).status_code == 200
    # The variants reached what they were meant to reach.
    assert statuses.count(200) >= len(SCENARIOS) and 412 in statuses
    logs = [_record_text(r) for r in caplog.records]
    assert any("dropped a Patient resource" in line for line in logs)
    assert any("required FHIR data unobtainable" in line for line in logs)

    conn = sqlite3.connect(db)
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    rows = [json.dumps(row, default=str) for table in tables for row in conn.execute(f"SELECT * FROM {table}")]
    assert any("[ref:" in row for row in rows)  # references were pseudonymised, not dropped
    conn.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("cds.sqlite3"))

    found = {pid: ([line[:300] for line in logs if pid in line], [row[:300] for row in rows if pid in row],
                   pid.encode() in raw)
             for pid in sorted(patient_ids)}
    leaks = {pid: hits for pid, hits in found.items() if hits[0] or hits[1] or hits[2]}
    assert not leaks, leaks


@pytest.mark.parametrize("pid", ["p1", "123", "MRN.0042"])
def test_short_and_numeric_ids_are_pseudonymised_without_mangling_other_values(tmp_path, pid):
    from cds_service.storage import IssuedCard, Storage  # noqa: F401
    store = Storage(str(tmp_path / "a.db"))
    from datetime import datetime, timezone
    assessment = {"ref": f"Observation/{pid}-plt", "other": f"Observation/{pid}0", "value": 1234.5,
                  "text": f"{pid}x is not the id"}
    store.record_call(service_id="s", hook="patient-view", hook_instance="hi", patient_id=pid,
                      evaluated_at=datetime.now(timezone.utc), cards=[], assessment=assessment)
    stored = json.loads(store.connection().execute("SELECT assessment FROM hook_call").fetchone()[0])
    assert stored["ref"].startswith("[ref:") and stored["value"] == 1234.5
    assert stored["other"] == f"Observation/{pid}0" and stored["text"] == f"{pid}x is not the id"
