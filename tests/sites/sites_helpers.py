"""Two hospitals on one service (issue 24): keys, policies, a sites file and token minting.

Hospital A: iss https://ehr.a.example.org, tenant a-main, FHIR http://127.0.0.1:8080/fhir,
  default policy (renal agent enoxaparin).
Hospital B: iss https://ehr.b.example.org, tenant b-1, FHIR http://127.0.0.1:8090/fhir,
  policy dosing.bmi_tier2 = 45 (its P&T committee's choice): BMI 42.2 gets 60 mg, not 80 mg.
Hospital C shares hospital A's EHR vendor iss with its own tenant (c-east), order services
  only, silent.
Keys are generated per test session, never committed.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from security_helpers import public_jwk, sign  # noqa: E402

ISS_A = "https://ehr.a.example.org"
ISS_B = "https://ehr.b.example.org"
FHIR_A = "http://127.0.0.1:8080/fhir"
FHIR_B = "http://127.0.0.1:8090/fhir"
PV = "/cds-services/coagulopathy-risk"
OS = "/cds-services/anticoagulant-order-check"


class Keys:
    def __init__(self):
        self.a = ec.generate_private_key(ec.SECP384R1())
        self.b = ec.generate_private_key(ec.SECP384R1())

    def token(self, who: str, aud: str, *, tenant: str | None = None, iss: str | None = None) -> str:
        key, kid, default_iss = (self.a, "key-a", ISS_A) if who in ("a", "c") else (self.b, "key-b", ISS_B)
        now = int(time.time())
        claims = {"iss": iss or default_iss, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
        if tenant is not None:
            claims["tenant"] = tenant
        return sign({"alg": "ES384", "typ": "JWT", "kid": kid}, claims, key, "ES384")


def sites_toml(mode_a: str = "live", mode_c: str = "silent") -> str:
    return f'''# Two hospitals (and a third on hospital A's EHR instance)
[sites.hospital-a]
mode = "{mode_a}"
fhir_allowlist = ["{FHIR_A}"]

[[sites.hospital-a.issuers]]
iss = "{ISS_A}"
jwks_file = "jwks-a.json"
algorithms = ["ES384"]
tenant = ["a-main"]

[sites.hospital-b]
mode = "live"
policy = "policy-b.json"
services = ["coagulopathy-risk", "anticoagulant-order-check"]
fhir_allowlist = ["{FHIR_B}"]

[[sites.hospital-b.issuers]]
iss = "{ISS_B}"
jwks_file = "jwks-b.json"
tenant = "b-1"

[sites.clinic-c]
mode = "{mode_c}"
services = ["coagulopathy-risk"]
fhir_allowlist = ["{FHIR_A}"]
discovery_open = false

[[sites.clinic-c.issuers]]
iss = "{ISS_A}"
jwks_file = "jwks-a.json"
algorithms = ["ES384"]
tenant = ["c-east"]
'''


def write_sites(directory: Path, keys: Keys, **modes) -> Path:
    (directory / "jwks-a.json").write_text(json.dumps({"keys": [public_jwk(keys.a, "key-a", "ES384")]}))
    (directory / "jwks-b.json").write_text(json.dumps({"keys": [public_jwk(keys.b, "key-b", "ES384")]}))
    (directory / "policy-b.json").write_text(json.dumps({"dosing.bmi_tier2": 45}))
    path = directory / "sites.toml"
    path.write_text(sites_toml(**modes))
    return path
