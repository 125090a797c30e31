"""Site profiles (issue 24, CDS_SITES): one service, several hospitals, deny by default.

Without CDS_SITES nothing here runs: the single-site variables (CDS_TRUSTED_ISSUERS,
CDS_POLICY, CDS_FHIR_ALLOWLIST, CDS_AUTH) are one implicit site, "default", exactly as
before, and audit rows and metrics carry site "default". With CDS_SITES set, the sites
file replaces those variables (a set CDS_TRUSTED_ISSUERS or CDS_POLICY is refused at start)
and every hook call, feedback and token-carrying discovery goes through `runtime.SitesRuntime`.

The app calls, in this order: `prepare(state)` before the security layer, `init_app(app,
state)` after the storage layer, `gate(...)` in the hook call, `discovery_body(state)` in
discovery, and `readiness(state)` in /readyz.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, request

from ..fhir.allowlist import refusal_reason
from ..logging_setup import log_event
from .model import SitesFileError
from .runtime import PROTECTED, SiteRefused, SitesRuntime

log = logging.getLogger("cds_service.sites")


def enabled(state) -> bool:
    return bool(getattr(state.config, "sites", ""))


def _runtime(state) -> SitesRuntime | None:
    return state.extensions.get("sites")


def prepare(state) -> None:
    if enabled(state):
        state.extensions["sites"] = SitesRuntime(state, state.config.sites)


def init_app(app: Flask, state) -> None:
    rt = _runtime(state)
    if rt is None:
        return
    rt.attach()
    rt.ensure_poller()
    from ..security import FRONT_AUTH_KEY, FRONT_SITE_KEY, invoked_url

    @app.before_request
    def _site_gate() -> None:
        rt.ensure_poller()  # a no-op unless this process was forked after the app was made
        if request.method == "OPTIONS" or request.endpoint not in PROTECTED | {"discovery"}:
            return None
        g.cds_site_id = "none"
        header = request.headers.get("Authorization")
        if request.endpoint == "discovery" and not header:
            if rt.current.any_open:
                return None
            raise SiteRefused(401, "authentication", "discovery needs a bearer token on this service.")
        if FRONT_SITE_KEY in request.environ:
            # Authenticated on the headers by the ASGI front before the body was read (issue 21):
            # the same rt.authenticate, run once (a second run would meet its own jti as a replay).
            site = request.environ[FRONT_SITE_KEY]
            g.cds_client = request.environ.get(FRONT_AUTH_KEY)
        else:
            site = rt.authenticate(header, invoked_url(state.config))
        g.cds_site, g.cds_site_id = site, site.site.id
        if request.endpoint == "discovery":
            return None
        service_id = (request.view_args or {}).get("service_id")
        if state.registry.get(service_id) is None:
            return None  # the view answers 404 for an unknown service, as without sites
        if site.site.mode == "off":
            log_event(log, logging.INFO, "site refused", check="site mode", site=site.site.id, path=request.path)
            raise SiteRefused(403, "site mode", "the calling site is switched off on this service.")
        if site.registry.get(service_id) is None:
            log_event(log, logging.INFO, "site refused", check="service", site=site.site.id, path=request.path)
            raise SiteRefused(403, "service", "this service is not enabled for the calling site.")
        return None


def gate(state, service, body: dict):
    """(state, service) the hook call runs with: the calling site's (its policy, allowlist,
    codes, mode) with CDS_SITES, the app's own without. Refuses a fhirServer outside the
    site's allowlist with 403 (checked by fhir/allowlist.py, before any data is fetched)."""
    if not enabled(state):
        return state, service
    site = g.get("cds_site")
    if site is None:  # fail closed: no hook call runs without its site (never the app's own state)
        raise SiteRefused(401, "authentication", "a JWT in the Authorization header is required.")
    server = body.get("fhirServer")
    if server is not None:
        reason = refusal_reason(server, site.site.fhir_allowlist)
        if reason:
            log_event(log, logging.INFO, "site refused", check="fhirServer", site=site.site.id,
                      path=request.path)
            raise SiteRefused(403, "fhirServer", "fhirServer is not on the calling site's FHIR allowlist.")
    return site.state, site.registry.get(service.id)


def check_feedback(state, items: list[dict]) -> None:
    """With CDS_SITES, feedback may name only cards issued to the caller's site: a card of
    another site is refused (403), so one site's token cannot skew another's report. A card
    no site issued is stored as unmatched, as without sites."""
    if not enabled(state):
        return
    site = g.get("cds_site")
    if site is None:  # fail closed, as in gate()
        raise SiteRefused(401, "authentication", "a JWT in the Authorization header is required.")
    store = state.extensions.get("storage")
    if store is None:
        return
    uuids = sorted({item["card"] for item in items if isinstance(item.get("card"), str)})
    if not uuids:
        return
    from ..storage import StorageError
    marks = ", ".join("?" for _ in uuids)
    try:  # query() commits this process's pending audit rows first
        owners = {row[0] for row in store.query(
            "SELECT hook_call.site_id FROM card JOIN hook_call ON hook_call.id = card.call_id"
            f" WHERE card.uuid IN ({marks})", uuids)}
    except StorageError:
        return  # the store below answers 503 for a database that is down
    if owners - {site.site.id}:
        log_event(log, logging.INFO, "site refused", check="feedback", site=site.site.id, path=request.path)
        raise SiteRefused(403, "feedback", "a card named was not issued to the calling site.")


def discovery_body(state) -> dict[str, Any] | None:
    """The discovery answer with CDS_SITES (None without): the calling site's services with a
    token, every service of the sites with discovery_open without one."""
    if not enabled(state):
        return None
    site = g.get("cds_site")
    if site is not None:  # a site switched off is offered nothing
        return site.registry.discovery() if site.site.mode != "off" else {"services": []}
    return {"services": _runtime(state).current.open_services}


def _stamp(path: str | None):
    """What changes when a file is edited or replaced (None: no file, or gone)."""
    if not path:
        return None
    import os
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def readiness(state) -> dict[str, str]:
    """/readyz: every site's policy file and codes still load (503 if not), and its keys'
    state. Unauthenticated, so no network (review #7): a jwks_url is judged by the JWKS cache
    (a fetch that failed within the last minute, nothing cached); one site's EHR key endpoint
    being down is "degraded" (still ready: the other sites are served), never a 503 for all.
    The body never names a site; the log does."""
    rt = _runtime(state)
    if rt is None:
        return {}
    from ..fhir.codes import load_codes
    from ..logic.policy import Policy
    failed = degraded = 0
    seen = rt.__dict__.setdefault("_ready_files", {})  # site id -> (file stamps, codes path, problems)
    for built in rt.current.sites.values():
        problems, key_problems = [], []
        path = built.site.policy_path or None
        cached = seen.get(built.site.id)
        if cached is not None and cached[0] == (_stamp(path), _stamp(cached[1])):
            problems = list(cached[2])  # unchanged files: not parsed again per unauthenticated call
        else:
            codes_path = None
            try:
                policy = Policy.load(path)
                codes_path = policy["codes.extra_file"] or None
                load_codes(codes_path)
            except Exception as exc:  # PolicyError, CodeDataError, a file gone since the load
                problems.append(f"policy: {' '.join(str(exc).split())[:200]}")
            seen[built.site.id] = ((_stamp(path), _stamp(codes_path)), codes_path, tuple(problems))
        for issuer in built.site.issuers:
            url = issuer.trusted.jwks_url
            if url and rt.jwks.status(url) == "failed":
                key_problems.append(f"jwks_url of {issuer.trusted.iss[:100]!r} unusable")
        failed += bool(problems)
        degraded += bool(key_problems)
        if problems or key_problems:
            log_event(log, logging.WARNING, "site not ready", site=built.site.id, problems=problems + key_problems)
    result = {"sites": "a site has an unusable policy file (the log names it)" if failed else "ok"}
    if degraded:
        result["sites_keys"] = "degraded: a site's JWKS could not be fetched (the log names it)"
    return result


def smart_allowlist(state) -> tuple[str, ...] | None:
    """The assessment view's FHIR allowlist with CDS_SITES (None without): the union of the
    allowlists of the sites not switched off, never the global CDS_FHIR_ALLOWLIST, whose
    default admits any loopback port (review #9)."""
    rt = _runtime(state)
    if rt is None:
        return None
    out: list[str] = []
    for built in rt.current.sites.values():
        if built.site.mode != "off":
            out += [e for e in built.site.fhir_allowlist if e not in out]
    return tuple(out)


def view_state(state, iss: str):
    """The request state (policy, codes) the assessment view of a launch from `iss` runs with:
    the site whose allowlist admits it. Several such sites must agree on the policy, else None
    (the view refuses rather than show another site's dose). Without CDS_SITES: `state`."""
    rt = _runtime(state)
    if rt is None:
        return state
    found = [b for b in rt.current.sites.values()
             if b.site.mode != "off" and refusal_reason(iss, b.site.fhir_allowlist) is None]
    def rules(built):  # a silent site differs only by cards.silent*, which the view does not read
        return {k: v for k, v in built.policy.values.items() if not k.startswith("cards.silent")}

    if not found or any(rules(b) != rules(found[0]) for b in found[1:]):
        return None
    return found[0].state


__all__ = ["SitesFileError", "SiteRefused", "check_feedback", "discovery_body", "enabled", "gate",
           "init_app", "prepare", "readiness"]
