"""The sites file (CDS_SITES, TOML or JSON): parsed and checked whole, or refused with one line.

    [sites.<site id>]
    mode = "live" | "silent" | "off"          required
    policy = "policy-a.json"                  optional (relative to the sites file); default policy
    services = ["coagulopathy-risk", ...]     optional, a subset of the three; default all
    fhir_allowlist = ["https://fhir.a.example.org/r4"]   required, checked by fhir/allowlist.py
    discovery_open = true                     optional: list this site's services to token-less discovery

    [[sites.<site id>.issuers]]
    iss = "https://ehr.a.example.org"
    jwks_file = "a-jwks.json"  | jwks = {keys = [...]} | jwks_url = "https://..." (+ jku = [...])
    algorithms = ["ES384"]                    optional; default CDS_JWT_ALGORITHMS' default
    tenant = ["a-main"]                       optional unless the iss is shared by several sites

The issuer entry is checked by security/trust.py (public keys only, RSA >= 2048 bits, https
URLs), the allowlist entries by fhir/allowlist.py, the policy by logic/policy.py. An iss shared
by several sites must name disjoint tenants in each, with the same keys and algorithms, so a
verified (iss, tenant) picks exactly one site. Keys starting with "_" are comments.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError
from ..fhir.allowlist import parse_server_url
from ..security.trust import ALG_KEY_TYPES, TrustedIssuer, parse_entry

MODES = ("live", "silent", "off")
SERVICE_IDS = ("coagulopathy-risk", "anticoagulant-order-check", "anticoagulant-order-sign")
SITE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SITE_KEYS = {"mode", "policy", "services", "fhir_allowlist", "discovery_open", "issuers"}
_ISSUER_KEYS = {"iss", "jwks", "jwks_file", "jwks_url", "jku", "algorithms", "tenant"}
MAX_FILE_BYTES = 1 << 20


class SitesFileError(ConfigError):
    """The sites file is unreadable or wrong. The message is one line (no key material)."""


@dataclass(frozen=True)
class SiteIssuer:
    trusted: TrustedIssuer           # keys / jwks_url / jku / tenants, as the trust file has them
    algorithms: tuple[str, ...]
    signature: str                   # what must agree when two sites share the iss
    jwks_file: str = ""              # the file its keys came from, if any


@dataclass(frozen=True)
class Site:
    id: str
    mode: str
    policy_path: str                 # "" = the default policy
    services: tuple[str, ...]
    fhir_allowlist: tuple[str, ...]
    discovery_open: bool
    issuers: tuple[SiteIssuer, ...]


@dataclass(frozen=True)
class SitesFile:
    sites: dict[str, Site]
    sha256: str                      # of the file's bytes
    source: str                      # where it was read from (for messages)


def _one_line(text: str, limit: int = 400) -> str:
    return " ".join(str(text).split())[:limit]


def _strings(value: Any, what: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{what} must be a list of non-empty strings")
    if not value and not allow_empty:
        raise ValueError(f"{what} must not be empty")
    if len(set(value)) != len(value):
        raise ValueError(f"{what} lists an entry twice")
    return tuple(value)


def _path(value: Any, what: str, base: Path) -> Path:
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ValueError(f"{what} must be a non-empty path")
    path = Path(value)
    return path if path.is_absolute() else base / path


def read_capped(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """A referenced file's bytes: a regular file of at most `limit` bytes (review #20: a
    `jwks_file = "/dev/zero"` or a huge file must not be read until memory runs out)."""
    import stat
    with open(path, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError(0, "not a regular file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise OSError(0, f"larger than {limit} bytes")
    return data


def key_thumbprint(key) -> str:
    """sha256 of a public key's SubjectPublicKeyInfo (DER), hex."""
    from cryptography.hazmat.primitives import serialization
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _issuer(entry: Any, base: Path) -> SiteIssuer:
    if not isinstance(entry, dict):
        raise ValueError("each issuers entry must be a table/object")
    unknown = {k for k in entry if not str(k).startswith("_")} - _ISSUER_KEYS
    if unknown:
        raise ValueError(f"unknown issuer keys {sorted(map(str, unknown))}; allowed: {sorted(_ISSUER_KEYS)}")
    iss = entry.get("iss")
    if not isinstance(iss, str) or not iss.strip():
        raise ValueError("an issuer has no 'iss'")
    where = f"issuer {iss[:200]!r}"
    trust_entry = {k: entry[k] for k in ("jwks", "jwks_url", "jku", "tenant") if k in entry}
    if "jwks_file" in entry:
        if "jwks" in entry:
            raise ValueError(f"{where}: give 'jwks' or 'jwks_file', not both")
        path = _path(entry["jwks_file"], f"{where}: 'jwks_file'", base)
        try:
            trust_entry["jwks"] = json.loads(read_capped(path).decode("utf-8"))
        except RecursionError:
            raise ValueError(f"{where}: jwks_file {str(path)!r} is nested too deeply") from None
        except OSError as exc:
            raise ValueError(f"{where}: jwks_file {str(path)!r} cannot be read: "
                             f"{exc.strerror or type(exc).__name__}") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{where}: jwks_file {str(path)!r} is not valid JSON") from None
    try:
        trusted = parse_entry(iss, trust_entry)  # public keys only, https URLs, tenant shape
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    algorithms = entry.get("algorithms", list(Config.jwt_algorithms))
    algorithms = _strings(algorithms, f"{where}: 'algorithms'")
    bad = [a for a in algorithms if a not in ALG_KEY_TYPES]
    if bad:
        raise ValueError(f"{where}: 'algorithms' may list only {sorted(ALG_KEY_TYPES)}, not {bad[:5]}")
    # The key material itself (SPKI sha256), not only kid/kty: two sites sharing an iss with a
    # different key under the same kid must be refused, else one site's key signs in as the other.
    keys = sorted((k.kid, k.kty, k.crv or "", k.alg or "", key_thumbprint(k.key))
                  for k in (trusted.keys or {}).values())
    signature = json.dumps([keys, trusted.jwks_url, sorted(trusted.jku), sorted(algorithms)])
    return SiteIssuer(trusted=trusted, algorithms=algorithms, signature=signature,
                      jwks_file=str(path) if "jwks_file" in entry else "")


def weak_url(raw: str, *, jwks: bool = False) -> str | None:
    """Why a URL must not be used with CDS_ENV=production (review #12), or None: plain http, or
    a literal loopback, private, link-local (cloud metadata) or otherwise reserved address.
    The EHR's bearer token is sent to a fhirServer; a jwks_url decides which keys are trusted."""
    try:
        server = parse_server_url(raw)
    except ValueError:
        return None  # the allowlist / trust parser refuses it with its own reason
    if server.scheme != "https":
        return "plain http"
    if server.host == "localhost":
        return "a loopback host"
    try:
        address = ipaddress.ip_address(server.host.strip("[]"))
    except ValueError:
        return None  # a DNS name
    if address.is_loopback or address.is_link_local or address.is_private or address.is_reserved \
            or address.is_unspecified or address.is_multicast:
        return "a loopback, private, link-local or reserved address"
    return None


def _site(site_id: str, entry: Any, base: Path, production: bool = False) -> Site:
    if not isinstance(entry, dict):
        raise ValueError("must be a table/object")
    unknown = {k for k in entry if not str(k).startswith("_")} - _SITE_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(map(str, unknown))}; allowed: {sorted(_SITE_KEYS)}")
    mode = entry.get("mode")
    if mode not in MODES:
        raise ValueError(f"'mode' must be one of {list(MODES)}")
    policy = ""
    if "policy" in entry:
        policy = str(_path(entry["policy"], "'policy'", base))
    services = _strings(entry.get("services", list(SERVICE_IDS)), "'services'")
    unknown_services = [s for s in services if s not in SERVICE_IDS]
    if unknown_services:
        raise ValueError(f"'services' may list only {list(SERVICE_IDS)}, not {[s[:80] for s in unknown_services[:3]]}")
    if "fhir_allowlist" not in entry:
        raise ValueError("'fhir_allowlist' is required (deny by default)")
    allowlist = _strings(entry["fhir_allowlist"], "'fhir_allowlist'")
    for raw in allowlist:
        if raw == "*":
            raise ValueError("'fhir_allowlist' may not be '*' in a sites file")
        try:
            parse_server_url(raw)  # the allowlist's own parser: an entry it cannot read admits nothing
        except ValueError as exc:
            raise ValueError(f"'fhir_allowlist' entry {raw[:200]!r} is unusable: {exc}") from None
        weak = weak_url(raw) if production else None
        if weak:
            raise ValueError(f"'fhir_allowlist' entry {raw[:200]!r} is {weak}: refused with CDS_ENV=production")
    discovery_open = entry.get("discovery_open", True)
    if not isinstance(discovery_open, bool):
        raise ValueError("'discovery_open' must be true or false")
    issuers = entry.get("issuers")
    if not isinstance(issuers, list) or not issuers:
        raise ValueError("'issuers' must list at least one issuer (deny by default)")
    parsed = tuple(_issuer(i, base) for i in issuers)
    if production:
        for issuer in parsed:
            for url in sorted({*issuer.trusted.jku, *([issuer.trusted.jwks_url] if issuer.trusted.jwks_url else [])}):
                weak = weak_url(url)
                if weak:
                    raise ValueError(f"issuer {issuer.trusted.iss[:200]!r}: key URL {url[:200]!r} is {weak}: "
                                     "refused with CDS_ENV=production")
    seen = [i.trusted.iss for i in parsed]
    if len(set(seen)) != len(seen):
        raise ValueError("an iss is listed twice; put its tenants in one entry")
    return Site(id=site_id, mode=mode, policy_path=policy, services=services, fhir_allowlist=allowlist,
                discovery_open=discovery_open, issuers=parsed)


def _cross_checks(sites: dict[str, Site]) -> None:
    """An iss in several sites: same keys and algorithms, tenants named and disjoint."""
    by_iss: dict[str, list[tuple[str, SiteIssuer]]] = {}
    for site in sites.values():
        for issuer in site.issuers:
            by_iss.setdefault(issuer.trusted.iss, []).append((site.id, issuer))
    for iss, entries in by_iss.items():
        if len(entries) < 2:
            continue
        names = ", ".join(repr(s) for s, _ in entries)
        if len({i.signature for _, i in entries}) != 1:
            raise ValueError(f"iss {iss[:200]!r} is in sites {names} with different keys or algorithms")
        if any(not i.trusted.tenants for _, i in entries):
            raise ValueError(f"iss {iss[:200]!r} is in sites {names}: each must list its 'tenant' values")
        seen: set[str] = set()
        for _, issuer in entries:
            if seen & issuer.trusted.tenants:
                raise ValueError(f"iss {iss[:200]!r} is in sites {names} with overlapping tenants")
            seen |= issuer.trusted.tenants


def parse_sites(raw: bytes, source: str, base: Path, fmt: str | None = None,
                production: bool | None = None) -> SitesFile:
    """Parse and check a whole sites file (policy files are loaded by the runtime).
    `production` (default: CDS_ENV=production in the environment) also refuses plain-http,
    loopback, private and link-local FHIR bases and key URLs."""
    if production is None:
        production = os.environ.get("CDS_ENV", "").strip().lower() == "production"
    where = f"sites file {source!r}"
    if len(raw) > MAX_FILE_BYTES:
        raise SitesFileError(f"{where} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SitesFileError(f"{where} is not UTF-8 text") from None
    fmt = fmt or ("json" if source.lower().endswith(".json") or text.lstrip().startswith("{") else "toml")
    try:
        doc = json.loads(text) if fmt == "json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise SitesFileError(f"{where} is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SitesFileError(f"{where} is not valid TOML: {_one_line(exc)}") from None
    except (ValueError, RecursionError) as exc:  # e.g. JSON nested too deeply, huge ints
        raise SitesFileError(f"{where} cannot be parsed: {type(exc).__name__}") from None
    if not isinstance(doc, dict):
        raise SitesFileError(f"{where} must hold a table/object with a 'sites' table")
    unknown = {k for k in doc if not str(k).startswith("_")} - {"sites"}
    if unknown:
        raise SitesFileError(f"{where}: unknown top-level keys {sorted(map(str, unknown))[:5]}; allowed: ['sites']")
    entries = doc.get("sites")
    if not isinstance(entries, dict) or not any(not str(k).startswith("_") for k in entries):
        raise SitesFileError(f"{where} names no site (a [sites.<id>] table is required)")
    sites: dict[str, Site] = {}
    for site_id, entry in entries.items():
        if str(site_id).startswith("_"):
            continue
        if not SITE_ID.fullmatch(site_id):
            raise SitesFileError(f"{where}: site id {site_id[:80]!r} must match {SITE_ID.pattern}")
        try:
            sites[site_id] = _site(site_id, entry, base, production)
        except (ValueError, TypeError, RecursionError) as exc:
            raise SitesFileError(f"{where}, site {site_id!r}: {_one_line(exc)}") from None
    try:
        _cross_checks(sites)
    except ValueError as exc:
        raise SitesFileError(f"{where}: {_one_line(exc)}") from None
    return SitesFile(sites=sites, sha256=hashlib.sha256(raw).hexdigest(), source=source)


def referenced_files(parsed: SitesFile) -> list[str]:
    """The policy and jwks files a sites file names (read by path on each host)."""
    out: list[str] = []
    for site in parsed.sites.values():
        for path in [site.policy_path, *(i.jwks_file for i in site.issuers)]:
            if path and path not in out:
                out.append(path)
    return out


def file_digests(parsed: SitesFile) -> dict[str, str]:
    """path -> sha256 of each referenced file as this host has it ("unreadable" if not)."""
    out = {}
    for path in referenced_files(parsed):
        try:
            out[path] = hashlib.sha256(read_capped(Path(path))).hexdigest()
        except OSError:
            out[path] = "unreadable"
    return out


def read_sites_file(path: str, production: bool | None = None) -> tuple[bytes, SitesFile]:
    """(raw bytes, parsed file) of `path`, or SitesFileError."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SitesFileError(f"sites file {path!r} cannot be read: {exc.strerror or type(exc).__name__}") from None
    return raw, parse_sites(raw, path, Path(path).resolve().parent, production=production)
