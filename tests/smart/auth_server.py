"""A small SMART authorization server for the tests, in front of the Medplum FHIR router.

    <base>/fhir/...                           FHIR, proxied to the Medplum server; every request
                                              needs a Bearer token this server issued (except in
                                              "open" mode and for /metadata)
    <base>/fhir/.well-known/smart-configuration   (mode "smart-configuration")
    <base>/fhir/metadata                      CapabilityStatement; with the oauth-uris extension
                                              in mode "oauth-uris"
    <base>/authorize                          checks the request (client, redirect URI, aud, scope,
                                              launch, PKCE S256) and redirects with a code at once
                                              (the "user" always approves)
    <base>/token                              exchanges a code once, checking PKCE and redirect URI

Everything it saw is kept in `.seen` for the tests to assert on. Not for any real use.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

CLIENT_ID = "cds-coagulopathy-view"


@dataclass
class Launch:
    patient: str
    encounter: str | None = None
    app_context: str | None = None


@dataclass
class Seen:
    authorize: list[dict] = field(default_factory=list)
    token: list[dict] = field(default_factory=list)
    fhir_auth: list[str | None] = field(default_factory=list)   # Authorization header per FHIR call
    discovery: list[str] = field(default_factory=list)


class AuthServer:
    def __init__(self, fhir_base: str, mode: str = "smart-configuration"):
        self.fhir_base = fhir_base.rstrip("/")
        self.mode = mode                      # smart-configuration | oauth-uris | open
        self.launches: dict[str, Launch] = {}
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, str] = {}      # token -> patient
        self.expires_in = 3600
        self.need_banner = True
        self.seen = Seen()
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.base = f"http://127.0.0.1:{self._server.server_port}"
        self.iss = self.base + "/fhir"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "AuthServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    def reset(self, mode: str = "smart-configuration") -> None:
        self.mode = mode
        self.expires_in = 3600
        self.need_banner = True
        self.seen = Seen()

    def new_launch(self, patient: str, app_context: str | None = None) -> str:
        launch = secrets.token_urlsafe(12)
        self.launches[launch] = Launch(patient, app_context=app_context)
        return launch

    # ------------------------------------------------------------------ WSGI
    def wsgi(self, environ, start_response):
        request = Request(environ)
        path = request.path
        if path == "/authorize":
            resp = self._authorize(request)
        elif path == "/token" and request.method == "POST":
            resp = self._token(request)
        elif path == "/fhir/.well-known/smart-configuration":
            self.seen.discovery.append(path)
            resp = self._smart_configuration()
        elif path == "/fhir/metadata":
            self.seen.discovery.append(path)
            resp = self._metadata()
        elif path.startswith("/fhir/") or path == "/fhir":
            resp = self._proxy(request)
        else:
            resp = Response("not found", status=404)
        return resp(environ, start_response)

    def _json(self, body, status=200) -> Response:
        import json
        return Response(json.dumps(body), status=status, mimetype="application/json")

    def _smart_configuration(self) -> Response:
        if self.mode != "smart-configuration":
            return Response("not found", status=404)
        return self._json({
            "authorization_endpoint": self.base + "/authorize", "token_endpoint": self.base + "/token",
            "capabilities": ["launch-ehr", "client-public", "context-ehr-patient", "permission-v2"],
            "code_challenge_methods_supported": ["S256"], "grant_types_supported": ["authorization_code"],
            "scopes_supported": ["launch", "openid", "fhirUser", "patient/*.rs"],
            "response_types_supported": ["code"]})

    def _metadata(self) -> Response:
        cap = {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
               "fhirVersion": "4.0.1", "format": ["json"], "rest": [{"mode": "server"}]}
        if self.mode == "oauth-uris":
            cap["rest"][0]["security"] = {"extension": [{
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": "authorize", "valueUri": self.base + "/authorize"},
                              {"url": "token", "valueUri": self.base + "/token"}]}]}
        return self._json(cap)

    def _authorize(self, request: Request) -> Response:
        args = request.args.to_dict()
        self.seen.authorize.append(args)
        problems = []
        if args.get("response_type") != "code":
            problems.append("response_type")
        if args.get("client_id") != CLIENT_ID:
            problems.append("client_id")
        if args.get("code_challenge_method") != "S256" or len(args.get("code_challenge", "")) != 43:
            problems.append("pkce")
        if args.get("aud") != self.iss:
            problems.append("aud")
        if "launch" not in (args.get("scope") or "").split():
            problems.append("scope")
        launch = self.launches.get(args.get("launch", ""))
        if launch is None:
            problems.append("launch")
        if problems or not args.get("redirect_uri") or not args.get("state"):
            return Response("invalid request: " + ",".join(problems), status=400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": args["code_challenge"], "redirect_uri": args["redirect_uri"],
                            "launch": launch, "scope": args.get("scope")}
        query = urlencode({"code": code, "state": args["state"]})
        return Response(status=302, headers={"Location": f"{args['redirect_uri']}?{query}"})

    def _token(self, request: Request) -> Response:
        form = request.form.to_dict()
        self.seen.token.append({k: v for k, v in form.items()})
        grant = self.codes.pop(form.get("code", ""), None)   # one use
        if form.get("grant_type") != "authorization_code" or grant is None:
            return self._json({"error": "invalid_grant"}, 400)
        if form.get("redirect_uri") != grant["redirect_uri"] or form.get("client_id") != CLIENT_ID:
            return self._json({"error": "invalid_grant"}, 400)
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not secrets.compare_digest(challenge, grant["challenge"]):
            return self._json({"error": "invalid_grant", "error_description": "PKCE verification failed"}, 400)
        token = "tok-" + secrets.token_urlsafe(24)
        launch: Launch = grant["launch"]
        self.tokens[token] = launch.patient
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in,
                "scope": grant["scope"], "patient": launch.patient, "need_patient_banner": self.need_banner,
                "issued_at": int(time.time())}
        if launch.app_context:
            body["appContext"] = launch.app_context
        return self._json(body)

    def _proxy(self, request: Request) -> Response:
        auth = request.headers.get("Authorization")
        self.seen.fhir_auth.append(auth)
        if self.mode != "open":
            token = auth[7:] if auth and auth.startswith("Bearer ") else None
            if token not in self.tokens:
                return self._json({"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "login", "diagnostics": "no valid token"}]}, 401)
        sub = request.path[len("/fhir"):]
        url = self.fhir_base + sub + (("?" + request.query_string.decode()) if request.query_string else "")
        headers = {k: v for k, v in request.headers.items() if k in ("Accept", "Content-Type")}
        upstream = requests.request(request.method, url, data=request.get_data(), headers=headers, timeout=60)
        return Response(upstream.content, status=upstream.status_code,
                        content_type=upstream.headers.get("Content-Type", "application/fhir+json"))
