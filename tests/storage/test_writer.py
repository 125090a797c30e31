"""The batched writer on its own (storage/writer.py): group commit, retry while the database
is down, bounded queue, flush, an idle writer ending and a new one starting."""
from __future__ import annotations

import threading

from cds_service.storage.writer import BatchWriter


class Db:
    def __init__(self):
        self.rows, self.batches, self.down = [], [], False
        self.lock = threading.Lock()

    def commit(self, items):
        if self.down:
            raise RuntimeError("database is down")
        with self.lock:
            self.batches.append(list(items))
            self.rows.extend(items)


def test_rows_wait_for_a_full_batch_or_a_flush_and_keep_their_order():
    db = Db()
    w = BatchWriter(db.commit, max_rows=3, max_delay_ms=3_600_000)
    w.submit(1)
    w.submit(2)
    assert w.pending() == [1, 2] and db.rows == []
    w.submit(3)
    assert w.flush(timeout=10) and db.batches == [[1, 2, 3]]
    w.submit(4)
    assert w.flush(timeout=10) and db.batches == [[1, 2, 3], [4]] and w.pending() == []


def test_a_database_outage_keeps_the_rows_queued_and_in_order_until_it_returns():
    db = Db()
    db.down = True
    w = BatchWriter(db.commit, max_rows=2, max_delay_ms=0)
    w.RETRY_MAX_S = 0.05
    for i in range(5):
        w.submit(i)
    assert w.flush(timeout=0.3) is False and db.rows == []
    assert w.pending() == [0, 1, 2, 3, 4] and "down" in w.last_error
    db.down = False
    assert w.flush(timeout=10) and db.rows == [0, 1, 2, 3, 4] and w.last_error is None


def test_the_queue_is_bounded_while_the_database_is_down(caplog):
    db = Db()
    db.down = True
    w = BatchWriter(db.commit, max_rows=2, max_delay_ms=0, queue_max=3)
    caplog.set_level("ERROR")
    for i in range(5):
        w.submit(i)
    assert len(w.pending()) == 3 and w.dropped == 2
    assert any("queue full" in r.getMessage() for r in caplog.records)
    db.down = False
    assert w.flush(timeout=10) and db.rows == [0, 1, 2]


def test_an_idle_writer_ends_and_the_next_row_starts_another():
    db = Db()
    w = BatchWriter(db.commit, max_rows=1, max_delay_ms=0)
    w.IDLE_EXIT_S = 0.01
    w.submit("a")
    assert w.flush(timeout=10)
    first = w._thread
    if first is not None:
        first.join(timeout=10)
    assert w._thread is None
    w.submit("b")
    assert w.flush(timeout=10) and db.rows == ["a", "b"]


def test_close_flushes():
    db = Db()
    w = BatchWriter(db.commit, max_rows=100, max_delay_ms=3_600_000)
    w.submit("x")
    assert w.close(timeout=10) and db.rows == ["x"]
