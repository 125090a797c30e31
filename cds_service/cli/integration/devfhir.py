"""`cds-service dev-fhir`: a FHIR server and SMART launcher for local testing only (issue 22).

The CDS Hooks Sandbox launches a card's `smart` link only when its FHIR server hands out a
launch id: it POSTs `{"launchUrl": <link url>, "parameters": {"patient": <id>, ...}}` to
`<FHIR base>/_services/smart/Launch`, expects `{"launch_id": ...}`, and opens
`<link url>?launch=<id>&iss=<FHIR base>`. An open FHIR server has no such service, so the
Sandbox greys the link out. This server adds what is missing, in front of the synthetic
patients:

    <base>/fhir/...                        FHIR R4: the synthetic patients held in memory
                                           (dated relative to start), or --upstream: proxied
    <base>/fhir/metadata                   CapabilityStatement (no oauth-uris extension: the
                                           Sandbox, launched open, refuses a secured server)
    <base>/fhir/.well-known/smart-configuration
    <base>/fhir/_services/smart/Launch     the launch service the Sandbox calls
    <base>/authorize                       approves at once (no login, no consent screen)
    <base>/token                           code -> opaque token with `patient` (and `encounter`
                                           when the patient has an in-progress one)

FHIR reads need no token (the Sandbox, launched open, sends none); a token sent must be one
this server issued. Every answer allows any origin (CORS): the Sandbox calls from a browser.
Loopback only, and refused with CDS_ENV=production: it approves every authorization.

In memory it answers what the service and the Sandbox ask: reads, searches by patient,
code, status, _id with _sort (date, effective-time) and _count, POST <type>/_search, and
batch/transaction Bundles (so `load-fixtures` and `fire` work against it). An unsupported
search parameter is a 400 naming it, never ignored.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from ...fhir.allowlist import is_loopback
from .fixtures import DEFAULT_DIR, render

FHIR_JSON = "application/fhir+json"
SEARCH_PARAMS = {"patient", "subject", "code", "status", "_id", "_sort", "_count", "_format"}
# _sort key -> where the date sits, per resource type (first present wins)
DATE_PATHS = {
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod.start"),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "Encounter": ("period.start",),
    "Condition": ("recordedDate", "onsetDateTime"),
    "MedicationRequest": ("authoredOn",),
}
CORS = {"Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, POST, PUT, OPTIONS",
        "Access-Control-Allow-Headers": "Accept, Authorization, Content-Type, Prefer",
        "Access-Control-Max-Age": "600",
        # Chrome's Private Network Access: the public Sandbox (https) may call this loopback server
        "Access-Control-Allow-Private-Network": "true"}


class DevFhirRefused(Exception):
    """dev-fhir must not start (not loopback, or CDS_ENV=production)."""


def check_allowed(host: str, env: dict[str, str]) -> None:
    if (env.get("CDS_ENV") or "").strip().lower() == "production":
        raise DevFhirRefused("dev-fhir approves every authorization: refused with CDS_ENV=production")
    if not is_loopback(host):
        raise DevFhirRefused(f"dev-fhir listens on loopback only (127.0.0.1, ::1, localhost), not {host!r}")


def _dig(resource: dict, path: str) -> Any:
    value: Any = resource
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _date_of(resource: dict) -> str:
    for path in DATE_PATHS.get(resource.get("resourceType", ""), ()):
        value = _dig(resource, path)
        if isinstance(value, str):
            return value
    return ""


def _subject_id(resource: dict) -> str | None:
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            parts = ref["reference"].split("/")
            if len(parts) >= 2 and parts[-2] == "Patient":
                return parts[-1]
    return None


def _codings(concept: Any) -> list[tuple[str, str]]:
    if not isinstance(concept, dict):
        return []
    return [(c.get("system") or "", c.get("code") or "") for c in concept.get("coding") or []
            if isinstance(c, dict)]


class SearchError(ValueError):
    pass


def _matches(resource: dict, params: list[tuple[str, str]]) -> bool:
    for name, value in params:
        wanted = value.split(",")
        if name in ("patient", "subject"):
            pid = _subject_id(resource) if resource.get("resourceType") != "Patient" else resource.get("id")
            if pid not in [w.split("/")[-1] for w in wanted]:
                return False
        elif name == "_id":
            if resource.get("id") not in wanted:
                return False
        elif name == "status":
            if resource.get("status") not in wanted:
                return False
        elif name == "code":
            have = _codings(resource.get("code") or resource.get("medicationCodeableConcept"))
            if not any((("|" in w and (s, c) == tuple(w.split("|", 1))) or ("|" not in w and c == w))
                       for w in wanted for s, c in have):
                return False
    return True


@dataclass
class _Launch:
    patient: str
    encounter: str | None
    app_context: str | None


@dataclass
class DevFhir:
    """The WSGI application. `upstream`: a FHIR base URL to proxy; None: the in-memory store."""
    base: str = ""                     # set by serve(): http://127.0.0.1:<port>
    upstream: str | None = None
    resources: dict[tuple[str, str], dict] = field(default_factory=dict)
    launches: dict[str, _Launch] = field(default_factory=dict)
    codes: dict[str, dict] = field(default_factory=dict)
    tokens: dict[str, _Launch] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def iss(self) -> str:
        return self.base + "/fhir"

    # ------------------------------------------------------------------ data
    def load_synthetic(self, now=None) -> int:
        """Put every packaged synthetic patient (rendered at `now`) in the store."""
        count = 0
        for path in sorted(DEFAULT_DIR.glob("*.json")):
            bundle = render(json.loads(path.read_text()), now)
            self.transaction(bundle)
            count += 1
        return count

    def put(self, resource: dict) -> dict:
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if not isinstance(rtype, str) or not isinstance(rid, str):
            raise SearchError("a resource needs resourceType and id")
        stored = dict(resource)
        stored["meta"] = {**(resource.get("meta") or {}), "versionId": "1",
                          "lastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with self.lock:
            self.resources[(rtype, rid)] = stored
        return stored

    def search(self, rtype: str, params: list[tuple[str, str]]) -> dict:
        unknown = sorted({n for n, _ in params if n not in SEARCH_PARAMS})
        if unknown:
            raise SearchError(f"dev-fhir does not support the search parameter(s) {', '.join(unknown)}")
        count = next((int(v) for n, v in params if n == "_count" and v.isdigit()), 1000)
        sort = next((v for n, v in params if n == "_sort"), "")
        with self.lock:
            found = [r for (t, _), r in self.resources.items() if t == rtype]
        found = [r for r in found if _matches(r, params)]
        if sort.lstrip("-") in ("date", "effective-time"):
            found.sort(key=_date_of, reverse=sort.startswith("-"))
        elif sort:
            raise SearchError(f"dev-fhir does not support _sort={sort}")
        total = len(found)
        return {"resourceType": "Bundle", "type": "searchset", "total": total,
                "entry": [{"fullUrl": f"{self.iss}/{rtype}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                          for r in found[:count]]}

    def current_encounter(self, patient: str) -> str | None:
        """The patient's in-progress Encounter with the latest start, if any."""
        try:
            bundle = self._fhir_json("GET", f"Encounter?patient={patient}&_sort=-date&_count=50")
        except (SearchError, requests.RequestException):
            return None
        for entry in (bundle or {}).get("entry") or []:
            res = entry.get("resource") or {}
            if res.get("status") == "in-progress" and isinstance(res.get("id"), str):
                return res["id"]
        return None

    def _fhir_json(self, method: str, relative: str) -> Any:
        if self.upstream:
            resp = requests.request(method, f"{self.upstream}/{relative}", headers={"Accept": FHIR_JSON}, timeout=30)
            return resp.json() if resp.ok else None
        status, body = self._local(method, relative, None)
        return body if status == 200 else None

    def transaction(self, bundle: dict) -> dict:
        kind = bundle.get("type")
        if bundle.get("resourceType") != "Bundle" or kind not in ("batch", "transaction"):
            raise SearchError("POST to the base needs a batch or transaction Bundle")
        out = []
        for entry in bundle.get("entry") or []:
            req = entry.get("request") or {}
            method, url = (req.get("method") or "GET").upper(), req.get("url") or ""
            resource = entry.get("resource")
            if method == "POST" and isinstance(resource, dict):
                resource = {**resource, "id": resource.get("id") or str(uuid.uuid4())}
                method, url = "PUT", f"{resource['resourceType']}/{resource['id']}"
            status, body = self._local(method, url, resource)
            item: dict[str, Any] = {"response": {"status": f"{status} {'OK' if status < 300 else 'Error'}"}}
            if body is not None:
                item["resource"] = body
            out.append(item)
        return {"resourceType": "Bundle", "type": f"{kind}-response", "entry": out}

    def _local(self, method: str, relative: str, body: Any) -> tuple[int, Any]:
        """One FHIR interaction on the store: (status, JSON body)."""
        path, _, query = relative.lstrip("/").partition("?")
        parts = [p for p in path.split("/") if p]
        try:
            if method == "GET" and len(parts) == 2:
                found = self.resources.get((parts[0], parts[1]))
                return (200, found) if found else (404, _outcome("not-found", f"{parts[0]}/{parts[1]} is not here"))
            if method == "GET" and len(parts) == 1:
                return 200, self.search(parts[0], parse_qsl(query, keep_blank_values=True))
            if method == "PUT" and len(parts) == 2 and isinstance(body, dict):
                if body.get("resourceType") != parts[0] or body.get("id") != parts[1]:
                    return 400, _outcome("invalid", "the resource's type and id must match the URL")
                return 200, self.put(body)
        except SearchError as exc:
            return 400, _outcome("not-supported", str(exc))
        return 400, _outcome("not-supported", f"dev-fhir does not support {method} {path}")

    # ------------------------------------------------------------------ SMART
    def new_launch(self, patient: str, encounter: str | None = None, app_context: str | None = None) -> str:
        launch = secrets.token_urlsafe(16)
        with self.lock:
            self.launches[launch] = _Launch(patient, encounter, app_context)
        return launch

    def _launch_service(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError:
            body = None
        params = body.get("parameters") if isinstance(body, dict) else None
        patient = params.get("patient") if isinstance(params, dict) else None
        if not isinstance(patient, str) or not patient:
            return _json({"error": "invalid_request", "error_description": "parameters.patient is required"}, 400)
        encounter = params.get("encounter") if isinstance(params.get("encounter"), str) else None
        app_context = params.get("appContext") if isinstance(params.get("appContext"), str) else None
        return _json({"launch_id": self.new_launch(patient, encounter or self.current_encounter(patient),
                                                   app_context)})

    def _smart_configuration(self, request: Request) -> Response:
        # Endpoints on the host the client used: the Sandbox may say localhost, we print 127.0.0.1.
        base = request.host_url.rstrip("/")
        return _json({
            "issuer": base, "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/token", "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"], "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["launch", "openid", "fhirUser", "patient/*.rs", "patient/*.read"],
            "capabilities": ["launch-ehr", "client-public", "context-ehr-patient", "context-ehr-encounter",
                             "permission-patient", "permission-v2"]})

    def _authorize(self, request: Request) -> Response:
        args = request.args
        redirect_uri, state = args.get("redirect_uri"), args.get("state")
        launch = self.launches.get(args.get("launch") or "")
        problems = [name for name, bad in (
            ("response_type", args.get("response_type") != "code"), ("client_id", not args.get("client_id")),
            ("redirect_uri", not redirect_uri), ("state", not state),
            ("aud", not self._is_me(args.get("aud") or "")),
            ("launch", launch is None),
            ("code_challenge", args.get("code_challenge_method") != "S256" or not args.get("code_challenge")),
        ) if bad]
        if problems:
            return Response("dev-fhir /authorize: invalid or missing " + ", ".join(problems) + "\n",
                            status=400, mimetype="text/plain")
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = {"launch": launch, "redirect_uri": redirect_uri, "client_id": args["client_id"],
                                "challenge": args["code_challenge"], "scope": args.get("scope") or "",
                                "expires": time.time() + 300}
        sep = "&" if "?" in redirect_uri else "?"
        return Response(status=302, headers={"Location": redirect_uri + sep + urlencode({"code": code, "state": state})})

    def _is_me(self, aud: str) -> bool:
        """aud names this FHIR base: same port and path, any loopback host name."""
        mine, theirs = urlsplit(self.iss), urlsplit(aud.rstrip("/"))
        try:
            return (theirs.scheme == "http" and is_loopback(theirs.hostname or "")
                    and theirs.port == mine.port and theirs.path == mine.path)
        except ValueError:
            return False

    def _token(self, request: Request) -> Response:
        form = request.form
        with self.lock:
            grant = self.codes.pop(form.get("code") or "", None)   # one use
        if form.get("grant_type") != "authorization_code" or grant is None or grant["expires"] < time.time():
            return _json({"error": "invalid_grant"}, 400)
        if form.get("redirect_uri") != grant["redirect_uri"] or form.get("client_id") != grant["client_id"]:
            return _json({"error": "invalid_grant", "error_description": "redirect_uri or client_id differs"}, 400)
        digest = hashlib.sha256((form.get("code_verifier") or "").encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["challenge"]:
            return _json({"error": "invalid_grant", "error_description": "PKCE verification failed"}, 400)
        launch: _Launch = grant["launch"]
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = launch
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": 3600,
                                "scope": grant["scope"], "patient": launch.patient, "need_patient_banner": True}
        if launch.encounter:
            body["encounter"] = launch.encounter
        if launch.app_context:
            body["appContext"] = launch.app_context
        return _json(body)

    # ------------------------------------------------------------------ WSGI
    def __call__(self, environ, start_response):
        request = Request(environ)
        if request.method == "OPTIONS":
            resp = Response(status=204)
        else:
            resp = self._route(request)
        resp.headers.update(CORS)
        return resp(environ, start_response)

    def _route(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path == "/authorize" and request.method == "GET":
            return self._authorize(request)
        if path == "/token" and request.method == "POST":
            return self._token(request)
        if path == "/fhir/.well-known/smart-configuration":
            return self._smart_configuration(request)
        if path == "/fhir/_services/smart/Launch" and request.method == "POST":
            return self._launch_service(request)
        if path == "/fhir/metadata":
            return _json(_capability(), content_type=FHIR_JSON)
        if path == "/fhir" or path.startswith("/fhir/"):
            auth = request.headers.get("Authorization")
            if auth and (not auth.startswith("Bearer ") or auth[7:] not in self.tokens):
                return _json(_outcome("login", "a token this server did not issue"), 401, FHIR_JSON)
            return self._fhir(request, path[len("/fhir"):].lstrip("/"))
        return Response("dev-fhir: not found (FHIR is under /fhir)\n", status=404, mimetype="text/plain")

    def _fhir(self, request: Request, relative: str) -> Response:
        query = request.query_string.decode()
        if request.method == "POST" and relative.endswith("/_search"):
            form = request.get_data(as_text=True)
            query = "&".join(q for q in (query, form) if q)
            relative, method = relative[: -len("/_search")], "GET"
        else:
            method = request.method
        if self.upstream:
            url = f"{self.upstream}/{relative}" + (f"?{query}" if query else "")
            upstream = requests.request(method, url, data=request.get_data() if method != "GET" else None,
                                        headers={"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}, timeout=60)
            return Response(upstream.content, status=upstream.status_code,
                            content_type=upstream.headers.get("Content-Type", FHIR_JSON))
        body = None
        if method in ("POST", "PUT"):
            try:
                body = json.loads(request.get_data() or b"null")
            except ValueError:
                return _json(_outcome("invalid", "the body is not JSON"), 400, FHIR_JSON)
        if method == "POST" and relative == "":
            try:
                return _json(self.transaction(body if isinstance(body, dict) else {}), 200, FHIR_JSON)
            except SearchError as exc:
                return _json(_outcome("invalid", str(exc)), 400, FHIR_JSON)
        status, answer = self._local(method, relative + (f"?{query}" if query else ""), body)
        return _json(answer, status, FHIR_JSON)


def _capability() -> dict:
    return {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "date": "2026-01-01",
            "fhirVersion": "4.0.1", "format": ["json"], "software": {"name": "cds-service dev-fhir"},
            "rest": [{"mode": "server", "resource": [
                {"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}]}
                for t in ("Patient", "Observation", "Condition", "Encounter", "MedicationRequest",
                          "MedicationAdministration", "MedicationStatement", "AllergyIntolerance", "Procedure",
                          "Medication")]}]}


def _outcome(code: str, text: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


def _json(body: Any, status: int = 200, content_type: str = "application/json") -> Response:
    return Response(json.dumps(body), status=status, content_type=content_type)


class Running:
    """A started dev-fhir (tests use it in a thread; the command serves until interrupted)."""

    def __init__(self, app: DevFhir, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self._server = make_server(host, port, app, threaded=True)
        shown = f"[{host}]" if ":" in host else host
        app.base = f"http://{shown}:{self._server.server_port}"
        self._thread: threading.Thread | None = None

    @property
    def iss(self) -> str:
        return self.app.iss

    def start(self) -> "Running":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        if self._thread:
            self._thread.join(timeout=10)
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()


def run(args) -> int:
    import os
    try:
        check_allowed(args.host, dict(os.environ))
        upstream = args.upstream.rstrip("/") if args.upstream else None
        if upstream and not is_loopback(urlsplit(upstream).hostname or ""):
            raise DevFhirRefused("--upstream must be a loopback FHIR server (this is a local test tool)")
        app = DevFhir(upstream=upstream)
        running = Running(app, args.host, args.port)
    except DevFhirRefused as exc:
        print(f"cds-service dev-fhir: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cds-service dev-fhir: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})",
              file=sys.stderr)
        return 2
    loaded = "proxying " + upstream if upstream else f"{app.load_synthetic()} synthetic patients in memory"
    print(f"dev-fhir (local testing only; approves every SMART authorization): {loaded}", flush=True)
    print(f"  FHIR server for the Sandbox, load-fixtures and fire: {app.iss}", flush=True)
    print(f"  SMART launch service: {app.iss}/_services/smart/Launch", flush=True)
    try:
        running.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
