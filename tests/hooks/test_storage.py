"""Audit trail and feedback persistence (storage.py) and `cds-service feedback-report`."""
from __future__ import annotations

import json
import sqlite3

import pytest

from cds_service import create_app
from cds_service.cli import main as cli_main
from cds_service.cli.feedback_report import build_report
from cds_service.storage import IssuedCard, Storage, StorageError

from audit_helpers import OS, PV, card as _card, fb as _fb, record as _record, write_concurrently


def test_call_cards_and_suggestions_are_joinable(tmp_path):
    store = Storage(str(tmp_path / "a.db"))
    _record(store, cards=[IssuedCard("prophylaxis_suggestion", _card("c-1", "s-1", "s-2"))])
    rows = store.connection().execute(
        "SELECT h.hook_instance, h.service_id, h.patient_hash, c.kind, c.indicator, s.uuid, s.actions"
        " FROM suggestion s JOIN card c ON c.uuid = s.card_uuid JOIN hook_call h ON h.id = c.call_id"
        " ORDER BY s.uuid").fetchall()
    assert rows == [("hi-1", PV, store.patient_hash("pat-1"), "prophylaxis_suggestion", "warning", "s-1",
                     "create:MedicationRequest,delete"),
                    ("hi-1", PV, store.patient_hash("pat-1"), "prophylaxis_suggestion", "warning", "s-2",
                     "create:MedicationRequest,delete")]


def test_patient_id_is_stored_only_as_a_keyed_hash(tmp_path):
    path = tmp_path / "a.db"
    store = Storage(str(path))
    assessment = {"subject": "Patient/pat-77", "id": "pat-77", "source": "Observation/pat-77-plt",
                  "platelets": 177.5, "note": "pat-7 is another id", "said": "seen pat-77 today",
                  "urn": "urn:example:pat-77", "other": "Observation/pat-778"}
    _record(store, patient="pat-77", assessment=assessment)
    stored = json.loads(store.connection().execute("SELECT assessment FROM hook_call").fetchone()[0])
    marker = f"[patient:{store.patient_hash('pat-77')[:16]}]"

    def ref(text):
        return f"[ref:{store.patient_hash(text)[:16]}]"

    # Issue 14 (v2 of this rule): every reference that contains the id as a whole token is
    # replaced by a keyed hash of the whole reference (before: only Patient/<id>, and
    # Observation/<id>-plt kept the MRN); free text has the id replaced; other ids, other
    # text and numbers are untouched.
    assert stored == {"subject": ref("Patient/pat-77"), "id": marker, "source": ref("Observation/pat-77-plt"),
                      "platelets": 177.5, "note": "pat-7 is another id", "said": f"seen {marker} today",
                      "urn": ref("urn:example:pat-77"), "other": "Observation/pat-778"}
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"Patient/pat-77" not in raw and b"pat-77-plt" not in raw
    # HMAC, not a bare sha256 of the id: a second database has its own random pepper...
    other = Storage(str(tmp_path / "b.db"))
    assert other.patient_hash("pat-77") != Storage(str(path)).patient_hash("pat-77")
    # ...stable across restarts on the same file; CDS_AUDIT_PEPPER (config) overrides it.
    assert Storage(str(path)).patient_hash("pat-77") == store.patient_hash("pat-77")
    peppered = Storage(str(tmp_path / "c.db"), pepper="s3cret")
    assert peppered.patient_hash("pat-77") == Storage(str(tmp_path / "d.db"), pepper="s3cret").patient_hash("pat-77")
    peppered.check_writable()  # the schema is created on the first write
    assert not sqlite3.connect(tmp_path / "c.db").execute(
        "SELECT 1 FROM meta WHERE key = 'patient_hash_pepper'").fetchall()


def test_feedback_idempotent_unmatched_and_normalised_timestamps(tmp_path):
    store = Storage(str(tmp_path / "a.db"))
    _record(store, cards=[IssuedCard("dose_correction", _card("c-1", "s-1"))])
    reason = {"reason": {"code": "bleeding-risk", "system": "https://cds.example.org/CodeSystem/override-reason"},
              "userComment": "recent fall"}
    first = store.store_feedback(PV, [_fb("c-1", overrideReason=reason),
                                      _fb("c-1", "accepted", "2025-01-15T12:06:00Z", acceptedSuggestions=[{"id": "s-1"}]),
                                      _fb("nope")])
    assert first == {"stored": 3, "duplicates": 0, "unmatched": 1}
    # The same instant written with an offset is the same item; repeats inside one POST count too.
    again = store.store_feedback(PV, [_fb("c-1", ts="2025-01-15T13:05:00+01:00"), _fb("nope"), _fb("nope")])
    assert again == {"stored": 0, "duplicates": 3, "unmatched": 0}
    rows = store.connection().execute(
        "SELECT card_uuid, outcome, outcome_timestamp, accepted_suggestions, override_code, override_system,"
        " override_display, override_comment, matched FROM feedback ORDER BY id").fetchall()
    assert rows == [
        ("c-1", "overridden", "2025-01-15T12:05:00Z", None, "bleeding-risk",
         "https://cds.example.org/CodeSystem/override-reason", None, "recent fall", 1),
        ("c-1", "accepted", "2025-01-15T12:06:00Z", '["s-1"]', None, None, None, None, 1),
        ("nope", "overridden", "2025-01-15T12:05:00Z", None, None, None, None, None, 0),
    ]
    # A card issued by another service is not a match for this one.
    assert store.store_feedback(OS, [_fb("c-1", ts="2025-01-15T12:07:00Z")]) == \
        {"stored": 1, "duplicates": 0, "unmatched": 1}


def test_concurrent_writers_lose_nothing(tmp_path):
    store = Storage(str(tmp_path / "a.db"))
    errors = write_concurrently(store, threads=6, calls=15)
    assert not errors
    conn = sqlite3.connect(tmp_path / "a.db")
    assert conn.execute("SELECT COUNT(*), SUM(matched) FROM feedback").fetchone() == (90, 90)
    assert conn.execute("SELECT COUNT(*) FROM hook_call").fetchone() == (90,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_unopenable_database_is_a_clear_error_on_first_write_not_at_start(tmp_path):
    # Issue 14: constructing the store touches no file (a worker must boot whatever the
    # database's state); the first write names the cause.
    store = Storage(str(tmp_path / "no" / "such" / "dir" / "a.db"))
    with pytest.raises(StorageError, match="cannot open the audit database"):
        store.check_writable()
    assert not (tmp_path / "no").exists()


def test_report_rates_per_service_and_kind(tmp_path, capsys):
    path = tmp_path / "a.db"
    store = Storage(str(path))
    _record(store, cards=[IssuedCard("prophylaxis_suggestion", _card("p1", "s1")),
                          IssuedCard("prophylaxis_suggestion", _card("p2", "s2")),
                          IssuedCard("contraindicated", _card("k1", indicator="critical"))])
    _record(store, service=OS, hook_instance="hi-2",
            cards=[IssuedCard("dose_correction", _card("d1", "s3")), IssuedCard("anti_xa", _card("a1", "s4"))])
    store.store_feedback(PV, [_fb("p1", "accepted", acceptedSuggestions=[{"id": "s1"}]),
                              # k1 accepted first, then overridden: the latest outcome counts
                              _fb("k1", "accepted", "2025-01-15T12:01:00Z", acceptedSuggestions=[{"id": "x"}]),
                              _fb("k1", "overridden", "2025-01-15T12:09:00Z",
                                  overrideReason={"reason": {"code": "data-inaccurate"}}),
                              _fb("ghost")])
    store.store_feedback(OS, [_fb("d1", overrideReason={"reason": {"code": "therapeutic-indication"}})])
    store.close()
    report = build_report(sqlite3.connect(path))
    assert report["totals"] == {"hook_calls": 2, "cards": 5, "feedback_items": 5, "unmatched_feedback": 1}
    by_service = {r["service"]: r for r in report["by_service"]}
    assert by_service[PV]["cards"] == 3 and by_service[PV]["accepted"] == 1 and by_service[PV]["overridden"] == 1
    assert by_service[PV]["accept_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert by_service[PV]["override_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert by_service[PV]["response_accept_rate"] == 0.5
    assert by_service[OS]["accept_rate"] == 0 and by_service[OS]["override_rate"] == 0.5
    by_kind = {r["kind"]: r for r in report["by_kind"]}
    assert by_kind["prophylaxis_suggestion"]["accept_rate"] == 0.5
    assert by_kind["prophylaxis_suggestion"]["no_feedback"] == 1
    assert by_kind["contraindicated"]["override_reasons"] == {"data-inaccurate": 1}
    assert by_kind["anti_xa"]["accept_rate"] == 0 and by_kind["anti_xa"]["response_accept_rate"] is None

    assert cli_main(["feedback-report", "--database", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == report
    assert cli_main(["feedback-report", "--database", str(path)]) == 0
    text = capsys.readouterr().out
    assert "prophylaxis_suggestion" in text and "50.0%" in text and "unmatched feedback 1" in text
    assert cli_main(["feedback-report", "--database", str(tmp_path / "missing.db")]) == 2


# -- through HTTP ------------------------------------------------------------------------------
def _post(client, service, body):
    return client.post(f"/cds-services/{service}/feedback", data=json.dumps(body),
                       content_type="application/json")


def test_feedback_survives_restart_and_repeats_are_stored_once(tmp_path):
    db = str(tmp_path / "cds.sqlite3")
    first = create_app({"database": db}).test_client()
    item = _fb("unknown-card", overrideReason={"reason": {"code": "x", "system": "y"}, "userComment": "c"})
    resp = _post(first, PV, {"feedback": [item]})
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "stored": 1, "duplicates": 0, "unmatched": 1}
    second = create_app({"database": db}).test_client()  # a restart over the same file
    assert _post(second, PV, item).get_json() == {"status": "ok", "stored": 0, "duplicates": 1, "unmatched": 0}
    assert sqlite3.connect(db).execute("SELECT card_uuid, matched, override_comment FROM feedback").fetchall() \
        == [("unknown-card", 0, "c")]


def test_feedback_with_impossible_date_is_400_and_stores_nothing(tmp_path, client, app_config):
    resp = _post(client, PV, {"feedback": [_fb("a"), _fb("b", ts="2025-13-45T12:00:00Z")]})
    assert resp.status_code == 400
    assert "Feedback item 1" in resp.get_json()["issue"][0]["diagnostics"]
    conn = sqlite3.connect(app_config["database"])
    # The schema is created on the first write (issue 14), so "nothing stored" may be no table.
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "feedback" not in tables or conn.execute("SELECT COUNT(*) FROM feedback").fetchone() == (0,)


def test_feedback_storage_failure_is_503_not_ok(app, client, monkeypatch):
    storage = app.extensions["cds"].extensions["storage"]

    def broken(*a, **k):
        raise StorageError("disk full")

    monkeypatch.setattr(storage, "store_feedback", broken)
    resp = _post(client, PV, _fb("a"))
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "transient"
