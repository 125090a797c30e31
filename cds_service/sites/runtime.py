"""Site profiles at run time: who called (iss + tenant -> one site), what that site may do,
and reloading the sites file without a restart.

Deny by default: with CDS_SITES set, a hook call or feedback without a token, or whose
verified (iss, tenant) matches no site, is refused; so is a fhirServer outside the site's
allowlist (fhir/allowlist.py decides), a service the site has not enabled, and every call of
a site set to "off". The answer names the check that failed, never a site id: callers learn
nothing about the other sites, and neither does a log line written while serving them.

Reload: the accepted file (its text, sha256 and a reload id) is kept in the audit database's
`meta` table (SQLite or PostgreSQL, so every worker and replica shares it). A thread in each
worker looks at it every CHECK_INTERVAL_S seconds and applies a new reload id after building it
in full; a file that fails is logged in one line and the old configuration stays. The thread,
not a request, does this, so no request waits for it and no log line written while serving a
caller names another site. `cds-service sites reload` validates the file and writes that row.

Which configuration wins (one rule, whatever the boot order): once a record exists, it does.
A worker that (re)starts with a local file differing from the record (a respawn, SIGHUP, a
replica restarted with an older file) adopts the record and logs a WARNING; only `sites reload`
publishes a file. The local file is published only when the database holds no record yet.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
import uuid
import weakref
from collections import ChainMap
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jwt
import orjson
from flask import g, request
from jwt.exceptions import PyJWTError

from ..runtime import metrics
from ..runtime.errors import CDSError, operation_outcome
from ..fhir.codes import CodeDataError, load_codes
from ..logging_setup import log_event
from ..logic.policy import Policy, PolicyError
from ..security.jwks import JwksClient
from ..security.replay import ReplayStoreUnavailable
from ..security.tokens import MAX_TOKEN_CHARS, AuthError, TokenValidator
from ..hooks import silent
from .model import Site, SitesFile, SitesFileError, file_digests, parse_sites, read_sites_file

log = logging.getLogger("cds_service.sites")

CHECK_INTERVAL_S = 2.0
_START_LOCK = threading.Lock()


def _new_start_lock() -> None:
    global _START_LOCK
    _START_LOCK = threading.Lock()  # a forked child never inherits it held


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_start_lock)
META_KEY = "sites_config"
PROTECTED = frozenset({"call_service", "feedback"})


class SiteRefused(CDSError):
    """401/403 naming the check that failed (never a site)."""

    def __init__(self, status: int, check: str, diagnostics: str):
        super().__init__(f"{check} check failed: {diagnostics}", status=status)
        self.check = check

    def outcome(self) -> dict[str, Any]:
        body = operation_outcome(self.status, self.diagnostics)
        body["issue"][0]["code"] = "login" if self.status == 401 else "forbidden"
        return body


@dataclass
class BuiltSite:
    site: Site
    policy: Policy
    registry: Any               # the site's enabled services, prefetch with the site's codes
    state: Any                  # app.AppState seen by this site's hook calls


@dataclass
class Built:
    file: SitesFile
    raw: bytes
    base: str
    sites: dict[str, BuiltSite]
    validators: dict[str, dict[str, TokenValidator]]        # iss -> site id -> validator
    tenants: dict[str, list[tuple[frozenset[str], str]]]    # iss -> [(tenants, site id)]
    open_services: list[dict] = field(default_factory=list)  # token-less discovery
    any_open: bool = False
    reload_id: str = ""


def build(raw: bytes, source: str, base: str, state, jwks: JwksClient) -> Built:
    """Parse, load every site's policy and codes, and make its request state; SitesFileError
    (one line) on any problem."""
    from ..evaluation.state import AppState
    from ..hooks import Registry, build_registry

    parsed = parse_sites(raw, source, Path(base), production=state.config.env == "production")
    loaded = load_policies(parsed)
    sites: dict[str, BuiltSite] = {}
    for site in parsed.sites.values():
        policy, codes = loaded[site.id]
        policy = silent.site_policy(policy, site.mode)  # §19.14 cards.silent
        registry = Registry([s for s in build_registry(codes) if s.id in site.services])
        cfg = replace(state.config, fhir_allowlist=site.fhir_allowlist, policy=site.policy_path)
        view = AppState(config=cfg, policy=policy, registry=registry,
                        extensions=ChainMap({}, state.extensions), site=site.id, site_mode=site.mode)
        sites[site.id] = BuiltSite(site=site, policy=policy, registry=registry, state=view)
    validators: dict[str, dict[str, TokenValidator]] = {}
    tenants: dict[str, list[tuple[frozenset[str], str]]] = {}
    for built in sites.values():
        for issuer in built.site.issuers:
            iss = issuer.trusted.iss
            tenants.setdefault(iss, []).append((issuer.trusted.tenants, built.site.id))
            # One validator per (iss, site), holding only that site's keys: a token is verified
            # with the keys of the site its tenant names, so one site's key never signs in as
            # another (model.py also refuses a shared iss whose keys differ). The tenant is
            # matched after the signature (a 403 naming that check).
            validators.setdefault(iss, {})[built.site.id] = TokenValidator(
                issuers={iss: replace(issuer.trusted, tenants=frozenset())},
                algorithms=issuer.algorithms, max_lifetime=state.config.jwt_max_lifetime, jwks=jwks,
                replay_store=lambda: state.extensions["replay_store"])
    # Token-less discovery lists each open site's own entry (its prefetch templates carry the
    # site's codes.extra_file codes). A service whose entries differ between open sites is
    # left out: an EHR configured from a template without its local codes would prefetch
    # without them, and a present prefetch key is taken as complete (review #6).
    entries: dict[str, list[dict]] = {}
    for built in sites.values():
        if built.site.discovery_open and built.site.mode != "off":
            for service in built.registry:
                entries.setdefault(service.id, []).append(service.discovery())
    open_ids = list(entries)
    open_services = []
    for service in state.registry:
        found = entries.get(service.id)
        if not found:
            continue
        if any(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) != orjson.dumps(found[0], option=orjson.OPT_SORT_KEYS)
               for e in found[1:]):
            log_event(log, logging.WARNING, "sites: token-less discovery leaves out a service whose "
                      "prefetch differs between open sites", service=service.id)
            continue
        open_services.append(found[0])
    return Built(file=parsed, raw=raw, base=base, sites=sites, validators=validators, tenants=tenants,
                 open_services=open_services, any_open=bool(open_ids))


def load_policies(parsed: SitesFile) -> dict[str, tuple[Policy, Any]]:
    """site id -> (policy, codes); SitesFileError naming the site and its policy file."""
    from .model import read_capped
    out = {}
    for site in parsed.sites.values():
        try:
            if site.policy_path and os.path.exists(site.policy_path):
                try:  # a regular file of bounded size (review #20); a missing one: Policy.load says so
                    read_capped(Path(site.policy_path))
                except OSError as exc:
                    raise PolicyError(f"policy file {exc.strerror or type(exc).__name__}") from None
            policy = Policy.load(site.policy_path or None)
            out[site.id] = (policy, load_codes(policy["codes.extra_file"]))
        except RecursionError:
            raise SitesFileError(f"sites file {parsed.source!r}, site {site.id!r}: policy "
                                 f"{site.policy_path!r} is nested too deeply") from None
        except (PolicyError, CodeDataError, OSError, ValueError, TypeError) as exc:
            raise SitesFileError(f"sites file {parsed.source!r}, site {site.id!r}: policy "
                                 f"{site.policy_path or '(defaults)'!r}: {' '.join(str(exc).split())[:300]}") from None
    return out


class SitesRuntime:
    def __init__(self, state, path: str):
        self.state = state
        self.path = path
        self.jwks = JwksClient()
        self.current: Built | None = None
        self.boot_error: str | None = None
        self._poller_pid: int | None = None
        self._read_failing = False  # log a failing database once, not every check
        self._unsigned_seen: str | None = None
        self._lock = threading.Lock()
        try:
            raw, _ = read_sites_file(path, production=state.config.env == "production")
            self.current = build(raw, path, str(Path(path).resolve().parent), state, self.jwks)
        except SitesFileError as exc:
            self.boot_error = str(exc)  # init_app falls back to the accepted row, or fails

    # -- the shared record -----------------------------------------------------------------
    def _storage(self):
        return self.state.extensions.get("storage")

    def read_record(self) -> dict | None:
        store = self._storage()
        if store is None:
            return None
        rows = store._read(lambda conn: conn.execute(
            "SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchall())
        record = orjson.loads(rows[0][0]) if rows else None
        if record is not None and not verified(record, self._key()):
            if record.get("id") != self._unsigned_seen:  # once per record, not every check
                self._unsigned_seen = record.get("id")
                log_event(log, logging.ERROR, "sites: the accepted configuration in the database is not "
                          "signed with CDS_SITES_RELOAD_KEY; ignored", sha256=str(record.get("sha256", ""))[:12])
            return None
        return record

    def _key(self) -> str:
        return getattr(self.state.config, "sites_reload_key", "")

    def from_record(self, record: dict) -> Built:
        built = build(record["text"].encode("utf-8"), record["source"], record["base"], self.state, self.jwks)
        built.reload_id = record["id"]
        check_files(built.file, record)
        return built

    def attach(self) -> None:
        """After the storage layer: adopt or publish the accepted configuration."""
        try:
            record = self.read_record()
        except Exception as exc:  # the database may be down at boot: the worker still boots
            log_event(log, logging.WARNING, "sites: accepted configuration not readable", error=str(exc)[:300])
            record = None
        if self.current is None:
            if record is None:
                from ..config import ConfigError
                raise ConfigError(self.boot_error or "sites file not loaded")
            self.current = self.from_record(record)
            log_event(log, logging.ERROR, "sites file refused; the accepted configuration stays",
                      error=self.boot_error, sha256=record["sha256"][:12])
            return
        if record is not None and record.get("sha256") == self.current.file.sha256:
            self.current.reload_id = record["id"]
            check_files(self.current.file, record)
            return
        if record is not None:
            # The accepted record wins over a local file that differs (README "Sites", "Which
            # configuration wins"): a respawned worker or a restarted replica must never undo a
            # `sites reload` (an incident switch-off, a dropped key) with an older file on its
            # disk. Only `cds-service sites reload` publishes a file.
            try:
                adopted = self.from_record(record)
            except SitesFileError as exc:  # e.g. its policy paths do not resolve on this host
                log_event(log, logging.ERROR, "sites: the accepted configuration cannot be built here; "
                          "this worker runs its local sites file", error=str(exc), path=self.path,
                          sha256=self.current.file.sha256[:12], accepted=str(record.get("sha256", ""))[:12])
                self.current.reload_id = record.get("id", "")
                return
            log_event(log, logging.WARNING, "sites file differs from the accepted configuration; the "
                      "accepted one is used (run `cds-service sites reload` to publish the file)",
                      path=self.path, sha256=self.current.file.sha256[:12],
                      accepted=str(record.get("sha256", ""))[:12], accepted_at=record.get("at", ""))
            self.current = adopted
            return
        try:
            self.current.reload_id = publish(self._storage(), self.current.raw, self.path,
                                             self.current.base, self._key(),
                                             file_digests(self.current.file)) if self._storage() else ""
        except Exception as exc:
            log_event(log, logging.WARNING, "sites: accepted configuration not recorded", error=str(exc)[:300])

    def ensure_poller(self) -> None:
        """Start this process's reload thread (again after a fork: threads do not survive it)."""
        if self._poller_pid == os.getpid():
            return
        with _START_LOCK:  # one lock for the check and the start: two threads start one poller
            if self._poller_pid == os.getpid():
                return
            self._lock = threading.Lock()  # a lock held at fork time would never be released here
            self._poller_pid = os.getpid()
            threading.Thread(target=_poll, args=(weakref.ref(self),), name="cds-sites-reload",
                             daemon=True).start()

    def maybe_reload(self) -> None:
        """Apply a newer accepted configuration, if there is one (the reload thread calls this)."""
        with self._lock:
            try:
                record = self.read_record()
            except Exception as exc:
                if not self._read_failing:
                    log_event(log, logging.WARNING, "sites: accepted configuration not readable; "
                              "the current one stays", error=str(exc)[:300])
                self._read_failing = True
                return
            self._read_failing = False
            if record is None or record.get("id") == self.current.reload_id:
                return
            try:
                built = self.from_record(record)
            except Exception as exc:  # SitesFileError, or anything unforeseen: logged once per record
                error = str(exc) if isinstance(exc, SitesFileError) else f"{type(exc).__name__}: {str(exc)[:200]}"
                log_event(log, logging.ERROR, "sites reload refused; the old configuration stays", error=error)
                self.current.reload_id = record.get("id", "")  # logged once, not every check
                return
            self.current = built
            log_event(log, logging.INFO, "sites configuration reloaded", sha256=built.file.sha256[:12],
                      sites=len(built.sites))

    # -- per request -------------------------------------------------------------------------
    def authenticate(self, header: str | None, audience: str) -> BuiltSite:
        built = self.current
        if not header:
            raise SiteRefused(401, "authentication", "a JWT in the Authorization header is required.")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        try:
            if scheme.lower() != "bearer" or len(token) > MAX_TOKEN_CHARS:
                raise ValueError
            iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except (PyJWTError, AttributeError, ValueError, TypeError):
            metrics.jwt_rejected("token cannot be decoded")
            log_event(log, logging.INFO, "site refused", check="token", path=request.path)
            raise SiteRefused(401, "token", "the credential was not accepted.") from None
        if not isinstance(iss, str) or iss not in built.validators:
            metrics.jwt_rejected("iss not trusted")
            log_event(log, logging.INFO, "site refused", check="issuer", path=request.path)
            # The same answer as a bad signature (review #11): a caller must not learn which
            # issuers (hospitals) this service trusts. The log keeps the reason.
            raise SiteRefused(401, "token", "the credential was not accepted.")
        try:
            claimed = jwt.decode(token, options={"verify_signature": False}).get("tenant")
        except (PyJWTError, AttributeError, ValueError, TypeError):
            claimed = None
        claimed = claimed if isinstance(claimed, str) else None
        # The site the (unverified) tenant names; its own keys verify the token. No match: any
        # entry's keys verify it, then the tenant check below refuses it with 403.
        candidates = built.tenants[iss]
        chosen = next((sid for ts, sid in candidates if not ts or claimed in ts), candidates[0][1])
        try:
            identity = built.validators[iss][chosen].validate(header, audience)
        except AuthError as exc:
            metrics.jwt_rejected(exc.reason)
            log_event(log, logging.DEBUG, "authentication rejected", reason=exc.reason, path=request.path,
                      **exc.context)
            raise SiteRefused(401, "token", "the credential was not accepted.") from None
        except ReplayStoreUnavailable as exc:
            from ..runtime.errors import ServiceUnavailable
            log_event(log, logging.ERROR, "audit store unavailable: jti cannot be recorded, call refused",
                      path=request.path, error=str(exc))
            raise ServiceUnavailable("Audit store unavailable: the request could not be recorded, so it "
                                     "was not processed. Retry later.") from None
        g.cds_client = identity
        for tenants, site_id in candidates:
            if site_id == chosen and (not tenants or identity.tenant in tenants):
                return built.sites[site_id]
        metrics.jwt_rejected("tenant not allowed")
        log_event(log, logging.INFO, "site refused", check="tenant", path=request.path)
        raise SiteRefused(403, "tenant", "the token's tenant is not allowed for its issuer.")


def _poll(ref) -> None:
    """The reload thread: holds the runtime weakly, so a discarded app lets it end."""
    while True:
        time.sleep(max(CHECK_INTERVAL_S, 0.05))
        runtime = ref()
        if runtime is None:
            return
        try:
            runtime.maybe_reload()
        except Exception:  # never let the thread die: the next round tries again
            log.exception("sites reload check failed")
        del runtime


def check_files(parsed: SitesFile, record: dict) -> None:
    """Log (ERROR) each policy or jwks file whose copy on this host differs from the one the
    accepted configuration was published with: this worker would run another policy or other
    keys than its siblings. Copy the file to every host, then `sites reload` (README "Sites")."""
    accepted = record.get("files") or {}
    if not isinstance(accepted, dict):
        return
    for path, digest in file_digests(parsed).items():
        if path in accepted and accepted[path] != digest:
            log_event(log, logging.ERROR, "sites: a policy or jwks file differs from the accepted one on this "
                      "host; copy it to every host and run `cds-service sites reload`", path=path,
                      sha256=digest[:12], accepted=str(accepted[path])[:12])


def record_mac(key: str, record: dict) -> str:
    """HMAC-SHA256 of the fields a worker builds from, under CDS_SITES_RELOAD_KEY."""
    message = orjson.dumps([record.get(k) for k in ("id", "sha256", "text", "source", "base", "at", "files")],
                           option=orjson.OPT_SORT_KEYS)
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verified(record: dict | None, key: str) -> bool:
    """With a reload key, a record counts only if its MAC is right (review #5: a database
    writer alone cannot make the workers trust an issuer); without one, every record does."""
    if record is None or not key:
        return record is not None
    mac = record.get("mac")
    return isinstance(mac, str) and hmac.compare_digest(mac, record_mac(key, record))


def publish(store, raw: bytes, source: str, base: str, key: str = "", files: dict | None = None) -> str:
    """Record `raw` as the accepted sites file (every worker and replica applies it); the id.
    `key` (CDS_SITES_RELOAD_KEY) signs it; `files` (path -> sha256 of each policy and jwks file
    it names, as the publishing host has them) lets every worker say when its copy differs."""
    reload_id = uuid.uuid4().hex
    record = {"id": reload_id, "sha256": hashlib.sha256(raw).hexdigest(),
              "text": raw.decode("utf-8"), "source": source, "base": base,
              "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "files": files or {}}
    if key:
        record["mac"] = record_mac(key, record)
    value = orjson.dumps(record).decode()
    store._write(lambda conn: conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (META_KEY, value)))
    return reload_id
