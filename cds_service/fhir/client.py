"""HTTP to one hook call's fhirServer: one shared deadline, bounded bodies, counted calls.

Every request runs on a process-wide thread pool and the caller waits at most until the
call's deadline, so a server that hangs or trickles bytes cannot hold a hook call past
CDS_FHIR_TIMEOUT. Bodies are capped at MAX_RESPONSE_BYTES each and in sum per hook call. One pooled `requests.Session` per process (recreated after a fork).
Redirects are not followed (the token must only ever go to fhirServer).
"""
from __future__ import annotations

import os
import threading
import time
import contextvars
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Callable

import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter

MAX_RESPONSE_BYTES = 10 * 1024 * 1024
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_ATTEMPTS = 3  # GETs only; a retry is made only if its backoff ends inside the deadline
BACKOFF_SECONDS = 0.05  # doubled per retry
POOL_WORKERS = 32
_CHUNK = 64 * 1024

_lock = threading.Lock()
_pid: int | None = None
_session: requests.Session | None = None
_executor: ThreadPoolExecutor | None = None


def _shared() -> tuple[requests.Session, ThreadPoolExecutor]:
    """The process's Session and pool, created lazily (after any gunicorn fork)."""
    global _pid, _session, _executor
    with _lock:
        if _pid != os.getpid() or _session is None or _executor is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=8, pool_maxsize=POOL_WORKERS, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.trust_env = False  # no proxy/netrc credentials picked up from the environment
            _session = session
            _executor = ThreadPoolExecutor(max_workers=POOL_WORKERS, thread_name_prefix="fhir")
            _pid = os.getpid()
        return _session, _executor


class FetchError(Exception):
    """A request that produced no usable answer. `reason` is shown to the caller and
    logged, so it is built from statuses and fixed phrases only, never from a token."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ConnectionProblem(FetchError):
    """Connection refused/reset/DNS: worth a retry for an idempotent GET."""


class DeadlineExceeded(FetchError):
    """The call's FHIR deadline passed."""


class FhirClient:
    """Requests to `base` for one hook call, sharing `deadline` (time.monotonic())."""

    def __init__(self, base: str, token: str | None, deadline: float, timeout: float,
                 max_bytes: int = MAX_RESPONSE_BYTES):
        self.base = base.rstrip("/")
        self.deadline = deadline
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.headers = {"Accept": "application/fhir+json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.calls = 0
        # Bytes read by all of this call's requests: `max_bytes` caps the sum too, since
        # the parallel GETs would otherwise hold ten capped bodies at once.
        self.bytes_read = 0
        self._calls_lock = threading.Lock()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def url(self, query: str) -> str:
        return f"{self.base}/{query.lstrip('/')}"

    def _deadline_error(self) -> FetchError:
        return DeadlineExceeded(f"no answer within the {self.timeout:g} s FHIR deadline")

    # --- one HTTP exchange -------------------------------------------------------------

    def _send(self, method: str, url: str, body: bytes | None = None) -> tuple[int, Any]:
        """(status, parsed JSON body or None). The body is read (capped) only for 2xx."""
        remaining = self.remaining()
        if remaining <= 0:
            raise self._deadline_error()
        session, _ = _shared()
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/fhir+json"
        with self._calls_lock:
            self.calls += 1
        try:
            resp = session.request(method, url, data=body, headers=headers, stream=True,
                                   allow_redirects=False, timeout=(remaining, remaining))
        except requests.Timeout:
            raise self._deadline_error() from None
        except requests.RequestException:
            raise ConnectionProblem("fhirServer could not be reached") from None
        try:
            if not 200 <= resp.status_code < 300:
                return resp.status_code, None
            return resp.status_code, self._read_json(resp)
        finally:
            resp.close()

    def _read_json(self, resp: requests.Response) -> Any:
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError(f"answer larger than the {self.max_bytes}-byte limit")
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                if self.remaining() <= 0:
                    raise self._deadline_error()
                # read1 returns whatever has arrived (iter_content would block until a whole
                # chunk is in), so a server trickling bytes is cut off at the deadline and
                # cannot hold a pool thread for hours.
                chunk = resp.raw.read1(_CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError(f"answer larger than the {self.max_bytes}-byte limit")
                with self._calls_lock:
                    self.bytes_read += len(chunk)
                    total = self.bytes_read
                if total > self.max_bytes:
                    raise FetchError(f"answers together larger than the {self.max_bytes}-byte limit")
                chunks.append(chunk)
        except (TimeoutError, urllib3.exceptions.TimeoutError):
            raise self._deadline_error() from None
        except (OSError, urllib3.exceptions.HTTPError):
            raise ConnectionProblem("connection to fhirServer broke while reading") from None
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError:
            raise FetchError("answer is not valid JSON") from None

    # --- public operations -----------------------------------------------------------------

    def get(self, url: str) -> tuple[int, Any]:
        """GET with retries on connection errors and 502/503/504, backoff inside the deadline."""
        attempt = 0
        while True:
            attempt += 1
            try:
                status, body = self._send("GET", url)
            except ConnectionProblem as exc:
                problem: FetchError = exc
                status = None
            if status is not None and status not in RETRY_STATUSES:
                return status, body
            backoff = BACKOFF_SECONDS * 2 ** (attempt - 1)
            if attempt >= MAX_ATTEMPTS or backoff >= self.remaining():
                if status is not None:
                    return status, None
                raise problem
            time.sleep(backoff)

    def post_batch(self, bundle: dict) -> tuple[int, Any]:
        """POST a batch Bundle to the base URL once (a failure falls back to GETs)."""
        return self._send("POST", self.base, orjson.dumps(bundle))

    def run(self, tasks: list[Callable[[], Any]]) -> list[Any]:
        """Run `tasks` in parallel; each result is its return value or its FetchError.
        Waits no longer than the deadline: unfinished tasks get a deadline FetchError."""
        if not tasks:
            return []
        _, executor = _shared()
        # Each task runs in a copy of this request's context, so the per-request secret
        # masking of logging_setup also covers log lines written from the pool threads.
        futures = [executor.submit(contextvars.copy_context().run, _capture, task) for task in tasks]
        done, _ = wait(futures, timeout=max(0.0, self.remaining()))
        results = []
        for future in futures:
            if future in done:
                results.append(future.result())
            else:
                future.cancel()  # a running one finishes on its own, bounded by its timeout
                results.append(self._deadline_error())
        return results


def _capture(task: Callable[[], Any]) -> Any:
    try:
        return task()
    except FetchError as exc:
        return exc
