"""Issue 24: the sites file's rules (sites/model.py), jwks_url issuers, and `serve` refusing a
bad file before binding."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import responses

from cds_service import create_app
from cds_service.cli.examples import build
from cds_service.sites.model import SitesFileError, parse_sites
from sites_helpers import OS, Keys, sites_toml, write_sites

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from security_helpers import public_jwk  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BASE = "http://localhost"


@pytest.fixture(scope="module")
def keys():
    return Keys()


def refused(tmp_path, text: str) -> str:
    with pytest.raises(SitesFileError) as exc:
        parse_sites(text.encode(), "s.toml", tmp_path)
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_shared_iss_needs_disjoint_tenants_and_the_same_keys(tmp_path, keys):
    write_sites(tmp_path, keys)
    good = sites_toml()
    assert set(parse_sites(good.encode(), "s.toml", tmp_path).sites) == {"hospital-a", "hospital-b", "clinic-c"}
    assert "overlapping tenants" in refused(tmp_path, good.replace('tenant = ["c-east"]', 'tenant = ["c-east", "a-main"]'))
    assert "each must list its 'tenant'" in refused(tmp_path, good.replace('tenant = ["c-east"]', ""))
    different = good.replace('jwks_file = "jwks-a.json"\nalgorithms = ["ES384"]\ntenant = ["c-east"]',
                             'jwks_file = "jwks-b.json"\nalgorithms = ["ES384"]\ntenant = ["c-east"]')
    assert "different keys or algorithms" in refused(tmp_path, different)


@pytest.mark.parametrize("change, message", [
    (('fhir_allowlist = ["http://127.0.0.1:8090/fhir"]', 'fhir_allowlist = ["*"]'), "may not be '*'"),
    (('fhir_allowlist = ["http://127.0.0.1:8090/fhir"]', 'fhir_allowlist = ["http://x/a/../b"]'), "is unusable"),
    (('fhir_allowlist = ["http://127.0.0.1:8090/fhir"]\n', ""), "'fhir_allowlist' is required"),
    (('tenant = "b-1"', 'tenant = "b-1"\nalgorithms = ["HS256"]'), "'algorithms' may list only"),
    (('services = ["coagulopathy-risk", "anticoagulant-order-check"]', 'services = ["cds-everything"]'),
     "'services' may list only"),
    (('[sites.hospital-b]', '[sites."b b"]'), "site id 'b b' must match"),
    (('policy = "policy-b.json"', 'policy = "missing.json"'), None),
])
def test_a_bad_site_is_refused_in_one_line(tmp_path, keys, change, message):
    write_sites(tmp_path, keys)
    text = sites_toml().replace(*change)
    if message is None:  # a policy file problem shows when the policies load (runtime)
        from cds_service.sites.runtime import load_policies
        with pytest.raises(SitesFileError, match="site 'hospital-b': policy .*cannot read policy file"):
            load_policies(parse_sites(text.encode(), "s.toml", tmp_path))
        return
    assert message in refused(tmp_path, text)


def test_a_private_key_is_refused_and_never_echoed(tmp_path, keys):
    write_sites(tmp_path, keys)
    jwk = json.loads((tmp_path / "jwks-a.json").read_text())["keys"][0]
    jwk["d"] = "c2VjcmV0LXByaXZhdGUtcGFydA"
    (tmp_path / "jwks-a.json").write_text(json.dumps({"keys": [jwk]}))
    message = refused(tmp_path, sites_toml())
    assert "private" in message and jwk["d"] not in message and jwk["x"] not in message


@responses.activate
def test_a_jwks_url_issuer_and_its_readiness(tmp_path, keys):
    url = "https://ehr.a.example.org/jwks.json"
    responses.add(responses.GET, url, json={"keys": [public_jwk(keys.a, "key-a", "ES384")]})
    write_sites(tmp_path, keys)
    (tmp_path / "sites.toml").write_text(sites_toml().replace('jwks_file = "jwks-a.json"', f'jwks_url = "{url}"'))
    app = create_app({"sites": str(tmp_path / "sites.toml"), "database": str(tmp_path / "cds.sqlite3")})
    client = app.test_client()
    body = build("bmi-42")
    body["hookInstance"] = str(uuid.uuid4())
    resp = client.post(OS, data=json.dumps(body), content_type="application/json",
                       headers={"Authorization": "Bearer " + keys.token("a", BASE + OS, tenant="a-main")})
    assert resp.status_code == 200 and "80 mg" in resp.get_json()["cards"][0]["summary"]
    assert client.get("/readyz").get_json()["checks"]["sites"] == "ok"


def test_serve_refuses_a_bad_sites_file_before_binding(tmp_path):
    (tmp_path / "sites.toml").write_text('[sites.a]\nmode = "live"\nfhir_allowlist = ["https://f.example.org"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(CDS_SITES=str(tmp_path / "sites.toml"), CDS_DATABASE=str(tmp_path / "cds.sqlite3"))
    out = subprocess.run([sys.executable, "-m", "cds_service", "serve", "--port", "0"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"cds-service: sites file {str(tmp_path / 'sites.toml')!r}, site 'a': "
        "'issuers' must list at least one issuer (deny by default)"]


def test_the_gate_fails_closed_without_a_site(tmp_path, keys):
    """Were the authentication step ever skipped (a renamed endpoint, a reordered hook), a hook
    call or feedback must be refused, never run with the app's own state."""
    from cds_service import sites
    from cds_service.sites import SiteRefused
    path = write_sites(tmp_path, keys)
    app = create_app({"sites": str(path), "database": str(tmp_path / "cds.sqlite3")})
    state = app.extensions["cds"]
    with app.test_request_context(OS, method="POST"):
        with pytest.raises(SiteRefused) as exc:
            sites.gate(state, state.registry.get("anticoagulant-order-check"), {"fhirServer": "http://127.0.0.1:8080/fhir"})
        assert exc.value.status == 401
        with pytest.raises(SiteRefused):
            sites.check_feedback(state, [{"card": str(uuid.uuid4())}])


def _shared_iss_other_key(tmp_path, keys):
    """Sites 'first' and 'victim' on one iss, each with a different key under the same kid."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from sites_helpers import FHIR_A, FHIR_B, ISS_A
    other = ec.generate_private_key(ec.SECP384R1())
    (tmp_path / "jwks-first.json").write_text(json.dumps({"keys": [public_jwk(other, "key-a", "ES384")]}))
    (tmp_path / "jwks-victim.json").write_text(json.dumps({"keys": [public_jwk(keys.a, "key-a", "ES384")]}))
    text = "".join(f'''
[sites.{name}]
mode = "live"
fhir_allowlist = ["{fhir}"]
[[sites.{name}.issuers]]
iss = "{ISS_A}"
jwks_file = "jwks-{name}.json"
algorithms = ["ES384"]
tenant = ["t-{name}"]
''' for name, fhir in (("first", FHIR_A), ("victim", FHIR_B)))
    (tmp_path / "sites.toml").write_text(text)
    return other, text


def test_a_shared_iss_with_other_key_material_under_the_same_kid_is_refused(tmp_path, keys):
    """Review #1: kid/kty/crv agreeing is not "the same keys": the key material must too."""
    _, text = _shared_iss_other_key(tmp_path, keys)
    assert "different keys or algorithms" in refused(tmp_path, text)


def test_one_sites_key_never_signs_in_as_another_site(tmp_path, keys, monkeypatch):
    """Review #1, defence in depth: were such a file ever accepted, a token is verified with
    the keys of the site its tenant names, so site 'first''s key cannot act as 'victim', and
    the victim's own EHR is not locked out."""
    import time
    from cds_service.sites import model
    from security_helpers import sign
    from sites_helpers import ISS_A
    other, _ = _shared_iss_other_key(tmp_path, keys)
    monkeypatch.setattr(model, "key_thumbprint", lambda key: "same", raising=False)  # pre-fix check
    client = create_app({"sites": str(tmp_path / "sites.toml"), "database": str(tmp_path / "cds.sqlite3"),
                         "public_base_url": BASE}).test_client()

    def token(key, tenant):
        now = int(time.time())
        return sign({"alg": "ES384", "typ": "JWT", "kid": "key-a"},
                    {"iss": ISS_A, "aud": BASE + "/cds-services", "exp": now + 300, "iat": now,
                     "jti": str(uuid.uuid4()), "tenant": tenant}, key, "ES384")

    assert client.get("/cds-services", headers={"Authorization": "Bearer " + token(other, "t-victim")}).status_code == 401
    assert client.get("/cds-services", headers={"Authorization": "Bearer " + token(keys.a, "t-victim")}).status_code == 200
    assert client.get("/cds-services", headers={"Authorization": "Bearer " + token(other, "t-first")}).status_code == 200
    assert client.get("/cds-services", headers={"Authorization": "Bearer " + token(keys.a, "t-first")}).status_code == 401
