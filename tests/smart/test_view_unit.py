"""The assessment view through the Flask test client, the EHR mocked with `responses` at the
HTTP layer: discovery, the authorize redirect, cookies and headers, refusals, the session
store, logs, the card link and the charts."""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import sqlite3
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import responses

from cds_service import create_app
from cds_service.cli.examples import build as example
from cds_service.fhir.templates import fill_template, prefetch_templates
from cds_service.smart import assessment_link, charts, oauth
from cds_service.smart.data import Point
from cds_service.smart.sessions import SessionStore
from conftest import assert_valid_cds_response

EHR = "https://ehr.example.org/fhir"
AUTH = "https://auth.example.org"
SMART_CONFIG = {"authorization_endpoint": AUTH + "/authorize", "token_endpoint": AUTH + "/token",
                "code_challenge_methods_supported": ["S256"]}
TOKEN = "opaque-token-5f1c2b0e9a"


@pytest.fixture
def app(tmp_path):
    # AUTH is listed: since issue 21 (L3) an authorization server off the FHIR server's host
    # and port must be named by the site.
    return create_app({"database": str(tmp_path / "cds.sqlite3"), "fhir_allowlist": f"{EHR},{AUTH}",
                       "smart_frame_ancestors": "https://ehr.example.org", "fhir_cache_size": 0})


@pytest.fixture
def client(app):
    return app.test_client()


def _fhir_data(rsps, scenario: str = "sic-positive") -> str:
    """The example's prefetch served by the mocked EHR as searches (batch refused); returns the
    patient id."""
    body = example(scenario)
    context = body["context"]
    by_query = {}
    for key, template in prefetch_templates().items():
        url = urlsplit(EHR + "/" + fill_template(template, context))
        by_query[(url.path, tuple(sorted(parse_qsl(url.query))))] = body["prefetch"].get(key)

    def answer(request):
        url = urlsplit(request.url)
        value = by_query.get((url.path, tuple(sorted(parse_qsl(url.query)))))
        if value is None:
            return 404, {}, json.dumps({"resourceType": "OperationOutcome", "issue": []})
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(value)

    rsps.add(responses.POST, EHR, status=400)   # no batch: parallel GETs
    rsps.add_callback(responses.GET, re.compile(re.escape(EHR) + r"/(Patient|Observation|Condition|Medication"
                                                r"Request|MedicationAdministration|MedicationStatement|AllergyIntolerance|Procedure"
                                                r"|Encounter).*"),
                      callback=answer)
    return context["patientId"]


def _launch(client, rsps, config=SMART_CONFIG):
    rsps.add(responses.GET, EHR + "/.well-known/smart-configuration", json=config)
    return client.get("/smart/launch", query_string={"iss": EHR, "launch": "abc"},
                      base_url="https://cds.example.org")


def test_pkce_pair_is_s256():
    verifier, challenge = oauth.pkce_pair()
    assert 43 <= len(verifier) <= 128 and re.fullmatch(r"[A-Za-z0-9_\-]+", verifier)
    assert challenge == base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert oauth.pkce_pair()[0] != verifier


@responses.activate
def test_authorize_redirect_and_cookie(client):
    resp = _launch(client, responses)
    assert resp.status_code == 302
    target = urlsplit(resp.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == AUTH + "/authorize"
    q = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert q["redirect_uri"] == "https://cds.example.org/smart/callback" and q["aud"] == EHR
    assert q["launch"] == "abc" and q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    cookie = resp.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/smart" in cookie
    assert "abc" not in cookie and q["state"] not in cookie


@responses.activate
def test_iss_not_allowlisted_gets_no_request_and_no_cookie(client):
    resp = client.get("/smart/launch", query_string={"iss": "http://127.0.0.1:9/fhir", "launch": "x"})
    assert resp.status_code == 403 and "Set-Cookie" not in resp.headers and len(responses.calls) == 0


@responses.activate
def test_loopback_open_server_cookie_is_not_secure_and_url_is_clean(tmp_path):
    base = "http://127.0.0.1:9/fhir"
    app = create_app({"database": str(tmp_path / "db"), "fhir_allowlist": "http://127.0.0.1"})
    responses.add(responses.GET, base + "/.well-known/smart-configuration", status=404)
    responses.add(responses.GET, base + "/metadata", json={"resourceType": "CapabilityStatement"})
    resp = app.test_client().get("/smart/launch", query_string={"iss": base, "patient": "p-7"})
    assert resp.status_code == 303 and re.fullmatch(r"/smart/view/[\w-]{16,64}", resp.headers["Location"])
    cookie = resp.headers["Set-Cookie"]
    assert "Secure" not in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie and "p-7" not in cookie


@responses.activate
def test_oauth_uris_fallback_and_unusable_endpoints(client):
    responses.add(responses.GET, EHR + "/.well-known/smart-configuration", status=404)
    responses.add(responses.GET, EHR + "/metadata", json={"resourceType": "CapabilityStatement", "rest": [{
        "security": {"extension": [{"url": oauth.OAUTH_URIS, "extension": [
            {"url": "authorize", "valueUri": "http://auth.example.org/authorize"},   # http, not loopback
            {"url": "token", "valueUri": AUTH + "/token"}]}]}}]})
    resp = client.get("/smart/launch", query_string={"iss": EHR, "launch": "abc"})
    assert resp.status_code == 502 and "unusable OAuth endpoints" in resp.get_data(as_text=True)


@responses.activate
def test_server_without_s256_is_refused(client):
    resp = _launch(client, responses, {**SMART_CONFIG, "code_challenge_methods_supported": ["plain"]})
    assert resp.status_code == 502 and "PKCE S256" in resp.get_data(as_text=True)


@responses.activate
def test_unreachable_ehr_is_a_clear_page(client):
    resp = client.get("/smart/launch", query_string={"iss": EHR, "launch": "abc"})   # no mock: connection error
    assert resp.status_code == 502 and "could not be reached" in resp.get_data(as_text=True)


@responses.activate
def test_open_server_needs_loopback_or_an_explicit_entry(tmp_path):
    app = create_app({"database": str(tmp_path / "db"), "fhir_allowlist": "*"})
    responses.add(responses.GET, "https://open.example.org/fhir/.well-known/smart-configuration", status=404)
    responses.add(responses.GET, "https://open.example.org/fhir/metadata",
                  json={"resourceType": "CapabilityStatement", "rest": [{"mode": "server"}]})
    resp = app.test_client().get("/smart/launch", query_string={"iss": "https://open.example.org/fhir",
                                                                "patient": "p1"})
    assert resp.status_code == 403 and "no SMART authorization" in resp.get_data(as_text=True)


@responses.activate
def test_open_server_refused_when_auth_is_required(tmp_path):
    app = create_app({"database": str(tmp_path / "db"), "fhir_allowlist": EHR, "auth": "required",
                      "trusted_issuers": "conformance/sandbox-trust.json"})
    responses.add(responses.GET, EHR + "/.well-known/smart-configuration", status=404)
    responses.add(responses.GET, EHR + "/metadata", json={"resourceType": "CapabilityStatement"})
    resp = app.test_client().get("/smart/launch", query_string={"iss": EHR, "patient": "p1"})
    assert resp.status_code == 403
    app = create_app({"database": str(tmp_path / "db2"), "fhir_allowlist": EHR, "auth": "required",
                      "trusted_issuers": "conformance/sandbox-trust.json", "smart_open_servers": "on"})
    resp = app.test_client().get("/smart/launch", query_string={"iss": EHR, "patient": "p1"})
    assert resp.status_code == 303     # CDS_SMART_OPEN_SERVERS=on, explicitly allowlisted


@responses.activate
def test_full_flow_with_mocks_never_logs_the_token_or_patient(client, caplog):
    caplog.set_level(logging.DEBUG)
    pid = _fhir_data(responses)
    resp = _launch(client, responses)
    q = {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}
    seen = {}

    def token(request):
        seen.update(parse_qsl(request.body))
        return 200, {}, json.dumps({"access_token": TOKEN, "token_type": "bearer", "expires_in": 600,
                                    "patient": pid, "scope": "launch patient/*.rs",
                                    "appContext": '{"kind":"contraindicated","hookInstance":"h"}'})

    responses.add_callback(responses.POST, AUTH + "/token", callback=token)
    back = client.get("/smart/callback", query_string={"code": "c0de", "state": q["state"]},
                      base_url="https://cds.example.org")
    assert back.status_code == 303 and re.search(r"/smart/view/[\w-]{16,64}$", back.headers["Location"])
    assert seen["code_verifier"] and seen["redirect_uri"] == "https://cds.example.org/smart/callback"
    page = client.get(urlsplit(back.headers["Location"]).path, base_url="https://cds.example.org")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "SIC (Iba 2017)" in html
    fhir_calls = [c.request for c in responses.calls if c.request.url.startswith(EHR + "/Observation")]
    assert fhir_calls and all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in fhir_calls)
    assert TOKEN not in html
    logged = "\n".join(r.getMessage() + json.dumps(getattr(r, "fields", {}), default=str) for r in caplog.records)
    assert TOKEN not in logged and pid not in logged and "c0de" not in logged
    # the callback's state cannot be replayed
    again = client.get("/smart/callback", query_string={"code": "c0de", "state": q["state"]},
                       base_url="https://cds.example.org")
    assert again.status_code == 401


@responses.activate
def test_security_headers(client):
    resp = client.get("/smart/view")
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "style-src 'self'" in csp and "script-src" not in csp
    assert "frame-ancestors 'self' https://ehr.example.org" in csp
    assert "X-Frame-Options" not in resp.headers      # frame-ancestors names an EHR origin
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.status_code == 401 and resp.mimetype == "text/html"


def test_unexpected_failure_is_a_page_not_a_trace(client, monkeypatch):
    from cds_service.smart import views

    class Boom(Exception):
        pass

    def explode(*a, **k):
        raise Boom("secret-token-in-message")
    monkeypatch.setattr(views, "_store", explode)
    resp = client.get("/smart/view/" + "a" * 24)
    text = resp.get_data(as_text=True)
    assert resp.status_code == 500 and "Assessment not available" in text
    assert "secret-token" not in text and "Traceback" not in text


def test_session_store_encrypts_and_expires(tmp_path):
    path = str(tmp_path / "sessions.sqlite3")
    store = SessionStore(path)
    store.put("cookie-value-1", {"token": TOKEN, "patient": "p-42"}, expires_at=9e12)
    raw = b"".join(bytes(r[0]) + r[1].encode() for r in
                   sqlite3.connect(path).execute("SELECT blob, id FROM smart_session"))
    assert TOKEN.encode() not in raw and b"p-42" not in raw and b"cookie-value-1" not in raw
    assert store.get("cookie-value-1")["token"] == TOKEN
    assert store.get("cookie-value-2") is None and store.get(None) is None
    store.put("old", {"token": "x"}, expires_at=1.0)
    assert store.get("old") is None


def test_assessment_link_shape_and_schema():
    link = assessment_link("anti_xa", "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "https://cds.example.org/")
    assert link == {"label": "Open coagulopathy assessment", "url": "https://cds.example.org/smart/launch",
                    "type": "smart",
                    "appContext": '{"kind":"anti_xa","hookInstance":"d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"}'}


def test_cards_link_to_the_public_base(tmp_path):
    app = create_app({"database": str(tmp_path / "db"), "public_base_url": "https://cds.example.org/cds"})
    body = example("sic-positive")
    resp = app.test_client().post("/cds-services/coagulopathy-risk", json=body)
    payload = resp.get_json()
    assert_valid_cds_response(payload)
    assert payload["cards"]
    for card in payload["cards"]:
        smart = [link for link in card["links"] if link["type"] == "smart"]
        assert [link["url"] for link in smart] == ["https://cds.example.org/cds/smart/launch"]
        assert json.loads(smart[0]["appContext"])["hookInstance"] == body["hookInstance"]


def test_chart_draws_points_lines_and_doses():
    now = datetime(2026, 1, 10, 12, tzinfo=timezone.utc)
    pts = [Point(now - timedelta(days=d), v, f"{v} x") for d, v in ((3, 210.0), (2, 150.0), (1, 95.0))]
    dose = type("D", (), {"time": now - timedelta(days=2), "text": "enoxaparin 40 mg"})()
    svg = charts.chart("Platelets", "×10⁹/L", pts, now - timedelta(days=14), now,
                       lines=(charts.RefLine(150, "150"), charts.RefLine(25, "25", "alarm")), doses=[dose])
    assert svg.startswith("<svg") and svg.count('<circle class="pt"') == 3 and 'data-points="3"' in svg
    assert svg.count('class="ref"') == 1 and svg.count('class="alarm"') == 1 and svg.count('class="dose"') == 1
    assert "style=" not in svg and "<script" not in svg
    ys = [float(y) for y in re.findall(r'<circle class="pt" cx="[\d.]+" cy="([\d.]+)"', svg)]
    assert ys[0] < ys[1] < ys[2]            # falling counts are drawn lower
    empty = charts.chart("INR", "ratio", [], now - timedelta(days=14), now)
    assert "No results in this period" in empty and 'data-points="0"' in empty


def _assessment(scenario: str = "sic-positive"):
    from cds_service.fhir.bundle import bundle_resources
    from cds_service.fhir.extract import extract_inputs
    from cds_service.logic.assessment import assess
    from cds_service.logic.policy import Policy
    body = example(scenario)
    policy = Policy.load("")
    resources = []
    for value in body["prefetch"].values():
        if isinstance(value, dict):
            resources += list(bundle_resources(value)) if value.get("resourceType") == "Bundle" else [value]
    inputs = extract_inputs(resources, now=datetime.now(timezone.utc), policy=policy,
                            patient_id=body["context"]["patientId"])
    return assess(inputs, policy), policy


class _V2:
    """The v1 assessment with a v2 `recommendation` (clinical rules v2 §13.1) on top."""

    def __init__(self, assessment, recommendation):
        self._a, self.recommendation = assessment, recommendation

    def __getattr__(self, name):
        return getattr(self._a, name)


def test_v2_recommendation_is_rendered_with_its_pathway_and_rule():
    from types import SimpleNamespace

    from cds_service.smart import page
    a, policy = _assessment()
    rec = SimpleNamespace(pathway="therapeutic_candidate", not_therapeutic_because=(),
                          therapeutic=SimpleNamespace(drug="enoxaparin", dose_mg=90, doses_per_day=2))
    out = page._recommendation(_V2(a, rec), policy)
    assert out["v2"] and out["title"] == "Therapeutic-dose heparin is an option"
    assert out["therapeutic"] == "enoxaparin 90 mg subcutaneous every 12 hours"
    assert "low-flow oxygen" in out["condition"] and "14 days" in out["action"]
    # the JSON form (a dict) works as well, and every failed condition is named
    out = page._recommendation(_V2(a, {"pathway": "prophylaxis", "therapeutic": None,
                                       "not_therapeutic_because": ["critically_ill", "no_low_flow_oxygen"]}), policy)
    assert out["because"] == ["critically ill (organ support)", "not on low-flow oxygen"]
    assert out["regimen"].startswith("enoxaparin")


def test_safety_rows_name_unchecked_and_unknown_codes():
    from dataclasses import replace

    from cds_service.smart import page
    a, policy = _assessment()
    safety = replace(a.safety, contraindications=("hit_acute",), undetermined=("hemoglobin_lt_8",))
    view = type("A", (), {"inputs": a.inputs, "safety": safety, "renal": a.renal})()
    rows = page._safety(view, policy)
    ci = {text: (state, word) for text, state, word in rows["contraindications"]}
    assert ci["Hit acute"] == ("present", "present")
    cautions = {text: (state, word) for text, state, word in rows["cautions"]}
    assert cautions["Haemoglobin below 8 g/dL"][0] == "unknown"
    assert "could not be checked" in cautions["Haemoglobin below 8 g/dL"][1]


def test_frame_ancestors_config_is_checked():
    from cds_service.config import ConfigError, load_config
    cfg = load_config({"smart_frame_ancestors": "https://ehr.example.org,https://*.ehr.example.net:8443"})
    assert cfg.smart_frame_ancestors == ("https://ehr.example.org", "https://*.ehr.example.net:8443")
    with pytest.raises(ConfigError, match="CDS_SMART_FRAME_ANCESTORS"):
        load_config({"smart_frame_ancestors": "https://ehr.example.org; script-src *"})
    with pytest.raises(ConfigError, match="CDS_SMART_OPEN_SERVERS"):
        load_config({"smart_open_servers": "yes"})


def test_cors_origins_join_frame_ancestors(tmp_path):
    app = create_app({"database": str(tmp_path / "db"), "cors_origins": "https://sandbox.cds-hooks.org"})
    resp = app.test_client().get("/smart/view")
    assert resp.headers["Content-Security-Policy"].endswith("frame-ancestors 'self' https://sandbox.cds-hooks.org")


def test_every_source_is_listed_with_a_link():
    from cds_service.cards.vocabulary import CITATIONS, EVIDENCE
    from cds_service.smart import page
    sources = page._sources()
    assert len(sources) == len(EVIDENCE) + len([k for k in CITATIONS if k not in EVIDENCE])
    for label, url, kind in sources:
        assert (url or "").startswith("https://") or kind == "none", label
    assert ("https://doi.org/10.1111/jth.14817" in [u for _, u, _ in sources])   # Tang 2020


def test_access_log_lines_lose_the_launch_query():
    from cds_service.smart import LaunchQueryFilter
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1,
                               '%s "%s" %s', ("127.0.0.1", "GET /smart/launch?iss=http://x&patient=p-77 HTTP/1.1",
                                              303), None)
    assert LaunchQueryFilter().filter(record)
    assert record.getMessage() == '127.0.0.1 "GET /smart/launch?[query removed] HTTP/1.1" 303'
    other = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, "GET /cds-services?x=1", (), None)
    LaunchQueryFilter().filter(other)
    assert other.getMessage() == "GET /cds-services?x=1"
