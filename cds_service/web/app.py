"""The Flask application: CDS Hooks 2.0 protocol layer.

Request flow, one way: parse + validate -> (auth) -> service handler (data ->
assessment -> cards) -> JSON. Every error is a FHIR OperationOutcome with CORS headers.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..runtime import metrics
from . import schemas
from .. import security, sites, smart, storage
from ..config import Config, load_config
from ..fhir import data
from ..fhir.bundle import bundle_resources
from ..fhir.codes import load_codes
from ..fhir.typed import decode_hook_body, observation_keys
from ..runtime.errors import BadRequest, CDSError, NotFound, operation_outcome
from ..evaluation.state import AppState, HookCall
from ..hooks import build_registry
from ..logging_setup import bounded, configure_logging, hide_patient_id, log_event, redact_value
from ..logic.policy import Policy
from ..logic.scope import loosened_keys
from .schemas import first_error
from ..storage import StorageError
from ..version import full_version
from .environ import ACCESS_FIELDS_KEY, BODY_ERROR_KEY

log = logging.getLogger("cds_service.app")

JSON_TYPES = ("application/json", "application/fhir+json")
ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, Accept"


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status=status, mimetype="application/json")


def error_response(status: int, diagnostics: str, expression: list[str] | None = None) -> Response:
    return json_response(operation_outcome(status, diagnostics, expression=expression), status)


def cors_headers(cfg: Config, origin: str | None) -> list[tuple[str, str]]:
    """The CORS headers every answer carries; one implementation for Flask (after_request)
    and the ASGI front's own answers (serving.Front: /healthz, 401, 408, 413)."""
    headers = []
    if "*" in cfg.cors_origins:
        headers.append(("Access-Control-Allow-Origin", "*"))
    elif origin and origin in cfg.cors_origins:
        headers += [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
    headers += [("Access-Control-Allow-Methods", ALLOWED_METHODS),
                ("Access-Control-Allow-Headers", ALLOWED_HEADERS),
                ("Access-Control-Max-Age", "600")]
    return headers


def healthz_payload() -> dict[str, str]:
    # Liveness only: the process answers. Dependencies are /readyz's business.
    return {"status": "ok", "version": full_version()}


def _state() -> AppState:
    from flask import current_app
    return current_app.extensions["cds"]


def parse_json_body(typed_keys: frozenset[str] = frozenset()) -> Any:
    """The request body as JSON, or a 400/413/415 CDSError. `typed_keys`: prefetch keys
    searching Observations, decoded into typed structs (fhir/typed.py, the hook POST)."""
    ctype = (request.mimetype or "").lower()
    if ctype and ctype not in JSON_TYPES:
        raise CDSError(f"Content-Type must be application/json or application/fhir+json, not {ctype!r}.",
                       status=415)
    limit = _state().config.max_body_bytes
    body_error = request.environ.get(BODY_ERROR_KEY)  # set by serving.ServingMiddleware
    if body_error:
        status, message = body_error
        raise CDSError(message, status=status)
    if request.content_length is not None and request.content_length > limit:
        raise CDSError(f"Request body exceeds the {limit}-byte limit.", status=413)
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise CDSError(f"Request body exceeds the {limit}-byte limit.", status=413) from None
    if len(raw) > limit:
        raise CDSError(f"Request body exceeds the {limit}-byte limit.", status=413)
    if not raw.strip():
        raise BadRequest("Request body is empty; a JSON object is required.")
    if typed_keys:
        body = decode_hook_body(raw, typed_keys)
        if body is not None:
            return body
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Request body is not valid JSON: {str(exc)[:200]}") from None


def validate_hook_request(body: Any, service) -> dict:
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.")
    problem = first_error("request", body)
    if problem:
        where, message = problem
        raise BadRequest(f"Invalid hook request at {where}: {message}", expression=[where])
    if body["hook"] != service.hook:
        raise BadRequest(f"Service {service.id!r} answers hook {service.hook!r}, not {body['hook'][:64]!r}.",
                         expression=["hook"])
    problem = first_error(service.context_schema, body["context"], prefix="context")
    if problem:
        where, message = problem
        raise BadRequest(f"Invalid {service.hook} context at {where}: {message}", expression=[where])
    token = body["fhirAuthorization"].get("access_token") if isinstance(body.get("fhirAuthorization"), dict) else None
    if isinstance(token, str) and not header_safe(token):
        # Issue 21 M3: `€` or a line break cannot go into an Authorization header (was a 500).
        raise BadRequest("fhirAuthorization.access_token holds characters an HTTP header cannot carry.",
                         expression=["fhirAuthorization.access_token"])
    ctx = body["context"]
    if "selections" in ctx:
        # The same reader the order check uses, so a selection that passes here is checked there.
        draft_ids = {f"{r['resourceType']}/{r.get('id')}" for r in bundle_resources(ctx["draftOrders"])}
        missing = [s for s in ctx["selections"] if s not in draft_ids]
        if missing:
            raise BadRequest(f"context.selections names orders not in context.draftOrders: {missing[:10]}",
                             expression=["context.selections"])
    return body


def header_safe(value: str) -> bool:
    """An HTTP field value as sent (RFC 9110 §5.5): tab, visible ASCII, space and obs-text
    (0x80-0xFF, sent as Latin-1). Anything else (`€`, CR/LF, NUL, DEL) is refused."""
    return all(c == "\t" or " " <= c <= "~" or "\x80" <= c <= "\xff" for c in value)


def _service_or_404(state: AppState, service_id: str):
    service = state.registry.get(service_id)
    if service is None:
        raise NotFound(f"Unknown CDS service {service_id!r}.")
    return service


def answer_hook(state: AppState, service_id: str) -> dict:
    """The hook POST's answer (200), or a CDSError: one implementation for the Flask view and
    the ASGI front (serving.Front, issue 25). Runs under a request context (`request`, `g`),
    after the caller is known (security/sites) and `g.t0` is set."""
    service = _service_or_404(state, service_id)
    # The Observation searches decoded typed (fhir/typed.py), unless the request is captured
    # (capture.py writes the body as sent).
    body = parse_json_body(frozenset() if "capture" in state.extensions
                           else observation_keys(tuple(service.prefetch.items())))
    security.note_request_tokens(body)  # fhirAuthorization.access_token: never logged
    if "capture" in state.extensions:  # issue 23: CDS_CAPTURE_DIR (capture.py, after the answer)
        g.cds_capture_body = body
    if isinstance(body, dict) and isinstance(body.get("hookInstance"), str):
        context = body.get("context")
        g.hook_instance = hide_patient_id(body["hookInstance"][:256],   # for log lines only
                                          context.get("patientId") if isinstance(context, dict) else None)
    status = 500
    try:
        validate_hook_request(body, service)
        call_state, service = sites.gate(state, service, body)  # unchanged without CDS_SITES
        result = service.handler(HookCall(service=service, body=body, state=call_state))
        status = 200
        return result
    except (CDSError, RecursionError) as exc:  # RecursionError: answered 400 by error_answer
        status = getattr(exc, "status", 400)
        raise
    finally:
        elapsed = time.perf_counter() - g.t0
        fields = {"service": service.id, "hookInstance": getattr(g, "hook_instance", None), "status": status,
                  "duration_ms": round(elapsed * 1000, 2),
                  **({"site": g.cds_site_id} if "cds_site_id" in g else {})}  # the caller's own (issue 24)
        access = request.environ.get(ACCESS_FIELDS_KEY)
        if access is None:  # no access line will be written (CDS_ACCESS_LOG=false, the test client)
            log_event(log, logging.INFO, "hook call", **fields)
        else:  # one line per call (issue 25): the access line; redacted now, while this request's secrets are known
            access.update(bounded(redact_value(fields)))
        metrics.hook_call(service.id, status, elapsed)


Answer = tuple[int, Any, list[tuple[str, str]]]  # status, JSON body, extra headers


def error_answer(state: AppState, exc: BaseException) -> Answer:
    """The OperationOutcome answer to an error raised while serving a request, with its
    logging: one implementation for Flask's error handlers and the ASGI front's hook path."""
    if isinstance(exc, CDSError):
        extra = [("Retry-After", str(exc.retry_after))] if getattr(exc, "retry_after", None) else []
        return exc.status, exc.outcome(), extra  # Retry-After: ServiceUnavailable (audit store down)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        if status == 404:
            return 404, operation_outcome(404, f"No such endpoint: {request.path}"), []
        if status == 405:
            # Issue 21: GET on an unknown service id was 405 (README: 404), and every 405 listed
            # GET, POST, OPTIONS, even the method it refused.
            service_id = (request.view_args or {}).get("service_id")
            if service_id is None and request.path.startswith("/cds-services/"):
                service_id = request.path[len("/cds-services/"):].split("/", 1)[0]
            if service_id is not None and state.registry.get(service_id) is None:
                return 404, operation_outcome(404, f"Unknown CDS service {service_id[:100]!r}."), []
            allowed = sorted(set(getattr(exc, "valid_methods", None) or ()) | {"OPTIONS"})
            return (405, operation_outcome(405, f"Method {request.method} is not allowed on {request.path}."),
                    [("Allow", ", ".join(allowed))])
        if status == 413:
            return 413, operation_outcome(413, f"Request body exceeds the {state.config.max_body_bytes}-byte limit."), []
        return status, operation_outcome(status, exc.description or exc.name), []
    if isinstance(exc, RecursionError):
        # orjson parses up to 1,024 levels, deeper than Python code (jsonschema's error
        # messages, recursive walks) can go: pathological input, not a fault of ours.
        log.warning("request nested too deeply", exc_info=exc, extra={"fields": {"path": request.path}})
        return 400, operation_outcome(400, "Request JSON is nested too deeply."), []
    hook_instance = getattr(g, "hook_instance", None)
    log.error("unhandled error", exc_info=exc,
              extra={"fields": {"hookInstance": hook_instance, "path": request.path}})
    return 500, operation_outcome(500, "Internal error; the event was logged"
                                  + (f" with hookInstance {hook_instance}." if hook_instance else ".")), []


def as_response(answer: Answer) -> Response:
    status, body, extra = answer
    resp = json_response(body, status)
    for name, value in extra:
        resp.headers[name] = value
    return resp


def _governance_at_start(policy: Policy) -> None:
    """§19.14: name the silent/disabled switches and warn when the clinical review is overdue
    (/readyz stays green). An unknown card kind in a switch is a PolicyError: a typo must not
    leave a kind the committee meant to silence reaching the EHR."""
    from datetime import datetime, timezone

    from ..hooks import governance
    from ..cards.vocabulary import CARD_KINDS
    from ..logic.policy import PolicyError
    for key in ("cards.disabled_kinds", "cards.silent_kinds"):
        unknown = sorted(set(policy[key]) - set(CARD_KINDS))
        if unknown:
            raise PolicyError(f"policy key {key!r}: unknown card kind(s) {unknown} (known: {sorted(CARD_KINDS)})")
    if policy["cards.silent"] or policy["cards.silent_kinds"] or policy["cards.disabled_kinds"]:
        log.warning("cards withheld by policy (governance)", extra={"fields": {
            "cards.silent": policy["cards.silent"], "cards.silent_kinds": policy["cards.silent_kinds"],
            "cards.disabled_kinds": policy["cards.disabled_kinds"], "policy_source": policy.source}})
    warning = governance.review_warning(policy, datetime.now(timezone.utc).date())
    if warning:
        log.warning(warning, extra={"fields": {"governance.owner": policy["governance.owner"],
                                               "governance.review_by": policy["governance.review_by"]}})


def create_app(config: Config | dict[str, Any] | None = None) -> Flask:
    cfg = config if isinstance(config, Config) else load_config(config)
    configure_logging(cfg.log_level)
    app = Flask("cds_service")
    # Werkzeug enforces this while streaming the body, so a huge upload is cut off early.
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    policy = Policy.load(cfg.policy)
    # Clinical rules §1a: a scope key that differs from its default is never silent.
    for key, value in loosened_keys(policy).items():
        log.warning("policy scope key differs from its default", extra={"fields": {
            "key": key, "value": value, "default": Policy.default()[key],
            "policy_source": policy.source}})
    _governance_at_start(policy)
    codes = load_codes(policy["codes.extra_file"])  # a bad extra code file fails at start, not per call
    state = AppState(config=cfg, policy=policy, registry=build_registry(codes))
    app.extensions["cds"] = state
    # Layers that attach to the app, each in its own module.
    sites.prepare(state)  # CDS_SITES (issue 24): parsed before the security layer, which it replaces
    security.init_app(app, state)
    data.init_app(app, state)
    storage.init_app(app, state)
    sites.init_app(app, state)  # needs the storage layer (the accepted sites file is shared there)
    _log_startup(state)
    smart.init_app(app, state)  # the assessment view (SMART app, /smart/...)
    from . import capture  # issue 23: CDS_CAPTURE_DIR, pseudonymised requests for `replay`
    capture.init_app(app, state)
    from .docs_page import bp as docs_blueprint  # the rule page each card's source.url opens
    app.register_blueprint(docs_blueprint)
    from .terminology import bp as terminology_blueprint  # issue 23: our code systems resolve
    from ..cards.terminology import check_policy as check_terminology_policy
    check_terminology_policy(policy)
    app.register_blueprint(terminology_blueprint)
    from .docs_page.source_attributes import bp as attributes_blueprint  # issue 23: HTI-1 / FDA basis
    app.register_blueprint(attributes_blueprint)

    @app.before_request
    def _start() -> Response | None:
        g.t0 = time.perf_counter()
        if request.method == "OPTIONS":
            return Response(status=204)  # preflight: never authenticated (CORS headers added below)
        return None

    @app.after_request
    def _cors(resp: Response) -> Response:
        for name, value in cors_headers(state.config, request.headers.get("Origin")):
            if name == "Vary":
                resp.headers.add(name, value)
            else:
                resp.headers[name] = value
        return resp

    @app.errorhandler(CDSError)
    def _cds_error(exc: CDSError) -> Response:
        return as_response(error_answer(state, exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return as_response(error_answer(state, exc))

    @app.errorhandler(RecursionError)
    def _too_deep(exc: RecursionError) -> Response:
        return as_response(error_answer(state, exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        return as_response(error_answer(state, exc))

    @app.get("/healthz")
    def healthz() -> Response:
        # Served by the ASGI front in the event loop under `serve` (never behind a thread).
        return json_response(healthz_payload())

    @app.get("/readyz")
    def readyz() -> Response:
        ready, checks = readiness(state)
        body = {"status": "ready" if ready else "unavailable", "checks": checks, "version": full_version()}
        if not ready:
            body["reason"] = "; ".join(f"{name}: {result}" for name, result in checks.items() if result != "ok")
        resp = json_response(body, 200 if ready else 503)
        if not ready:
            resp.headers["Retry-After"] = "5"
        return resp

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        refusal = _metrics_refusal(state.config)
        if refusal is not None:
            return refusal
        payload, content_type = metrics.exposition()
        return Response(payload, status=200, content_type=content_type)

    @app.get("/cds-services")
    def discovery() -> Response:
        site_view = sites.discovery_body(state)  # None without CDS_SITES
        return json_response(site_view if site_view is not None else state.registry.discovery())

    @app.post("/cds-services/<service_id>")
    def call_service(service_id: str) -> Response:
        # Under `serve` the ASGI front answers this route itself (serving.Front, issue 25)
        # with the same answer_hook; this view serves the WSGI entry point and the tests.
        return json_response(answer_hook(state, service_id))

    @app.post("/cds-services/<service_id>/feedback")
    def feedback(service_id: str) -> Response:
        service = _service_or_404(state, service_id)
        body = parse_json_body()
        if not isinstance(body, dict):
            raise BadRequest("Feedback body must be a JSON object.")
        items = body["feedback"] if isinstance(body.get("feedback"), list) else [body]
        if "feedback" in body and not isinstance(body["feedback"], list):
            raise BadRequest("feedback must be an array of Feedback objects.", expression=["feedback"])
        if not items:
            raise BadRequest("feedback must hold at least one item.", expression=["feedback"])
        for index, item in enumerate(items):
            where = f"feedback[{index}]" if "feedback" in body else "(feedback)"
            if not isinstance(item, dict):
                raise BadRequest(f"Feedback item {where} must be an object.", expression=[where])
            problem = first_error("feedback#/$defs/item", item)
            if problem:
                loc, message = problem
                raise BadRequest(f"Feedback item {where} is invalid at {loc}: {message}", expression=[where])
        sites.check_feedback(state, items)  # CDS_SITES: only cards issued to the caller's site
        store = state.extensions.get("feedback_store")
        result = store(service, items) if store else {"received": len(items)}
        for item in items:
            metrics.feedback(service.id, item.get("outcome"))
        return json_response({"status": "ok", **result})

    return app


# --- issue 14 part B: start-up line, readiness, /metrics access --------------------------------

def _log_startup(state: AppState) -> None:
    """The start-up log line (with the version), and the schemas compiled now so that a
    missing or broken schema shows at start (and in /readyz) rather than on the first call.
    Nothing here may stop the worker from booting."""
    try:
        schemas.compile_all()
        schema_state = "ok"
    except Exception as exc:  # reported by /readyz; the worker still boots
        schema_state = f"failed: {exc}"
        log.error("JSON schemas could not be compiled", extra={"fields": {"error": str(exc)}})
    log_event(log, logging.INFO, "cds-service started", version=full_version(), auth=state.config.auth,
              env=state.config.env, policy=state.policy.source, schemas=schema_state,
              info_repeat_hours=state.policy["cards.info_repeat_hours"],
              services=[service.id for service in state.registry])


def _readiness_failed(check: str, exc: Exception) -> None:
    """/readyz is unauthenticated (review #18): its body says which check failed, the log why."""
    log.warning("readiness check failed", extra={"fields": {"check": check, "error": str(exc)[:300]}})


def readiness(state: AppState) -> tuple[bool, dict[str, str]]:
    """(ready, check -> "ok" or the reason). The database check is a real write (see
    Storage.check_writable); policy and codes loaded; schemas compiled."""
    checks: dict[str, str] = {}
    store = state.extensions.get("storage")
    if store is None:
        checks["database"] = "not configured"
    else:
        try:
            store.check_writable()
            checks["database"] = "ok"
        except StorageError as exc:  # the cause (host, user, path) goes to the log, not the body
            _readiness_failed("database", exc)
            text = str(exc).lower()  # a fixed phrase per known cause: no host, user or path
            cause = next((c for k, c in (("readonly", "readonly"), ("read-only", "readonly"), ("locked", "locked"),
                                         ("disk", "disk full"), ("full", "disk full")) if k in text), "the log says why")
            checks["database"] = f"not writable ({cause})"
        writer = getattr(store, "writer", None)
        failing = getattr(writer, "failing", None)
        if failing and checks["database"] == "ok":
            # Issue 21 M6: a full disk let the one-row check pass while audit batches failed.
            # Review #18: the writer's error text goes to the log, not the unauthenticated body.
            _readiness_failed("database", RuntimeError(failing))
            checks["database"] = (f"audit writer failing ({writer.waiting} rows waiting, "
                                  f"{writer.dropped} lost; the log says why)")
    replay = state.extensions.get("replay_store")
    if hasattr(replay, "check"):  # a jti store outside the database (Redis, issue 16)
        try:
            replay.check()
            checks["replay_store"] = "ok"
        except Exception as exc:  # ReplayStoreUnavailable
            _readiness_failed("replay_store", exc)
            checks["replay_store"] = "unavailable (the log says why)"
    checks["policy"] = "ok" if state.policy is not None else "not loaded"
    checks.update(sites.readiness(state))  # every site's policy file and keys (issue 24)
    try:
        load_codes(state.policy["codes.extra_file"])
        checks["codes"] = "ok"
    except Exception as exc:  # CodeDataError, or a file gone since start
        _readiness_failed("codes", exc)
        checks["codes"] = "not loaded (the log says why)"
    try:
        schemas.compile_all()
        checks["schemas"] = "ok"
    except Exception as exc:
        _readiness_failed("schemas", exc)
        checks["schemas"] = "not compiled (the log says why)"
    # "degraded" (one site's keys, sites/__init__.py) is reported, not a reason to leave rotation.
    return all(v == "ok" or v.startswith("degraded") for v in checks.values()), checks


_LOOPBACK = ("127.", "::1", "::ffff:127.")
_PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def _metrics_refusal(cfg: Config) -> Response | None:
    """None when this caller may read /metrics; else the answer to give.

    - CDS_METRICS_ENABLED=false: 404, as if the endpoint did not exist.
    - CDS_METRICS_TOKEN set: every caller needs `Authorization: Bearer <token>` (401).
    - otherwise only loopback callers, and only without proxy headers: a reverse proxy on
      the same host makes every outside caller look like loopback (403)."""
    import hmac
    if not cfg.metrics_enabled:
        return error_response(404, f"No such endpoint: {request.path}")
    if cfg.metrics_token:
        scheme, _, given = (request.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), cfg.metrics_token.encode()):
            return None
        return error_response(401, "GET /metrics needs the metrics bearer token (CDS_METRICS_TOKEN).")
    remote = request.remote_addr or ""
    if remote.startswith(_LOOPBACK) and not any(h in request.headers for h in _PROXY_HEADERS):
        return None
    return error_response(403, "GET /metrics is open to loopback callers only; set CDS_METRICS_TOKEN "
                          "to scrape it from elsewhere (see README, Metrics).")

