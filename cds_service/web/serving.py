"""What stands between the HTTP server (granian) and the Flask app.

`Front` (ASGI, what `cds-service serve` runs, entry point cds_service.asgi:app; issue 21):
granian's event loop does all the waiting, Python threads only compute.

- `/healthz` is answered in the event loop: it never queues behind request handling.
- For a route that needs a JWT, the token is checked on the headers, before one byte of
  the body is read: a missing or bad token is a 401 at once (security.authenticate, the
  same function the Flask hook calls; the identity is handed to Flask in the environ).
- A declared `Content-Length` over CDS_MAX_BODY_BYTES is a 413 before reading (L8).
- The body is read in the event loop under one total deadline (`body_timeout`, 408): a
  slow client holds a socket and a coroutine, never a thread; how many threads there are
  does not change how long a slow body may take. Reading stops one byte past the limit (413).
- Then the Flask app runs on a thread of a fixed pool with the whole body in memory. The hook
  POST (`POST /cds-services/<known id>`, issue 25) skips Flask's URL matching and WSGI round
  trip (`Front._serve_hook`): the app's own before/after_request hooks, `app.answer_hook` and
  `app.error_answer` run, the same functions the Flask route and error handlers call.
- One JSON access line per request (logger `cds_service.access`, `log_access`); a hook call's
  line also carries the call's own fields (service, hookInstance, duration_ms, site: issue 25).

`ServingMiddleware` (WSGI, cds_service.wsgi:app) is kept for other WSGI servers and the
benchmarks; it reads bodies on a helper thread and is not slow-body safe at scale.
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

import asyncio
import contextvars
import io
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

import orjson
from werkzeug.exceptions import HTTPException

from ..runtime.errors import CDSError, operation_outcome
from ..logging_setup import log_event
from .environ import ACCESS_FIELDS_KEY, BODY_ERROR_KEY

access_log = logging.getLogger("cds_service.access")

_NO_BODY_METHODS = ("GET", "HEAD", "OPTIONS", "DELETE", "TRACE")
_CHUNK = 64 * 1024


def declared_too_long(content_length: str | None, limit: int) -> bool:
    """A declared Content-Length over the limit: answered 413 before a byte is read (L8)."""
    value = (content_length or "").strip()
    return value.isdigit() and int(value) > limit


def too_long_message(limit: int) -> str:
    return f"Request body exceeds the {limit}-byte limit."


def log_access(method: str | None, path: str | None, status: int, sent: int, t0: float,
               remote: str | None, protocol: str | None, call: dict | None = None) -> None:
    """The access line. `call`: a hook call's own fields (app.answer_hook, already redacted and
    bounded), one line per call (issue 25); its status is the answer's, so it is kept apart
    (`hook_status`) only if the HTTP status differs."""
    # The path only: no query string (nothing here takes one, and a stray ?access_token=
    # must not reach a log). No header is logged. Every field is bounded.
    fields = {"method": (method or "")[:16], "path": (path or "")[:256], "status": status, "bytes": sent,
              "ms": round((time.perf_counter() - t0) * 1000, 1), "remote": (remote or "")[:64],
              "protocol": (protocol or "")[:16]}
    if call:
        call = dict(call)
        hook_status = call.pop("status", status)
        fields.update(call)
        if hook_status != status:
            fields["hook_status"] = hook_status
    log_event(access_log, logging.INFO, "access", **fields)


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
        if declared_too_long(environ.get("CONTENT_LENGTH"), self.max_body_bytes):
            environ[BODY_ERROR_KEY] = (413, too_long_message(self.max_body_bytes))  # L8: before reading
            environ["wsgi.input"] = io.BytesIO(b"")
            return
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
        environ[ACCESS_FIELDS_KEY] = {}
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
            log_access(env.get("REQUEST_METHOD"), env.get("PATH_INFO"),
                       int(status) if status.isdigit() else 0, self.sent, self.t0,
                       env.get("REMOTE_ADDR"), env.get("SERVER_PROTOCOL"), env.get(ACCESS_FIELDS_KEY))


# --- ASGI front (issue 21) ------------------------------------------------------------------

class _BodyProblem(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Front:
    """ASGI application wrapping the Flask app; see the module docstring."""

    def __init__(self, flask_app, *, max_body_bytes: int, body_timeout: float, threads: int,
                 access_log_enabled: bool = True):
        from ..security import FRONT_AUTH_KEY, FRONT_SITE_KEY
        self.flask_app = flask_app
        self.state = flask_app.extensions["cds"]
        self.cfg = self.state.config
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.access_log_enabled = access_log_enabled
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cds-app")
        self.routes = flask_app.url_map.bind("localhost")  # Flask's own routing table, for the auth check
        self.auth_key, self.site_key = FRONT_AUTH_KEY, FRONT_SITE_KEY
        self.sites = self.state.extensions.get("sites")  # CDS_SITES (issue 24): it authenticates
        self.hook_rule = next(r for r in flask_app.url_map.iter_rules() if r.endpoint == "call_service")

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # served with --no-ws
        t0 = time.perf_counter()
        sent = {"status": 0, "bytes": 0}
        call: dict[str, Any] = {}  # a hook call's own log fields (ACCESS_FIELDS_KEY)

        async def _send(message: dict) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self._handle(scope, receive, _send, call)
        except Exception as exc:  # a fault of ours outside Flask's own handlers: still an OperationOutcome
            logging.getLogger("cds_service.serving").error(
                "unhandled error in the serving front", extra={"fields": {"error": type(exc).__name__,
                                                                            "path": scope.get("path", "")[:200]}})
            if sent["status"] == 0:
                await self._error(_send, 500, "Internal error; the event was logged.",
                                  _header_dict(scope.get("headers", [])).get("origin"), [])
        finally:
            if self.access_log_enabled:
                client = scope.get("client") or ("", 0)
                log_access(scope.get("method"), scope.get("path"), sent["status"], sent["bytes"], t0,
                           client[0], f"HTTP/{scope.get('http_version', '1.1')}", call)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # In-flight calls finish (granian stops accepting first, then waits for us).
                await asyncio.get_running_loop().run_in_executor(None, self.pool.shutdown, True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- one request -----------------------------------------------------------------------
    async def _handle(self, scope: dict, receive: Callable, send: Callable, call: dict) -> None:
        from .app import healthz_payload
        method, path = scope["method"].upper(), scope["path"]
        headers = _header_dict(scope["headers"])
        origin = headers.get("origin")
        if path == "/healthz" and method in ("GET", "HEAD"):
            await self._answer(send, 200, orjson.dumps(healthz_payload()), origin, head=method == "HEAD")
            return
        loop = asyncio.get_running_loop()
        identity, site = _NOT_CHECKED, _NOT_CHECKED
        check = self._needs_token(method, path) if method != "OPTIONS" else None
        if check:
            base_url = f"{scope.get('scheme', 'http')}://{headers.get('host') or _server(scope)}" \
                       f"{scope.get('root_path', '')}{path}"
            try:
                if check == "site":
                    identity, site = await loop.run_in_executor(
                        self.pool, contextvars.Context().run, self._authenticate_site,
                        headers.get("authorization"), base_url, path, method)
                else:
                    identity = await loop.run_in_executor(
                        self.pool, contextvars.Context().run, self._authenticate,
                        headers.get("authorization"), base_url, path)
            except CDSError as exc:
                extra = [("WWW-Authenticate", 'Bearer realm="cds-services"')] if exc.status == 401 else []
                if getattr(exc, "retry_after", None):
                    extra.append(("Retry-After", str(exc.retry_after)))
                await self._answer(send, exc.status, orjson.dumps(exc.outcome()), origin, extra=extra)
                return
        body = b""
        if method not in _NO_BODY_METHODS:
            try:
                body = await self._read_body(headers, receive)
            except _BodyProblem as exc:
                await self._error(send, exc.status, exc.message, origin, [("Connection", "close")])
                return
            except _Disconnected:
                return
        environ = _environ(scope, headers, body)
        if identity is not _NOT_CHECKED:
            environ[self.auth_key] = identity
        if site is not _NOT_CHECKED:
            environ[self.site_key] = site
        if self.access_log_enabled:
            environ[ACCESS_FIELDS_KEY] = call
        if self._hook_service(method, path) is not None:  # issue 25: the hook POST without Flask's routing
            status, response_headers, payload = await loop.run_in_executor(
                self.pool, contextvars.Context().run, self._serve_hook, environ, path[len(_HOOK_PREFIX):])
        else:
            status, response_headers, payload = await loop.run_in_executor(
                self.pool, contextvars.Context().run, _run_wsgi, self.flask_app, environ)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response_headers]})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else payload})

    def _hook_service(self, method: str, path: str) -> str | None:
        """The service id of a POST to a known hook service (`/cds-services/<id>`), else None."""
        if method != "POST" or not path.startswith(_HOOK_PREFIX):
            return None
        service_id = path[len(_HOOK_PREFIX):]
        return service_id if "/" not in service_id and self.state.registry.get(service_id) is not None else None

    def _serve_hook(self, environ: dict, service_id: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """The hook POST (issue 25) on a pool thread: Flask's request context is pushed with the
        route already known (no URL matching), then the app's own functions run in Flask's order:
        the before_request hooks (security, sites: the identity the front checked is taken from the
        environ), app.answer_hook, app.error_answer for any error, the after_request hooks (CORS,
        WWW-Authenticate, capture) and the teardown (secrets forgotten). No WSGI response round trip."""
        from .app import as_response, answer_hook, error_answer, json_response
        app = self.flask_app
        ctx = app.request_context(environ)
        ctx.match_request = lambda: None  # the route is known: push() does not match the URL (url_for still works)
        ctx.request.url_rule, ctx.request.view_args = self.hook_rule, {"service_id": service_id}
        with ctx:
            try:
                response = app.preprocess_request()
                if response is None:
                    response = json_response(answer_hook(self.state, service_id))
            except Exception as exc:  # noqa: BLE001 - every error is an OperationOutcome (app.error_answer)
                response = as_response(error_answer(self.state, exc))
            response = app.process_response(response)
            return response.status_code, response.headers.to_wsgi_list(), response.get_data()

    def _needs_token(self, method: str, path: str) -> str | None:
        """"jwt" or "site" (CDS_SITES) when the route needs a token checked here, else None."""
        from ..security import needs_token
        if self._hook_service(method, path) is not None:
            endpoint = "call_service"
        else:
            try:
                endpoint, _ = self.routes.match(path, method=method)
            except HTTPException:  # 404/405: Flask answers them, no token needed to learn that
                return None
        if self.sites is not None:
            from ..sites.runtime import PROTECTED
            # Discovery keeps its own rules (open sites) in Flask: a GET has no body to wait for.
            return "site" if endpoint in PROTECTED else None
        return "jwt" if needs_token(self.cfg, endpoint) else None

    def _authenticate_site(self, header: str | None, base_url: str, path: str, method: str):
        """(identity, site) by the sites layer's own authenticate (issue 24), in a request
        context made of the headers only (it logs the path and counts by site)."""
        from flask import g
        from ..logging_setup import forget_secrets
        from ..security import invoked_url, mask_credential
        mask_credential(header)
        try:
            with self.flask_app.test_request_context(path, method=method, base_url=base_url[:-len(path) or None],
                                                     headers={"Authorization": header} if header else {}):
                g.cds_site_id = "none"
                site = self.sites.authenticate(header, invoked_url(self.cfg, base_url, path))
                return g.get("cds_client"), site
        finally:
            forget_secrets()

    def _authenticate(self, header: str | None, base_url: str, path: str):
        from ..logging_setup import forget_secrets
        from ..security import authenticate, invoked_url, mask_credential
        validator = self.state.extensions["jwt_validator"]
        mask_credential(header)
        try:
            return authenticate(validator, header, invoked_url(self.cfg, base_url, path), path)
        finally:
            forget_secrets()

    async def _read_body(self, headers: dict[str, str], receive: Callable) -> bytes:
        limit = self.max_body_bytes
        if declared_too_long(headers.get("content-length"), limit):
            raise _BodyProblem(413, too_long_message(limit))
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):  # one deadline for the whole body
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Disconnected
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise _BodyProblem(413, too_long_message(limit))
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _BodyProblem(408, f"The request body did not arrive within {self.body_timeout:g} s.") from None

    async def _error(self, send: Callable, status: int, message: str, origin: str | None,
                     extra: list[tuple[str, str]]) -> None:
        await self._answer(send, status, orjson.dumps(operation_outcome(status, message)), origin, extra=extra)

    async def _answer(self, send: Callable, status: int, payload: bytes, origin: str | None, *,
                      head: bool = False, extra: list[tuple[str, str]] = ()) -> None:
        from .app import cors_headers
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                   *cors_headers(self.cfg, origin), *extra]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]})
        await send({"type": "http.response.body", "body": b"" if head else payload})


class _Disconnected(Exception):
    pass


_NOT_CHECKED = object()
_HOOK_PREFIX = "/cds-services/"


def _header_dict(raw: list) -> dict[str, str]:
    """ASGI headers (bytes pairs) as one str per lower-case name; repeats joined by ', '.
    Latin-1 decoding never fails, whatever bytes a client sends (M3)."""
    out: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def _server(scope: dict) -> str:
    host, port = scope.get("server") or ("localhost", 80)
    return f"{host}:{port}"


def _environ(scope: dict, headers: dict[str, str], body: bytes) -> dict:
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ = {
        "REQUEST_METHOD": scope["method"].upper(),
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        # ASGI gives the decoded path as str; WSGI wants its UTF-8 bytes as Latin-1 text.
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]), "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]), "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in headers.items():
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name not in ("content-length", "transfer-encoding"):
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def _run_wsgi(app: Callable, environ: dict) -> tuple[int, list[tuple[str, str]], bytes]:
    seen: dict[str, Any] = {}
    chunks: list[bytes] = []

    def start_response(status: str, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers
        return chunks.append

    result = app(environ, start_response)
    try:
        for chunk in result:
            chunks.append(chunk)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return int(str(seen["status"]).split(" ", 1)[0]), list(seen["headers"]), b"".join(chunks)


def watch_parent(interval: float = 0.5, grace: float = 10.0) -> None:
    """L6: a granian worker stops when its main process dies (kill -9 of the main process
    left the workers serving the port with no supervisor). `serve` puts the main process's
    pid in CDS_SERVE_PID before it execs granian; a worker started any other way is left alone.
    On the parent's death the worker gets SIGTERM (a graceful stop: queued audit rows are
    flushed) and is ended `grace` seconds later if it is still there."""
    import multiprocessing
    import os
    import signal
    expected = os.environ.get("CDS_SERVE_PID", "")
    parent = multiprocessing.parent_process()   # granian's workers are multiprocessing children
    if not expected.isdigit() or parent is None or parent.pid != int(expected):
        return

    def _watch() -> None:
        # Also when the main process died while this worker was still importing the app.
        while os.getppid() == int(expected):
            time.sleep(interval)
        log_event(logging.getLogger("cds_service.serving"), logging.ERROR,
                  "granian main process is gone; this worker stops", parent=int(expected))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os._exit(1)

    threading.Thread(target=_watch, name="cds-parent-watch", daemon=True).start()
