"""The trusted-issuer file (CDS_TRUSTED_ISSUERS) and public JWKs, validated at start-up.

File format (JSON object; keys starting with "_" are comments at both levels):

    {
      "<iss>": {
        "jwks": {"keys": [<public JWK>, ...]}      inline keys; a token's `jku` is ignored
          - or -
        "jwks_url": "https://ehr.example.org/jwks.json",   fetched, cached
        "jku": ["https://ehr.example.org/other-jwks.json"], optional, only with jwks_url:
                                                    further URLs a token's `jku` may name
        "tenant": "abc" | ["abc", "def"]            optional allow-list of `tenant` claims
      }
    }

Only public keys are accepted: a key carrying private members is refused with an error,
so a private key can never be deployed by mistake in the trust file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.exceptions import PyJWTError

from ..config import ConfigError

# alg -> (kty, crv). RSA keys fit every RS*/PS* alg; an EC key fits exactly one curve.
ALG_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None), "RS384": ("RSA", None), "RS512": ("RSA", None),
    "PS256": ("RSA", None), "PS384": ("RSA", None), "PS512": ("RSA", None),
}
MIN_RSA_BITS = 2048
_PUBLIC_MEMBERS = ("kty", "crv", "x", "y", "n", "e", "kid", "alg", "use")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_ENTRY_KEYS = {"jwks", "jwks_url", "jku", "tenant"}
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class TrustFileError(ConfigError):
    """The trusted-issuer file is missing, malformed or unsafe."""


class UnusableKey(ValueError):
    """A JWK that cannot be used to verify signatures (reason in the message, no key material)."""


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    kty: str              # "EC" or "RSA"
    crv: str | None       # EC curve name (JWK spelling)
    alg: str | None       # the JWK's own `alg`, when it states one
    key: Any              # cryptography public key object

    def fits(self, alg: str) -> bool:
        """The key type fits `alg` (EC curve or RSA) and the JWK's own alg, if any, equals it."""
        want = ALG_KEY_TYPES.get(alg)
        if want is None or (self.alg is not None and self.alg != alg):
            return False
        return want == (self.kty, self.crv if self.kty == "EC" else None)


@dataclass(frozen=True)
class TrustedIssuer:
    iss: str
    keys: dict[str, VerificationKey] | None   # inline JWKS, by kid
    jwks_url: str | None
    jku: frozenset[str]                       # URLs a token's jku may name (jwks_url included)
    tenants: frozenset[str]                   # empty: tenant not checked


def parse_jwk(jwk: Any) -> VerificationKey:
    """One public JWK -> VerificationKey. Raises UnusableKey (never echoing key material)."""
    if not isinstance(jwk, dict):
        raise UnusableKey("a key is not a JSON object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise UnusableKey("a key has no 'kid'")
    if any(m in jwk for m in _PRIVATE_MEMBERS):
        raise UnusableKey(f"key {kid!r} holds private or symmetric key material; only public keys belong here")
    if jwk.get("use", "sig") != "sig":
        raise UnusableKey(f"key {kid!r} has use {jwk.get('use')!r}, not 'sig'")
    kty, crv, alg = jwk.get("kty"), jwk.get("crv"), jwk.get("alg")
    if alg is not None and alg not in ALG_KEY_TYPES:
        raise UnusableKey(f"key {kid!r} has alg {alg!r}; only asymmetric signature algorithms are accepted")
    public = {m: jwk[m] for m in _PUBLIC_MEMBERS if m in jwk}
    try:
        if kty == "EC":
            if crv not in ("P-256", "P-384", "P-521"):
                raise UnusableKey(f"key {kid!r} has unsupported curve {crv!r}")
            key = ECAlgorithm.from_jwk(public)
        elif kty == "RSA":
            key = RSAAlgorithm.from_jwk(public)
            if key.key_size < MIN_RSA_BITS:
                raise UnusableKey(f"key {kid!r} is RSA-{key.key_size}; at least {MIN_RSA_BITS} bits are required")
        else:
            raise UnusableKey(f"key {kid!r} has kty {kty!r}; only EC and RSA are accepted")
    except (PyJWTError, ValueError, TypeError) as exc:
        if isinstance(exc, UnusableKey):
            raise
        raise UnusableKey(f"key {kid!r} is not a valid {kty} public key") from None
    return VerificationKey(kid=kid, kty=kty, crv=crv if kty == "EC" else None, alg=alg, key=key)


def _check_url(url: Any, what: str) -> str:
    if not isinstance(url, str) or not url:
        raise ValueError(f"{what} must be a non-empty string")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return url  # local development only
    raise ValueError(f"{what} {url!r} must be an https URL (plain http only for loopback)")


def parse_entry(iss: str, entry: Any) -> TrustedIssuer:
    if not isinstance(entry, dict):
        raise ValueError("must be a JSON object")
    unknown = {k for k in entry if not k.startswith("_")} - _ENTRY_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(_ENTRY_KEYS)}")
    if ("jwks" in entry) == ("jwks_url" in entry):
        raise ValueError("needs exactly one of 'jwks' (inline keys) or 'jwks_url'")
    keys = None
    jwks_url = None
    jku: set[str] = set()
    if "jwks" in entry:
        if "jku" in entry:
            raise ValueError("'jku' applies only with 'jwks_url'; with inline 'jwks' a token's jku is ignored")
        jwks = entry["jwks"]
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
            raise ValueError("'jwks' must be a JWK Set: {\"keys\": [ ... ]} with at least one key")
        keys = {}
        for jwk in jwks["keys"]:
            key = parse_jwk(jwk)
            if key.kid in keys:
                raise ValueError(f"duplicate kid {key.kid!r}")
            keys[key.kid] = key
    else:
        jwks_url = _check_url(entry["jwks_url"], "'jwks_url'")
        listed = entry.get("jku", [])
        if not isinstance(listed, list):
            raise ValueError("'jku' must be a list of URLs")
        jku = {jwks_url} | {_check_url(u, "a 'jku' entry") for u in listed}
    tenant = entry.get("tenant", [])
    tenants = [tenant] if isinstance(tenant, str) else tenant
    if not isinstance(tenants, list) or not all(isinstance(t, str) and t for t in tenants):
        raise ValueError("'tenant' must be a non-empty string or a list of them")
    if "tenant" in entry and not tenants:
        raise ValueError("'tenant' is an empty list; omit it to accept any tenant")
    return TrustedIssuer(iss=iss, keys=keys, jwks_url=jwks_url, jku=frozenset(jku),
                         tenants=frozenset(tenants))


def load_trust_file(path: str) -> dict[str, TrustedIssuer]:
    """Parse and check the whole file; any problem is a TrustFileError naming the file and iss."""
    where = f"CDS_TRUSTED_ISSUERS file {path!r}"
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TrustFileError(f"{where} cannot be read: {exc.strerror or type(exc).__name__}") from None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TrustFileError(f"{where} is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise TrustFileError(f"{where} must hold a JSON object mapping each iss to its keys")
    issuers = {}
    for iss, entry in doc.items():
        if iss.startswith("_"):
            continue
        if not iss.strip():
            raise TrustFileError(f"{where}: an issuer key is empty")
        try:
            issuers[iss] = parse_entry(iss, entry)
        except ValueError as exc:
            raise TrustFileError(f"{where}, issuer {iss!r}: {exc}") from None
    if not issuers:
        raise TrustFileError(f"{where} names no issuer")
    return issuers
