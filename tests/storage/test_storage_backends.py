"""The storage interface on both backends (issue 16): SQLite and PostgreSQL give the same
answers. Audit rows go through the batched writer (issue 15); a reader sees them after the
flush hook (`Storage.query` / `connection()` flush first)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cds_service.storage import IssuedCard, StorageError, open_storage

from audit_helpers import OS, PV, card as _card, fb as _fb, record as _record, write_concurrently

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(backend_db):
    s = open_storage(backend_db)
    yield s
    s.close()


def test_call_cards_and_suggestions_are_joinable(store):
    _record(store, cards=[IssuedCard("prophylaxis_suggestion", _card("c-1", "s-1", "s-2")),
                          IssuedCard("anti_xa", _card("c-2"))])
    _record(store, hook_instance="hi-2", cards=[IssuedCard("anti_xa", _card("c-3"))])
    rows = store.query(
        "SELECT h.hook_instance, h.patient_hash, c.kind, s.uuid, s.actions FROM suggestion s"
        " JOIN card c ON c.uuid = s.card_uuid JOIN hook_call h ON h.id = c.call_id ORDER BY s.uuid")
    assert rows == [("hi-1", store.patient_hash("pat-1"), "prophylaxis_suggestion", s,
                     "create:MedicationRequest,delete") for s in ("s-1", "s-2")]
    assert store.query("SELECT c.uuid, h.hook_instance FROM card c JOIN hook_call h ON h.id = c.call_id"
                       " ORDER BY c.uuid") == [("c-1", "hi-1"), ("c-2", "hi-1"), ("c-3", "hi-2")]


def test_patient_id_is_a_keyed_hash_and_the_pepper_is_kept_in_the_database(store, backend_db):
    _record(store, patient="pat-77", assessment={"subject": "Patient/pat-77", "note": "seen pat-77 today"})
    [(stored, hashed)] = store.query("SELECT assessment, patient_hash FROM hook_call")
    assert "pat-77" not in stored and hashed == store.patient_hash("pat-77")
    marker = f"[patient:{hashed[:16]}]"
    assert json.loads(stored)["note"] == f"seen {marker} today"
    again = open_storage(backend_db)  # a restart (or another replica) reads the same pepper
    assert again.patient_hash("pat-77") == hashed
    assert open_storage(backend_db, pepper="s3cret").patient_hash("pat-77") != hashed


def test_feedback_idempotent_matched_and_unmatched(store):
    _record(store, cards=[IssuedCard("dose_correction", _card("c-1", "s-1"))])
    reason = {"reason": {"code": "bleeding-risk", "system": "https://cds.example.org/CodeSystem/override-reason"},
              "userComment": "recent fall"}
    first = store.store_feedback(PV, [_fb("c-1", overrideReason=reason),
                                      _fb("c-1", "accepted", "2025-01-15T12:06:00Z", acceptedSuggestions=[{"id": "s-1"}]),
                                      _fb("nope")])
    assert first == {"stored": 3, "duplicates": 0, "unmatched": 1}
    again = store.store_feedback(PV, [_fb("c-1", ts="2025-01-15T13:05:00+01:00"), _fb("nope"), _fb("nope")])
    assert again == {"stored": 0, "duplicates": 3, "unmatched": 0}
    assert store.query("SELECT card_uuid, outcome, outcome_timestamp, override_code, override_comment, matched"
                       " FROM feedback ORDER BY id") == [
        ("c-1", "overridden", "2025-01-15T12:05:00Z", "bleeding-risk", "recent fall", 1),
        ("c-1", "accepted", "2025-01-15T12:06:00Z", None, None, 1),
        ("nope", "overridden", "2025-01-15T12:05:00Z", None, None, 0)]
    assert store.store_feedback(OS, [_fb("c-1", ts="2025-01-15T12:07:00Z")]) == \
        {"stored": 1, "duplicates": 0, "unmatched": 1}


def test_feedback_right_after_the_call_matches_its_card_while_the_audit_row_is_pending(backend_db):
    """The audit row is still in the writer's queue (a long group-commit delay): feedback
    commits it first, so the feedback matches and refers to a committed card."""
    store = open_storage(backend_db)
    store.writer.max_delay_s = 60.0
    store.writer.max_rows = 10_000
    _record(store, cards=[IssuedCard("anti_xa", _card("c-9"))])
    assert store.store_feedback(PV, [_fb("c-9")]) == {"stored": 1, "duplicates": 0, "unmatched": 0}
    assert store.writer.pending() == []
    assert store.query("SELECT COUNT(*) FROM card WHERE uuid = 'c-9'") == [(1,)]


def test_concurrent_writers_lose_nothing(store):
    errors = write_concurrently(store, threads=6, calls=15)
    assert not errors
    assert store.query("SELECT COUNT(*), SUM(matched) FROM feedback") == [(90, 90)]
    assert store.query("SELECT COUNT(*) FROM hook_call") == [(90,)]
    assert store.query("SELECT COUNT(*) FROM card") == [(90,)]


def test_the_writer_commits_in_batches_and_pending_rows_are_visible_before(backend_db):
    store = open_storage(backend_db)
    commits = []
    real = store._commit_batch
    store.writer._commit = lambda items: (commits.append(len(items)), real(items))
    store.writer.max_delay_s = 60.0   # only a full batch (or a flush) commits
    store.writer.max_rows = 4
    for i in range(3):
        _record(store, hook_instance=f"h-{i}", cards=[IssuedCard("anti_xa", _card(f"c-{i}"))])
    assert len(store.writer.pending()) == 3 and commits == []
    _record(store, hook_instance="h-3")   # the fourth row fills the batch: one commit of 4
    assert store.writer.flush(timeout=10)
    assert commits == [4]
    assert store.query("SELECT COUNT(*) FROM hook_call") == [(4,)]


def test_a_row_the_database_refuses_does_not_block_the_others(store, caplog):
    _record(store, hook_instance="h-1", cards=[IssuedCard("anti_xa", _card("dup"))])
    store.flush()
    caplog.set_level("ERROR")
    store.writer.max_delay_s = 60.0
    store.writer.max_rows = 10_000
    _record(store, hook_instance="h-2", cards=[IssuedCard("anti_xa", _card("dup"))])   # same card uuid
    _record(store, hook_instance="h-3", cards=[IssuedCard("anti_xa", _card("fine"))])
    assert store.flush(timeout=10)
    assert store.query("SELECT hook_instance FROM hook_call ORDER BY id") == [("h-1",), ("h-3",)]
    assert any("refused" in r.getMessage() for r in caplog.records)


def test_normal_exit_flushes_the_queue(backend_db, tmp_path):
    """atexit (and so SIGTERM under gunicorn, which exits normally) commits what is queued."""
    code = (
        "import sys\nfrom datetime import datetime, timezone\n"
        "from cds_service.storage import open_storage, IssuedCard\n"
        "s = open_storage(sys.argv[1])\n"
        "s.writer.max_delay_s = 3600; s.writer.max_rows = 10**6\n"
        "for i in range(25):\n"
        "    s.record_call(service_id='x', hook='patient-view', hook_instance=f'exit-{i}', patient_id='p',\n"
        "                  evaluated_at=datetime.now(timezone.utc), cards=[])\n"
        "assert len(s.writer.pending()) == 25\n")
    out = subprocess.run([sys.executable, "-c", code, backend_db], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    check = open_storage(backend_db)
    assert check.query("SELECT COUNT(*) FROM hook_call WHERE hook_instance LIKE 'exit-%'") == [(25,)]


def test_schema_version_is_recorded_on_both(store, backend_db):
    store.check_writable()
    current, latest = store.schema_version()
    assert current == latest >= 1
    assert store.query("SELECT MAX(version) FROM schema_version") == [(latest,)]


def test_unreachable_postgres_is_a_storage_error_within_the_timeout():
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = open_storage(f"postgresql://postgres@127.0.0.1:{port}/nothing")
    store.timeout_ms = 200
    with pytest.raises(StorageError, match="no PostgreSQL connection within 200 ms"):
        store.check_writable()


def _lifecycle_row(uuid: str, hook_instance: str, at: float, status="shown") -> dict:
    return {"card_uuid": uuid, "hook_instance": hook_instance, "service_id": PV, "kind": "k", "indicator": "warning",
            "fingerprint": "fp-1", "situation": "s-1", "at_epoch": at, "status": status, "reason": None}


def test_lifecycle_history_reads_through_the_rows_still_queued(backend_db):
    """Nothing depends on when the writer commits: a shown card still queued counts as shown
    for the next call of this process, and an override of it received by another replica
    (committed there) is joined to it."""
    here, other = open_storage(backend_db), open_storage(backend_db)
    here.writer.max_delay_s, here.writer.max_rows = 3600.0, 10_000     # nothing commits by itself
    key = {"user_hash": "u", "patient_hash": "p", "encounter_hash": ""}
    seen = []

    def decide(rows):
        def fn(history):
            seen.append(history["fp-1"])
            return rows
        return fn

    here.lifecycle_decide(key, ["fp-1"], decide([_lifecycle_row("card-a", "call-1", 1000.0)]), hook_instance="call-1")
    assert here.writer.pending() and seen[-1] == {"shown": [], "overrides": []}
    here.lifecycle_decide(key, ["fp-1"], decide([]), hook_instance="call-2")
    assert seen[-1]["shown"] == [1000.0]                    # the queued row, not yet in the database
    here.lifecycle_decide(key, ["fp-1"], decide([]), hook_instance="call-1")
    assert seen[-1]["shown"] == []                          # a retried call is answered again
    # Another replica stores an override of that card (its own queue is empty: no flush here).
    other.store_feedback(PV, [_fb("card-a", ts="2025-01-15T12:05:00Z", overrideReason={"userComment": "no"})])
    assert here.writer.pending()                            # still not committed here
    here.lifecycle_decide(key, ["fp-1"], decide([]), hook_instance="call-3")
    [override] = seen[-1]["overrides"]
    assert override["situation"] == "s-1" and override["outcome_timestamp"] == "2025-01-15T12:05:00Z"
    assert override["reason_given"] is True
    assert here.flush(timeout=10)
    here.lifecycle_decide(key, ["fp-1"], decide([]), hook_instance="call-4")
    assert seen[-1]["shown"] == [1000.0] and len(seen[-1]["overrides"]) == 1   # once, committed
