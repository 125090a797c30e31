"""CDS client JWT validation (CDS Hooks notes §11, steps 1-9). No Flask here.

`TokenValidator.validate(authorization, audience)` returns the verified ClientIdentity or
raises AuthError whose `reason` is a fixed phrase for the debug log. Neither ever holds
the token, and no PyJWT exception text is passed on (it can quote the input).
"""
from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Callable

import jwt
from jwt.exceptions import (DecodeError, ExpiredSignatureError, ImmatureSignatureError,
                            InvalidAudienceError, InvalidIssuedAtError, InvalidIssuerError,
                            InvalidSignatureError, MissingRequiredClaimError, PyJWTError)

from .jwks import JwksClient
from .replay import ReplayStore, ReplayStoreFull
from .trust import TrustedIssuer, VerificationKey

log = logging.getLogger("cds_service.security")

LEEWAY = 60  # seconds, for exp, iat and nbf
MAX_TOKEN_CHARS = 8192
MAX_JTI_CHARS = 256
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")  # empty signature: alg none
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]


class AuthError(Exception):
    """Authentication failed. `reason` is for the debug log; the caller only sees 401."""

    def __init__(self, reason: str, **context: str):
        super().__init__(reason)
        self.reason = reason
        self.context = context  # safe, truncated details (iss, kid, alg, aud) for the log


@dataclass(frozen=True)
class ClientIdentity:
    """Who called, as proven by the JWT. Safe to log and to store in an audit row."""

    iss: str
    jti: str
    kid: str
    tenant: str | None = None

    def as_fields(self) -> dict[str, str]:
        fields = {"iss": self.iss, "jti": self.jti, "kid": self.kid}
        if self.tenant:
            fields["tenant"] = self.tenant
        return fields


def _short(value: object, limit: int = 200) -> str:
    return str(value)[:limit]


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# PyJWT exception -> fixed reason phrase (never str(exc)).
_REASONS: list[tuple[type[PyJWTError], str]] = [
    (ExpiredSignatureError, "token expired (exp beyond leeway)"),
    (ImmatureSignatureError, "token not yet valid (iat or nbf in the future)"),
    (InvalidAudienceError, "aud does not match the invoked URL"),
    (InvalidIssuerError, "iss does not match"),
    (InvalidIssuedAtError, "iat is not a number"),
    (InvalidSignatureError, "signature does not verify"),
    (DecodeError, "token cannot be decoded"),
]


class TokenValidator:
    def __init__(self, issuers: dict[str, TrustedIssuer], algorithms: tuple[str, ...],
                 max_lifetime: int, jwks: JwksClient, replay_store: Callable[[], ReplayStore],
                 clock: Callable[[], float] = time.time):
        self.issuers = issuers
        self.algorithms = tuple(algorithms)
        self.max_lifetime = max_lifetime
        self.jwks = jwks
        self._replay_store = replay_store
        self.clock = clock

    def validate(self, authorization: str | None, audience: str) -> ClientIdentity:
        token = self._bearer(authorization)
        # 2. header: alg, typ, kid
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError:
            raise AuthError("token header cannot be decoded") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AuthError("alg not allowed", alg=_short(alg, 20))
        # CDS Hooks 2.0 JWT header: typ is REQUIRED with the fixed value "JWT" (the notes'
        # "if present" is looser than the spec and the Security issue; we follow the spec).
        typ = header.get("typ")
        if not (isinstance(typ, str) and typ.upper() == "JWT"):
            raise AuthError("typ is not JWT", typ=_short(typ, 40))
        if "crit" in header:
            raise AuthError("crit header parameters are not supported")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("kid missing")
        # 3. iss, unverified, picks the trust entry
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except PyJWTError:
            raise AuthError("token payload cannot be decoded") from None
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthError("iss not trusted", iss=_short(iss))
        # 4-5. key by kid, fitting alg
        key = self._key(issuer, header, kid)
        if not key.fits(alg):
            raise AuthError("key type does not fit alg", iss=iss, kid=_short(kid, 100), alg=alg,
                            key=f"{key.kty} {key.crv or ''} {key.alg or ''}".strip())
        # 5-7. signature, aud, exp/iat/nbf with leeway, required claims
        try:
            claims = jwt.decode(token, key.key, algorithms=[alg], audience=audience, issuer=iss,
                                leeway=LEEWAY, options={"require": REQUIRED_CLAIMS, "strict_aud": False})
        except MissingRequiredClaimError as exc:
            raise AuthError(f"claim {exc.claim} missing", iss=iss) from None
        except (TypeError, ValueError, OverflowError, ArithmeticError):
            # A claim of an unexpected JSON type that the PyJWT in use does not check itself
            # (older releases let int([...]) or an unhashable value escape): never a 500.
            raise AuthError("claim of an unexpected type", iss=iss) from None
        except PyJWTError as exc:
            reason = next((r for cls, r in _REASONS if isinstance(exc, cls)), "token rejected")
            context = {"iss": iss, "kid": _short(kid, 100)}
            if isinstance(exc, InvalidAudienceError):
                context.update(expected_aud=audience, aud=_short(unverified.get("aud")))
            raise AuthError(reason, error=type(exc).__name__, **context) from None
        return self._check_claims(claims, issuer, kid)

    def _bearer(self, authorization: str | None) -> str:
        # 1. "Bearer <three base64url parts>"
        if not authorization:
            raise AuthError("no Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            raise AuthError("Authorization scheme is not Bearer", scheme=_short(scheme, 20))
        if not token or len(token) > MAX_TOKEN_CHARS or not _COMPACT_JWS.fullmatch(token):
            raise AuthError("credential is not a compact JWS")
        return token

    def _key(self, issuer: TrustedIssuer, header: dict, kid: str) -> VerificationKey:
        if issuer.keys is not None:  # inline JWKS: a jku is ignored, nothing is fetched
            key = issuer.keys.get(kid)
        else:
            jku = header.get("jku")
            if jku is None:
                url = issuer.jwks_url
            elif isinstance(jku, str) and jku in issuer.jku:
                url = jku
            else:
                raise AuthError("jku not on the issuer's list", iss=issuer.iss, jku=_short(jku))
            key = self.jwks.key(url, kid)
        if key is None:
            raise AuthError("kid unknown for this issuer", iss=issuer.iss, kid=_short(kid, 100))
        return key

    def _check_claims(self, claims: dict, issuer: TrustedIssuer, kid: str) -> ClientIdentity:
        iss = issuer.iss
        exp, iat, jti = claims["exp"], claims["iat"], claims["jti"]
        if not (_number(exp) and _number(iat)) or not (math.isfinite(exp) and math.isfinite(iat)):
            raise AuthError("exp or iat is not a number", iss=iss)
        nbf = claims.get("nbf")
        if nbf is not None and not (_number(nbf) and math.isfinite(nbf)):
            raise AuthError("nbf is not a number", iss=iss)  # PyJWT takes true as 1
        now = self.clock()
        if exp > now + self.max_lifetime + LEEWAY:
            # The replay store keeps a jti only for the maximum lifetime.
            raise AuthError("exp further ahead than the maximum token lifetime", iss=iss)
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS:
            raise AuthError("jti missing or not a short string", iss=iss)
        tenant = claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            # An array or object would be unhashable in the allow-list check (was a 500),
            # and a number is no tenant id: the token is malformed.
            raise AuthError("tenant is not a string", iss=iss)
        if issuer.tenants and tenant not in issuer.tenants:
            raise AuthError("tenant not allowed for this issuer", iss=iss, tenant=_short(tenant, 100))
        try:
            fresh = self._replay_store().check_and_add(iss, jti, float(exp) + LEEWAY)
        except ReplayStoreFull:  # ReplayStoreUnavailable propagates: the caller answers 503
            log.warning("jti replay store is full: valid tokens are refused until entries expire")
            raise AuthError("replay store full", iss=iss) from None
        if not fresh:
            raise AuthError("jti replayed", iss=iss, jti=_short(jti, 100))
        return ClientIdentity(iss=iss, jti=jti, kid=kid, tenant=tenant if isinstance(tenant, str) else None)
