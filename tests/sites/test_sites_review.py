"""Security review of issue 24 (review-sec.md), findings fixed on the `secfix` branch: each test
failed before its fix."""
from __future__ import annotations

import json
import uuid

import pytest

from cds_service import create_app
from sites_helpers import Keys, sites_toml, write_sites

BASE = "http://localhost"


@pytest.fixture(scope="module")
def keys():
    return Keys()


def app_for(path, tmp_path, **extra):
    return create_app({"sites": str(path), "database": str(tmp_path / "cds.sqlite3"), **extra})


# -- #6: token-less discovery shows each site's own prefetch, never a template missing its codes

def test_open_discovery_never_offers_a_template_without_an_open_sites_local_codes(tmp_path, keys):
    path = write_sites(tmp_path, keys)
    (tmp_path / "codes-b.json").write_text(json.dumps({"observations": {"platelets": {"codes": ["LOINC:99999-9"]}}}))
    (tmp_path / "policy-b.json").write_text(json.dumps({"dosing.bmi_tier2": 45, "codes.extra_file": str(tmp_path / "codes-b.json")}))
    client = app_for(path, tmp_path).test_client()
    services = {s["id"]: s for s in client.get("/cds-services").get_json()["services"]}
    # A's and B's templates differ for the two services both offer: neither is listed token-less.
    assert set(services) == {"anticoagulant-order-sign"}
    with_token = client.get("/cds-services", headers={"Authorization": "Bearer " + keys.token(
        "b", BASE + "/cds-services", tenant="b-1")}).get_json()["services"]
    assert all("99999-9" in s["prefetch"]["labs"] for s in with_token)
    # Only B open: its own templates, with its local code.
    path.write_text(sites_toml().replace('[sites.hospital-a]\nmode = "live"',
                                         '[sites.hospital-a]\nmode = "live"\ndiscovery_open = false'))
    (tmp_path / "cds.sqlite3").unlink()
    services = create_app({"sites": str(path), "database": str(tmp_path / "cds2.sqlite3")}).test_client().get(
        "/cds-services").get_json()["services"]
    assert {s["id"] for s in services} == {"coagulopathy-risk", "anticoagulant-order-check"}
    assert all("99999-9" in s["prefetch"]["labs"] for s in services)


# -- #7: /readyz never fetches a JWKS; one site's key outage is "degraded", not a 503 for all

def test_readyz_makes_no_outbound_fetch_and_a_sites_key_outage_does_not_fail_it(tmp_path, keys):
    import responses
    from sites_helpers import OS
    url = "https://ehr.a.example.org/jwks.json"
    write_sites(tmp_path, keys)
    (tmp_path / "sites.toml").write_text(sites_toml().replace('jwks_file = "jwks-a.json"', f'jwks_url = "{url}"'))
    client = app_for(tmp_path / "sites.toml", tmp_path).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, url, status=503)
        for _ in range(5):
            resp = client.get("/readyz")
            assert resp.status_code == 200 and resp.get_json()["checks"]["sites"] == "ok"
        assert len(mock.calls) == 0
        from cds_service.examples import build
        body = build("bmi-42")
        body["hookInstance"] = str(uuid.uuid4())
        resp = client.post(OS, data=json.dumps(body), content_type="application/json",
                           headers={"Authorization": "Bearer " + keys.token("a", BASE + OS, tenant="a-main")})
        assert resp.status_code == 401 and len(mock.calls) == 1  # the hook call fetched, and failed
        resp = client.get("/readyz")
        assert len(mock.calls) == 1
    checks = resp.get_json()["checks"]
    assert resp.status_code == 200 and checks["sites_keys"].startswith("degraded")
    assert "hospital" not in resp.get_data(as_text=True)
