"""SQLite backend (stdlib `sqlite3`): the zero-configuration default (CDS_DATABASE a file path).

Concurrency: one connection per thread (and per process, re-opened after a fork), WAL
journal, `busy_timeout`, writes in short IMMEDIATE transactions; safe under gunicorn
workers and threads of one host. Several hosts cannot share it: use PostgreSQL (README,
"Scale-out"). Durability is `CDS_DATABASE_SYNC`: `normal` (default; in WAL mode a committed
row survives a process crash or restart, and only the last transactions before an OS crash
or power loss can be lost; no fsync per call) or `full` (an fsync per commit).

Schema: the numbered migrations of storage/migrations/sqlite, applied on the first write
(zero configuration, as this backend always created its schema itself) and recorded in
`schema_version`; `cds-service migrate` applies them explicitly too.
"""
from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from typing import Sequence

from . import migrations
from .base import BaseStorage, StorageError


class SqliteStorage(BaseStorage):
    """The audit database. Constructing one touches no file: the schema is created (and the
    random pepper generated) on the first write, so a worker boots whatever the state of the
    database (locked, read-only, unwritable directory); every write that cannot be made is a
    StorageError, answered 503 by the layers above, and `check_writable()` feeds /readyz."""

    backend = "sqlite"
    IS_NOT = "IS NOT"

    # SQLite's busy handler waits this long for another writer. Hook calls (audit) keep the
    # long wait: contention between workers is short and the advice must not be lost to it.
    # The jti check and the readiness probe wait less (see DatabaseReplayStore, /readyz): a
    # database locked for longer is a fault, answered 503 + Retry-After, not a queue.
    BUSY_TIMEOUT_MS = 10_000

    def __init__(self, path: str, pepper: str = "", sync: str = "normal", **batch):
        super().__init__(pepper, **batch)
        if path == ":memory:":
            # One shared in-memory database for all threads of this instance (tests, tools).
            self._target, self._uri = f"file:cds-{secrets.token_hex(8)}?mode=memory&cache=shared", True
        else:
            self._target, self._uri = path, False
        self.path = path
        if sync not in ("normal", "full"):
            raise StorageError(f"CDS_DATABASE_SYNC must be 'normal' or 'full', not {sync!r}")
        self._sync = sync.upper()
        self._local = threading.local()
        self._lock, self._lock_pid = threading.Lock(), os.getpid()
        self._anchor: sqlite3.Connection | None = None
        if self._uri:
            self._anchor = self._open()  # keeps the memory database alive

    # -- connections ---------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self._target, uri=self._uri, timeout=self.BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=True)
            conn.execute(f"PRAGMA busy_timeout = {self.BUSY_TIMEOUT_MS}")
            if not self._uri:
                # Needs a write lock the first time (it changes the file header): a locked or
                # read-only file fails here, on the first use, never at start-up.
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._sync}")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the audit database: {exc}") from None
        return conn

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork). StorageError if it cannot be opened."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            conn = self._open()
            local.conn, local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        super().close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._anchor is not None:
            self._anchor.close()
            self._anchor = None

    def _write_lock(self) -> threading.Lock:
        """One lock per process (a new one after a fork)."""
        if self._lock_pid != os.getpid():
            self._lock, self._lock_pid = threading.Lock(), os.getpid()
        return self._lock

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        """Apply the pending migrations and read (or create) the random pepper on first use.
        Safe between processes (each migration is one IMMEDIATE transaction that re-reads
        the version)."""
        if self._schema_ready:
            return
        try:
            migrations.apply_sqlite(conn)
        except migrations.SchemaVersionError as exc:
            raise StorageError(str(exc)) from None
        if self._pepper is None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._read_pepper(conn)
            finally:
                conn.execute("COMMIT")
        self._schema_ready = True

    def migrate(self) -> list[int]:
        with self._write_lock():
            try:
                return migrations.apply_sqlite(self._conn())
            except sqlite3.Error as exc:
                raise StorageError(f"migration failed: {exc}") from None
            except migrations.SchemaVersionError as exc:
                raise StorageError(str(exc)) from None

    def schema_version(self) -> tuple[int, int]:
        try:
            return migrations.sqlite_version(self._conn()), migrations.latest("sqlite")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the schema version: {exc}") from None

    def _write(self, fn, busy_timeout_ms: int | None = None):
        """Run fn(conn) in one IMMEDIATE transaction (the schema is created first if needed).

        Threads of one process take turns on a lock first: waiting in SQLite's busy handler
        means sleeping 1, 2, 5 ... 100 ms between retries, and a writer that loses the GIL
        mid-transaction holds the file lock meanwhile. Under 8 concurrent hook calls that
        put the p99 of a hook call at ~450 ms (bench/RESULTS.md); only the other worker
        processes now contend in SQLite.

        Every SQLite failure (cannot open, locked beyond the busy timeout, read-only, disk
        full) is a StorageError; nothing was written."""
        with self._write_lock():
            conn = self._conn()
            wait = self.BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
            try:
                if wait != self.BUSY_TIMEOUT_MS:
                    conn.execute(f"PRAGMA busy_timeout = {int(wait)}")
                try:
                    if not self._schema_ready:
                        self._ensure_schema(conn)
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = fn(conn)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                    return result
                finally:
                    if wait != self.BUSY_TIMEOUT_MS:
                        conn.execute(f"PRAGMA busy_timeout = {self.BUSY_TIMEOUT_MS}")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise StorageError(f"audit database write failed: {exc}",
                                   integrity=isinstance(exc, sqlite3.IntegrityError)) from None

    def _read(self, fn):
        """fn(conn) outside a write transaction (WAL readers are never blocked by a writer)."""
        if not self._schema_ready:
            self._write(lambda conn: None)
        try:
            return fn(self._conn())
        except sqlite3.Error as exc:
            raise StorageError(f"audit database read failed: {exc}") from None

    def _insert_calls(self, conn: sqlite3.Connection, rows: list[tuple]) -> list[int]:
        sql = (f"INSERT INTO hook_call ({', '.join(self._CALL_COLUMNS)}) VALUES "
               f"({', '.join('?' for _ in self._CALL_COLUMNS)})")
        return [conn.execute(sql, row).lastrowid for row in rows]

    def _insert_many(self, conn: sqlite3.Connection, table: str, columns: Sequence[str], rows: list[tuple],
                     conflict: str = "") -> None:
        conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
                         f"{conflict}", rows)


Storage = SqliteStorage  # the name before PostgreSQL (tests, tools)
