"""Keys, token minting, an auth-enabled app and request bodies for the security tests.

Test modules import the fixtures from here (a second conftest.py would shadow tests/conftest.py
for `from conftest import ...`).

Keys are generated here (never committed). Tokens are assembled by hand so that any
header or claim can be wrong on purpose (alg none, HS256, missing claims, ...).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm, get_default_algorithms

from cds_service import create_app
from conftest import in_scope


ISS = "https://ehr.example.org"
JWKS_URL = "https://ehr.example.org/.well-known/jwks.json"
OTHER_JKU = "https://keys.ehr.example.org/jwks.json"
BASE = "http://localhost"  # what the Flask test client's requests look like to the app
PV = "/cds-services/coagulopathy-risk"
FEEDBACK = PV + "/feedback"
ES_KID = "es-key-1"
RS_KID = "rs-key-1"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(private_key, kid: str, alg: str | None = None) -> dict:
    algo = ECAlgorithm if isinstance(private_key, ec.EllipticCurvePrivateKey) else RSAAlgorithm
    jwk = json.loads(algo.to_jwk(private_key.public_key()))
    jwk.update(kid=kid, use="sig")
    if alg:
        jwk["alg"] = alg
    return jwk


def sign(header: dict, payload: dict, key, alg: str) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if alg == "none":
        signature = b""
    elif alg.startswith("HS"):
        signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    else:
        signature = get_default_algorithms()[alg].sign(signing_input.encode(), key)
    return f"{signing_input}.{b64(signature)}"


class Minter:
    """Valid tokens by default; keyword arguments break one thing at a time."""

    def __init__(self, es_key, rs_key):
        self.keys = {"ES384": (es_key, ES_KID), "RS384": (rs_key, RS_KID)}

    def __call__(self, aud: str | list = BASE + PV, *, alg: str = "ES384", key=None, kid=None,
                 iss: str = ISS, exp_in: float = 300, iat_in: float = 0, drop=(), header=None,
                 **claims) -> str:
        default_key, default_kid = self.keys.get(alg, (None, ES_KID))
        now = int(time.time())
        payload = {"iss": iss, "aud": aud, "exp": now + exp_in, "iat": now + iat_in,
                   "jti": str(uuid.uuid4()), **claims}
        for name in drop:
            payload.pop(name)
        hdr = {"alg": alg, "typ": "JWT", "kid": kid or default_kid, **(header or {})}
        hdr = {k: v for k, v in hdr.items() if v is not None}
        return sign(hdr, payload, key if key is not None else default_key, alg)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def hook_body() -> dict:
    """A complete patient-view request (with prefetch), under a fresh hookInstance, in v2
    scope (an IMP Encounter and a linked COVID-19 Condition)."""
    body = in_scope(json.loads((EXAMPLES / "patient-view-sic-positive.json").read_text()))
    body["hookInstance"] = str(uuid.uuid4())
    return body


def feedback_body() -> dict:
    return {"feedback": [{"card": str(uuid.uuid4()), "outcome": "accepted",
                          "acceptedSuggestions": [{"id": str(uuid.uuid4())}],
                          "outcomeTimestamp": "2024-01-01T00:00:00Z"}]}


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def es_key():
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="session")
def rs_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def jwks(es_key, rs_key) -> dict:
    return {"keys": [public_jwk(es_key, ES_KID, "ES384"), public_jwk(rs_key, RS_KID)]}


@pytest.fixture
def mint(es_key, rs_key) -> Minter:
    return Minter(es_key, rs_key)


@pytest.fixture
def make_app(tmp_path, jwks):
    """make_app(trust=None, **config) -> Flask app with CDS_AUTH=required.

    trust defaults to {ISS: {"jwks": <ES384 + RS384 public keys>}}."""
    def make(trust: dict | None = None, **overrides):
        path = tmp_path / "trust.json"
        path.write_text(json.dumps(trust if trust is not None else {ISS: {"jwks": jwks}}))
        config = {"database": str(tmp_path / "cds.sqlite3"), "auth": "required",
                  "trusted_issuers": str(path), "log_level": "DEBUG", **overrides}
        return create_app(config)
    return make
