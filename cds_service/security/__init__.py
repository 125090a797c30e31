"""CDS client authentication (JWT) and per-request token hygiene, attached to the Flask app.

- CDS_AUTH=required: every hook call and feedback POST needs `Authorization: Bearer <JWT>`
  (validated by tokens.TokenValidator); discovery too when CDS_DISCOVERY_OPEN=false.
  A failure is a 401 with a generic OperationOutcome; the reason goes to the DEBUG log.
- CDS_AUTH=off: nothing is checked, and a WARNING is logged at start.
- CORS preflights (OPTIONS) and /healthz are never authenticated.
- CDS_ENV=production with CDS_AUTH=off refuses to start unless
  CDS_ALLOW_INSECURE_PRODUCTION=true (`check_startup`).
- Whatever the mode, the request's bearer credential and fhirAuthorization.access_token are
  masked verbatim from every log line and error body for the life of the request.

Contract for other layers: `client_identity()` is the verified caller (iss, jti, kid,
tenant) or None; it never holds the token, so audit rows may store it. A shared jti store
replaces the in-process one through `state.extensions["replay_store"]` (see replay.py).
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, request

from ..runtime import metrics
from ..config import Config, ConfigError
from ..runtime.errors import ServiceUnavailable, Unauthorized
from ..logging_setup import forget_secrets, log_event, remember_secret
from .jwks import JwksClient
from .replay import InMemoryReplayStore, ReplayStoreUnavailable
from .tokens import AuthError, ClientIdentity, TokenValidator
from .trust import ALG_KEY_TYPES, TrustedIssuer, load_trust_file

log = logging.getLogger("cds_service.security")

# Flask endpoints (web/app.py view names) that always need a token when auth is required.
PROTECTED_ENDPOINTS = frozenset({"call_service", "feedback"})
DISCOVERY_ENDPOINT = "discovery"


def check_startup(cfg: Config) -> dict[str, TrustedIssuer] | None:
    """Refuse unsafe or broken security configuration with a clear ConfigError.

    Returns the trusted issuers when auth is required, else None."""
    if cfg.sites:
        return None  # the sites file names the issuers; cds_service/sites authenticates every call
    if cfg.env == "production" and cfg.auth == "off" and not cfg.allow_insecure_production:
        raise ConfigError(
            "refusing to start in production with CDS_AUTH=off. Set CDS_AUTH=required and "
            "CDS_TRUSTED_ISSUERS (see README, Security), or set CDS_ALLOW_INSECURE_PRODUCTION=true "
            "to override (never with real patient data).")
    if cfg.auth != "required":
        return None
    bad = [a for a in cfg.jwt_algorithms if a not in ALG_KEY_TYPES]
    if bad or not cfg.jwt_algorithms:
        raise ConfigError(f"CDS_JWT_ALGORITHMS may list only asymmetric algorithms "
                          f"{sorted(ALG_KEY_TYPES)}; got {list(cfg.jwt_algorithms)}")
    if not 60 <= cfg.jwt_max_lifetime <= 86400:
        raise ConfigError("CDS_JWT_MAX_LIFETIME must be between 60 and 86400 seconds")
    return load_trust_file(cfg.trusted_issuers)


def invoked_url(cfg: Config, base_url: str | None = None, path: str | None = None) -> str:
    """The URL the client called, which the JWT `aud` must equal (notes §11 step 6).

    `base_url`/`path` are given by the ASGI front (serving.Front), which checks the JWT
    before Flask runs; without them the current Flask request's are used."""
    path = request.path if path is None else path
    if cfg.public_base_url:
        return cfg.public_base_url + path
    return request.base_url if base_url is None else base_url


# Set in the WSGI environ by the ASGI front once it has checked the JWT on the headers,
# before reading the body: the Flask hook then takes the identity from it instead of
# validating the token a second time (which the replay check would refuse).
FRONT_AUTH_KEY = "cds.front_auth"
FRONT_SITE_KEY = "cds.front_site"  # with CDS_SITES (issue 24): the calling site, found the same way


def needs_token(cfg: Config, endpoint: str | None) -> bool:
    """Whether a call to this Flask endpoint needs a JWT (CDS_AUTH=required)."""
    if cfg.auth == "off":
        return False
    return endpoint in PROTECTED_ENDPOINTS or (endpoint == DISCOVERY_ENDPOINT and not cfg.discovery_open)


def authenticate(validator: TokenValidator, header: str | None, url: str, path: str) -> ClientIdentity:
    """Validate the request's `Authorization` header; the one implementation of the JWT
    check, called by the Flask hook below and by the ASGI front (serving.Front).

    Raises Unauthorized (401, generic body; the reason goes to the DEBUG log) or
    ServiceUnavailable (503: the jti cannot be recorded, so the call is refused)."""
    try:
        return validator.validate(header, url)
    except AuthError as exc:
        log_event(log, logging.DEBUG, "authentication rejected", reason=exc.reason,
                  path=path[:200], **exc.context)
        metrics.jwt_rejected(exc.reason)
        raise Unauthorized(exc.reason) from None
    except ReplayStoreUnavailable as exc:
        # Fail closed (the jti could not be recorded, so the token is not accepted), but
        # as 503 + Retry-After: the database is at fault, not the caller's credential.
        log_event(log, logging.ERROR, "audit store unavailable: jti cannot be recorded, call refused",
                  path=path[:200], error=str(exc)[:300])
        metrics.jwt_rejected("audit store unavailable")
        raise ServiceUnavailable(
            "Audit store unavailable: the request could not be recorded, so it was not "
            "processed. Retry later.") from None


def mask_credential(header: str | None) -> None:
    """Whatever the mode, the request's credential never reaches a log or an error body."""
    if header:
        remember_secret(header.strip().partition(" ")[2].strip() or header)


def client_identity() -> ClientIdentity | None:
    """The authenticated caller of the current request (None when auth is off or skipped)."""
    return g.get("cds_client")


def note_request_tokens(body: Any) -> None:
    """Mask this request's fhirAuthorization.access_token from logs and error bodies."""
    auth = body.get("fhirAuthorization") if isinstance(body, dict) else None
    if isinstance(auth, dict):
        remember_secret(auth.get("access_token"))


def init_app(app: Flask, state) -> None:
    cfg = state.config
    issuers = check_startup(cfg)
    validator = None
    if cfg.sites:
        # Site profiles (issue 24): cds_service/sites authenticates and picks the site.
        state.extensions.setdefault("replay_store", InMemoryReplayStore())
    elif cfg.auth == "off":
        log.warning("CDS_AUTH=off: JWT client authentication is DISABLED; any caller is accepted. "
                    "Never expose this service to real patient data in this mode.")
        if cfg.env == "production":
            log.warning("CDS_ALLOW_INSECURE_PRODUCTION=true: running in production without authentication.")
    else:
        state.extensions.setdefault("replay_store", InMemoryReplayStore())
        validator = TokenValidator(
            issuers=issuers,
            algorithms=cfg.jwt_algorithms,
            max_lifetime=cfg.jwt_max_lifetime,
            jwks=JwksClient(),
            replay_store=lambda: state.extensions["replay_store"],
        )
        state.extensions["jwt_validator"] = validator
        log_event(log, logging.INFO, "JWT authentication required",
                  issuers=sorted(validator.issuers), algorithms=list(cfg.jwt_algorithms),
                  discovery_open=cfg.discovery_open)
        if cfg.env == "production" and not cfg.public_base_url:
            log.warning("CDS_PUBLIC_BASE_URL is not set: the JWT aud check trusts the request's Host header.")

    @app.before_request
    def _authenticate() -> None:
        if request.method == "OPTIONS":
            return None  # CORS preflight: browsers never send credentials on it
        header = request.headers.get("Authorization")
        mask_credential(header)
        if validator is None or not needs_token(cfg, request.endpoint):
            return None
        if FRONT_AUTH_KEY in request.environ:  # checked on the headers by the ASGI front
            g.cds_client = request.environ[FRONT_AUTH_KEY]
            return None
        g.cds_client = authenticate(validator, header, invoked_url(cfg), request.path)
        return None

    @app.after_request
    def _challenge(resp: Response) -> Response:
        if resp.status_code == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="cds-services"'
        return resp

    @app.teardown_request
    def _forget(_exc) -> None:
        forget_secrets()
