"""The assessment view's routes (Flask blueprint `smart`, mounted at /smart).

    GET /smart/launch    EHR launch: ?iss=<FHIR base>&launch=<opaque>. Open servers (no SMART
                         configuration, no oauth-uris): ?iss=…&patient=<id> (the CDS Hooks Sandbox
                         sends ?fhirServiceUrl=…&patientId=… for open servers: both accepted).
    GET /smart/callback  OAuth redirect URI: ?code=…&state=…
    GET /smart/view/<tab>  the page (needs that tab's session cookie; issue 21 M1)
    GET /smart/view.css  its stylesheet

The launch and callback end in a 302/303 to a URL without parameters, so the page's URL never
carries a patient id or a code. Every answer is HTML with security headers (see _headers);
every failure is a short page saying what to do, never a stack trace.
"""
from __future__ import annotations

import hmac
import logging
import re
import secrets
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import orjson
from flask import Blueprint, Response, current_app, redirect, request

from ..runtime.errors import CDSError
from ..fhir.allowlist import is_loopback, loggable_url, refusal_reason
from ..logging_setup import log_event, remember_secret
from . import oauth
from .data import administrations, evaluate_for_view, trend_series, trend_start, usable
from .page import CSS, ICON, build, render_message, render_page
from .sessions import SessionStore, new_session_id

log = logging.getLogger("cds_service.smart")

COOKIE = "cds_smart_session"   # launch -> callback (path /smart)
VIEW_COOKIE = "cds_smart_view"  # one per tab: path /smart/view/<tab>, so launches never share one
_TAB = re.compile(r"[A-Za-z0-9_\-]{16,64}")
PENDING_TTL = 300          # seconds between the launch and the callback (issue 21 L5: was 600)
UNUSED_TTL = 120           # a viewing session never opened ends after this (then its full life)
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:*]+")

bp = Blueprint("smart", __name__, url_prefix="/smart")


def _state():
    return current_app.extensions["cds"]


def _store() -> SessionStore:
    return _state().extensions["smart_sessions"]


def _css_url() -> str:
    return request.script_root + "/smart/view.css"


def public_base() -> str:
    return _state().config.public_base_url or request.url_root.rstrip("/")


def _page(status: int, title: str, text: str, hint: str = "") -> Response:
    return Response(render_message(title, text, _css_url(), hint), status=status, mimetype="text/html")


def _expired() -> Response:
    return _page(401, "Session expired",
                 "This assessment session has expired or was not found (sessions end when the EHR's "
                 "access token expires).",
                 "Open the assessment again from the card or the app list in the EHR.")


def cookie_secure() -> bool:
    """Secure unless the service is reached over plain http on loopback. Decided from
    CDS_PUBLIC_BASE_URL when set (issue 21 M2: a reverse proxy on the same host sends a
    loopback Host header while the browser is on https)."""
    public = _state().config.public_base_url
    if public:
        return urlsplit(public).scheme.lower() == "https"
    return not is_loopback(urlsplit(request.host_url).hostname or "")


def _set_cookie(resp: Response, sid: str, max_age: int, *, name: str = COOKIE, path: str = "/smart") -> Response:
    resp.set_cookie(name, sid, max_age=max(1, int(max_age)), path=path, httponly=True,
                    samesite="Lax", secure=cookie_secure())
    return resp


def _open_tab(record: dict, life: float) -> Response:
    """Store a viewing session bound to a new tab id and send the browser to its own URL
    (issue 21 M1). The id in the path picks the session; the cookie, scoped to that path,
    proves it is this browser's. A second launch gets another tab id and another cookie, so
    an open tab never changes patient."""
    sid, tab = new_session_id(), secrets.token_urlsafe(18)
    # Short-lived until the page is first opened (issue 21 L5), then its full life.
    _store().put(sid, {**record, "tab": tab, "unused": True, "life_until": time.time() + life},
                 time.time() + min(life, UNUSED_TTL))
    path = f"/smart/view/{tab}"
    return _set_cookie(redirect(request.script_root + path, 303), sid, life, name=VIEW_COOKIE,
                       path=request.script_root + path)


def _fhir_id(value: Any) -> str | None:
    return value if isinstance(value, str) and _FHIR_ID.fullmatch(value) and value not in (".", "..") else None


def _app_context(raw: Any) -> dict | None:
    """The card's appContext (a JSON string naming kind and hookInstance), or None."""
    if not isinstance(raw, str) or len(raw) > 2000:
        return raw if isinstance(raw, dict) else None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def open_read_allowed(iss: str) -> bool:
    """Open (token-less) reading: CDS_SMART_OPEN_SERVERS on, or auto with CDS_AUTH=off; and the
    server on a loopback host or matching an explicit (not '*') CDS_FHIR_ALLOWLIST entry."""
    cfg = _state().config
    if cfg.smart_open_servers == "off" or (cfg.smart_open_servers == "auto" and cfg.auth != "off"):
        return False
    if is_loopback(urlsplit(iss).hostname or ""):
        return True
    from .. import sites
    site_list = sites.smart_allowlist(_state())
    explicit = tuple(e for e in (cfg.fhir_allowlist if site_list is None else site_list) if e.strip() != "*")
    return bool(explicit) and refusal_reason(iss, explicit) is None


@bp.get("/view.css")
def stylesheet() -> Response:
    resp = Response(CSS, mimetype="text/css")
    resp.headers["Cache-Control"] = "public, max-age=3600"
    return resp


@bp.get("/icon.svg")
def icon() -> Response:
    resp = Response(ICON, mimetype="image/svg+xml")
    resp.headers["Cache-Control"] = "public, max-age=86400"
    return resp


class LaunchLimiter:
    """At most `rate` launches per minute per client address (fixed one-minute windows, at
    most 10,000 addresses remembered). In-process: each worker counts its own."""

    def __init__(self, rate: int):
        from cachetools import TTLCache
        self.rate = rate
        self._windows: TTLCache = TTLCache(maxsize=10_000, ttl=60)
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int:
        """0 when this launch may go on, else seconds until it may."""
        if self.rate <= 0:
            return 0
        now = time.monotonic()
        with self._lock:
            start, count = self._windows.get(address, (now, 0))
            if now - start >= 60:
                start, count = now, 0
            if count >= self.rate:
                return max(1, int(60 - (now - start)) + 1)
            self._windows[address] = (start, count + 1)
            return 0


def _limiter() -> LaunchLimiter:
    state = _state()
    limiter = state.extensions.get("smart_launch_limiter")
    if limiter is None:
        limiter = state.extensions.setdefault("smart_launch_limiter", LaunchLimiter(state.config.smart_launch_rate))
    return limiter


@bp.get("/launch")
def launch() -> Response:
    cfg = _state().config
    args = request.args
    wait = _limiter().retry_after(request.remote_addr or "")
    if wait:
        # Before any session row or outbound call (issue 21 L5).
        log_event(log, logging.WARNING, "assessment view: launch rate limit reached")
        resp = _page(429, "Too many launches", "This browser's network address opened the assessment too "
                     "often in the last minute.", "Wait a minute, then open it again from the EHR.")
        resp.headers["Retry-After"] = str(wait)
        return resp
    given = (args.get("iss") or args.get("fhirServiceUrl") or "").strip()
    iss = given.rstrip("/")
    if not iss:
        return _page(400, "Launch incomplete", "The launch URL has no iss (the EHR's FHIR server).",
                     "Open the assessment from the EHR, which adds iss and launch to the URL.")
    from .. import sites  # CDS_SITES: the sites' allowlists, not the global one (review #9)
    site_list = sites.smart_allowlist(_state())
    allowlist = cfg.fhir_allowlist if site_list is None else site_list
    if refusal_reason(iss, allowlist):
        log_event(log, logging.WARNING, "assessment view: iss refused by the allowlist", iss=loggable_url(iss))
        return _page(403, "FHIR server not allowed",
                     "This service is not configured to read data from that EHR's FHIR server.",
                     "An administrator can add it to CDS_FHIR_ALLOWLIST.")
    try:
        server = oauth.discover(iss)
    except oauth.LaunchError as exc:
        log_event(log, logging.WARNING, "assessment view: discovery failed", iss=loggable_url(iss), why=str(exc))
        return _page(502, "EHR not reachable", str(exc), "Try again in a moment.")
    app_context = _app_context(args.get("appContext"))
    if server is None:
        return _open_launch(iss, args, app_context)
    for name, endpoint in (("authorize", server.authorize), ("token", server.token)):
        why = oauth.endpoint_refusal(endpoint, iss, allowlist)
        if why:
            log_event(log, logging.WARNING, "assessment view: SMART endpoint refused", endpoint=name,
                      url=loggable_url(endpoint), why=why)
            return _page(403, "Authorization server not allowed",
                         f"The EHR's {name} endpoint is not on its FHIR server's host and port, and this "
                         "service is not configured to use it.",
                         "An administrator can add it to CDS_FHIR_ALLOWLIST.")
    launch_id = args.get("launch")
    if not launch_id or len(launch_id) > 4096:
        return _page(400, "Launch incomplete", "The EHR's server requires authorization, but the launch URL "
                     "has no launch parameter.", "Open the assessment from the EHR (EHR launch).")
    verifier, challenge = oauth.pkce_pair()
    state_value = secrets.token_urlsafe(24)
    sid = new_session_id()
    redirect_uri = public_base() + "/smart/callback"
    _store().put(sid, {"mode": "pending", "iss": iss, "token_endpoint": server.token, "state": state_value,
                       "verifier": verifier, "redirect_uri": redirect_uri}, time.time() + PENDING_TTL)
    url = oauth.authorize_url(server, client_id=cfg.smart_client_id, redirect_uri=redirect_uri,
                              launch=launch_id, scope=cfg.smart_scopes, state=state_value, aud=given,
                              challenge=challenge)
    log_event(log, logging.INFO, "assessment view: authorizing", iss=loggable_url(iss), via=server.source)
    return _set_cookie(redirect(url, 302), sid, PENDING_TTL)


def _open_launch(iss: str, args, app_context: dict | None) -> Response:
    if not open_read_allowed(iss):
        log_event(log, logging.WARNING, "assessment view: open server refused", iss=loggable_url(iss))
        return _page(403, "Authorization not available",
                     "The EHR's FHIR server offers no SMART authorization, and this service reads open servers "
                     "only in a test set-up (CDS_AUTH=off or CDS_SMART_OPEN_SERVERS=on, loopback or explicitly "
                     "allowlisted servers).")
    patient = _fhir_id(args.get("patient") or args.get("patientId")
                       or (app_context or {}).get("patient"))
    if patient is None:
        return _page(400, "No patient", "The launch named no patient (a patient or patientId parameter, or a "
                     "patient in appContext, is needed with an open FHIR server).")
    ttl = _state().config.smart_session_ttl
    log_event(log, logging.INFO, "assessment view: open server session", iss=loggable_url(iss))
    return _open_tab({"mode": "open", "iss": iss, "patient": patient, "encounter": _fhir_id(args.get("encounter")),
                      "app_context": app_context}, ttl)


@bp.get("/callback")
def callback() -> Response:
    store = _store()
    sid = request.cookies.get(COOKIE)
    record = store.get(sid)
    if record is None or record.get("mode") != "pending":
        return _expired()
    args = request.args
    if args.get("error"):
        store.delete(sid)
        code = args["error"] if _ERROR_CODE.fullmatch(args["error"]) else "unknown"
        log_event(log, logging.INFO, "assessment view: authorization refused", error=code)
        return _page(403, "Access not granted", f"The EHR did not authorize the app ({code}).",
                     "Open the assessment again from the EHR.")
    given = args.get("state") or ""
    if not hmac.compare_digest(given.encode(), str(record["state"]).encode()):
        store.delete(sid)
        log_event(log, logging.WARNING, "assessment view: state mismatch")
        return _page(400, "Launch not recognised",
                     "The answer from the EHR does not belong to this browser's launch (state mismatch).",
                     "Open the assessment again from the EHR.")
    code = args.get("code")
    remember_secret(code)                  # masked verbatim in any log line of this request
    remember_secret(record.get("verifier"))
    if not code or len(code) > 4096:
        store.delete(sid)
        return _page(400, "Launch incomplete", "The EHR's answer has no authorization code.")
    cfg = _state().config
    try:
        token = oauth.exchange_code(record["token_endpoint"], code=code, redirect_uri=record["redirect_uri"],
                                    client_id=cfg.smart_client_id, verifier=record["verifier"])
    except oauth.LaunchError as exc:
        store.delete(sid)
        log_event(log, logging.WARNING, "assessment view: code exchange failed", why=str(exc))
        return _page(502, "Authorization failed", str(exc), "Open the assessment again from the EHR.")
    remember_secret(token["access_token"])
    store.delete(sid)   # one use; a fresh session id after login (no fixation)
    patient = _fhir_id(token.get("patient"))
    if patient is None:
        return _page(400, "No patient in context", "The EHR authorized the app without a patient in context.",
                     "Open the assessment from a patient's chart.")
    try:
        expires_in = int(token.get("expires_in") or cfg.smart_session_ttl)
    except (TypeError, ValueError, OverflowError):  # a list, "abc", NaN, 1e400 (issue 21 L4)
        expires_in = cfg.smart_session_ttl
    life = max(1, min(expires_in, cfg.smart_session_ttl))
    log_event(log, logging.INFO, "assessment view: session started", iss=loggable_url(record["iss"]),
              expires_in=life)
    return _open_tab({"mode": "smart", "iss": record["iss"], "token": token["access_token"],
                      "scope": token.get("scope") if isinstance(token.get("scope"), str) else "",
                      "patient": patient, "encounter": _fhir_id(token.get("encounter")),
                      "app_context": _app_context(token.get("appContext")),
                      "banner": token.get("need_patient_banner") is not False}, life)


@bp.get("/view")
def view_without_tab() -> Response:
    # Before issue 21 the page lived here, on a browser-wide cookie: a second launch switched
    # every open tab to its patient. A bookmark of it now asks for a new launch.
    return _expired()


@bp.get("/view/<tab>")
def view(tab: str) -> Response:
    record = _store().get(request.cookies.get(VIEW_COOKIE)) if _TAB.fullmatch(tab) else None
    if record is None or record.get("mode") not in ("smart", "open") \
            or not hmac.compare_digest(str(record.get("tab", "")).encode(), tab.encode()):
        return _expired()
    if record.pop("unused", False):
        _store().put(request.cookies.get(VIEW_COOKIE), record, float(record.get("life_until") or time.time()))
    from .. import sites
    state = sites.view_state(_state(), record["iss"])  # CDS_SITES: that site's policy and codes
    if state is None:
        return _page(409, "Site not determined", "Several sites with different policies read from this "
                     "EHR's FHIR server, so the assessment cannot say which site's rules apply.",
                     "An administrator can give each site its own FHIR base in the sites file.")
    remember_secret(record.get("token"))
    try:
        ev = evaluate_for_view(state, iss=record["iss"], patient_id=record["patient"],
                               encounter_id=record.get("encounter"), access_token=record.get("token"),
                               scope=record.get("scope"))
    except CDSError as exc:
        log_event(log, logging.WARNING, "assessment view: data not available", status=exc.status)
        return _page(502, "EHR data not available",
                     "The patient's data could not be read from the EHR's FHIR server: " + exc.diagnostics,
                     "If the session is old, open the assessment again from the EHR.")
    if not ev.patient_found():
        return _page(404, "Patient not found", "The EHR's FHIR server has no record of the patient this "
                     "assessment was opened for, so there is nothing to assess.",
                     "Open the assessment again from the patient's chart.")
    resources = usable(ev.data.resources)   # the hooks' tolerant reading (issue 21 L4)
    series = trend_series(resources, ev.assessment, ev.policy, ev.codes)
    doses = administrations(resources, ev.assessment, ev.codes)
    model = build(ev, series=series, doses=doses, start=trend_start(ev.assessment, ev.assessment.now),
                  app_context=record.get("app_context"), open_server=record["mode"] == "open",
                  banner=record.get("banner", True))
    return Response(render_page(model, _css_url()), mimetype="text/html")


@bp.errorhandler(Exception)
def _failure(exc: Exception) -> Response:
    # Only the class: an exception text could quote a token or patient data.
    log.error("assessment view failed", extra={"fields": {"error": type(exc).__name__, "path": request.path}})
    return _page(500, "Assessment not available", "Something went wrong while preparing the assessment.",
                 "Try again; if it persists, tell the CDS team (the event was logged).")


@bp.after_request
def _headers(resp: Response) -> Response:
    cfg = _state().config
    ehr = [o for o in cfg.cors_origins if _ORIGIN.fullmatch(o)]     # the configured EHR origins
    ancestors = ["'self'", *ehr, *cfg.smart_frame_ancestors]
    resp.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'none'; base-uri 'none'; "
        "frame-ancestors " + " ".join(dict.fromkeys(ancestors)))
    if len(ancestors) == 1:
        resp.headers["X-Frame-Options"] = "SAMEORIGIN"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint not in ("smart.stylesheet", "smart.icon"):
        resp.headers["Cache-Control"] = "no-store"
    return resp
