"""A CDS Hooks client JWT, as an EHR sends it (CDS Hooks 2.0 §Trusting CDS Clients): signed
with the integrator's private key, `aud` = the service URL called, a fresh `jti`, five minutes
of life. Used by `cds-service check` and `cds-service replay` (issue 23); PyJWT signs."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClientKey:
    private_pem: bytes
    iss: str
    kid: str | None = None
    alg: str = "ES384"

    @classmethod
    def from_args(cls, key_file: str | None, iss: str | None, kid: str | None, alg: str) -> "ClientKey | None":
        if not key_file:
            return None
        if not iss:
            raise ValueError("--jwt-iss is required with --jwt-key")
        return cls(Path(key_file).read_bytes(), iss, kid, alg)

    def mint(self, aud: str, lifetime: int = 300, **overrides) -> str:
        import jwt
        now = int(time.time())
        claims = {"iss": self.iss, "aud": aud, "iat": now, "exp": now + lifetime, "jti": str(uuid.uuid4())}
        claims.update(overrides)
        headers = {"typ": "JWT", **({"kid": self.kid} if self.kid else {})}
        return jwt.encode(claims, self.private_pem, algorithm=self.alg, headers=headers)


def add_arguments(p) -> None:
    p.add_argument("--jwt-key", help="PEM private key the service trusts for --jwt-iss (CDS_TRUSTED_ISSUERS)")
    p.add_argument("--jwt-iss", help="the JWT issuer (iss) registered with the service")
    p.add_argument("--jwt-kid", help="the key id (kid) in the issuer's JWKS")
    p.add_argument("--jwt-alg", default="ES384", choices=["ES256", "ES384", "ES512", "RS256", "RS384", "RS512"],
                   help="signature algorithm (default ES384)")
