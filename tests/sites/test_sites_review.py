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
        from cds_service.cli.examples import build
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


# -- #9: the SMART launch honours the sites' allowlists, and the view the site's policy

def test_smart_launch_uses_the_union_of_the_sites_allowlists_and_the_view_the_sites_policy(tmp_path, keys):
    import responses
    from cds_service import sites
    from sites_helpers import FHIR_A, FHIR_B
    path = write_sites(tmp_path, keys)
    app = app_for(path, tmp_path)
    client = app.test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, "http://127.0.0.1:9999/anything/.well-known/smart-configuration", status=404)
        mock.add(responses.GET, "http://127.0.0.1:9999/anything/metadata", status=404)
        resp = client.get("/smart/launch?iss=http://127.0.0.1:9999/anything&launch=x")
        assert resp.status_code == 403 and len(mock.calls) == 0  # no probe of another loopback port
        mock.add(responses.GET, FHIR_B + "/.well-known/smart-configuration", status=404)
        mock.add(responses.GET, FHIR_B + "/metadata", status=404)
        client.get(f"/smart/launch?iss={FHIR_B}&launch=x")  # a site's base passes the allowlist
        assert mock.calls and mock.calls[0].request.url.startswith(FHIR_B)
    state = app.extensions["cds"]
    with app.test_request_context("/smart/view"):
        assert sites.view_state(state, FHIR_B).policy["dosing.bmi_tier2"] == 45
        assert sites.view_state(state, FHIR_A).policy["dosing.bmi_tier2"] == 40  # A and C agree
        assert sites.view_state(state, "http://127.0.0.1:9999/x") is None


# -- #11: no issuer oracle

def test_an_unknown_issuer_and_a_bad_signature_get_the_same_401(tmp_path, keys):
    from cryptography.hazmat.primitives.asymmetric import ec
    from sites_helpers import ISS_A, ISS_B
    path = write_sites(tmp_path, keys)
    client = app_for(path, tmp_path).test_client()
    stranger = Keys()
    stranger.a = stranger.b = ec.generate_private_key(ec.SECP384R1())
    answers = set()
    for iss in (ISS_A, ISS_B, "https://ehr.unknown.example.org"):
        resp = client.get("/cds-services", headers={"Authorization": "Bearer " + stranger.token(
            "a", BASE + "/cds-services", tenant="a-main", iss=iss)})
        answers.add((resp.status_code, resp.get_data()))
    assert len(answers) == 1 and next(iter(answers))[0] == 401


# -- #12: weak FHIR bases and key URLs are refused in production

@pytest.mark.parametrize("entry", ["http://fhir.hospital.example.org/r4", "http://127.0.0.1:8090/fhir",
                                   "https://127.0.0.1/fhir", "https://localhost/fhir", "https://10.0.0.5/fhir",
                                   "https://169.254.169.254/latest", "https://[::1]/fhir", "https://[fd00::1]/fhir"])
def test_production_refuses_weak_fhir_bases(tmp_path, keys, entry):
    from cds_service.sites.model import SitesFileError, parse_sites
    write_sites(tmp_path, keys)
    text = sites_toml().replace('fhir_allowlist = ["http://127.0.0.1:8090/fhir"]', f'fhir_allowlist = ["https://fhir.b.example.org/r4", "{entry}"]')
    with pytest.raises(SitesFileError, match="refused with CDS_ENV=production") as exc:
        parse_sites(text.encode(), "s.toml", tmp_path, production=True)
    assert "\n" not in str(exc.value)
    parse_sites(text.encode(), "s.toml", tmp_path, production=False)  # a laptop keeps loopback


def test_production_refuses_a_loopback_jwks_url_and_accepts_a_clean_file(tmp_path, keys, monkeypatch):
    from cds_service.sites.model import SitesFileError, parse_sites
    write_sites(tmp_path, keys)
    clean = sites_toml().replace("http://127.0.0.1:8080/fhir", "https://fhir.a.example.org/r4").replace(
        "http://127.0.0.1:8090/fhir", "https://fhir.b.example.org/r4")
    monkeypatch.setenv("CDS_ENV", "production")  # the CLI's default (sites check / reload)
    assert len(parse_sites(clean.encode(), "s.toml", tmp_path).sites) == 3
    weak = clean.replace('jwks_file = "jwks-b.json"', 'jwks_url = "http://localhost:9/jwks"')
    with pytest.raises(SitesFileError, match="key URL 'http://localhost:9/jwks' is plain http"):
        parse_sites(weak.encode(), "s.toml", tmp_path)


# -- #12b: every single-site variable the sites file replaces is refused when set

@pytest.mark.parametrize("name, value", [("CDS_DISCOVERY_OPEN", "false"), ("CDS_JWT_ALGORITHMS", "ES384"),
                                         ("CDS_FHIR_ALLOWLIST", "https://fhir.example.org/r4")])
def test_cds_sites_refuses_a_narrowing_single_site_variable(tmp_path, monkeypatch, name, value):
    from cds_service.config import ConfigError, load_config
    monkeypatch.setenv("CDS_SITES", str(tmp_path / "sites.toml"))
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"CDS_SITES replaces {name}"):
        load_config()


# -- #13: check and replay traffic is marked and left out of feedback-report

def test_check_and_replay_traffic_is_marked_and_left_out_of_the_report(tmp_path, capsys):
    from cds_service.cli.check import Checker
    from cds_service.cli import main as cli_main
    from cds_service.cli.examples import build
    from cds_service.cli.replay import _post
    db = str(tmp_path / "cds.sqlite3")
    app = create_app({"database": db, "audit_batch_ms": 0})
    client = app.test_client()
    path = "/cds-services/anticoagulant-order-check"
    cards = {}
    for tool in (None, "check"):
        body = build("bmi-42")
        body["hookInstance"] = str(uuid.uuid4())
        resp = client.post(path, data=json.dumps(body), content_type="application/json",
                           headers={"X-CDS-Synthetic": tool} if tool else {})
        assert resp.status_code == 200
        cards[tool] = resp.get_json()["cards"][0]
    feedback = {"card": cards["check"]["uuid"], "outcome": "overridden", "outcomeTimestamp": "2025-01-01T00:00:00Z"}
    assert client.post(path + "/feedback", data=json.dumps({"feedback": [feedback]}), content_type="application/json",
                       headers={"X-CDS-Synthetic": "check"}).status_code == 200
    app.extensions["cds"].extensions["storage"].flush()
    totals = {}
    for extra in ([], ["--include-synthetic"]):
        capsys.readouterr()
        assert cli_main(["feedback-report", "--database", db, "--json", *extra]) == 0
        totals[bool(extra)] = json.loads(capsys.readouterr().out)["totals"]
    assert (totals[False]["hook_calls"], totals[False]["feedback_items"]) == (1, 0)
    assert (totals[True]["hook_calls"], totals[True]["feedback_items"]) == (2, 1)

    # The tools send the mark on every request.
    sent = []

    class Session:
        def post(self, url, data=None, json=None, headers=None, timeout=None):
            sent.append(headers or {})
            return type("R", (), {"status_code": 200, "json": lambda self: {"cards": []}})()

    Checker("http://cds.test", session=Session()).post("x", {})
    _post(Session(), "http://cds.test", {"service": "x"}, {}, None, 5)
    assert [h.get("X-CDS-Synthetic") for h in sent] == ["check", "replay"]


# -- #19: a lifecycle row is never attributed to another site through a reused hookInstance

def test_a_reused_hook_instance_does_not_move_lifecycle_rows_between_sites(tmp_path, keys, capsys):
    from cds_service.cli import main as cli_main
    from cds_service.cli.examples import build
    from sites_helpers import PV
    path = write_sites(tmp_path, keys)
    app = app_for(path, tmp_path, audit_batch_ms=0)
    client = app.test_client()
    shared = str(uuid.uuid4())
    for who, tenant, hook_instance in (("a", "a-main", str(uuid.uuid4())), ("a", "a-main", shared), ("b", "b-1", shared)):
        body = build("standard-prophylaxis")
        body.pop("fhirServer", None)
        body.pop("fhirAuthorization", None)
        body["hookInstance"] = hook_instance
        body["context"]["userId"] = "Practitioner/1"
        resp = client.post(PV, data=json.dumps(body), content_type="application/json",
                           headers={"Authorization": "Bearer " + keys.token(who, BASE + PV, tenant=tenant)})
        assert resp.status_code == 200
    app.extensions["cds"].extensions["storage"].flush()
    capsys.readouterr()
    assert cli_main(["feedback-report", "--database", str(tmp_path / "cds.sqlite3"), "--json", "--site", "hospital-b"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["hook_calls"] == 1
    assert report["lifecycle"]["suppressed"] == 0  # hospital A's withheld repeat is not B's
    capsys.readouterr()
    assert cli_main(["feedback-report", "--database", str(tmp_path / "cds.sqlite3"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lifecycle"]["suppressed"] == 1  # it exists


# -- #18: /readyz bodies carry no database error text

def test_readyz_body_names_the_failed_check_never_the_database_error(tmp_path, monkeypatch, caplog):
    from cds_service.storage import StorageError
    app = create_app({"database": str(tmp_path / "cds.sqlite3")})
    store = app.extensions["cds"].extensions["storage"]
    secret = "connection to server at db.internal (10.1.2.3), port 5432 failed: user cds_admin /srv/secret/cds.sqlite3"

    def broken(*args, **kwargs):
        raise StorageError(secret)

    monkeypatch.setattr(store, "check_writable", broken)
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    body = resp.get_data(as_text=True)
    assert "db.internal" not in body and "cds_admin" not in body and "/srv/secret" not in body
    assert resp.get_json()["checks"]["database"].startswith("not writable")
    assert any("db.internal" in r.getMessage() or "db.internal" in str(getattr(r, "fields", "")) for r in caplog.records)


# -- #20: deep or unbounded referenced files are refused in one line

@pytest.mark.parametrize("what", ["deep-policy", "deep-jwks", "dev-zero-jwks", "big-policy"])
def test_a_deep_or_unbounded_referenced_file_is_refused_in_one_line(tmp_path, keys, what):
    from cds_service.sites.model import SitesFileError, read_sites_file
    from cds_service.sites.runtime import load_policies
    path = write_sites(tmp_path, keys)
    text = sites_toml()
    if what == "deep-policy":
        (tmp_path / "policy-b.json").write_text("[" * 100_000 + "]" * 100_000)
    elif what == "big-policy":
        (tmp_path / "policy-b.json").write_text('{"dosing.bmi_tier2": 45, "_pad": "' + "x" * (2 << 20) + '"}')
    elif what == "deep-jwks":
        (tmp_path / "jwks-b.json").write_text('{"keys": ' + "[" * 100_000 + "]" * 100_000 + "}")
    else:
        text = text.replace('jwks_file = "jwks-b.json"', 'jwks_file = "/dev/zero"')
    path.write_text(text)
    with pytest.raises(SitesFileError) as exc:
        load_policies(read_sites_file(str(path))[1])
    assert "\n" not in str(exc.value) and "hospital-b" in str(exc.value)


def test_sites_check_flags_what_production_would_refuse(tmp_path, keys, capsys, monkeypatch):
    from cds_service.cli import main as cli_main
    monkeypatch.delenv("CDS_ENV", raising=False)
    path = write_sites(tmp_path, keys)
    assert cli_main(["sites", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: fhir_allowlist entry http://127.0.0.1:8090/fhir is plain http (refused with CDS_ENV=production)" in out


# -- #3 (related): a policy or jwks file edited on one host is said loudly

def test_a_worker_whose_policy_file_differs_from_the_accepted_one_logs_it(tmp_path, keys, caplog):
    import logging
    path = write_sites(tmp_path, keys)
    app_for(path, tmp_path)  # publishes, with the digests of the files it names
    (tmp_path / "policy-b.json").write_text(json.dumps({"dosing.bmi_tier2": 42}))
    with caplog.at_level(logging.ERROR, logger="cds_service.sites"):
        app_for(path, tmp_path)  # a respawned worker, or a replica with another copy
    messages = [r.getMessage() for r in caplog.records]
    assert any("a policy or jwks file differs from the accepted one" in m for m in messages), messages


# -- review note: two threads racing into ensure_poller after a fork start one reload thread

def test_racing_requests_after_a_fork_start_one_reload_thread(tmp_path, keys, monkeypatch):
    import threading
    import time
    path = write_sites(tmp_path, keys)
    runtime = app_for(path, tmp_path).extensions["cds"].extensions["sites"]
    started = []
    real = threading.Thread.start

    def slow_start(self):
        if self.name == "cds-sites-reload":
            started.append(self)
            time.sleep(0.05)  # widen the window between the check and the start
        return real(self)

    monkeypatch.setattr(threading.Thread, "start", slow_start)
    import os as real_os

    import cds_service.sites.runtime as runtime_module

    class SlowOs:  # widen the window between the pid check and the pid being set
        def __getattr__(self, name):
            return getattr(real_os, name)

        @staticmethod
        def getpid():
            time.sleep(0.01)
            return real_os.getpid()

    monkeypatch.setattr(runtime_module, "os", SlowOs())
    runtime._poller_pid = -1  # as in a freshly forked worker
    barrier = threading.Barrier(8)

    def request():
        barrier.wait()
        runtime.ensure_poller()

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        real(t)
    for t in threads:
        t.join()
    assert len(started) == 1


def test_readyz_parses_a_sites_policy_again_only_when_its_file_changed(tmp_path, keys, monkeypatch):
    """Review #7 (also): an unauthenticated probe must not re-parse every site's policy each time."""
    from cds_service.logic.policy import Policy
    path = write_sites(tmp_path, keys)
    client = app_for(path, tmp_path).test_client()
    loads = []
    real = Policy.load.__func__

    def counting(cls, source=None, *args, **kwargs):
        loads.append(source)
        return real(cls, source, *args, **kwargs)

    monkeypatch.setattr(Policy, "load", classmethod(counting))
    for _ in range(5):
        assert client.get("/readyz").status_code == 200
    assert len(loads) == 3  # once per site
    (tmp_path / "policy-b.json").write_text("{ broken")
    assert client.get("/readyz").status_code == 503 and len(loads) == 4


# -- #10 (also): with CDS_SITES a capture names its site and each site has its own pseudonyms

def test_capture_records_carry_the_site_and_per_site_pseudonyms(tmp_path, keys):
    from cds_service.cli.examples import build
    from sites_helpers import PV
    path = write_sites(tmp_path, keys)
    capture = tmp_path / "capture"
    client = app_for(path, tmp_path, capture_dir=str(capture), capture_key="c" * 32).test_client()
    for who, tenant in (("a", "a-main"), ("b", "b-1")):
        body = build("standard-prophylaxis")
        body.pop("fhirServer", None)
        body.pop("fhirAuthorization", None)
        body["hookInstance"] = str(uuid.uuid4())
        assert client.post(PV, data=json.dumps(body), content_type="application/json", headers={
            "Authorization": "Bearer " + keys.token(who, BASE + PV, tenant=tenant)}).status_code == 200
    records = [json.loads(p.read_text()) for p in sorted(capture.glob("*.json"))]
    assert sorted(r["site"] for r in records) == ["hospital-a", "hospital-b"]
    # The same raw patient id at two hospitals: two unrelated pseudonyms.
    assert len({r["request"]["context"]["patientId"] for r in records}) == 2
