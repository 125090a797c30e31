"""Audit trail, card feedback, card lifecycle and jti store: what both backends share.

Backends (storage/__init__.py `open_storage`, chosen by CDS_DATABASE): SQLite (a file path;
the zero-configuration default, storage/sqlite.py) and PostgreSQL (a postgresql:// URL, for
two or more replicas, storage/postgres.py). Audit and lifecycle rows go through the batched
writer (storage/writer.py); feedback is written synchronously.

What is stored (CDS Hooks notes §7 "Storage", §8):
- `hook_call`: one row per answered hook call: hookInstance, service id, hook, a keyed hash
  of the patient id, the evaluation time, where the data came from, and the assessment JSON
  the cards were built from.
- `card` / `suggestion`: every card and suggestion uuid issued, with the card kind (the
  stable code of `cards/vocabulary.py`), indicator and summary, joinable to the call.
- `feedback`: every unique (card, outcome, outcomeTimestamp) once, with the accepted
  suggestion ids, override reason and comment, the receipt time, and whether the card uuid
  was one this service issued (`matched`).

Never stored: tokens (JWT, access_token), the raw patient id, resource bodies. The
patient id is replaced by HMAC-SHA256(pepper, patient id). The pepper is CDS_AUDIT_PEPPER
when set (keep it outside the database: ids such as MRNs are guessable, so a hash whose key
sits next to it can be brute-forced); otherwise a random pepper is generated once and kept
in the database's `meta` table, which still keeps ids out of logs, exports and joins
across databases. Changing the pepper breaks joins with older rows.

SQLite concurrency and durability: see storage/sqlite.py.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import orjson

from ..runtime.errors import BadRequest
from ..version import full_version
from .writer import BatchWriter

log = logging.getLogger("cds_service.storage")

class StorageError(RuntimeError):
    """The database cannot be opened or written. `integrity`: the database refused the rows
    themselves (a constraint), not a fault of the database."""

    def __init__(self, message: str, integrity: bool = False):
        super().__init__(message)
        self.integrity = integrity


def utc_iso(moment: datetime) -> str:
    """RFC 3339 UTC with a Z, microseconds only when present."""
    moment = moment.astimezone(timezone.utc)
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _now() -> str:
    return utc_iso(datetime.now(timezone.utc))


_SPACE = re.compile(r"\s")  # exactly str.isspace (checked over every code point)


def _scrub(value: Any, patient_id: str, marker: str, ref_hash=None, token: Any = None) -> Any:
    """The JSON value with every string that contains the raw patient id pseudonymised.

    - the id alone -> `marker`;
    - a string without spaces that contains the id as a whole token (a reference or id such
      as `Patient/<id>`, `Observation/<id>-plt`, `urn:x:<id>`) -> `[ref:<hash>]`, a keyed
      hash of the whole string (`ref_hash`), so equal references stay equal and joinable
      but neither the id nor the rest of the reference can be read back;
    - free text (with spaces) -> each occurrence of the id replaced by `marker`.
    "Whole token": not preceded or followed by a letter or digit, so a short id never
    mangles numbers or longer ids (`p1` leaves `p10` alone)."""
    token = token or _token(patient_id)
    ref_hash = ref_hash or (lambda text: marker)

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            if v == patient_id:
                return marker
            if not token.search(v):
                return v
            if _SPACE.search(v):
                return token.sub(marker, v)
            return f"[ref:{ref_hash(v)[:16]}]"
        if isinstance(v, dict):
            return {(walk(k) if isinstance(k, str) else k): walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v

    return walk(value)


_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


class _Token:
    """`patient_id` as a whole token: what re.compile(r"(?<![A-Za-z0-9])" + re.escape(patient_id)
    + r"(?![A-Za-z0-9])") finds and replaces, with str.find (a new patient per call made every
    call compile a pattern: issue 25)."""

    __slots__ = ("word", "size")

    def __init__(self, word: str):
        self.word, self.size = word, len(word)

    def _find(self, text: str, start: int) -> int:
        word, size, end = self.word, self.size, len(text)
        at = text.find(word, start)
        while at != -1:
            if (at == 0 or text[at - 1] not in _ALNUM) and (at + size >= end or text[at + size] not in _ALNUM):
                return at
            at = text.find(word, at + 1)
        return -1

    def search(self, text: str) -> bool:
        return self._find(text, 0) != -1

    def sub(self, repl: str, text: str) -> str:
        out, last = [], 0
        at = self._find(text, 0)
        while at != -1:
            out += (text[last:at], repl)
            last = at + self.size
            at = self._find(text, last)
        return "".join(out) + text[last:] if out else text


def _token(patient_id: str) -> Any:
    if not patient_id:  # an empty id matches everywhere; the pattern says how
        return re.compile(r"(?<![A-Za-z0-9])(?![A-Za-z0-9])")
    return _Token(patient_id)


def _scrub_json(value: Any, patient_id: str, marker: str, ref_hash=None) -> str:
    """orjson.dumps(_scrub(value, ...)).decode(), done on the serialised text (issue 25): the
    JSON is written once, the id is searched in the text, and only the string literals that
    hold it are decoded, scrubbed by `_scrub`'s rule and written back. A value that holds the
    id nowhere costs one substring search.

    Identical output: orjson writes a string the same way inside a tree or alone. Without a
    backslash in the text every `"` delimits a literal, so an occurrence is inside a string
    when an odd number of quotes precede it (else it is in a number: left alone). Text with
    escapes, or an id in a key (two keys scrubbed alike merge in a dict), takes the tree walk."""
    text = orjson.dumps(value).decode()
    if orjson.dumps(patient_id).decode()[1:-1] not in text:  # the id as JSON writes it
        return text
    if "\\" in text:
        return orjson.dumps(_scrub(value, patient_id, marker, ref_hash)).decode()
    token = _token(patient_id)
    spans: dict[int, int] = {}
    quotes, counted = 0, 0
    at = text.find(patient_id)
    while at != -1:
        quotes, counted = quotes + text.count('"', counted, at), at
        if quotes % 2:  # inside a literal
            opening = text.rfind('"', 0, at)
            spans[opening] = text.find('"', at)
        at = text.find(patient_id, at + 1)
    out, last = [], 0
    for opening, closing in spans.items():
        found = text[opening:closing + 1]
        scrubbed = _scrub(found[1:-1], patient_id, marker, ref_hash, token)
        if scrubbed == found[1:-1]:
            continue
        if text.startswith(":", closing + 1):
            return orjson.dumps(_scrub(value, patient_id, marker, ref_hash)).decode()
        out += (text[last:opening], orjson.dumps(scrubbed).decode())
        last = closing + 1
    out.append(text[last:])
    return "".join(out)


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


class BaseStorage:
    """What both backends share: pseudonyms, row preparation, the batched writer, the
    pending view, feedback and the card-lifecycle reads. A backend provides `_conn()`,
    `_write(fn)` (fn(conn) in one transaction), `_read(fn)`, `_ensure_schema(conn)`,
    `_insert_calls` and `_insert_many`, and the SQL is written once with `?` / `:name`
    placeholders (the PostgreSQL connection wrapper translates them)."""

    backend = "base"
    IS_NOT = "IS NOT"  # null-safe inequality
    FLUSH_BEFORE_FEEDBACK_S = 2.0
    _STRIPES = 64

    def __init__(self, pepper: str = "", *, batch_rows: int = 200, batch_ms: float = 5.0,
                 queue_max: int = 10_000):
        self._pepper: bytes | None = pepper.encode("utf-8") if pepper else None
        self._schema_ready = False
        self._writer = BatchWriter(self._commit_batch, max_rows=batch_rows, max_delay_ms=batch_ms,
                                   queue_max=queue_max)
        self._stripes = [threading.Lock() for _ in range(self._STRIPES)]

    # -- backend hooks -------------------------------------------------------------------
    def _conn(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _write(self, fn, busy_timeout_ms: int | None = None):  # pragma: no cover - abstract
        raise NotImplementedError

    def _read(self, fn):  # pragma: no cover - abstract
        raise NotImplementedError

    def _insert_calls(self, conn, rows: list[tuple]) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _insert_many(self, conn, table: str, columns: Sequence[str], rows: list[tuple],
                     conflict: str = "") -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def migrate(self) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def schema_version(self) -> tuple[int, int]:  # pragma: no cover - abstract
        """(the database's version, this release's)."""
        raise NotImplementedError

    # -- the writer and the flush hook ------------------------------------------------------
    @property
    def writer(self) -> BatchWriter:
        return self._writer

    def flush(self, timeout: float = 5.0) -> bool:
        """Commit every audit and lifecycle row submitted so far (the flush hook: tests and
        tools that read the database right after a response; SIGTERM/atexit)."""
        return self._writer.flush(timeout)

    def connection(self):
        """This thread's connection, after a flush (so a reader sees every row submitted)."""
        self.flush()
        return self._conn()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of one SELECT (`?` placeholders) on either backend, after a flush."""
        self.flush()
        return self._read(lambda conn: [tuple(r) for r in conn.execute(sql, tuple(params)).fetchall()])

    def close(self) -> None:
        self._writer.close()

    def check_writable(self, busy_timeout_ms: int = 1000) -> None:
        """A real write (one meta row) for /readyz; StorageError naming the cause otherwise."""
        stamp = _now()
        self._write(lambda conn: conn.execute(
            "INSERT INTO meta (key, value) VALUES ('last_readiness_check', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (stamp,)),
            busy_timeout_ms=busy_timeout_ms)

    def _read_pepper(self, conn) -> None:
        if self._pepper is None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('patient_hash_pepper', ?)"
                         " ON CONFLICT (key) DO NOTHING", (secrets.token_hex(32),))
            self._pepper = conn.execute(
                "SELECT value FROM meta WHERE key = 'patient_hash_pepper'").fetchone()[0].encode("utf-8")

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
                    data_origin: dict[str, Any] | None = None, site_id: str = "default") -> None:
        """Prepare one answered hook call with its cards (on the caller's thread: hashed,
        scrubbed, serialised) and hand it to the batched writer. StorageError only if the
        audit key cannot be had (a random pepper in an unreachable database); that row is
        then counted as lost (`cds_audit_rows_lost_total{reason="unwritable"}`)."""
        try:
            hashed = self.patient_hash(patient_id)
        except StorageError:
            self._writer.lost(1, "unwritable")
            raise
        marker = f"[patient:{hashed[:16]}]"
        assessment_json = (_scrub_json(assessment, patient_id, marker, self.patient_hash)
                           if assessment is not None else None)
        origin_json = _scrub_json(data_origin, patient_id, marker, self.patient_hash) if data_origin else None
        call_row = (hook_instance, service_id, hook, hashed, utc_iso(evaluated_at), _now(), origin_json,
                    assessment_json, full_version(), site_id)
        card_rows, suggestion_rows = [], []
        for issued in cards:
            card = issued.card
            card_rows.append((card["uuid"], issued.kind, card["indicator"],
                              _scrub(card["summary"], patient_id, marker, self.patient_hash)))
            for suggestion in card.get("suggestions", ()):
                actions = ",".join(
                    a["type"] + (f":{a['resource']['resourceType']}" if "resource" in a else "")
                    for a in suggestion.get("actions", ()))
                suggestion_rows.append((suggestion["uuid"], card["uuid"],
                                        _scrub(suggestion["label"], patient_id, marker, self.patient_hash),
                                        actions))
        self._writer.submit(_Call(service_id, call_row, card_rows, suggestion_rows))

    _CALL_COLUMNS = ("hook_instance", "service_id", "hook", "patient_hash", "evaluated_at", "recorded_at",
                     "data_origin", "assessment", "service_version", "site_id")
    _LIFECYCLE_COLUMNS = ("card_uuid", "hook_instance", "service_id", "kind", "indicator", "fingerprint",
                          "user_hash", "patient_hash", "encounter_hash", "situation", "at_epoch", "status", "reason")

    def _commit_batch(self, items: list) -> None:
        """The writer's commit: one transaction for the batch. A row the database refuses for
        itself (a duplicate card uuid) must not block the others: on an integrity error each
        item is committed alone and the refused ones are logged and dropped."""
        try:
            self._write(lambda conn: self._insert_items(conn, items))
        except StorageError as exc:
            if not exc.integrity:
                raise  # the database is down: the writer keeps the batch and retries
            if len(items) == 1:
                self._writer.lost(1, "refused")
                log.error("audit row refused by the database; dropped", extra={"fields": {
                    "error": str(exc)[:300], "dropped_total": self._writer.dropped}})
                return
            for item in items:
                self._commit_batch([item])

    def _insert_items(self, conn, items: list) -> None:
        calls = [i for i in items if isinstance(i, _Call)]
        lifecycle = [row for i in items if isinstance(i, _Lifecycle) for row in i.rows]
        if calls:
            ids = self._insert_calls(conn, [c.call_row for c in calls])
            cards = [(uuid, call_id, kind, indicator, summary)
                     for c, call_id in zip(calls, ids) for uuid, kind, indicator, summary in c.cards]
            if cards:
                self._insert_many(conn, "card", ("uuid", "call_id", "kind", "indicator", "summary"), cards)
            suggestions = [s for c in calls for s in c.suggestions]
            if suggestions:
                self._insert_many(conn, "suggestion", ("uuid", "card_uuid", "label", "actions"), suggestions)
        if lifecycle:
            self._insert_many(conn, "card_lifecycle", self._LIFECYCLE_COLUMNS,
                              [tuple(row[c] for c in self._LIFECYCLE_COLUMNS) for row in lifecycle],
                              conflict="ON CONFLICT (card_uuid) DO NOTHING")

    # -- feedback ------------------------------------------------------------------------
    def _pending_card(self, service_id: str, card_uuid: str) -> bool:
        return any(isinstance(i, _Call) and i.service_id == service_id and any(c[0] == card_uuid for c in i.cards)
                   for i in self._writer.pending())

    def store_feedback(self, service_id: str, items: Iterable[dict[str, Any]]) -> dict[str, int]:
        """Store schema-valid Feedback items (app.py validated their shape), synchronously:
        acknowledged only after commit. Exact repeats of (card, outcome, outcomeTimestamp)
        are stored once. This process's pending audit rows are committed first, so a
        feedback row never refers to an audit row a crash could still lose."""
        rows = [_feedback_row(index, item) for index, item in enumerate(items)]
        cut = sum(1 for row in rows if row["comment"] and row["comment"].endswith(COMMENT_CUT_MARK))
        received = _now()
        if self._writer.last_error is None:  # database failing: do not wait, the write below decides
            self._writer.flush(self.FLUSH_BEFORE_FEEDBACK_S)

        def write(conn) -> dict[str, int]:
            stored = duplicates = unmatched = 0
            for row in rows:
                matched = conn.execute(
                    "SELECT 1 FROM card JOIN hook_call ON hook_call.id = card.call_id"
                    " WHERE card.uuid = ? AND hook_call.service_id = ?",
                    (row["card_uuid"], service_id)).fetchone() is not None
                matched = matched or self._pending_card(service_id, row["card_uuid"])
                cur = conn.execute(
                    "INSERT INTO feedback (service_id, card_uuid, outcome, outcome_timestamp,"
                    " accepted_suggestions, override_code, override_system, override_display,"
                    " override_comment, matched, received_at)"
                    " VALUES (:service_id, :card_uuid, :outcome, :outcome_timestamp, :accepted,"
                    " :code, :system, :display, :comment, :matched, :received_at)"
                    " ON CONFLICT (card_uuid, outcome, outcome_timestamp) DO NOTHING",
                    {**row, "service_id": service_id, "matched": int(matched), "received_at": received})
                if cur.rowcount == 0:
                    duplicates += 1
                    continue
                stored += 1
                unmatched += not matched
            result = {"stored": stored, "duplicates": duplicates, "unmatched": unmatched}
            if cut:
                result["comments_cut"] = cut  # said, not silent: the client sees it was shortened
            return result

        return self._write(write)

    # -- card lifecycle (§18.3; policy and fingerprints in hooks/lifecycle.py) -----------------
    def pseudonym(self, domain: str, value: str) -> str:
        """Keyed hash of a user or encounter id, separated by domain from the patient hash."""
        return hmac.new(self._key(), f"{domain}\x00{value}".encode("utf-8"), hashlib.sha256).hexdigest()

    def lifecycle_decide(self, key: dict[str, str], fingerprints: Sequence[str], decide,
                         hook_instance: str | None = None):
        """Read each fingerprint's history for `key` (user_hash, patient_hash, encounter_hash),
        call `decide(history)` -> rows to record, hand them to the batched writer, return them.

        history[fingerprint] = {"shown": [at_epoch] of the latest card shown by another call than
        `hook_instance` (a retried call is answered again), "overrides": [dict]}:
        each override is a patient-view card of that fingerprint reported `overridden`, with
        the card's indicator and situation digest and the feedback's times and reason.

        Consistency: the history is the committed rows plus this process's pending ones (taken
        before the read, so a row committed in between is seen either way); one lock per key
        stripe makes read-decide-submit atomic between the threads of a process. Between
        processes and replicas, overrides are exact (feedback is committed synchronously and
        joined to pending lifecycle rows too); the info repeat is exact once the other
        process's writer has committed, i.e. within CDS_AUDIT_BATCH_MS (README, Card lifecycle)."""
        fps = list(dict.fromkeys(fingerprints))
        stripe = self._stripes[hash((key["patient_hash"], key["user_hash"], key["encounter_hash"])) % self._STRIPES]
        with stripe:
            pending = [row for item in self._writer.pending() if isinstance(item, _Lifecycle) for row in item.rows
                       if row["patient_hash"] == key["patient_hash"] and row["user_hash"] == key["user_hash"]
                       and row["encounter_hash"] == key["encounter_hash"] and row["fingerprint"] in fps]

            def read(conn):
                # One statement whatever the number of fingerprints (one round trip, issue 25): part 0
                # is each fingerprint's latest card shown by another call, part 1 the overrides on
                # shown cards of those fingerprints, newest feedback first (at most 50 each).
                history: dict[str, dict[str, list]] = {fp: {"shown": [], "overrides": []} for fp in fps}
                marks = ", ".join("?" for _ in fps)
                args = (key["patient_hash"], key["user_hash"], key["encounter_hash"], *fps)
                for r in conn.execute(
                        "SELECT 0, fingerprint, MAX(at_epoch), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
                        " FROM card_lifecycle WHERE patient_hash = ? AND user_hash = ?"
                        f" AND encounter_hash = ? AND fingerprint IN ({marks}) AND status = 'shown'"
                        f" AND hook_instance {self.IS_NOT} ? GROUP BY fingerprint"
                        " UNION ALL SELECT * FROM ("
                        "SELECT 1, l.fingerprint, CAST(NULL AS DOUBLE PRECISION), l.indicator, l.situation,"
                        " f.outcome_timestamp, f.received_at,"
                        " f.override_code, f.override_display, f.override_comment, f.id"
                        " FROM card_lifecycle l JOIN feedback f"
                        "   ON f.card_uuid = l.card_uuid AND f.service_id = l.service_id"
                        " WHERE l.patient_hash = ? AND l.user_hash = ? AND l.encounter_hash = ?"
                        f"   AND l.fingerprint IN ({marks}) AND l.status = 'shown' AND f.outcome = 'overridden'"
                        " ORDER BY f.id DESC LIMIT ?) AS overrides"
                        " ORDER BY 1, 11 DESC", (*args, hook_instance, *args, 50 * len(fps))).fetchall():
                    if r[0] == 0:
                        history[r[1]]["shown"] = [r[2]]
                        continue
                    history[r[1]]["overrides"].append(
                        {"indicator": r[3], "situation": r[4], "outcome_timestamp": r[5], "received_at": r[6],
                         "reason_given": bool(r[7] or r[8] or r[9]), "reason_code": r[7]})
                # Pending rows (not committed yet): their shown times, and committed feedback on them.
                shown_pending = [r for r in pending if r["status"] == "shown"]
                for row in shown_pending:
                    if row["hook_instance"] != hook_instance:
                        h = history[row["fingerprint"]]
                        h["shown"] = sorted([*h["shown"], row["at_epoch"]], reverse=True)[:1]
                if shown_pending:
                    by_uuid = {r["card_uuid"]: r for r in shown_pending}
                    marks = ", ".join("?" for _ in by_uuid)
                    for r in conn.execute(
                            "SELECT card_uuid, service_id, outcome_timestamp, received_at, override_code,"
                            " override_display, override_comment FROM feedback"
                            f" WHERE outcome = 'overridden' AND card_uuid IN ({marks}) ORDER BY id DESC",
                            tuple(by_uuid)).fetchall():
                        row = by_uuid[r[0]]
                        if row["service_id"] != r[1]:
                            continue
                        history[row["fingerprint"]]["overrides"].append(
                            {"indicator": row["indicator"], "situation": row["situation"],
                             "outcome_timestamp": r[2], "received_at": r[3],
                             "reason_given": bool(r[4] or r[5] or r[6]), "reason_code": r[4]})
                return history

            rows = decide(self._read(read))
            if rows:
                self._writer.submit(_Lifecycle([{**key, **row} for row in rows]))
        return rows


@dataclass(frozen=True)
class _Call:
    service_id: str
    call_row: tuple
    cards: list
    suggestions: list


@dataclass(frozen=True)
class _Lifecycle:
    rows: list


class DatabaseReplayStore:
    """JWT jti replay store in the audit database (SQLite file or PostgreSQL), so every
    server worker, and with PostgreSQL every replica, sees the same jtis (CDS Hooks notes
    §11 step 8). Atomic: one INSERT ... ON CONFLICT DO UPDATE ... WHERE expired, whose row
    count says whether the jti was new (or its old row expired).

    Expiry by TTL, not a scan per request: expired rows are harmless until deleted, and each
    process deletes them at most once a minute (PURGE_EVERY_S) on the jwt_jti_expiry index.

    Fails closed: when the database cannot be written (locked beyond BUSY_TIMEOUT_MS,
    read-only, unwritable, PostgreSQL unreachable or slower than CDS_DATABASE_TIMEOUT_MS)
    the jti cannot be recorded, so the token could be replayed: ReplayStoreUnavailable,
    which the security layer answers 503 + Retry-After ("audit store unavailable"), never
    401 (the credential was not at fault) and never an unchecked 200."""

    shared = True

    PURGE_EVERY_S = 60.0  # expired rows are harmless until purged; no DELETE on every call
    BUSY_TIMEOUT_MS = 2000  # SQLite: a writer holding the file longer than this is a fault, not a queue

    def __init__(self, storage: "BaseStorage"):
        self._storage = storage
        self._last_purge = 0.0

    def check_and_add(self, iss: str, jti: str, expires_at: float) -> bool:
        now = time.time()
        purge = now - self._last_purge >= self.PURGE_EVERY_S

        def write(conn) -> bool:
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
            from ..security.replay import ReplayStoreUnavailable
            raise ReplayStoreUnavailable(str(exc)) from None


SqliteReplayStore = DatabaseReplayStore  # the name before PostgreSQL (tests, docs)

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
        "comment": capped_comment(override.get("userComment")),
    }


COMMENT_MAX_CHARS = 1000
COMMENT_CUT_MARK = " […cut at 1,000 characters]"


def capped_comment(value: Any) -> str | None:
    """A clinician's override comment as stored: at most COMMENT_MAX_CHARS characters (issue 21).
    It is free text a clinician typed and may name the patient: patient data, kept under the
    site's retention, and never logged (logging_setup omits `userComment`/`override_comment`)."""
    if not isinstance(value, str) or not value:
        return None
    return value if len(value) <= COMMENT_MAX_CHARS else value[:COMMENT_MAX_CHARS] + COMMENT_CUT_MARK


