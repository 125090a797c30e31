"""Server-side sessions of the assessment view.

The browser holds one random cookie value (256 bits). The server keeps, per session, a
record (launch state, PKCE verifier, then the FHIR server, patient and access token) in a
small SQLite table shared by every worker of the host, because the launch and the callback
may reach different gunicorn workers:

- the row key is SHA-256("id:" + cookie), so the table never holds the cookie itself;
- the record is encrypted with AES-GCM under SHA-256("key:" + cookie): a copy of the file
  (a backup, a stolen disk) holds no usable token without the browser's cookie;
- every row has an expiry (the token's `expires_in`, capped by CDS_SMART_SESSION_TTL); an
  expired row is never returned and is deleted on the next write.

This file is not the audit database (CDS_DATABASE): the token never goes there.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
import time
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

COOKIE_BYTES = 32


def new_session_id() -> str:
    return secrets.token_urlsafe(COOKIE_BYTES)


def _row_id(sid: str) -> str:
    return hashlib.sha256(b"id:" + sid.encode()).hexdigest()


def _key(sid: str) -> bytes:
    return hashlib.sha256(b"key:" + sid.encode()).digest()


class SessionStore:
    """put/get/delete of encrypted session records, by cookie value."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._memory = path == ":memory:"
        self._conn = None
        if self._memory:
            self._conn = sqlite3.connect(":memory:", check_same_thread=False)
            self._setup(self._conn)
        # A file store is created on first use, not here: a worker must boot with the database
        # unwritable (issue 14); the view then answers its own error page, the hooks are unaffected.
        self._ready = self._memory

    @staticmethod
    def _setup(conn) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS smart_session (id TEXT PRIMARY KEY, "
                     "expires_at REAL NOT NULL, blob BLOB NOT NULL)")
        conn.commit()

    def _connect(self):
        if self._memory:
            return _Borrowed(self._conn)
        conn = sqlite3.connect(self.path, timeout=5)
        if not self._ready:
            conn.execute("PRAGMA journal_mode=WAL")
            self._setup(conn)
            self._ready = True
        return _Closing(conn)

    def put(self, sid: str, record: dict[str, Any], expires_at: float) -> None:
        nonce = os.urandom(12)
        blob = nonce + AESGCM(_key(sid)).encrypt(nonce, orjson.dumps(record), None)
        with self._lock, self._connect() as conn:
            conn.execute("DELETE FROM smart_session WHERE expires_at < ?", (time.time(),))
            conn.execute("INSERT OR REPLACE INTO smart_session (id, expires_at, blob) VALUES (?, ?, ?)",
                         (_row_id(sid), expires_at, blob))
            conn.commit()

    def get(self, sid: str | None) -> dict[str, Any] | None:
        """The record, or None when there is none, it expired or it cannot be decrypted."""
        if not sid or len(sid) > 128:
            return None
        with self._lock, self._connect() as conn:
            row = conn.execute("SELECT expires_at, blob FROM smart_session WHERE id = ?",
                               (_row_id(sid),)).fetchone()
        if row is None or row[0] < time.time():
            return None
        blob = bytes(row[1])
        try:
            record = orjson.loads(AESGCM(_key(sid)).decrypt(blob[:12], blob[12:], None))
        except Exception:  # tampered or foreign row: treated as no session
            return None
        record["expires_at"] = row[0]
        return record

    def delete(self, sid: str | None) -> None:
        if not sid:
            return
        with self._lock, self._connect() as conn:
            conn.execute("DELETE FROM smart_session WHERE id = ?", (_row_id(sid),))
            conn.commit()


class _Closing:
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        return self.conn

    def __exit__(self, *exc):
        self.conn.close()
        return False


class _Borrowed(_Closing):
    def __exit__(self, *exc):
        return False
