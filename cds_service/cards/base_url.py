"""Where this service's public URLs and code systems live: the public base URL (behind a proxy,
CDS_PUBLIC_BASE_URL) and the base our code systems are minted under. Its own module so that
vocabulary.py and build.py both use it without importing each other."""
from __future__ import annotations

from flask import current_app, has_request_context, request

FALLBACK_BASE_URL = "http://127.0.0.1:8000"


def public_base_url() -> str:
    """The service's public base URL: CDS_PUBLIC_BASE_URL when set (behind a proxy), else the
    request's own host URL; outside a request (builder unit tests) the local default."""
    if not has_request_context():
        return FALLBACK_BASE_URL
    state = current_app.extensions.get("cds")
    configured = getattr(getattr(state, "config", None), "public_base_url", "") if state else ""
    return (configured or request.host_url).rstrip("/")


def code_system_base(base_url: str | None = None) -> str:
    """The base our code systems are minted under (issue 23): the policy's
    `vocabulary.system_base` when a site sets one, else `base_url` or the public base URL."""
    if has_request_context():
        state = current_app.extensions.get("cds")
        policy = getattr(state, "policy", None)
        configured = policy.values.get("vocabulary.system_base") if policy is not None else None
        if configured:
            return configured.rstrip("/")
    return (base_url or public_base_url()).rstrip("/")
