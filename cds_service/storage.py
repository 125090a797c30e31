"""Audit trail and card feedback, persisted in SQLite (stdlib `sqlite3`).

What is stored (CDS Hooks notes §7 "Storage", §8):
- `hook_call`: one row per answered hook call: hookInstance, service id, hook, a keyed hash
  of the patient id, the evaluation time, where the data came from, and the assessment JSON
  the cards were built from.
- `card` / `suggestion`: every card and suggestion uuid issued, with the card kind (the
  stable code of `hooks/vocabulary.py`), indicator and summary, joinable to the call.
- `feedback`: every unique (card, outcome, outcomeTimestamp) once, with the accepted
  suggestion ids, override reason and comment, the receipt time, and whether the card uuid
  was one this service issued (`matched`).

Never stored: tokens (JWT, access_token), the raw patient id, resource bodies. The
patient id is replaced by HMAC-SHA256(pepper, patient id). The pepper is CDS_AUDIT_PEPPER
when set (keep it outside the database: ids such as MRNs are guessable, so a hash whose key
sits next to it can be brute-forced); otherwise a random pepper is generated once and kept
in the database's `meta` table, which still keeps ids out of logs, exports and joins
across databases. Changing the pepper breaks joins with older rows.

Concurrency: one connection per thread (and per process, re-opened after a fork), WAL
journal, `busy_timeout`, writes in short IMMEDIATE transactions; safe under gunicorn
workers and threads. Durability is `CDS_DATABASE_SYNC`: `normal` (default; in WAL mode a
committed row survives a process crash or restart, and only the last transactions before an
OS crash or power loss can be lost; no fsync per call) or `full` (an fsync per commit).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import orjson

from .errors import BadRequest, CDSError, ServiceUnavailable
from .version import full_version

log = logging.getLogger("cds_service.storage")

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hook_call (
    id             INTEGER PRIMARY KEY,
    hook_instance  TEXT NOT NULL,
    service_id     TEXT NOT NULL,
    hook           TEXT NOT NULL,
    patient_hash   TEXT NOT NULL,
    evaluated_at   TEXT NOT NULL,           -- "now" of the assessment (request time, UTC)
    recorded_at    TEXT NOT NULL,
    data_origin    TEXT,                    -- JSON: prefetch key -> prefetch/fetched/null
    assessment     TEXT,                    -- JSON; null when no assessment was made
    service_version TEXT                    -- version.full_version() of the code that answered
);
CREATE INDEX IF NOT EXISTS hook_call_instance ON hook_call (hook_instance);
CREATE INDEX IF NOT EXISTS hook_call_patient ON hook_call (patient_hash);
CREATE TABLE IF NOT EXISTS card (
    uuid       TEXT PRIMARY KEY,
    call_id    INTEGER NOT NULL REFERENCES hook_call (id),
    kind       TEXT NOT NULL,
    indicator  TEXT NOT NULL,
    summary    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS card_call ON card (call_id);
CREATE TABLE IF NOT EXISTS suggestion (
    uuid       TEXT PRIMARY KEY,
    card_uuid  TEXT NOT NULL REFERENCES card (uuid),
    label      TEXT NOT NULL,
    actions    TEXT NOT NULL                -- e.g. "create:MedicationRequest,delete"
);
CREATE INDEX IF NOT EXISTS suggestion_card ON suggestion (card_uuid);
CREATE TABLE IF NOT EXISTS feedback (
    id                   INTEGER PRIMARY KEY,
    service_id           TEXT NOT NULL,
    card_uuid            TEXT NOT NULL,
    outcome              TEXT NOT NULL,
    outcome_timestamp    TEXT NOT NULL,     -- normalised to UTC
    accepted_suggestions TEXT,              -- JSON array of suggestion uuids
    override_code        TEXT,
    override_system      TEXT,
    override_display     TEXT,
    override_comment     TEXT,
    matched              INTEGER NOT NULL,  -- 1: the card uuid was issued by this service
    received_at          TEXT NOT NULL,
    UNIQUE (card_uuid, outcome, outcome_timestamp)
);
CREATE INDEX IF NOT EXISTS feedback_card ON feedback (card_uuid);
CREATE TABLE IF NOT EXISTS jwt_jti (            -- replay protection shared by all workers
    iss        TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at REAL NOT NULL,                   -- epoch seconds (token exp + leeway)
    PRIMARY KEY (iss, jti)
);
CREATE INDEX IF NOT EXISTS jwt_jti_expiry ON jwt_jti (expires_at);
""" + """
-- Card lifecycle (clinical-rules §18.3; hooks/lifecycle.py): every patient-view card the
-- service built, shown or suppressed, with its fingerprint and the keys of the repeat and
-- snooze rules. Ids are pseudonyms (keyed hashes), never the raw user, patient or encounter id.
CREATE TABLE IF NOT EXISTS card_lifecycle (
    id             INTEGER PRIMARY KEY,
    card_uuid      TEXT NOT NULL UNIQUE,     -- joins card.uuid when shown; feedback.card_uuid
    hook_instance  TEXT NOT NULL,
    service_id     TEXT NOT NULL,
    kind           TEXT NOT NULL,
    indicator      TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,            -- kind + recommendation (hash)
    user_hash      TEXT NOT NULL,            -- keyed hash of context.userId, or 'anonymous'
    patient_hash   TEXT NOT NULL,
    encounter_hash TEXT NOT NULL,            -- keyed hash of context.encounterId, or ''
    situation      TEXT NOT NULL,            -- digest: orders, drafts, platelets, contraindications
    at_epoch       REAL NOT NULL,            -- lifecycle time of the call (epoch seconds)
    status         TEXT NOT NULL,            -- 'shown' | 'suppressed'
    reason         TEXT                      -- null | 'info_repeat' | 'override_snooze'
);
CREATE INDEX IF NOT EXISTS card_lifecycle_key
    ON card_lifecycle (patient_hash, user_hash, encounter_hash, fingerprint, at_epoch);
CREATE INDEX IF NOT EXISTS card_lifecycle_status ON card_lifecycle (status, kind);
"""


class StorageError(RuntimeError):
    """The database cannot be opened or written."""


def utc_iso(moment: datetime) -> str:
    """RFC 3339 UTC with a Z, microseconds only when present."""
    moment = moment.astimezone(timezone.utc)
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _now() -> str:
    return utc_iso(datetime.now(timezone.utc))


def _scrub(value: Any, patient_id: str, marker: str, ref_hash=None) -> Any:
    """The JSON value with every string that contains the raw patient id pseudonymised.

    - the id alone -> `marker`;
    - a string without spaces that contains the id as a whole token (a reference or id such
      as `Patient/<id>`, `Observation/<id>-plt`, `urn:x:<id>`) -> `[ref:<hash>]`, a keyed
      hash of the whole string (`ref_hash`), so equal references stay equal and joinable
      but neither the id nor the rest of the reference can be read back;
    - free text (with spaces) -> each occurrence of the id replaced by `marker`.
    "Whole token": not preceded or followed by a letter or digit, so a short id never
    mangles numbers or longer ids (`p1` leaves `p10` alone)."""
    token = re.compile(r"(?<![A-Za-z0-9])" + re.escape(patient_id) + r"(?![A-Za-z0-9])")
    ref_hash = ref_hash or (lambda text: marker)

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            if v == patient_id:
                return marker
            if not token.search(v):
                return v
            if any(ch.isspace() for ch in v):
                return token.sub(marker, v)
            return f"[ref:{ref_hash(v)[:16]}]"
        if isinstance(v, dict):
            return {(walk(k) if isinstance(k, str) else k): walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v

    return walk(value)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Columns added after a table was first created (a database from an older version)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(hook_call)")}
    if "service_version" not in columns:
        conn.execute("ALTER TABLE hook_call ADD COLUMN service_version TEXT")


@dataclass(frozen=True)
class IssuedCard:
    """A card as the audit trail keeps it: its kind code and the card JSON (uuids, text).

    `recommendation` (optional) is what the card recommends, as a builder states it (drug,
    dose, doses per day; contraindication codes; a duplicate's ingredients): with the kind it
    makes the card's lifecycle fingerprint (§18.3). None: derived from the card JSON
    (hooks/lifecycle.py)."""

    kind: str
    card: dict[str, Any]
    recommendation: tuple | None = None


class Storage:
    """The audit database. Constructing one touches no file: the schema is created (and the
    random pepper generated) on the first write, so a worker boots whatever the state of the
    database (locked, read-only, unwritable directory); every write that cannot be made is a
    StorageError, answered 503 by the layers above, and `check_writable()` feeds /readyz."""

    # SQLite's busy handler waits this long for another writer. Hook calls (audit) keep the
    # long wait: contention between workers is short and the advice must not be lost to it.
    # The jti check and the readiness probe wait less (see SqliteReplayStore, /readyz): a
    # database locked for longer is a fault, answered 503 + Retry-After, not a queue.
    BUSY_TIMEOUT_MS = 10_000

    def __init__(self, path: str, pepper: str = "", sync: str = "normal"):
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
            self._anchor = self._connect()  # keeps the memory database alive
        self._pepper: bytes | None = pepper.encode("utf-8") if pepper else None
        self._schema_ready = False

    # -- connections ---------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
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

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork). StorageError if it cannot be opened."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            conn = self._connect()
            local.conn, local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
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
        """Create the tables and the random pepper on first use (inside a write transaction).
        Idempotent and safe between processes (IF NOT EXISTS, INSERT OR IGNORE)."""
        if self._schema_ready:
            return
        conn.executescript(_SCHEMA)  # executescript commits first: run outside BEGIN
        _add_missing_columns(conn)
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                     (str(SCHEMA_VERSION),))
        if self._pepper is None:
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('patient_hash_pepper', ?)",
                         (secrets.token_hex(32),))
            self._pepper = conn.execute(
                "SELECT value FROM meta WHERE key = 'patient_hash_pepper'").fetchone()[0].encode("utf-8")
        self._schema_ready = True

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
            conn = self.connection()
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
                raise StorageError(f"audit database write failed: {exc}") from None

    def check_writable(self, busy_timeout_ms: int = 1000) -> None:
        """A real write (one meta row) for /readyz; StorageError naming the cause otherwise."""
        stamp = _now()
        self._write(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_readiness_check', ?)", (stamp,)),
            busy_timeout_ms=busy_timeout_ms)

    # -- audit -------------------------------------------------------------------------
    def _key(self) -> bytes:
        if self._pepper is None:  # the random pepper lives in the database: create or read it
            self._write(lambda conn: None)
        assert self._pepper is not None
        return self._pepper

    def patient_hash(self, patient_id: str) -> str:
        return hmac.new(self._key(), patient_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def record_call(self, *, service_id: str, hook: str, hook_instance: str, patient_id: str,
                    evaluated_at: datetime, cards: Sequence[IssuedCard],
                    assessment: dict[str, Any] | None = None,
                    data_origin: dict[str, Any] | None = None) -> int:
        """Store one answered hook call with its cards; returns the row id."""
        hashed = self.patient_hash(patient_id)
        marker = f"[patient:{hashed[:16]}]"
        assessment_json = (orjson.dumps(_scrub(assessment, patient_id, marker, self.patient_hash)).decode()
                           if assessment is not None else None)
        origin_json = (orjson.dumps(_scrub(data_origin, patient_id, marker, self.patient_hash)).decode()
                       if data_origin else None)

        def write(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO hook_call (hook_instance, service_id, hook, patient_hash, evaluated_at,"
                " recorded_at, data_origin, assessment, service_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (hook_instance, service_id, hook, hashed, utc_iso(evaluated_at), _now(), origin_json,
                 assessment_json, full_version()))
            call_id = cur.lastrowid
            for issued in cards:
                card = issued.card
                conn.execute("INSERT INTO card (uuid, call_id, kind, indicator, summary) VALUES (?, ?, ?, ?, ?)",
                             (card["uuid"], call_id, issued.kind, card["indicator"],
                              _scrub(card["summary"], patient_id, marker, self.patient_hash)))
                for suggestion in card.get("suggestions", ()):
                    actions = ",".join(
                        a["type"] + (f":{a['resource']['resourceType']}" if "resource" in a else "")
                        for a in suggestion.get("actions", ()))
                    conn.execute("INSERT INTO suggestion (uuid, card_uuid, label, actions) VALUES (?, ?, ?, ?)",
                                 (suggestion["uuid"], card["uuid"],
                                  _scrub(suggestion["label"], patient_id, marker, self.patient_hash), actions))
            return call_id

        return self._write(write)

    # -- feedback ------------------------------------------------------------------------
    def store_feedback(self, service_id: str, items: Iterable[dict[str, Any]]) -> dict[str, int]:
        """Store schema-valid Feedback items (app.py validated their shape). Exact repeats of
        (card, outcome, outcomeTimestamp) are stored once. Returns counts."""
        rows = [_feedback_row(index, item) for index, item in enumerate(items)]
        received = _now()

        def write(conn: sqlite3.Connection) -> dict[str, int]:
            stored = duplicates = unmatched = 0
            for row in rows:
                matched = conn.execute(
                    "SELECT 1 FROM card JOIN hook_call ON hook_call.id = card.call_id"
                    " WHERE card.uuid = ? AND hook_call.service_id = ?",
                    (row["card_uuid"], service_id)).fetchone() is not None
                cur = conn.execute(
                    "INSERT OR IGNORE INTO feedback (service_id, card_uuid, outcome, outcome_timestamp,"
                    " accepted_suggestions, override_code, override_system, override_display,"
                    " override_comment, matched, received_at)"
                    " VALUES (:service_id, :card_uuid, :outcome, :outcome_timestamp, :accepted,"
                    " :code, :system, :display, :comment, :matched, :received_at)",
                    {**row, "service_id": service_id, "matched": int(matched), "received_at": received})
                if cur.rowcount == 0:
                    duplicates += 1
                    continue
                stored += 1
                unmatched += not matched
            return {"stored": stored, "duplicates": duplicates, "unmatched": unmatched}

        return self._write(write)

    # -- card lifecycle (§18.3; policy and fingerprints in hooks/lifecycle.py) -----------------
    def pseudonym(self, domain: str, value: str) -> str:
        """Keyed hash of a user or encounter id, separated by domain from the patient hash."""
        return hmac.new(self._key(), f"{domain}\x00{value}".encode("utf-8"), hashlib.sha256).hexdigest()

    def lifecycle_decide(self, key: dict[str, str], fingerprints: Sequence[str], decide,
                         hook_instance: str | None = None):
        """In one IMMEDIATE transaction (so two workers cannot both show a once-only card):
        read each fingerprint's history for `key` (user_hash, patient_hash, encounter_hash),
        call `decide(history)` -> rows to record, insert them, return them.

        history[fingerprint] = {"shown": [at_epoch] of the latest card shown by another call than
        `hook_instance` (a retried call is answered again), "overrides": [dict]}:
        each override is a patient-view card of that fingerprint reported `overridden`, with
        the card's indicator and situation digest and the feedback's times and reason."""

        def write(conn: sqlite3.Connection):
            history: dict[str, dict[str, list]] = {}
            for fp in dict.fromkeys(fingerprints):
                args = (key["patient_hash"], key["user_hash"], key["encounter_hash"], fp)
                shown = [r[0] for r in conn.execute(
                    "SELECT at_epoch FROM card_lifecycle WHERE patient_hash = ? AND user_hash = ?"
                    " AND encounter_hash = ? AND fingerprint = ? AND status = 'shown' AND hook_instance IS NOT ?"
                    " ORDER BY at_epoch DESC LIMIT 1", (*args, hook_instance))]
                overrides = [
                    {"indicator": r[0], "situation": r[1], "outcome_timestamp": r[2], "received_at": r[3],
                     "reason_given": bool(r[4] or r[5] or r[6]), "reason_code": r[4]}
                    for r in conn.execute(
                        "SELECT l.indicator, l.situation, f.outcome_timestamp, f.received_at,"
                        " f.override_code, f.override_display, f.override_comment"
                        " FROM card_lifecycle l JOIN feedback f"
                        "   ON f.card_uuid = l.card_uuid AND f.service_id = l.service_id"
                        " WHERE l.patient_hash = ? AND l.user_hash = ? AND l.encounter_hash = ?"
                        "   AND l.fingerprint = ? AND l.status = 'shown' AND f.outcome = 'overridden'"
                        " ORDER BY f.id DESC LIMIT 50", args)]
                history[fp] = {"shown": shown, "overrides": overrides}
            rows = decide(history)
            conn.executemany(
                "INSERT OR IGNORE INTO card_lifecycle (card_uuid, hook_instance, service_id, kind, indicator,"
                " fingerprint, user_hash, patient_hash, encounter_hash, situation, at_epoch, status, reason)"
                " VALUES (:card_uuid, :hook_instance, :service_id, :kind, :indicator, :fingerprint,"
                " :user_hash, :patient_hash, :encounter_hash, :situation, :at_epoch, :status, :reason)",
                [{**key, **row} for row in rows])
            return rows

        return self._write(write)


class SqliteReplayStore:
    """JWT jti replay store in the audit database, so every server worker (and every
    process on the same file) sees the same jtis (CDS Hooks notes §11 step 8).
    Replicas on different hosts still need a network store (see README, Security).

    Fails closed: when the database cannot be written (locked beyond BUSY_TIMEOUT_MS,
    read-only, unwritable) the jti cannot be recorded, so the token could be replayed:
    ReplayStoreUnavailable, which the security layer answers 503 + Retry-After ("audit store
    unavailable"), never 401 (the credential was not at fault) and never an unchecked 200."""

    shared = True

    PURGE_EVERY_S = 60.0  # expired rows are harmless until purged; no DELETE on every call
    BUSY_TIMEOUT_MS = 2000  # a writer holding the file longer than this is a fault, not a queue

    def __init__(self, storage: "Storage"):
        self._storage = storage
        self._last_purge = 0.0

    def check_and_add(self, iss: str, jti: str, expires_at: float) -> bool:
        now = time.time()
        purge = now - self._last_purge >= self.PURGE_EVERY_S

        def write(conn: sqlite3.Connection) -> bool:
            if purge:
                conn.execute("DELETE FROM jwt_jti WHERE expires_at < ?", (now,))
            # Insert, or take over a row whose token has expired but is not yet purged;
            # a live row is a replay (rowcount 0).
            cur = conn.execute(
                "INSERT INTO jwt_jti (iss, jti, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (iss, jti) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE jwt_jti.expires_at < ?", (iss, jti, expires_at, now))
            return cur.rowcount == 1

        try:
            fresh = self._storage._write(write, busy_timeout_ms=self.BUSY_TIMEOUT_MS)
            if purge:
                self._last_purge = now
            return fresh
        except StorageError as exc:
            from .security.replay import ReplayStoreUnavailable
            raise ReplayStoreUnavailable(str(exc)) from None


def _feedback_row(index: int, item: dict[str, Any]) -> dict[str, Any]:
    try:
        stamp = datetime.fromisoformat(item["outcomeTimestamp"])
        if stamp.tzinfo is None:  # the schema requires an offset; keep this total anyway
            stamp = stamp.replace(tzinfo=timezone.utc)
        outcome_timestamp = utc_iso(stamp)
    except (ValueError, OverflowError):  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise BadRequest(f"Feedback item {index} (card {item['card']!r}): outcomeTimestamp "
                         f"{item['outcomeTimestamp']!r} is not a valid date-time.",
                         expression=[f"feedback[{index}].outcomeTimestamp"]) from None
    override = item.get("overrideReason") or {}
    reason = override.get("reason") or {}
    accepted = [s["id"] for s in item.get("acceptedSuggestions") or []]
    return {
        "card_uuid": item["card"],
        "outcome": item["outcome"],
        "outcome_timestamp": outcome_timestamp,
        "accepted": orjson.dumps(accepted).decode() if accepted else None,
        "code": reason.get("code") or None,
        "system": reason.get("system") or None,
        "display": reason.get("display") or None,
        "comment": override.get("userComment") or None,
    }


def init_app(app, state) -> None:
    """Hang the stores on the app. Nothing is opened or written here: the database is
    created on the first write (see Storage), so a worker boots whatever its state."""
    storage = Storage(state.config.database, pepper=state.config.audit_pepper,
                      sync=state.config.database_sync)
    state.extensions["storage"] = storage
    # Replaces the security layer's per-process default (it looks the store up per request).
    state.extensions["replay_store"] = SqliteReplayStore(storage)

    def feedback_store(service, items):
        try:
            return storage.store_feedback(service.id, items)
        except StorageError as exc:
            # Nothing was stored (one transaction): tell the client to retry, never "ok".
            log.error("feedback not stored", extra={"fields": {"service": service.id, "error": str(exc)}})
            raise ServiceUnavailable("Audit store unavailable: feedback could not be stored; retry later.") from None

    state.extensions["feedback_store"] = feedback_store
