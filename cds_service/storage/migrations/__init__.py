"""Numbered SQL migrations, one directory per backend (`sqlite/`, `postgres/`).

`NNNN_name.sql` files are applied in order, each in the same transaction as the row it adds
to `schema_version` (version, name, applied_at), so a migration is applied entirely or not
at all. `cds-service migrate` applies the pending ones; `cds-service serve` refuses to start
against a database at another version than this release's (one clear line, exit 2).

- PostgreSQL is never migrated implicitly: run `cds-service migrate` on upgrade (one
  replica or a one-shot job; concurrent runs serialise on an advisory lock).
- SQLite (the zero-configuration default) applies its pending migrations on the first write,
  as it always created its schema itself, and records its version the same way. A database
  from a newer release (a higher version) is refused by both.
"""
from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timezone
from importlib import resources

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
PG_LOCK_KEY = 1_600_016  # pg_advisory_xact_lock key serialising concurrent `migrate` runs

SCHEMA_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


class SchemaVersionError(RuntimeError):
    """The database is at another schema version than this release needs."""


def scripts(backend: str) -> list[tuple[int, str, str]]:
    """[(version, name, sql)] in order."""
    out = []
    for entry in resources.files(__package__).joinpath(backend).iterdir():
        match = _NAME.match(entry.name)
        if match:
            out.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    out.sort()
    assert [v for v, _, _ in out] == list(range(1, len(out) + 1)), f"{backend} migrations must be numbered 1..n"
    return out


def latest(backend: str) -> int:
    return len(scripts(backend))


def _stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def statements(sql: str) -> list[str]:
    """Split a script into statements (SQLite's complete_statement knows comments and strings)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip() and not all(l.strip().startswith("--") or not l.strip() for l in buf.splitlines()):
        out.append(buf.strip())
    return out


# -- SQLite ------------------------------------------------------------------------------------
def sqlite_version(conn: sqlite3.Connection) -> int:
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone() is None:
        return 0
    return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]


def _sqlite_fixups(conn: sqlite3.Connection) -> None:
    """Columns added to 0001's tables before numbered migrations existed (a database from an
    older release created them without)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(hook_call)")}
    if "service_version" not in columns:
        conn.execute("ALTER TABLE hook_call ADD COLUMN service_version TEXT")


def apply_sqlite(conn: sqlite3.Connection) -> list[int]:
    """Apply the pending migrations, each in its own IMMEDIATE transaction (the caller holds
    no transaction). SchemaVersionError for a database from a newer release."""
    applied = []
    target = latest("sqlite")
    for version, name, sql in scripts("sqlite"):
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(SCHEMA_VERSION_TABLE)
            current = sqlite_version(conn)
            if current > target:
                raise SchemaVersionError(f"database schema version {current} is newer than this release's "
                                         f"({target}): upgrade the service")
            if version <= current:
                conn.execute("ROLLBACK")
                continue
            for statement in statements(sql):
                conn.execute(statement)
            if version == 1:
                _sqlite_fixups(conn)
            conn.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                         (version, name, _stamp()))
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(version),))
            conn.execute("COMMIT")
            applied.append(version)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    if not applied:  # a database already at the latest version may still be a newer one
        current = sqlite_version(conn)
        if current > target:
            raise SchemaVersionError(f"database schema version {current} is newer than this release's "
                                     f"({target}): upgrade the service")
    return applied


# -- PostgreSQL ----------------------------------------------------------------------------------
def pg_version(conn) -> int:
    """conn: a psycopg connection."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]
    if not exists:
        return 0
    return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]


def apply_postgres(conn) -> list[int]:
    """Apply the pending migrations in one transaction (conn: an autocommit psycopg
    connection), serialised between concurrent runs by an advisory lock."""
    applied = []
    target = latest("postgres")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_LOCK_KEY,))
        conn.execute(SCHEMA_VERSION_TABLE)
        current = pg_version(conn)
        if current > target:
            raise SchemaVersionError(f"database schema version {current} is newer than this release's "
                                     f"({target}): upgrade the service")
        for version, name, sql in scripts("postgres"):
            if version <= current:
                continue
            conn.execute(sql.encode("utf-8"))  # no parameters: the simple protocol runs a whole script
            conn.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                         (version, name, _stamp()))
            applied.append(version)
    return applied
