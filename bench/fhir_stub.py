"""A small FHIR R4 server on loopback for the benchmark, the soak and the fault-injection tests.

It serves the prefetch searches (and `batch` Bundles POSTed to the base) for any patient
id from one synthetic record (bench.synth), with an injected latency per HTTP request,
and counts requests. A fault mode is chosen per call by the first path segment of the
base URL, so one server serves healthy and faulty `fhirServer`s side by side:

    stub.url()                 -> http://127.0.0.1:PORT/fhir          healthy
    stub.url("status503")      -> http://127.0.0.1:PORT/status503/fhir
    stub.url("garbage~Condition")  fault only for Condition requests, others healthy

Modes: slow (answers after `slow_seconds`), drip (sends a body one byte at a time, so
no single read times out), statusNNN, garbage, truncated, html, wrongtype (a JSON array),
huge (50 MB, Content-Length), hugechunked (50 MB, chunked, no length), loop (a full page
whose `next` link is itself), endless (`next` links forever), reset (closes the socket
without answering), redirect (302 to a closed loopback port).
"""
from __future__ import annotations

import collections
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

from . import synth

TEMPLATE_PID = "PIDXTEMPLATEX"
HUGE_BYTES = 50 * 1024 * 1024
MODES = ("slow", "drip", "garbage", "truncated", "html", "wrongtype", "huge", "hugechunked",
         "loop", "endless", "reset", "redirect")


def closed_port_url() -> str:
    """A loopback base URL on which nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/fhir"


class FhirStub:
    def __init__(self, latency: float = 0.0, n_obs: int = 150, slow_seconds: float = 30.0):
        self.latency = latency
        self.slow_seconds = slow_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.batch_entries = 0
        self._record = synth.record(TEMPLATE_PID, n_obs)
        self._by_type: dict[str, list[dict]] = collections.defaultdict(list)
        for key, resources in self._record.items():
            for r in resources:
                self._by_type[r["resourceType"]].append(r)
        self._cache: dict[tuple, bytes] = {}
        stub = self

        class Handler(_Handler):
            pass
        Handler.stub = stub
        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="fhir-stub")
        self._thread.start()

    # -- public ---------------------------------------------------------------------------
    def url(self, mode: str | None = None) -> str:
        return f"http://127.0.0.1:{self.port}" + (f"/{mode}" if mode else "") + "/fhir"

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.batch_entries = 0

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FhirStub":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------
    def _count(self, mode: str, n_entries: int = 0) -> None:
        with self._lock:
            self.counts[mode or "ok"] += 1
            self.batch_entries += n_entries

    def sleep(self, seconds: float) -> bool:
        """Interruptible sleep; False when the server is closing."""
        return not self._stop.wait(seconds) if seconds > 0 else True

    def search(self, path: str, query: str, base: str) -> tuple[int, Any]:
        """(status, resource) for a GET of `path?query` relative to the FHIR base."""
        parts = [p for p in path.split("/") if p]
        params = parse_qs(query, keep_blank_values=True)
        if len(parts) == 2:  # read: Type/id
            rtype, rid = parts
            if rtype == "Patient":
                return 200, {**self._record["patient"][0], "id": rid}
            return 404, _outcome("not-found", f"{rtype}/{rid} not found")
        if len(parts) != 1:
            return 400, _outcome("not-supported", f"unsupported path {path!r}")
        rtype = parts[0]
        pid = (params.get("patient") or params.get("subject") or [""])[0].removeprefix("Patient/")
        if not pid:
            return 400, _outcome("required", "patient parameter required")
        resources = self._by_type.get(rtype, [])
        codes = params.get("code")
        if codes:
            wanted = set(",".join(codes).split(","))
            resources = [r for r in resources
                         if any(f"{c.get('system')}|{c.get('code')}" in wanted
                                for c in r.get("code", {}).get("coding", []))]
        status = params.get("status")
        if status:
            resources = [r for r in resources if r.get("status") in status[0].split(",")]
        count = int((params.get("_count") or ["100"])[0])
        offset = int((params.get("_offset") or ["0"])[0])
        page = resources[offset:offset + count]
        next_url = None
        if offset + count < len(resources):
            q = {k: v[0] for k, v in params.items()}
            q["_offset"] = str(offset + count)
            next_url = f"{base}/{rtype}?{urlencode(q)}"
        return 200, synth.searchset(page, base=base, next_url=next_url)

    def render(self, path: str, query: str, base: str, pid: str) -> tuple[int, bytes]:
        """Like search(), serialised; cached per query shape, the patient id filled in."""
        if pid:
            if path.startswith("Patient/"):
                path = f"Patient/{TEMPLATE_PID}"
            query = re.sub(r"((?:^|&)(?:patient|subject)=(?:Patient/)?)" + re.escape(pid) + r"(?=&|$)",
                           lambda m: m.group(1) + TEMPLATE_PID, query)
        key = (path, query, base)
        cached = self._cache.get(key)
        if cached is None:
            status, resource = self.search(path, query, base)
            cached = self._cache.setdefault(key, str(status).encode() + b" " + orjson.dumps(resource))
        status_b, _, body = cached.partition(b" ")
        if pid:
            body = body.replace(TEMPLATE_PID.encode(), pid.encode())
        return int(status_b), body


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog (5) drops parallel connects: 1 s SYN retries

    def handle_error(self, request, client_address) -> None:
        pass  # clients that give up mid-response (the point of most faults) are expected


def _outcome(code: str, text: str) -> dict:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


def _patient_of(path: str, query: str) -> str:
    params = parse_qs(query)
    pid = (params.get("patient") or params.get("subject") or [""])[0].removeprefix("Patient/")
    if not pid:
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "Patient":
            pid = parts[1]
    return pid


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stub: FhirStub

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- routing --------------------------------------------------------------------------
    def _split(self) -> tuple[str, str, str, str]:
        """(mode, only, fhir path, query) from /[mode[~Type]/]fhir/<path>?query."""
        split = urlsplit(self.path)
        parts = split.path.split("/")[1:]
        mode = only = ""
        if parts and parts[0] != "fhir":
            mode, _, only = parts.pop(0).partition("~")
        if parts and parts[0] == "fhir":
            parts.pop(0)
        return mode, only, "/".join(parts), split.query

    def _base(self, mode: str, only: str) -> str:
        seg = f"/{mode}~{only}" if only else (f"/{mode}" if mode else "")
        return f"http://127.0.0.1:{self.stub.port}{seg}/fhir"

    def do_GET(self) -> None:
        mode, only, path, query = self._split()
        rtype = path.split("/")[0]
        if only and only != rtype:
            mode = ""
        self.stub._count(mode)
        if not self.stub.sleep(self.stub.latency):
            return
        if mode and self._fault(mode, path, query, self._base(mode, only)):
            return
        status, body = self.stub.render(path, query, self._base(mode, only), _patient_of(path, query))
        self._send(status, body)

    def do_POST(self) -> None:
        mode, only, path, _ = self._split()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            bundle = orjson.loads(raw)
            entries = bundle.get("entry") or []
        except (orjson.JSONDecodeError, AttributeError):
            self.stub._count(mode)
            self._send(400, orjson.dumps(_outcome("invalid", "batch body is not a Bundle")))
            return
        if only:
            types = {str((e.get("request") or {}).get("url", "")).split("?")[0].split("/")[0] for e in entries}
            if only not in types:
                mode = ""
        self.stub._count(mode, len(entries))
        if not self.stub.sleep(self.stub.latency):
            return
        if path:
            self._send(405, orjson.dumps(_outcome("not-supported", "POST only to the base")))
            return
        if mode and self._fault(mode, "", "", self._base(mode, only)):
            return
        base = self._base(mode, only)
        out = []
        for entry in entries:
            url = str((entry.get("request") or {}).get("url", ""))
            epath, _, equery = url.partition("?")
            status, body = self.stub.render(epath, equery, base, _patient_of(epath, equery))
            out.append(b'{"resource":' + body + b',"response":{"status":"' + f"{status}".encode() + b'"}}')
        self._send(200, b'{"resourceType":"Bundle","type":"batch-response","entry":[' + b",".join(out) + b"]}")

    # -- responses ------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str = "application/fhir+json",
              headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _fault(self, mode: str, path: str, query: str, base: str) -> bool:
        """Answer with the fault `mode`; False if the mode is unknown (healthy answer)."""
        stub = self.stub
        try:
            if mode.startswith("status") and mode[6:].isdigit():
                self._send(int(mode[6:]), orjson.dumps(_outcome("exception", "injected fault")),
                           headers={"Retry-After": "1"} if mode == "status503" else None)
            elif mode == "slow":
                if stub.sleep(stub.slow_seconds):
                    self._send(200, orjson.dumps(synth.searchset([])))
            elif mode == "drip":
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                for byte in (b'{"resourceType":"Bundle","type":"searchset","entry":[' + b" " * 999_000):
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    if not stub.sleep(0.1):
                        break
            elif mode == "garbage":
                self._send(200, b"\x00\xffnot json at all {{{")
            elif mode == "truncated":
                _, body = stub.render(path, query, base, _patient_of(path, query))
                self._send(200, body[: max(len(body) // 2, 10)])
            elif mode == "html":
                self._send(200, b"<html><body>Gateway login</body></html>", ctype="text/html")
            elif mode == "wrongtype":
                self._send(200, b'[{"resourceType":"Bundle"}]')
            elif mode in ("huge", "hugechunked"):
                self._huge(chunked=mode == "hugechunked")
            elif mode in ("loop", "endless"):
                pid = _patient_of(path, query) or "x"
                page = synth.observations(pid, 100) if path.startswith("Observation") else []
                if mode == "loop":
                    next_url = f"{base}/{path}?{query}"
                else:
                    n = int((parse_qs(query).get("_page") or ["0"])[0]) + 1
                    next_url = f"{base}/{path}?{query}&_page={n}"
                self._send(200, orjson.dumps(synth.searchset(page, base=base, next_url=next_url)))
            elif mode == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.close_connection = True
                self.connection.close()
            elif mode == "redirect":
                self._send(302, b"", headers={"Location": closed_port_url() + f"/{path}?{query}"})
            else:
                return False
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        return True

    def _huge(self, chunked: bool) -> None:
        head = b'{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Basic","id":"'
        tail = b'"}}]}'
        pad = HUGE_BYTES - len(head) - len(tail)
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(HUGE_BYTES))
        self.end_headers()
        chunk = b"x" * 65536

        def write(data: bytes) -> None:
            if chunked:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            else:
                self.wfile.write(data)
        write(head)
        sent = 0
        while sent < pad and not self.stub._stop.is_set():
            piece = chunk[: min(len(chunk), pad - sent)]
            write(piece)
            sent += len(piece)
        write(tail)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


def main() -> None:  # pragma: no cover - manual use: python -m bench.fhir_stub
    import argparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.02)
    args = p.parse_args()
    stub = FhirStub(latency=args.latency)
    print(f"FHIR stub at {stub.url()} (faults: {stub.url('<mode>')}; modes: statusNNN, {', '.join(MODES)})")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stub.close()


if __name__ == "__main__":  # pragma: no cover
    main()
