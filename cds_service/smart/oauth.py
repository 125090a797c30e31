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

Every outbound call: no redirects followed, short timeouts, answers capped in size. Endpoint
URLs must be https (http only on a loopback host). Exceptions name the step, never a token.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from ..fhir.allowlist import is_loopback

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
TIMEOUT = (3.0, 5.0)
MAX_BYTES = 512 * 1024


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


def _get_json(url: str) -> tuple[int, Any]:
    resp = requests.get(url, headers={"Accept": "application/json, application/fhir+json"},
                        timeout=TIMEOUT, allow_redirects=False, stream=True)
    try:
        raw = resp.raw.read(MAX_BYTES + 1, decode_content=True)
    finally:
        resp.close()
    if len(raw) > MAX_BYTES:
        return resp.status_code, None
    try:
        import orjson
        return resp.status_code, orjson.loads(raw)
    except ValueError:
        return resp.status_code, None


def discover(iss: str) -> AuthServer | None:
    """The authorization server of `iss`, or None for an open server. LaunchError when the
    FHIR server cannot be reached at all."""
    base = iss.rstrip("/")
    reached = False
    try:
        status, body = _get_json(base + "/.well-known/smart-configuration")
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
    try:
        status, body = _get_json(base + "/metadata")
        reached = True
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
    try:
        resp = requests.post(token_endpoint, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": client_id, "code_verifier": verifier},
            headers={"Accept": "application/json"}, timeout=TIMEOUT, allow_redirects=False)
    except requests.RequestException:
        raise LaunchError("The EHR's authorization server could not be reached.") from None
    if resp.status_code != 200:
        raise LaunchError(f"The EHR's authorization server refused the code ({resp.status_code}).")
    if len(resp.content) > MAX_BYTES:
        raise LaunchError("The token response was too large.")
    try:
        body = resp.json()
    except ValueError:
        raise LaunchError("The token response was not JSON.") from None
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) \
            or not body["access_token"]:
        raise LaunchError("The token response has no access token.")
    if str(body.get("token_type", "")).lower() != "bearer":
        raise LaunchError("The token response is not a Bearer token.")
    return body
