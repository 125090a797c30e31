"""Structured (JSON-line) logging with token redaction.

Every handler the service installs carries RedactingFilter, so a bearer token or a JWT
that slips into a message, an argument or an exception text is masked before output.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time

# "Bearer <anything>" and anything shaped like a JWS/JWT (three base64url parts, the
# first starting with eyJ = '{"'). Also access_token values in JSON or query strings.
_PATTERNS = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1[REDACTED]"),
    (re.compile(r"eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*"), "[REDACTED-JWT]"),
    (re.compile(r"(?i)(\"?access_token\"?\s*[:=]\s*\"?)[^\s\"&,}]+"), r"\1[REDACTED]"),
    (re.compile(r"(?i)(authorization\"?\s*[:=]\s*\"?)[^\"\n,}]+"), r"\1[REDACTED]"),
]


def redact(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = ()
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now, redacted, so no formatter prints the raw one.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if isinstance(getattr(record, "fields", None), dict):
            record.fields = {k: redact(v) if isinstance(v, str) else v for k, v in record.fields.items()}
        return True


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
        return redact(json.dumps(payload, default=str))


_configured = False
_base_factory = logging.getLogRecordFactory()


def _redacting_factory(*args, **kwargs) -> logging.LogRecord:
    # Applies to every logger (ours, werkzeug's, gunicorn's, urllib3's), at creation, so
    # handlers installed by others (pytest's caplog, a log shipper) only see redacted text.
    record = _base_factory(*args, **kwargs)
    RedactingFilter().filter(record)
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
    logger.log(level, msg, extra={"fields": fields})
