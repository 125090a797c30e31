"""Structured (JSON-line) logging with token redaction.

Every record of every logger is redacted when it is created (record factory), and the
service's handler filters again, so a bearer token, a JWT or an access_token that slips
into a message, an argument, an exception text or a structured field is masked before
output. The current request's own credentials (registered by the security layer with
`remember_secret`) are masked verbatim as well, whatever their shape.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar
from typing import Any

# Credential shapes masked wherever they appear (message, arguments, traceback, fields,
# access-log lines): "Bearer <token>" (also URL-encoded), anything shaped like a JWS/JWT
# (base64url parts, the first starting "ey" = '{'), the value of credential-named keys in
# JSON, Python reprs, query strings and form bodies, and Authorization header values.
_SECRET_KEYS = r"(?:access_token|refresh_token|id_token|client_secret|password)"
_PATTERNS = [
    (re.compile(r"(?i)(bearer(?:\s+|%20|\+))[A-Za-z0-9\-._~+/%]+=*"), r"\1[REDACTED]"),
    (re.compile(r"(?<![A-Za-z0-9_\-])ey[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]*){0,2}"),
     "[REDACTED-JWT]"),
    (re.compile(r"(?i)([\"']?" + _SECRET_KEYS + r"[\"']?\s*(?:[:=]|%3D)\s*[\"']?)[^\s\"'&,;}\]]+"),
     r"\1[REDACTED]"),
    (re.compile(r"(?i)((?<![a-z])authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\n,}]+"), r"\1[REDACTED]"),
]
# Field names whose values are credentials whatever their shape (opaque tokens included).
_SECRET_FIELD = re.compile(r"(?i)^(?:authorization|token|jwt|bearer|.*(?:_token|_secret|password))$")
_MIN_SECRET_CHARS = 8

# Credentials seen in the current request (the bearer credential, fhirAuthorization's
# access_token). Masked verbatim, so even an opaque token echoed by a library is caught.
# Set per request by the security layer and cleared at teardown.
_request_secrets: ContextVar[tuple[str, ...]] = ContextVar("cds_request_secrets", default=())


def remember_secret(value: Any) -> None:
    """Mask `value` verbatim in every log line and error body until `forget_secrets()`."""
    if isinstance(value, str) and len(value) >= _MIN_SECRET_CHARS:
        known = _request_secrets.get()
        if value not in known:
            _request_secrets.set(known + (value,))


def forget_secrets() -> None:
    _request_secrets.set(())


def hide_patient_id(text: Any, patient_id: Any) -> Any:
    """`text` (a client's hookInstance) with the patient id replaced where it stands as a whole
    token: a client may build its hookInstance from the patient id, and no log line carries a
    raw patient id. Anything else is returned as it is."""
    if not (isinstance(text, str) and isinstance(patient_id, str) and patient_id and patient_id in text):
        return text
    # Compiled only for the rare hookInstance that holds the id; a whole token, so a short id
    # ("1") does not rewrite the digits of a uuid.
    return re.sub(r"(?<![A-Za-z0-9])" + re.escape(patient_id) + r"(?![A-Za-z0-9])", "[patient]", text)


# Every pattern above needs one of these; a text without any is left as it is in one search
# (most log text: 4 substitutions per string were most of a log line's cost).
_TRIGGER = re.compile(r"(?i)bearer|ey[A-Za-z0-9_\-]{6,}\.|" + _SECRET_KEYS + r"|authorization")


def redact(text: str) -> str:
    for secret in _request_secrets.get():
        text = text.replace(secret, "[REDACTED]")
    if _TRIGGER.search(text) is None:
        return text
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


# Free text a clinician typed (feedback override comments): patient data, never logged.
_PATIENT_TEXT_FIELD = re.compile(r"(?i)^(?:usercomment|override_comment|comment)$")


def redact_value(value: Any, key: str = "") -> Any:
    """`value` with credentials masked; dicts and lists recursively, by key name and by shape.
    Clinicians' comments are left out whole (issue 21)."""
    if key and _SECRET_FIELD.match(key) and value is not None:
        return "[REDACTED]"
    if key and _PATIENT_TEXT_FIELD.match(key) and value is not None:
        return "[comment omitted]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Redacts a record once (issue 15: the factory, the logger, the handler and the formatter
    each redacted it again). What was redacted is remembered by identity on the record
    (`_cds_msg`, `_cds_fields`), so a later pass redacts only what changed since: `fields`
    attached as `extra` after the record factory ran, or a message someone replaced."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg is not getattr(record, "_cds_msg", None) or record.args:
            try:
                message = record.getMessage()
            except Exception:  # a bad format string must not lose the record
                message = str(record.msg)
            if len(message) > MAX_MESSAGE_CHARS:
                message = f"{message[:MAX_MESSAGE_CHARS]}…(+{len(message) - MAX_MESSAGE_CHARS} chars)"
            record.msg = record._cds_msg = redact(message)  # type: ignore[attr-defined]
            record.args = ()
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now, redacted, so no formatter prints the raw one.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info and record.stack_info is not getattr(record, "_cds_stack", None):
            record.stack_info = record._cds_stack = redact(record.stack_info)  # type: ignore[attr-defined]
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields is not getattr(record, "_cds_fields", None):
            record.fields = record._cds_fields = bounded(redact_value(fields))  # type: ignore[attr-defined]
        return True


def _redacted(record: logging.LogRecord) -> bool:
    """Whether everything the JSON line prints was redacted by RedactingFilter."""
    fields = getattr(record, "fields", None)
    return (record.msg is getattr(record, "_cds_msg", None) and not record.args
            and not record.exc_info
            and (not record.stack_info or record.stack_info is getattr(record, "_cds_stack", None))
            and (not isinstance(fields, dict) or fields is getattr(record, "_cds_fields", None)))


class ThreadsSetFilter(logging.Filter):
    """Drops granian's start warning that --blocking-threads is high for the core count: the
    thread count is set explicitly (CDS_THREADS, default 64: a thread waits for a slow
    client's body, README "Serving") and stated in the service's own start line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Configuration allows spawning up to")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_text:
            payload["exc"] = record.exc_text
        text = json.dumps(payload, default=str)
        # A record our filter redacted is not redacted again (a second pass over redacted text
        # only damaged it: '"access_token": "[REDACTED]"' became '"[REDACTED]]"').
        return text if _redacted(record) else redact(text)


_configured = False
_FILTER = RedactingFilter()
_base_factory = logging.getLogRecordFactory()


def _redacting_factory(*args, **kwargs) -> logging.LogRecord:
    # Applies to every logger (ours, werkzeug's, gunicorn's, urllib3's), at creation, so
    # handlers installed by others (pytest's caplog, a log shipper) only see redacted text.
    record = _base_factory(*args, **kwargs)
    _FILTER.filter(record)
    return record


def configure_logging(level: str = "INFO") -> None:
    """Install one JSON handler on the `cds_service` logger (idempotent)."""
    global _configured
    logger = logging.getLogger("cds_service")
    logger.setLevel(level)
    if _configured:
        return
    logging.setLogRecordFactory(_redacting_factory)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    logger.addFilter(RedactingFilter())
    logger.propagate = True  # lets pytest's caplog see records (already redacted)
    _configured = True


def log_event(logger: logging.Logger, level: int, msg: str, **fields) -> None:
    # Redacted here, once: `extra` is attached after the record factory ran, and handlers
    # installed by others (a log shipper, pytest's caplog) carry no RedactingFilter. The
    # `_cds_fields` mark tells RedactingFilter these fields are done.
    if not logger.isEnabledFor(level):
        return
    redacted = bounded(redact_value(fields))
    logger.log(level, msg, extra={"fields": redacted, "_cds_fields": redacted}, stacklevel=2)


MAX_FIELD_CHARS = 512   # any one logged string (issue 21 M5: a 100 KB value made a 100 KB line)
MAX_FIELD_ITEMS = 50    # any one logged list or dict
MAX_MESSAGE_CHARS = 2000


def bounded(value: Any, depth: int = 0) -> Any:
    """`value` with every string, list and dict cut to a fixed size (and nesting to 4 levels)."""
    if isinstance(value, str):
        return value if len(value) <= MAX_FIELD_CHARS else f"{value[:MAX_FIELD_CHARS]}…(+{len(value) - MAX_FIELD_CHARS} chars)"
    if depth >= 4 and isinstance(value, (dict, list, tuple)):
        return f"({type(value).__name__} nested too deep)"
    if isinstance(value, dict):
        items = list(value.items())
        out = {str(k)[:64]: bounded(v, depth + 1) for k, v in items[:MAX_FIELD_ITEMS]}
        if len(items) > MAX_FIELD_ITEMS:
            out["…"] = f"+{len(items) - MAX_FIELD_ITEMS} more"
        return out
    if isinstance(value, (list, tuple)):
        out = [bounded(v, depth + 1) for v in value[:MAX_FIELD_ITEMS]]
        if len(value) > MAX_FIELD_ITEMS:
            out.append(f"+{len(value) - MAX_FIELD_ITEMS} more")
        return out
    return value
