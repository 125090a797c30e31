"""Issue 21 M6: with the disk full (SQLite), a graceful stop silently dropped ~391 queued audit
rows, and /readyz stayed 200 (its one-row check still fitted). Every row the writer cannot
store is counted and logged, /readyz is 503 while the writer fails, and a stop logs the loss."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from cds_service import create_app
from cds_service.runtime import metrics
from cds_service.storage import StorageError
from conftest import in_scope

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _lost(reason: str) -> float:
    """cds_audit_rows_lost_total for `reason`, over every site label."""
    return sum(sample.value for family in metrics.AUDIT_ROWS_LOST.collect() for sample in family.samples
               if sample.name.endswith("_total") and sample.labels.get("reason") == reason)


def test_rows_the_writer_cannot_store_are_counted_logged_and_make_readyz_503(tmp_path, caplog):
    app = create_app({"database": str(tmp_path / "db.sqlite3")})
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    store = app.extensions["cds"].extensions["storage"]
    writer = store.writer

    def disk_full(items):
        raise StorageError("database or disk is full")

    writer._commit = disk_full
    before = _lost("stop")
    for n in range(3):
        body = in_scope(json.loads((EXAMPLES / "patient-view-sic-positive.json").read_text()))
        body["hookInstance"] = f"00000000-0000-4000-8000-00000000000{n}"
        assert client.post("/cds-services/coagulopathy-risk", json=body).status_code == 200
    assert not writer.flush(0.5)
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"]
    waiting = writer.waiting  # 3 audit items and their lifecycle rows
    assert waiting >= 3
    assert f"audit writer failing ({waiting} rows waiting" in ready.get_json()["checks"]["database"]

    with caplog.at_level(logging.ERROR, logger="cds_service.storage.writer"):
        writer.close(timeout=0.3)
    lines = [r for r in caplog.records if "not stored; they are lost" in r.getMessage()]
    assert lines and lines[0].fields["lost"] == waiting
    assert writer.dropped == waiting and _lost("stop") - before == waiting


def test_a_full_queue_counts_every_dropped_row(tmp_path):
    from cds_service.storage.writer import BatchWriter

    def never(items):
        raise StorageError("down")

    writer = BatchWriter(never, queue_max=2, max_delay_ms=1000)
    before = _lost("queue_full")
    for n in range(5):
        writer.submit(n)
    assert writer.dropped == 3 and _lost("queue_full") - before == 3
    writer.close(timeout=0.1)
    assert writer.dropped == 5
