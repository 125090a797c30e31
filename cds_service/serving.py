"""WSGI middleware between the HTTP server (granian) and the Flask app.

Two jobs, both about what the server itself does not do:

- **Body read deadline.** granian bounds the time to send the headers
  (`--http1-header-read-timeout`) but not the body: a client that sends `Content-Length: 100`
  and then 3 bytes would hold one of the worker's Python threads until it hangs up. Here the
  body is read by a helper thread while the worker thread waits at most `body_timeout`
  seconds; past that the app answers 408 (a JSON OperationOutcome with CORS, see
  app.parse_json_body) and the worker thread is free again. The helper stays blocked until
  the client sends the rest or disconnects (granian keeps such a connection open), so their
  number is capped (`max_pending_readers`); past the cap, new bodies get 503 + Retry-After.
  Reading stops one byte past CDS_MAX_BODY_BYTES, chunked or not, and the app answers 413.
- **Access log.** One JSON line per request on stderr (logger `cds_service.access`), through
  the same redaction as every other log line. granian's own access log is turned off.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from typing import Any, Callable, Iterable

from .logging_setup import log_event

access_log = logging.getLogger("cds_service.access")

BODY_ERROR_KEY = "cds.body_error"  # environ key read by app.parse_json_body
_NO_BODY_METHODS = ("GET", "HEAD", "OPTIONS", "DELETE", "TRACE")
_CHUNK = 64 * 1024


class _Reader(threading.Thread):
    def __init__(self, stream, limit: int, release: Callable[[], None]):
        super().__init__(name="cds-body-reader", daemon=True)
        self.stream, self.limit, self.release = stream, limit, release
        self.chunks: list[bytes] = []
        self.size = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while self.size <= self.limit:
                chunk = self.stream.read(min(_CHUNK, self.limit + 1 - self.size))
                if not chunk:
                    break
                self.chunks.append(chunk)
                self.size += len(chunk)
        except BaseException as exc:  # a reset connection: the app sees an incomplete body
            self.error = exc
        finally:
            self.stream = None
            self.release()


class ServingMiddleware:
    def __init__(self, app: Callable, *, max_body_bytes: int, body_timeout: float,
                 access_log_enabled: bool = True, max_pending_readers: int = 256):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.access_log_enabled = access_log_enabled
        self._readers = threading.BoundedSemaphore(max_pending_readers)

    # -- body ------------------------------------------------------------------------------
    def _has_body(self, environ: dict) -> bool:
        if environ.get("REQUEST_METHOD", "GET").upper() in _NO_BODY_METHODS:
            return False
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return True
        try:
            return int(environ.get("CONTENT_LENGTH") or 0) > 0
        except ValueError:
            return False  # werkzeug treats a malformed length as no body; the app says 400

    def _buffer_body(self, environ: dict) -> None:
        if not self._readers.acquire(blocking=False):
            environ[BODY_ERROR_KEY] = (503, "The server is busy receiving other request bodies; retry shortly.")
            environ["wsgi.input"] = io.BytesIO(b"")
            environ["CONTENT_LENGTH"] = "0"
            return
        reader = _Reader(environ["wsgi.input"], self.max_body_bytes, self._readers.release)
        reader.start()
        reader.join(self.body_timeout)
        if reader.is_alive():
            environ[BODY_ERROR_KEY] = (408, f"The request body did not arrive within {self.body_timeout:g} s.")
            body = b""
        else:
            body = b"".join(reader.chunks)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))  # limit + 1 when over: the app answers 413

    # -- WSGI ------------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        t0 = time.perf_counter()
        if self._has_body(environ):
            self._buffer_body(environ)
        if not self.access_log_enabled:
            return self.app(environ, start_response)
        seen: dict[str, Any] = {}

        def _start(status: str, headers, exc_info=None):
            seen["status"] = status
            seen["headers"] = headers
            return start_response(status, headers, exc_info)

        result = self.app(environ, _start)
        return _Logged(result, environ, seen, t0)


class _Logged:
    """Wraps the response iterable so the line is written when the server closes it."""

    def __init__(self, result: Iterable[bytes], environ: dict, seen: dict, t0: float):
        self.result, self.environ, self.seen, self.t0 = result, environ, seen, t0
        self.sent = 0

    def __iter__(self):
        for chunk in self.result:
            self.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            env = self.environ
            status = str(self.seen.get("status", "0")).split(" ", 1)[0]
            # The path only: no query string (nothing here takes one, and a stray
            # ?access_token= must not reach a log). No header is logged.
            log_event(access_log, logging.INFO, "access",
                      method=env.get("REQUEST_METHOD"), path=env.get("PATH_INFO"),
                      status=int(status) if status.isdigit() else 0, bytes=self.sent,
                      ms=round((time.perf_counter() - self.t0) * 1000, 1),
                      remote=env.get("REMOTE_ADDR"), protocol=env.get("SERVER_PROTOCOL"))
