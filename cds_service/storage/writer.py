"""The batched writer (issue 15 "audit and lifecycle writes off the request path", issue 16).

Audit rows (a hook call with its cards and suggestions) and card-lifecycle rows are prepared
on the request thread (hashed, scrubbed, serialised: nothing from the request stays alive)
and handed to `BatchWriter.submit`. One writer thread per process commits them in batches
(group commit): as soon as `max_rows` items wait, or `max_delay_ms` after the first one
arrived, whichever comes first, in one transaction (multi-row INSERTs on PostgreSQL).

Reads that must see a write go through `pending()`, the items submitted and not yet
committed, so no behaviour depends on timing:
- the lifecycle lookups (repeat, snooze) merge the pending lifecycle rows of this process;
- feedback first `flush()`es (it is acknowledged only after its own commit, and its
  `matched` join then sees this process's audit rows);
- `Storage.connection()` (tests, tools) flushes before it returns.

Crash window (documented in the README): a `kill -9` or power loss loses at most the items
not yet committed: `max_rows` items or `max_delay_ms` of audit and lifecycle rows in normal
running; while the database is down, the items queued meanwhile (at most `queue_max`, then
new ones are dropped, counted and logged). Never feedback: it is written synchronously.
On a normal exit (a graceful SIGTERM stop of the server's workers, atexit) the queue is flushed;
rows that still cannot be stored are counted (`cds_audit_rows_lost`) and logged with their number.
While commits fail, /readyz answers 503 (app.readiness reads `failing`).
"""
from __future__ import annotations

import atexit
import multiprocessing.util
import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable

log = logging.getLogger("cds_service.storage.writer")

_WRITERS: "weakref.WeakSet[BatchWriter]" = weakref.WeakSet()


@atexit.register
def _flush_all_at_exit() -> None:  # pragma: no cover - exercised by the subprocess tests
    for writer in list(_WRITERS):
        writer.close(timeout=5.0)


# granian's workers are multiprocessing children: after a graceful stop (SIGTERM) their target
# returns and multiprocessing ends them with os._exit, which skips atexit but runs its own
# finalizers. So the flush is registered there too (close() is idempotent).
multiprocessing.util.Finalize(None, _flush_all_at_exit, exitpriority=10)


class BatchWriter:
    """commit(items) writes a list of items in one transaction or raises. Items stay pending
    (visible through `pending()`) until their batch is committed."""

    RETRY_MIN_S, RETRY_MAX_S = 0.05, 1.0
    IDLE_EXIT_S = 30.0
    LOG_EVERY_S = 30.0

    def __init__(self, commit: Callable[[list[Any]], None], *, max_rows: int = 200,
                 max_delay_ms: float = 5.0, queue_max: int = 10_000, name: str = "audit"):
        self._commit = commit
        self.max_rows, self.max_delay_s, self.queue_max = max(1, max_rows), max(0.0, max_delay_ms) / 1000, queue_max
        self._name = name
        self._cond = threading.Condition()
        self._queue: deque = deque()     # submitted, not yet taken by the writer
        self._inflight: list = []        # taken, being committed
        self._submitted = self._committed = 0  # sequence numbers (flush waits on them)
        self._dropped = 0
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False
        self._urgent = False
        self._last_error_log: dict[str, float] = {}
        self.last_error: str | None = None
        _WRITERS.add(self)

    # -- producer side ---------------------------------------------------------------------
    def submit(self, item: Any) -> None:
        with self._cond:
            self._ensure_thread()
            if len(self._queue) + len(self._inflight) >= self.queue_max:
                self.lost(1, "queue_full")
                self._log_error(f"audit queue full ({self.queue_max} rows): a row was dropped", "full")
                return
            self._queue.append(item)
            self._submitted += 1
            if len(self._queue) >= self.max_rows or len(self._queue) == 1:
                self._cond.notify_all()

    def pending(self) -> list[Any]:
        """Items submitted and not yet committed (a snapshot, oldest first)."""
        with self._cond:
            return [*self._inflight, *self._queue]

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every item submitted before this call is committed. False on timeout
        (the database is down: the items stay queued and are retried)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._pid != os.getpid():
                self._after_fork()
            target = self._submitted
            if self._committed >= target:
                return True
            self._ensure_thread()
            self._urgent = True  # commit now, do not wait for the group-commit delay
            self._cond.notify_all()
            while self._committed < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, timeout: float = 5.0) -> bool:
        ok = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            left = 0 if ok or self._pid != os.getpid() else len(self._queue) + len(self._inflight)
        if left:
            # Issue 21 M6: a graceful stop with the database failing (a full disk) dropped
            # the queued rows silently. Always one line (not rate-limited), with the count.
            self.lost(left, "stop")
            log.error(f"stopping with {left} {self._name} rows not stored; they are lost",
                      extra={"fields": {"writer": self._name, "lost": left, "dropped_total": self._dropped,
                                        "error": (self.last_error or "")[:300]}})
        return ok

    def lost(self, count: int, reason: str) -> None:
        """Count rows that will never be stored (queue full, refused by the database, stop)."""
        from ..runtime import metrics
        self._dropped += count
        metrics.audit_rows_lost(reason, count)

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def failing(self) -> str | None:
        """Why the last commit failed, while the writer is failing (None once one succeeds)."""
        return self.last_error

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._inflight)

    # -- the writer thread ---------------------------------------------------------------------
    def _after_fork(self) -> None:
        # A forked child inherits the parent's queue but not its thread: the parent commits
        # those items; the child starts empty.
        self._queue.clear()
        self._inflight = []
        self._submitted = self._committed = 0
        self._thread, self._pid = None, os.getpid()

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():
            self._after_fork()
        if self._thread is None or not self._thread.is_alive():
            self._closed = False
            self._thread = threading.Thread(target=self._run, name=f"cds-{self._name}-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    # An idle writer ends (and with it its hold on the storage); the next
                    # submit starts another. Decided under the lock, so no item is missed.
                    if not self._cond.wait(self.IDLE_EXIT_S) and not self._queue:
                        self._thread = None
                        return
                if not self._queue and self._closed:
                    return
                # Group commit: wait up to max_delay for more rows unless a batch is full.
                first_wait = time.monotonic() + self.max_delay_s
                while len(self._queue) < self.max_rows and not self._closed and not self._urgent:
                    left = first_wait - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                self._urgent = False
                batch = [self._queue.popleft() for _ in range(min(self.max_rows, len(self._queue)))]
                self._inflight = batch
            try:
                self._commit(batch)
            except Exception as exc:  # the database is down: keep the rows, retry with backoff
                self.last_error = str(exc)
                self._log_error(f"audit batch of {len(batch)} rows not committed, will retry: {str(exc)[:300]}",
                                "commit")
                with self._cond:
                    self._queue.extendleft(reversed(batch))
                    self._inflight = []
                    closed = self._closed
                backoff = min(self.RETRY_MAX_S, max(self.RETRY_MIN_S, backoff * 2))
                if closed:
                    return  # exiting: give up after one more failure (logged above)
                time.sleep(backoff)
                continue
            backoff = 0.0
            self.last_error = None
            with self._cond:
                self._inflight = []
                self._committed += len(batch)
                self._cond.notify_all()

    def _log_error(self, message: str, kind: str) -> None:
        """One line per kind of error per LOG_EVERY_S."""
        now = time.monotonic()
        if now - self._last_error_log.get(kind, -self.LOG_EVERY_S) >= self.LOG_EVERY_S:
            self._last_error_log[kind] = now
            log.error(message, extra={"fields": {"writer": self._name, "dropped": self._dropped}})
