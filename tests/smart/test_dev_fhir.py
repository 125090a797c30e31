"""`cds-service dev-fhir` (issue 22): the Sandbox tester's FHIR server and SMART launcher.

The browser test plays the CDS Hooks Sandbox's part at launch. What the Sandbox does was read
from its source (cds-hooks/sandbox, src/retrieve-data-helpers/launch-context-retrieval.js and
service-exchange.js): for each card link of type "smart" it POSTs
`{"launchUrl": <link url>, "parameters": {"patient", "smart_messaging_origin", "appContext"}}`
to `<FHIR base>/_services/smart/Launch` (Accept: application/json; no Authorization when the
Sandbox itself was launched open), reads `launch_id`, and opens
`<link url>?launch=<launch_id>&iss=<FHIR base>` (iss not URL-encoded). Its prefetch is a
`POST <type>/_search` with the query as a form body. `SandboxClient` below does the same.
"""
from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from cds_service.cli.integration.devfhir import DevFhirRefused, check_allowed

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_ORIGIN = "http://localhost:8080"


class SandboxClient:
    """The Sandbox's part of a patient-view call and of a card's SMART launch (no code of it)."""

    def __init__(self, fhir_base: str, service_base: str):
        self.fhir, self.service = fhir_base, service_base
        self.http = requests.Session()

    def prefetch(self, templates: dict[str, str], patient: str) -> dict:
        out = {}
        for key, template in templates.items():
            query = template.replace("{{context.patientId}}", patient)
            path, _, params = query.partition("?")
            if params:
                resp = self.http.post(f"{self.fhir}/{path}/_search", data=params, timeout=30,
                                      headers={"Accept": "application/json+fhir",
                                               "content-type": "application/x-www-form-urlencoded"})
            else:
                resp = self.http.get(f"{self.fhir}/{path}", headers={"Accept": "application/json+fhir"}, timeout=30)
            assert resp.status_code == 200, (key, resp.text[:300])
            out[key] = resp.json()
        return out

    def patient_view(self, patient: str) -> dict:
        services = self.http.get(f"{self.service}/cds-services", timeout=30).json()["services"]
        service = next(s for s in services if s["hook"] == "patient-view")
        body = {"hookInstance": str(uuid.uuid4()), "hook": "patient-view", "fhirServer": self.fhir,
                "context": {"userId": "Practitioner/example", "patientId": patient},
                "prefetch": self.prefetch(service.get("prefetch") or {}, patient)}
        resp = self.http.post(f"{self.service}/cds-services/{service['id']}", json=body, timeout=60)
        assert resp.status_code == 200, resp.text[:500]
        return resp.json()

    def launch_url(self, link: dict, patient: str) -> str:
        parameters = {"patient": patient, "smart_messaging_origin": SANDBOX_ORIGIN}
        if link.get("appContext"):
            parameters["appContext"] = link["appContext"]
        resp = self.http.post(f"{self.fhir}/_services/smart/Launch", json={"launchUrl": link["url"],
                              "parameters": parameters}, headers={"Accept": "application/json"}, timeout=10)
        assert resp.status_code == 200, resp.text
        launch_id = resp.json()["launch_id"]
        return f"{link['url']}{'&' if '?' in link['url'] else '?'}launch={launch_id}&iss={self.fhir}"


def _pkce():
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


# ----------------------------------------------------------------------------- no browser
def test_refused_in_production_and_off_loopback():
    with pytest.raises(DevFhirRefused, match="CDS_ENV=production"):
        check_allowed("127.0.0.1", {"CDS_ENV": "production"})
    with pytest.raises(DevFhirRefused, match="loopback"):
        check_allowed("0.0.0.0", {})
    check_allowed("127.0.0.1", {"CDS_ENV": "development"})
    check_allowed("::1", {})


@pytest.mark.parametrize("args, env", [(["--host", "0.0.0.0"], {}), ([], {"CDS_ENV": "production"})])
def test_command_refuses_with_one_line_and_exit_2(args, env):
    run = subprocess.run([sys.executable, "-m", "cds_service", "dev-fhir", "--port", "0", *args],
                         capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    assert run.returncode == 2
    assert run.stderr.startswith("cds-service dev-fhir: ") and run.stderr.count("\n") == 1, run.stderr


def test_smart_configuration_and_open_capability(dev_fhir):
    conf = requests.get(dev_fhir.iss + "/.well-known/smart-configuration", timeout=10).json()
    assert conf["authorization_endpoint"] == dev_fhir.app.base + "/authorize"
    assert conf["token_endpoint"] == dev_fhir.app.base + "/token"
    assert "S256" in conf["code_challenge_methods_supported"]
    cap = requests.get(dev_fhir.iss + "/metadata", timeout=10).json()
    # An open-launched Sandbox refuses a server whose metadata or Patient search needs a token.
    assert "security" not in cap["rest"][0]
    assert requests.get(dev_fhir.iss + "/Patient", timeout=10).json()["total"] >= 25


def test_launch_authorize_token_with_patient_and_encounter(dev_fhir):
    resp = requests.post(dev_fhir.iss + "/_services/smart/Launch", timeout=10,
                         json={"launchUrl": "http://127.0.0.1:1/smart/launch",
                               "parameters": {"patient": "cov-sic-imv", "appContext": '{"kind":"x"}'}})
    launch = resp.json()["launch_id"]
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    verifier, challenge = _pkce()
    query = {"response_type": "code", "client_id": "any-app", "redirect_uri": "http://127.0.0.1:1/cb",
             "launch": launch, "scope": "launch patient/*.rs", "state": "s1", "aud": dev_fhir.iss,
             "code_challenge": challenge, "code_challenge_method": "S256"}
    bad = requests.get(dev_fhir.app.base + "/authorize?" + urlencode({**query, "aud": "http://elsewhere/fhir"}),
                       allow_redirects=False, timeout=10)
    assert bad.status_code == 400 and "aud" in bad.text
    ok = requests.get(dev_fhir.app.base + "/authorize?" + urlencode(query), allow_redirects=False, timeout=10)
    assert ok.status_code == 302
    localhost = dev_fhir.iss.replace("127.0.0.1", "localhost")       # the same server by another name
    assert requests.get(dev_fhir.app.base + "/authorize?" + urlencode({**query, "aud": localhost}),
                        allow_redirects=False, timeout=10).status_code == 302
    back = parse_qs(urlsplit(ok.headers["Location"]).query)
    assert back["state"] == ["s1"]
    form = {"grant_type": "authorization_code", "code": back["code"][0], "redirect_uri": query["redirect_uri"],
            "client_id": "any-app", "code_verifier": "wrong" * 10}
    assert requests.post(dev_fhir.app.base + "/token", data=form, timeout=10).status_code == 400
    # The code was used up by the failed attempt: a new launch for the real exchange.
    ok = requests.get(dev_fhir.app.base + "/authorize?" + urlencode(query), allow_redirects=False, timeout=10)
    form.update(code=parse_qs(urlsplit(ok.headers["Location"]).query)["code"][0], code_verifier=verifier)
    token = requests.post(dev_fhir.app.base + "/token", data=form, timeout=10).json()
    assert token["patient"] == "cov-sic-imv" and token["encounter"] == "cov-sic-imv-enc"
    assert token["token_type"] == "Bearer" and token["appContext"] == '{"kind":"x"}'
    assert requests.post(dev_fhir.app.base + "/token", data=form, timeout=10).status_code == 400  # one use
    read = requests.get(dev_fhir.iss + "/Patient/cov-sic-imv", timeout=10,
                        headers={"Authorization": "Bearer " + token["access_token"]})
    assert read.status_code == 200 and read.json()["id"] == "cov-sic-imv"
    assert requests.get(dev_fhir.iss + "/Patient/cov-sic-imv", headers={"Authorization": "Bearer nope"},
                        timeout=10).status_code == 401


def test_launch_needs_a_patient(dev_fhir):
    resp = requests.post(dev_fhir.iss + "/_services/smart/Launch", json={"launchUrl": "x", "parameters": {}},
                         timeout=10)
    assert resp.status_code == 400


def test_search_semantics(dev_fhir):
    base = dev_fhir.iss
    obs = requests.get(base + "/Observation", params={"patient": "cov-sic-imv", "_sort": "-date", "_count": "3"},
                       timeout=10).json()
    dates = [e["resource"]["effectiveDateTime"] for e in obs["entry"]]
    assert len(dates) == 3 and dates == sorted(dates, reverse=True) and obs["total"] > 3
    assert all(e["resource"]["subject"]["reference"] == "Patient/cov-sic-imv" for e in obs["entry"])
    plt = requests.get(base + "/Observation", params={"patient": "cov-sic-imv", "code": "http://loinc.org|777-3"},
                       timeout=10).json()
    assert plt["total"] >= 1
    assert all(any(c["code"] == "777-3" for c in e["resource"]["code"]["coding"]) for e in plt["entry"])
    unknown = requests.get(base + "/Observation", params={"patient": "cov-sic-imv", "date": "ge2020"}, timeout=10)
    assert unknown.status_code == 400 and "date" in unknown.json()["issue"][0]["diagnostics"]
    assert requests.get(base + "/Patient/nobody", timeout=10).status_code == 404


# ----------------------------------------------------------------------------- the browser
@pytest.mark.integration
def test_sandbox_launch_opens_the_assessment_view(browser, dev_fhir, dev_service, tmp_path):
    sandbox = SandboxClient(dev_fhir.iss, dev_service)
    answer = sandbox.patient_view("cov-sic-imv")
    links = [link for card in answer["cards"] for link in card.get("links", []) if link["type"] == "smart"]
    assert links, answer
    url = sandbox.launch_url(links[0], "cov-sic-imv")
    page = browser.new_page(viewport={"width": 1280, "height": 800}, java_script_enabled=False)
    try:
        response = page.goto(url, wait_until="load")
        assert response.status == 200 and page.url.startswith(f"{dev_service}/smart/view/")  # one tab per launch (issue 21 M1)
        assert "Arthur Pennington" in page.locator(".banner").inner_text()
        chart = page.locator("#chart-platelets")
        assert chart.count() == 1 and chart.locator("circle.pt").count() >= 1
        page.screenshot(path=str(tmp_path / "sandbox-launch.png"), full_page=True)
    finally:
        page.close()
