"""Issue 24: site profiles on one running service (Flask test client, real HTTP semantics).

Two hospitals with different issuers, FHIR bases and policies, and a third site sharing
hospital A's iss with its own tenant (sites_helpers.py). Deny by default throughout.
"""
from __future__ import annotations

import json
import logging
import time
import uuid

import pytest

from cds_service import create_app
from cds_service.cli import main as cli_main
from cds_service.config import ConfigError, load_config
from cds_service.cli.examples import build
import cds_service.sites.runtime as sites_runtime

from sites_helpers import FHIR_A, FHIR_B, ISS_A, OS, PV, Keys, sites_toml, write_sites

BASE = "http://localhost"


@pytest.fixture(scope="module")
def keys():
    return Keys()


@pytest.fixture
def site_dir(tmp_path, keys):
    write_sites(tmp_path, keys)
    return tmp_path


@pytest.fixture
def app(site_dir):
    return create_app({"sites": str(site_dir / "sites.toml"), "database": str(site_dir / "cds.sqlite3")})


def call(client, path, body, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = client.post(path, data=json.dumps(body), content_type="application/json", headers=headers)
    return resp.status_code, resp.get_json()


def fresh(name: str, **changes) -> dict:
    body = build(name)
    body["hookInstance"] = str(uuid.uuid4())
    body.update(changes)
    return body


def silent_cards(assessment: dict) -> list[dict]:
    """A silent site's cards in the audit row: under `silent` (sites/silent.py), or under
    `governance.silent` once clinical rules §19.14's `cards.silent` has landed."""
    if "governance" in assessment and assessment["governance"].get("silent"):
        return assessment["governance"]["silent"]
    assert assessment["silent"]["by"] == "site"
    return assessment["silent"]["cards"]


def diagnostics(body) -> str:
    return body["issue"][0]["diagnostics"]


def audit_rows(app, **where):
    store = app.extensions["cds"].extensions["storage"]
    assert store.flush()
    sql = "SELECT site_id, service_id, assessment, (SELECT COUNT(*) FROM card WHERE call_id = hook_call.id) FROM hook_call"
    rows = store.query(sql)
    return [r for r in rows if all(dict(zip(("site_id", "service_id"), r))[k] == v for k, v in where.items())]


# -- each site its own dose, FHIR base and tenant --------------------------------------------

def test_each_site_gets_its_own_policy_dose(app, keys):
    client = app.test_client()
    status, a = call(client, OS, fresh("bmi-42"), keys.token("a", BASE + OS, tenant="a-main"))
    assert status == 200
    status, b = call(client, OS, fresh("bmi-42", fhirServer=FHIR_B), keys.token("b", BASE + OS, tenant="b-1"))
    assert status == 200
    # Hospital A: default BMI tier 2 at 40 -> 80 mg; hospital B's policy puts tier 2 at 45 -> 60 mg.
    assert "consider 80 mg SC daily" in a["cards"][0]["summary"], a
    assert "consider 60 mg SC daily" in b["cards"][0]["summary"], b
    rows = audit_rows(app)
    assert sorted(r[0] for r in rows) == ["hospital-a", "hospital-b"]
    assert {r[0]: json.loads(r[2])["policy_source"].endswith("policy-b.json") for r in rows} == \
        {"hospital-a": False, "hospital-b": True}


def test_cross_site_fhir_base_is_refused_both_ways(app, keys):
    client = app.test_client()
    status, body = call(client, OS, fresh("bmi-42", fhirServer=FHIR_B), keys.token("a", BASE + OS, tenant="a-main"))
    assert status == 403 and diagnostics(body).startswith("fhirServer check failed")
    status, body = call(client, OS, fresh("bmi-42", fhirServer=FHIR_A), keys.token("b", BASE + OS, tenant="b-1"))
    assert status == 403 and diagnostics(body).startswith("fhirServer check failed")
    # The allowlist's own parsing applies: a prefix trick is no match.
    status, _ = call(client, OS, fresh("bmi-42", fhirServer=FHIR_A + "x"), keys.token("a", BASE + OS, tenant="a-main"))
    assert status == 403
    assert audit_rows(app) == []  # nothing was evaluated


def test_tenant_and_issuer_mismatches_are_refused(app, keys):
    client = app.test_client()
    for tenant in ("b-1", "a-other", None):  # another site's tenant, an unknown one, none at all
        status, body = call(client, OS, fresh("bmi-42"), keys.token("a", BASE + OS, tenant=tenant))
        assert status == 403, (tenant, body)
        assert diagnostics(body) == "tenant check failed: the token's tenant is not allowed for its issuer."
    status, body = call(client, OS, fresh("bmi-42"), keys.token("a", BASE + OS, tenant="a-main",
                                                               iss="https://ehr.z.example.org"))
    # Review #11 changes this: an unknown issuer gets the bad-signature answer (no issuer oracle).
    assert status == 401 and diagnostics(body) == "token check failed: the credential was not accepted."
    # B's key cannot sign for A's iss.
    status, body = call(client, OS, fresh("bmi-42"), keys.token("b", BASE + OS, tenant="a-main", iss=ISS_A))
    assert status == 401 and diagnostics(body).startswith("token check failed")
    status, body = call(client, OS, fresh("bmi-42"), None)
    assert status == 401 and diagnostics(body).startswith("authentication check failed")
    for header in ("Basic YTpi", "Bearer not-a-jwt", "Bearer " + "a" * 9000):
        resp = client.post(OS, data=json.dumps(fresh("bmi-42")), content_type="application/json",
                           headers={"Authorization": header})
        assert resp.status_code == 401 and diagnostics(resp.get_json()) == "token check failed: the credential was not accepted."
    status, _ = call(client, PV + "/feedback", {"card": str(uuid.uuid4()), "outcome": "accepted",
                                                "outcomeTimestamp": "2025-01-01T00:00:00Z"})
    assert status == 401


def test_silent_site_gets_no_cards_and_its_cards_are_audited(app, keys):
    client = app.test_client()
    status, body = call(client, PV, fresh("sic-positive"), keys.token("c", BASE + PV, tenant="c-east"))
    assert status == 200 and body == {"cards": []}
    [row] = audit_rows(app, site_id="clinic-c")
    assessment = json.loads(row[2])
    assert row[3] == 0  # no card counted as shown
    [silent] = silent_cards(assessment)
    assert silent["kind"] == "prophylaxis_suggestion" and silent["indicator"] == "warning"
    assert len(silent["fingerprint"]) == 32 and silent["uuid"]
    # The same request from live hospital A shows the card.
    status, body = call(client, PV, fresh("sic-positive"), keys.token("a", BASE + PV, tenant="a-main"))
    assert status == 200 and [c["indicator"] for c in body["cards"]] == ["warning"]


def test_site_set_to_off_gets_403(tmp_path, keys):
    path = write_sites(tmp_path, keys, mode_a="off")
    client = create_app({"sites": str(path), "database": str(tmp_path / "cds.sqlite3")}).test_client()
    status, body = call(client, OS, fresh("bmi-42"), keys.token("a", BASE + OS, tenant="a-main"))
    assert status == 403 and diagnostics(body) == "site mode check failed: the calling site is switched off on this service."
    status, _ = call(client, OS, fresh("bmi-42", fhirServer=FHIR_B), keys.token("b", BASE + OS, tenant="b-1"))
    assert status == 200  # the other sites are unaffected
    # Discovery offers an off site nothing, and token-less discovery leaves its services out.
    disc = client.get("/cds-services", headers={"Authorization": "Bearer " + keys.token("a", BASE + "/cds-services", tenant="a-main")})
    assert disc.status_code == 200 and disc.get_json() == {"services": []}
    assert [s["id"] for s in client.get("/cds-services").get_json()["services"]] == \
        ["coagulopathy-risk", "anticoagulant-order-check"]  # hospital B's; clinic C keeps discovery closed


def test_services_and_discovery_follow_the_site(app, keys):
    client = app.test_client()
    status, body = call(client, "/cds-services/anticoagulant-order-sign", fresh("bmi-42", hook="order-sign"),
                        keys.token("b", BASE + "/cds-services/anticoagulant-order-sign", tenant="b-1"))
    assert status == 403 and diagnostics(body) == "service check failed: this service is not enabled for the calling site."
    ids = lambda resp: [s["id"] for s in resp.get_json()["services"]]  # noqa: E731
    # Without a token: every service of the sites that keep discovery open (clinic C does not).
    assert ids(client.get("/cds-services")) == ["coagulopathy-risk", "anticoagulant-order-check",
                                                "anticoagulant-order-sign"]
    auth = lambda who, tenant: {"Authorization": "Bearer " + keys.token(who, BASE + "/cds-services", tenant=tenant)}  # noqa: E731
    assert ids(client.get("/cds-services", headers=auth("b", "b-1"))) == ["coagulopathy-risk", "anticoagulant-order-check"]
    assert ids(client.get("/cds-services", headers=auth("c", "c-east"))) == ["coagulopathy-risk"]
    assert client.get("/cds-services", headers=auth("a", "nobody")).status_code == 403
    assert client.get("/cds-services/nope").status_code in (404, 405)


def test_discovery_needs_a_token_when_no_site_keeps_it_open(tmp_path, keys):
    path = write_sites(tmp_path, keys)
    path.write_text(path.read_text().replace('mode = "live"\nfhir_allowlist', 'mode = "live"\ndiscovery_open = false\nfhir_allowlist')
                    .replace('mode = "live"\npolicy', 'mode = "live"\ndiscovery_open = false\npolicy'))
    client = create_app({"sites": str(path), "database": str(tmp_path / "cds.sqlite3")}).test_client()
    resp = client.get("/cds-services")
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")


# -- reload -----------------------------------------------------------------------------------

def test_reload_changes_a_mode_without_restart_and_a_broken_file_is_refused(app, site_dir, keys, monkeypatch, capsys):
    monkeypatch.setattr(sites_runtime, "CHECK_INTERVAL_S", 0.0)
    client = app.test_client()
    db = str(site_dir / "cds.sqlite3")
    path = site_dir / "sites.toml"
    status, body = call(client, PV, fresh("sic-positive"), keys.token("a", BASE + PV, tenant="a-main"))
    assert status == 200 and body["cards"]
    path.write_text(sites_toml(mode_a="silent"))
    assert cli_main(["sites", "reload", str(path), "--database", db]) == 0

    def a_is_silent() -> bool:
        status, body = call(client, PV, fresh("sic-positive"), keys.token("a", BASE + PV, tenant="a-main"))
        assert status == 200
        return body == {"cards": []}

    deadline = time.monotonic() + 10
    while not a_is_silent():
        assert time.monotonic() < deadline, "reload not applied within 10 s"
        time.sleep(0.05)
    capsys.readouterr()
    assert cli_main(["sites", "reload", str(path), "--database", str(site_dir / "typo.sqlite3")]) == 2
    assert "no database at" in capsys.readouterr().err and not (site_dir / "typo.sqlite3").exists()
    path.write_text(sites_toml(mode_a="off").replace("[sites.hospital-b]", "[sites.hospital-b]\nfrobnicate = 1"))
    assert cli_main(["sites", "reload", str(path), "--database", db]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "unknown keys ['frobnicate']" in err
    time.sleep(0.3)  # several rounds of the reload thread
    assert a_is_silent()  # still silent, not off


def test_a_worker_booting_on_a_broken_file_keeps_the_accepted_configuration(app, site_dir, keys, caplog):
    """What SIGHUP does under granian: the workers are respawned and read the file again."""
    path = site_dir / "sites.toml"
    path.write_text("this is [not toml")
    with caplog.at_level(logging.ERROR, logger="cds_service.sites"):
        respawned = create_app({"sites": str(path), "database": str(site_dir / "cds.sqlite3")})
    refused = [r for r in caplog.records if r.getMessage().startswith("sites file refused")]
    assert len(refused) == 1
    status, body = call(respawned.test_client(), OS, fresh("bmi-42"), keys.token("a", BASE + OS, tenant="a-main"))
    assert status == 200 and "80 mg" in body["cards"][0]["summary"]


def test_a_respawned_worker_never_undoes_a_reload_with_its_older_local_file(app, site_dir, keys, caplog):
    """Review #3: `sites reload incident.toml` (hospital B off), then a worker respawns (or a
    replica restarts) with CDS_SITES still naming the old file: the accepted record wins on both
    workers, the respawn logs that its file differs, and only an explicit reload publishes it."""
    db = str(site_dir / "cds.sqlite3")
    incident = site_dir / "incident.toml"
    incident.write_text(sites_toml().replace('[sites.hospital-b]\nmode = "live"', '[sites.hospital-b]\nmode = "off"'))
    runtime = app.extensions["cds"].extensions["sites"]
    assert cli_main(["sites", "reload", str(incident), "--database", db]) == 0
    runtime.maybe_reload()
    token = lambda: keys.token("b", BASE + OS, tenant="b-1")  # noqa: E731
    off = lambda worker: call(worker.test_client(), OS, fresh("bmi-42", fhirServer=FHIR_B), token())  # noqa: E731
    assert diagnostics(off(app)[1]).startswith("site mode check failed")
    with caplog.at_level(logging.WARNING, logger="cds_service.sites"):
        respawned = create_app({"sites": str(site_dir / "sites.toml"), "database": db})
    assert any("differs from the accepted configuration" in r.getMessage() for r in caplog.records)
    runtime.maybe_reload()
    for worker in (app, respawned):
        assert off(worker)[0] == 403 and diagnostics(off(worker)[1]).startswith("site mode check failed")
    # The operator explicitly re-publishes the original file: both workers go back to live.
    assert cli_main(["sites", "reload", str(site_dir / "sites.toml"), "--database", db]) == 0
    for worker in (app, respawned):
        worker.extensions["cds"].extensions["sites"].maybe_reload()
        assert call(worker.test_client(), OS, fresh("bmi-42", fhirServer=FHIR_B), token())[0] == 200


def test_with_a_reload_key_a_database_write_alone_cannot_add_an_issuer(site_dir, keys, monkeypatch):
    """Review #5: the record in `meta` is signed with CDS_SITES_RELOAD_KEY; a row written by
    anyone holding only the database's credentials is ignored, a signed reload applies."""
    import sqlite3

    from cryptography.hazmat.primitives.asymmetric import ec
    from security_helpers import public_jwk, sign
    reload_key = "k" * 32
    db = site_dir / "cds.sqlite3"
    app = create_app({"sites": str(site_dir / "sites.toml"), "database": str(db), "sites_reload_key": reload_key})
    runtime = app.extensions["cds"].extensions["sites"]
    evil = ec.generate_private_key(ec.SECP384R1())
    jwk = json.dumps(public_jwk(evil, "e1", "ES384")).replace('":', '" =')
    forged = (f'[sites.hospital-a]\nmode = "live"\nfhir_allowlist = ["{FHIR_A}"]\n'
              f'[[sites.hospital-a.issuers]]\niss = "https://evil.example.net"\njwks = {{keys = [{jwk}]}}\n')

    class Writer:  # a plain SQL writer on the same database, without the key
        def _write(self, fn):
            conn = sqlite3.connect(db)
            fn(conn)
            conn.commit()
            conn.close()

    sites_runtime.publish(Writer(), forged.encode(), "x.toml", str(site_dir))
    runtime.maybe_reload()
    now = int(time.time())
    token = sign({"alg": "ES384", "typ": "JWT", "kid": "e1"},
                 {"iss": "https://evil.example.net", "aud": BASE + "/cds-services", "exp": now + 300,
                  "iat": now, "jti": str(uuid.uuid4())}, evil, "ES384")
    client = app.test_client()
    assert client.get("/cds-services", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # The operator's reload, signed with the key, applies.
    (site_dir / "sites.toml").write_text(sites_toml(mode_a="off"))
    monkeypatch.setenv("CDS_SITES_RELOAD_KEY", reload_key)
    assert cli_main(["sites", "reload", str(site_dir / "sites.toml"), "--database", str(db)]) == 0
    runtime.maybe_reload()
    assert runtime.current.sites["hospital-a"].site.mode == "off"
    from cds_service.config import Config, production_warnings
    assert any(w.startswith("CDS_SITES_RELOAD_KEY is unset")
               for w in production_warnings(Config(env="production", auth="required", sites="s.toml")))
    assert not any("RELOAD_KEY" in w for w in production_warnings(
        Config(env="production", auth="required", sites="s.toml", sites_reload_key=reload_key)))


def test_a_broken_file_with_nothing_accepted_stops_start(tmp_path):
    (tmp_path / "sites.toml").write_text('[sites.x]\nmode = "loud"\n')
    with pytest.raises(ConfigError, match="site 'x': 'mode' must be one of"):
        create_app({"sites": str(tmp_path / "sites.toml"), "database": str(tmp_path / "cds.sqlite3")})


# -- the single-site variables, config conflicts, readiness, CLI, report ---------------------

def test_single_site_variables_are_the_default_site(tmp_path):
    app = create_app({"database": str(tmp_path / "cds.sqlite3")})
    status, body = call(app.test_client(), OS, fresh("bmi-42"))
    assert status == 200 and body["cards"]
    assert [r[0] for r in audit_rows(app)] == ["default"]


def test_cds_sites_refuses_the_variables_it_replaces(tmp_path, monkeypatch):
    monkeypatch.setenv("CDS_SITES", str(tmp_path / "sites.toml"))
    monkeypatch.setenv("CDS_POLICY", str(tmp_path / "p.json"))
    with pytest.raises(ConfigError, match="CDS_SITES replaces CDS_POLICY"):
        load_config()
    monkeypatch.delenv("CDS_POLICY")
    monkeypatch.setenv("CDS_AUTH", "off")
    assert load_config().auth == "required"  # a site is known only by its token


def test_readyz_checks_every_sites_policy_without_naming_sites(app, site_dir):
    client = app.test_client()
    assert client.get("/readyz").get_json()["checks"]["sites"] == "ok"
    (site_dir / "policy-b.json").write_text("{ broken")
    resp = client.get("/readyz")
    assert resp.status_code == 503
    text = resp.get_data(as_text=True)
    assert "a site has an unusable policy file" in text and "hospital" not in text and "clinic" not in text


def test_sites_check_prints_fingerprints_never_key_material(site_dir, keys, capsys):
    assert cli_main(["sites", "check", str(site_dir / "sites.toml")]) == 0
    out = capsys.readouterr().out
    jwk = json.loads((site_dir / "jwks-a.json").read_text())["keys"][0]
    assert jwk["x"] not in out and jwk["y"] not in out
    assert "site hospital-b" in out and "policy-b.json" in out and "mode: silent" in out
    assert "policy keys differing from the defaults: dosing.bmi_tier2 = 45" in out
    assert out.count("key key-a: EC P-384, sha256:") == 2 and "tenant: c-east" in out


def test_feedback_report_for_one_site(app, keys, site_dir, capsys):
    client = app.test_client()
    for who, tenant, server in (("a", "a-main", FHIR_A), ("b", "b-1", FHIR_B), ("b", "b-1", FHIR_B)):
        status, body = call(client, OS, fresh("bmi-42", fhirServer=server), keys.token(who, BASE + OS, tenant=tenant))
        assert status == 200
    card = body["cards"][0]
    feedback = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2025-01-01T00:00:00Z"}
    resp = client.post(OS + "/feedback", data=json.dumps(feedback), content_type="application/json",
                       headers={"Authorization": "Bearer " + keys.token("b", BASE + OS + "/feedback", tenant="b-1")})
    assert resp.status_code == 200
    # Hospital A's token cannot send feedback on hospital B's card (it would skew B's report).
    resp = client.post(OS + "/feedback", data=json.dumps({**feedback, "outcomeTimestamp": "2025-01-02T00:00:00Z"}),
                       content_type="application/json",
                       headers={"Authorization": "Bearer " + keys.token("a", BASE + OS + "/feedback", tenant="a-main")})
    assert resp.status_code == 403 and diagnostics(resp.get_json()) == \
        "feedback check failed: a card named was not issued to the calling site."
    app.extensions["cds"].extensions["storage"].flush()
    reports = {}
    for site in ("hospital-a", "hospital-b", None):
        capsys.readouterr()
        argv = ["feedback-report", "--database", str(site_dir / "cds.sqlite3"), "--json"] + (["--site", site] if site else [])
        assert cli_main(argv) == 0
        reports[site] = json.loads(capsys.readouterr().out)
    assert [reports[s]["totals"]["hook_calls"] for s in ("hospital-a", "hospital-b", None)] == [1, 2, 3]
    assert [reports[s]["totals"]["feedback_items"] for s in ("hospital-a", "hospital-b", None)] == [0, 1, 1]
    with pytest.raises(SystemExit) as exc:  # argparse: a site id is never SQL
        cli_main(["feedback-report", "--database", str(site_dir / "cds.sqlite3"), "--site", "x'; --"])
    assert exc.value.code == 2


def test_every_metric_of_a_call_carries_the_calling_site(app, keys):
    from prometheus_client.parser import text_string_to_metric_families
    client = app.test_client()
    status, _ = call(client, OS, fresh("bmi-42", fhirServer=FHIR_B), keys.token("b", BASE + OS, tenant="b-1"))
    assert status == 200
    assert call(client, OS, fresh("bmi-42"), keys.token("a", BASE + OS, tenant="nobody"))[0] == 403
    samples = [s for f in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
               for s in f.samples if s.name.startswith("cds_")]
    assert samples and all("site" in s.labels for s in samples)
    labels = {(s.name, s.labels.get("site")) for s in samples if s.value}
    assert ("cds_hook_calls_total", "hospital-b") in labels
    assert ("cds_cards_total", "hospital-b") in labels
    assert ("cds_jwt_rejections_total", "none") in labels  # refused before its site was known
