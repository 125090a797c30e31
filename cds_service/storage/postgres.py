"""PostgreSQL backend (psycopg 3 with psycopg_pool): CDS_DATABASE=postgresql://...

For two or more replicas behind a load balancer: the audit trail, feedback, card lifecycle
and jti replay store are shared by every replica (README, "Scale-out").

- One connection pool per process (opened lazily on first use, re-created after a fork).
  The pool connects in the background and reconnects by itself when the database returns;
  each connection is checked when taken (one empty round trip), so a connection broken by
  an outage is replaced instead of failing a call.
- Timeouts inside the EHR's 500 ms budget: a hook call waits at most CDS_DATABASE_TIMEOUT_MS
  for a connection, and every statement is cancelled by the server after the same time
  (`statement_timeout`); new connections give up after CDS_DATABASE_CONNECT_TIMEOUT_MS.
  Every failure is a StorageError (503 + Retry-After above).
- The schema is never created implicitly: `cds-service migrate` applies the numbered
  migrations of storage/migrations/postgres; a database at another version is refused
  (StorageError, and `cds-service serve` refuses to start).
- Writes from the batched writer are multi-row INSERTs; hook_call ids are taken from its
  sequence in one round trip so cards can reference them in the same batch.
"""
from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import weakref
from typing import Any, Sequence

from . import migrations
from .base import BaseStorage, StorageError

log = logging.getLogger("cds_service.storage.postgres")

_POOLS: "weakref.WeakSet" = weakref.WeakSet()  # every pool this process opened (close_all_pools)


def close_all_pools(timeout: float = 1.0) -> None:
    """Close every pool of this process (tests between cases; tools)."""
    for pool in list(_POOLS):
        try:
            pool.close(timeout=timeout)
        except Exception:  # pragma: no cover - closing is best effort
            pass


_NAMED = re.compile(r"(?<![:\w]):([a-z_]+)")


def _translate(sql: str, cache: dict[str, str] = {}) -> str:  # noqa: B006 - a deliberate memo
    """`?` and `:name` placeholders (the SQL both backends share) -> psycopg's %s / %(name)s."""
    out = cache.get(sql)
    if out is None:
        out = _NAMED.sub(r"%(\1)s", sql.replace("%", "%%").replace("?", "%s"))
        cache[sql] = out
    return out


class _Conn:
    """A psycopg connection speaking the shared SQL."""

    def __init__(self, conn):
        self.raw = conn

    def execute(self, sql: str, params: Any = None):
        if params is None:  # no placeholders: psycopg sends the text as it is
            return self.raw.execute(sql)
        return self.raw.execute(_translate(sql), params)

    def executemany(self, sql: str, rows):
        with self.raw.cursor() as cur:
            cur.executemany(_translate(sql), rows)


def redacted_url(url: str) -> str:
    """The URL with its password replaced by ***: what logs and feedback-report may show."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


class PostgresStorage(BaseStorage):
    backend = "postgres"
    IS_NOT = "IS DISTINCT FROM"
    MAX_ROWS_PER_INSERT = 500

    def __init__(self, url: str, pepper: str = "", *, timeout_ms: int = 250, connect_timeout_ms: int = 2000,
                 pool_size: int = 8, **batch):
        super().__init__(pepper, **batch)
        self.path = redacted_url(url)  # what logs and the report may show
        self._url = url
        self.timeout_ms, self.connect_timeout_ms, self.pool_size = timeout_ms, connect_timeout_ms, pool_size
        self._pool = None
        self._pool_pid = None
        self._pool_lock = threading.Lock()
        self._returned: dict[int, float] = {}

    # -- connections ---------------------------------------------------------------------
    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            # libpq counts whole seconds (and at least 2); the pool bounds what a call waits.
            "connect_timeout": max(2, math.ceil(self.connect_timeout_ms / 1000)),
            "options": f"-c statement_timeout={int(self.timeout_ms)} -c lock_timeout={int(self.timeout_ms)}"
                       " -c idle_in_transaction_session_timeout=60000",
            "application_name": "cds-service",
            "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
        }

    def _get_pool(self):
        if self._pool is not None and self._pool_pid == os.getpid() and not self._pool.closed:
            return self._pool
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid() or self._pool.closed:
                from psycopg_pool import ConnectionPool
                self._pool = ConnectionPool(
                    self._url, min_size=1, max_size=max(1, self.pool_size), open=False,
                    kwargs=self._connect_kwargs(), check=self._check_if_idle, reset=self._stamp_returned,
                    timeout=self.timeout_ms / 1000, reconnect_timeout=3600 * 24 * 365,
                    name=f"cds-{os.getpid()}")
                self._pool.open(wait=False)
                _POOLS.add(self._pool)
                self._pool_pid = os.getpid()
        return self._pool

    # A connection taken from the pool is checked (one empty round trip) only when it has been
    # idle longer than CHECK_IDLE_S: one broken by an outage while idle is replaced before use,
    # and a busy service does not pay a round trip per call. A connection that breaks while
    # in use fails that one call (503) and is discarded by the pool.
    CHECK_IDLE_S = 2.0

    def _stamp_returned(self, conn) -> None:
        self._returned[id(conn)] = time.monotonic()

    def _check_if_idle(self, conn) -> None:
        from psycopg_pool import ConnectionPool
        if time.monotonic() - self._returned.get(id(conn), 0.0) > self.CHECK_IDLE_S:
            ConnectionPool.check_connection(conn)

    def _conn(self):
        """A connection for tools and tests (autocommit; not from the pool)."""
        import psycopg
        try:
            return psycopg.connect(self._url, **self._connect_kwargs())
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL {self.path}: {exc}") from None

    def connection(self):
        self.flush()
        return _Conn(self._conn())

    def close(self) -> None:
        super().close()
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.close(timeout=1.0)
        self._pool = None

    def _run(self, fn, transaction: bool):
        import psycopg
        from psycopg_pool import PoolTimeout
        pool = self._get_pool()
        try:
            with pool.connection(timeout=self.timeout_ms / 1000) as raw:
                if not self._schema_ready:
                    self._ensure_schema(raw)
                if transaction:
                    with raw.transaction():
                        return fn(_Conn(raw))
                return fn(_Conn(raw))
        except PoolTimeout:
            raise StorageError(f"audit database unavailable: no PostgreSQL connection within "
                               f"{self.timeout_ms} ms ({self.path})") from None
        except psycopg.errors.IntegrityError as exc:
            raise StorageError(f"audit database write refused: {exc}", integrity=True) from None
        except psycopg.Error as exc:
            raise StorageError(f"audit database write failed: {type(exc).__name__}: {exc}".strip()) from None

    def _write(self, fn, busy_timeout_ms: int | None = None):
        return self._run(fn, transaction=True)

    def _read(self, fn):
        return self._run(fn, transaction=False)

    def _ensure_schema(self, raw) -> None:
        current, latest = migrations.pg_version(raw), migrations.latest("postgres")
        if current != latest:
            raise StorageError(_version_message(current, latest))
        if self._pepper is None:
            with raw.transaction():
                self._read_pepper(_Conn(raw))
        self._schema_ready = True

    def migrate(self) -> list[int]:
        import psycopg
        try:
            with psycopg.connect(self._url, autocommit=True, connect_timeout=max(2, math.ceil(
                    self.connect_timeout_ms / 1000))) as raw:
                return migrations.apply_postgres(raw)
        except psycopg.Error as exc:
            raise StorageError(f"migration failed: {exc}") from None
        except migrations.SchemaVersionError as exc:
            raise StorageError(str(exc)) from None

    def schema_version(self) -> tuple[int, int]:
        import psycopg
        try:
            with psycopg.connect(self._url, autocommit=True, connect_timeout=max(2, math.ceil(
                    self.connect_timeout_ms / 1000))) as raw:
                return migrations.pg_version(raw), migrations.latest("postgres")
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL {self.path}: {exc}") from None

    # -- batched inserts ---------------------------------------------------------------------
    def _insert_calls(self, conn: _Conn, rows: list[tuple]) -> list[int]:
        ids = [r[0] for r in conn.execute(
            "SELECT nextval(pg_get_serial_sequence('hook_call', 'id')) FROM generate_series(1, ?)",
            (len(rows),)).fetchall()]
        self._insert_many(conn, "hook_call", ("id", *self._CALL_COLUMNS),
                          [(i, *row) for i, row in zip(ids, rows)])
        return ids

    def _insert_many(self, conn: _Conn, table: str, columns: Sequence[str], rows: list[tuple],
                     conflict: str = "") -> None:
        """Multi-row INSERT, at most MAX_ROWS_PER_INSERT rows per statement."""
        one = "(" + ", ".join("%s" for _ in columns) + ")"
        for start in range(0, len(rows), self.MAX_ROWS_PER_INSERT):
            chunk = rows[start:start + self.MAX_ROWS_PER_INSERT]
            sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join(one for _ in chunk)
                   + (f" {conflict}" if conflict else ""))
            conn.raw.execute(sql, [v for row in chunk for v in row])


def _version_message(current: int, latest: int) -> str:
    if current > latest:
        return (f"database schema version {current} is newer than this release's ({latest}): "
                "upgrade the service")
    return (f"database schema version {current}, this release needs {latest}: "
            "run `cds-service migrate` first")
