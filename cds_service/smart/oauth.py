"""SMART App Launch 2.0, EHR launch, public client with PKCE S256.

- Discovery: `{iss}/.well-known/smart-configuration` (`authorization_endpoint`,
  `token_endpoint`); when that is absent or unusable, the CapabilityStatement at
  `{iss}/metadata`: `rest[].security.extension` with url
  `http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris` and its `authorize`
  and `token` sub-extensions (valueUri). Neither: an open server (no authorization).
- Authorize: `response_type=code, client_id, redirect_uri, launch, scope, state, aud=<iss>,
  code_challenge (S256 of a 43+ char verifier), code_challenge_method=S256`.
- Token: POST `grant_type=authorization_code, code, redirect_uri, client_id, code_verifier`
  (form-encoded, no client secret). The answer must carry `access_token`, `token_type`
  Bearer and a `patient`.

Every outbound call: no redirects followed, short timeouts, one overall deadline per step
(`DEADLINE_S`: discovery, token exchange; issue 21 L2), answers streamed and capped in size
(issue 21 L1: a 200 MB token answer was read in full first). Endpoint URLs must be https (http
only on a loopback host), pass the allowlist like `iss`, and be on iss's scheme, host and
port unless the site lists them (`endpoint_refusal`, issue 21 L3). Exceptions name the step,
never a token.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from ..fhir.allowlist import is_loopback, parse_server_url, refusal_reason

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
TIMEOUT = (3.0, 5.0)
MAX_BYTES = 512 * 1024
DEADLINE_S = 10.0   # a whole step (discovery's two reads, or the token exchange), however slow the server
# Outbound calls run here, so the request thread waits at most the deadline even when a
# server trickles its headers (requests' timeouts are per socket read, not per call).
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="cds-smart-out")


class _Late(Exception):
    pass


def _within(deadline: float, call):
    """call() on the pool, waited for until `deadline` (time.monotonic); _Late after it."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Late
    future = _POOL.submit(call)
    try:
        return future.result(timeout=left)
    except FutureTimeout:
        future.cancel()
        raise _Late from None


def _read_capped(resp: requests.Response, deadline: float) -> bytes | None:
    """The body, streamed: None past MAX_BYTES; _Late past the deadline."""
    chunks, size = [], 0
    try:
        for chunk in resp.iter_content(64 * 1024):
            size += len(chunk)
            if size > MAX_BYTES:
                return None
            if time.monotonic() > deadline:
                raise _Late
            chunks.append(chunk)
    finally:
        resp.close()
    return b"".join(chunks)


class LaunchError(Exception):
    """A launch that cannot go on; the message is safe to show (no token, no patient data)."""


@dataclass(frozen=True)
class AuthServer:
    authorize: str
    token: str
    source: str  # "smart-configuration" | "oauth-uris"


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, code_challenge) for S256 (RFC 7636): 43 characters, base64url."""
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def endpoint_ok(url: Any) -> bool:
    if not isinstance(url, str) or len(url) > 2000:
        return False
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and bool(parts.hostname) and is_loopback(parts.hostname)


def _get_json(url: str, deadline: float) -> tuple[int, Any]:
    def call():
        resp = requests.get(url, headers={"Accept": "application/json, application/fhir+json"},
                            timeout=TIMEOUT, allow_redirects=False, stream=True)
        return resp.status_code, _read_capped(resp, deadline)

    status, raw = _within(deadline, call)
    if raw is None:
        return status, None
    try:
        import orjson
        return status, orjson.loads(raw)
    except ValueError:
        return status, None



def discover(iss: str) -> AuthServer | None:
    """The authorization server of `iss`, or None for an open server. LaunchError when the
    FHIR server cannot be reached at all."""
    base = iss.rstrip("/")
    reached = False
    deadline = time.monotonic() + DEADLINE_S
    try:
        status, body = _get_json(base + "/.well-known/smart-configuration", deadline)
        reached = True
        if status == 200 and isinstance(body, dict):
            auth, token = body.get("authorization_endpoint"), body.get("token_endpoint")
            if endpoint_ok(auth) and endpoint_ok(token):
                methods = body.get("code_challenge_methods_supported")
                if isinstance(methods, list) and methods and "S256" not in methods:
                    raise LaunchError("The EHR's authorization server does not support PKCE S256.")
                return AuthServer(auth, token, "smart-configuration")
            if auth or token:
                raise LaunchError("The EHR's SMART configuration names unusable endpoints "
                                  "(https required).")
    except requests.RequestException:
        pass
    except _Late:
        raise LaunchError(f"The EHR's FHIR server did not answer within {DEADLINE_S:g} s.") from None
    try:
        status, body = _get_json(base + "/metadata", deadline)
        reached = True
    except _Late:
        raise LaunchError(f"The EHR's FHIR server did not answer within {DEADLINE_S:g} s.") from None
    except requests.RequestException:
        if not reached:
            raise LaunchError("The EHR's FHIR server could not be reached.") from None
        return None
    if status == 200 and isinstance(body, dict) and body.get("resourceType") == "CapabilityStatement":
        found = _oauth_uris(body)
        if found:
            return found
    return None


def _oauth_uris(capability: dict) -> AuthServer | None:
    for rest in capability.get("rest") or []:
        security = rest.get("security") if isinstance(rest, dict) else None
        for ext in (security or {}).get("extension") or [] if isinstance(security, dict) else []:
            if not isinstance(ext, dict) or ext.get("url") != OAUTH_URIS:
                continue
            uris = {sub.get("url"): sub.get("valueUri") for sub in ext.get("extension") or []
                    if isinstance(sub, dict)}
            if endpoint_ok(uris.get("authorize")) and endpoint_ok(uris.get("token")):
                return AuthServer(uris["authorize"], uris["token"], "oauth-uris")
            raise LaunchError("The EHR's CapabilityStatement names unusable OAuth endpoints.")
    return None


def authorize_url(server: AuthServer, *, client_id: str, redirect_uri: str, launch: str | None,
                  scope: str, state: str, aud: str, challenge: str) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "scope": scope, "state": state, "aud": aud, "code_challenge": challenge,
              "code_challenge_method": "S256"}
    if launch:
        params["launch"] = launch
    sep = "&" if urlsplit(server.authorize).query else "?"
    return server.authorize + sep + urlencode(params)


def exchange_code(token_endpoint: str, *, code: str, redirect_uri: str, client_id: str,
                  verifier: str) -> dict[str, Any]:
    """The token response (dict) or LaunchError."""
    if not endpoint_ok(token_endpoint):
        raise LaunchError("The token endpoint is not usable (https required).")
    deadline = time.monotonic() + DEADLINE_S

    def call():
        resp = requests.post(token_endpoint, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": client_id, "code_verifier": verifier},
            headers={"Accept": "application/json"}, timeout=TIMEOUT, allow_redirects=False, stream=True)
        if resp.status_code != 200:
            resp.close()
            return resp.status_code, b""
        return 200, _read_capped(resp, deadline)

    try:
        status, raw = _within(deadline, call)
    except _Late:
        raise LaunchError(f"The EHR's authorization server did not answer within {DEADLINE_S:g} s.") from None
    except requests.RequestException:
        raise LaunchError("The EHR's authorization server could not be reached.") from None
    if status != 200:
        raise LaunchError(f"The EHR's authorization server refused the code ({status}).")
    if raw is None:
        raise LaunchError("The token response was too large.")
    try:
        # stdlib json, not orjson: an odd expires_in (1e400, NaN, a 30-digit integer) must not
        # cost the whole token answer; the view reads each field tolerantly.
        import json
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise LaunchError("The token response was not JSON.") from None
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) \
            or not body["access_token"]:
        raise LaunchError("The token response has no access token.")
    if str(body.get("token_type", "")).lower() != "bearer":
        raise LaunchError("The token response is not a Bearer token.")
    return body


def endpoint_refusal(endpoint: str, iss: str, allowlist: tuple[str, ...]) -> str | None:
    """None when the service may send the user (authorize) or the code and verifier (token) to
    `endpoint`; else why not (issue 21 L3: an allowlisted server's SMART configuration could
    make the service POST the code to any port on its own host). The endpoint must pass the
    allowlist like `iss` (its query aside), and be on iss's scheme, host and port unless an
    allowlist entry names its host with that port (or a non-loopback host on its default port)."""
    parts = urlsplit(endpoint)
    bare = f"{parts.scheme}://{parts.netloc}{parts.path}"
    try:
        target, origin = parse_server_url(bare), parse_server_url(iss)  # dot segments, ';', user info
    except ValueError as exc:
        return str(exc)
    # The allowlist by origin: OAuth endpoints live outside the FHIR base path (/oauth2/token).
    reason = refusal_reason(_origin(bare), tuple(_origin(e) for e in allowlist))
    if reason:
        return reason
    if (target.scheme, target.host, target.effective_port) == (origin.scheme, origin.host, origin.effective_port):
        return None
    for raw in allowlist:
        try:
            entry = parse_server_url(raw)
        except ValueError:
            continue
        listed = entry.port is not None or not is_loopback(entry.host)
        if listed and refusal_reason(_origin(bare), (_origin(raw),)) is None:
            return None
    return "not on the FHIR server's scheme, host and port, and not listed in CDS_FHIR_ALLOWLIST"


def _origin(url: str) -> str:
    """scheme://netloc of `url` (or `*` as is), for an origin-only allowlist check."""
    if url.strip() == "*":
        return "*"
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}"
