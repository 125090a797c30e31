"""The SMART EHR launch end to end: the service, the test authorization server and the Medplum
FHIR router, all over real HTTP (issue 13)."""
from __future__ import annotations

import base64
import hashlib
import json
import re
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests

from cds_service.smart import sessions

pytestmark = pytest.mark.integration


def _launch_url(view_service: str, iss: str, launch: str | None = None, **extra) -> str:
    params = {"iss": iss, **({"launch": launch} if launch else {}), **extra}
    return f"{view_service}/smart/launch?{urlencode(params)}"


def _step(session: requests.Session, url: str) -> requests.Response:
    return session.get(url, allow_redirects=False, timeout=60)


def _to_authorize(view_service, auth, patient="cov-ddimer-ward", app_context=None):
    """Launch without following redirects: (browser session, the authorize URL, its query)."""
    browser = requests.Session()
    launch = auth.new_launch(patient, app_context)
    resp = _step(browser, _launch_url(view_service, auth.iss, launch))
    assert resp.status_code == 302, resp.text[:300]
    location = resp.headers["Location"]
    assert location.startswith(auth.base + "/authorize?")
    return browser, location, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_full_launch_discovers_authorizes_exchanges_and_reads_with_the_token(view_service, auth):
    app_context = json.dumps({"kind": "prophylaxis_suggestion", "hookInstance": "h-1"})
    browser, location, query = _to_authorize(view_service, auth, app_context=app_context)
    # the authorize request: SMART App Launch 2.0, public client, PKCE S256, aud = iss
    assert query["response_type"] == "code" and query["client_id"] == "cds-coagulopathy-view"
    assert query["aud"] == auth.iss and query["code_challenge_method"] == "S256"
    assert query["scope"] == "launch openid fhirUser patient/*.rs"
    assert query["redirect_uri"] == view_service + "/smart/callback"
    assert len(query["state"]) >= 32
    cookie = next(c for c in browser.cookies if c.name == "cds_smart_session")
    assert cookie.path == "/smart" and cookie.has_nonstandard_attr("HttpOnly")
    assert auth.seen.discovery == ["/fhir/.well-known/smart-configuration"]

    to_callback = _step(browser, location)          # the authorization server approves at once
    assert to_callback.status_code == 302
    callback = _step(browser, to_callback.headers["Location"])
    # Issue 21 M1: the page has its own URL per launch (tab), with a cookie scoped to it.
    assert callback.status_code == 303 and re.search(r"/smart/view/[\w-]{16,64}$", callback.headers["Location"])
    assert "code=" not in callback.headers["Location"]
    [token_request] = auth.seen.token
    # PKCE: the verifier sent at the token endpoint is the one behind the challenge
    digest = hashlib.sha256(token_request["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == query["code_challenge"]
    assert "client_secret" not in token_request

    page = browser.get(urljoin(view_service, callback.headers["Location"]), timeout=60)
    assert page.status_code == 200
    html = page.text
    assert "Beatriz Almeida" in html and "Recommendation" in html
    assert "Opened from the <strong>prophylaxis suggestion</strong> card" in html
    # every FHIR read carried the issued token, which never reaches the page
    [token] = list(auth.tokens)[-1:]
    assert auth.seen.fhir_auth and set(auth.seen.fhir_auth) == {f"Bearer {token}"}
    assert token not in html and token not in page.headers.get("Set-Cookie", "")
    assert "Read from an open FHIR server" not in html
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'self'" in csp and "http" not in csp


def test_oauth_uris_extension_is_the_fallback(view_service, auth):
    auth.reset("oauth-uris")
    browser, location, query = _to_authorize(view_service, auth)
    assert auth.seen.discovery == ["/fhir/.well-known/smart-configuration", "/fhir/metadata"]
    page = browser.get(location, timeout=60)   # follow: authorize -> callback -> view
    assert page.status_code == 200 and "Beatriz Almeida" in page.text


def test_wrong_state_is_refused_and_the_session_dropped(view_service, auth):
    browser, location, query = _to_authorize(view_service, auth)
    to_callback = _step(browser, location)
    forged = to_callback.headers["Location"].replace(query["state"], "x" * len(query["state"]))
    resp = _step(browser, forged)
    assert resp.status_code == 400 and "state mismatch" in resp.text
    assert auth.seen.token == []          # the code was never exchanged
    assert browser.get(view_service + "/smart/view", timeout=30).status_code == 401


def test_state_from_another_browser_is_refused(view_service, auth):
    _, location, _ = _to_authorize(view_service, auth)
    other = requests.Session()
    _to_authorize(view_service, auth)      # the other browser has a launch of its own
    to_callback = _step(other, location)
    resp = _step(other, to_callback.headers["Location"])
    assert resp.status_code == 401 and "Session expired" in resp.text


def test_pkce_mismatch_fails_the_exchange(view_service, auth):
    browser, location, query = _to_authorize(view_service, auth)
    tokens_before = len(auth.tokens)
    other_challenge = base64.urlsafe_b64encode(hashlib.sha256(b"not-the-verifier").digest()).rstrip(b"=").decode()
    tampered = location.replace(query["code_challenge"], other_challenge)
    resp = _step(browser, _step(browser, tampered).headers["Location"])
    assert resp.status_code == 502 and "Authorization failed" in resp.text
    assert len(auth.tokens) == tokens_before            # no token was issued
    assert browser.get(view_service + "/smart/view", timeout=30).status_code == 401


@pytest.mark.parametrize("iss", ["http://fhir.example.org/fhir", "http://localhost.evil.com/fhir",
                                 "https://127.0.0.1.nip.io/fhir"])
def test_iss_not_on_the_allowlist_gets_no_request(view_service, auth, iss):
    resp = requests.get(_launch_url(view_service, iss, "l1"), allow_redirects=False, timeout=30)
    assert resp.status_code == 403 and "not allowed" in resp.text
    assert "cds_smart_session" not in resp.headers.get("Set-Cookie", "")


def test_expired_session_gives_a_clear_page(view_service, auth, monkeypatch):
    auth.expires_in = 120
    browser, location, _ = _to_authorize(view_service, auth)
    first = browser.get(location, timeout=60)
    assert first.status_code == 200
    real = sessions.time.time
    monkeypatch.setattr(sessions.time, "time", lambda: real() + 121)   # the token has expired
    page = browser.get(first.url, timeout=30)
    assert page.status_code == 401 and "Session expired" in page.text and "Traceback" not in page.text
    assert page.headers["Content-Type"].startswith("text/html")


def test_no_session_cookie_gives_a_clear_page(view_service):
    page = requests.get(view_service + "/smart/view", timeout=30)
    assert page.status_code == 401 and "Open the assessment again" in page.text


def test_open_server_is_read_without_a_token(view_service, loaded_fhir, auth):
    browser = requests.Session()
    page = browser.get(_launch_url(view_service, loaded_fhir, patient="cov-trend-ward"), timeout=60)
    assert page.status_code == 200 and page.url.startswith(view_service + "/smart/view/")
    assert "Tomas Trendwell" in page.text and "Read from an open FHIR server" in page.text


def test_open_server_through_the_authorization_front_without_smart(view_service, auth):
    auth.reset("open")
    page = requests.get(_launch_url(view_service, auth.iss, patient="cov-ddimer-ward"), timeout=60)
    assert page.status_code == 200 and "Beatriz Almeida" in page.text
    assert set(auth.seen.fhir_auth) == {None}     # no Authorization header sent


def test_sandbox_open_server_parameters(view_service, loaded_fhir):
    # The CDS Hooks Sandbox, without a token, appends fhirServiceUrl and patientId to smart links.
    url = f"{view_service}/smart/launch?" + urlencode({"fhirServiceUrl": loaded_fhir, "patientId": "cov-sic-imv"})
    page = requests.get(url, timeout=60)
    assert page.status_code == 200 and "Arthur Pennington" in page.text


def test_open_server_without_a_patient_is_a_clear_page(view_service, loaded_fhir):
    page = requests.get(_launch_url(view_service, loaded_fhir), timeout=30)
    assert page.status_code == 400 and "named no patient" in page.text


def test_smart_server_without_launch_parameter(view_service, auth):
    page = requests.get(_launch_url(view_service, auth.iss), timeout=30)
    assert page.status_code == 400 and "no launch parameter" in page.text


def test_trends_are_drawn_from_nine_days_of_results(view_service, loaded_fhir):
    page = requests.get(_launch_url(view_service, loaded_fhir, patient="cov-trend-ward"), timeout=60)
    html = page.text
    charts = {name: int(n) for n, name in re.findall(r'data-points="(\d+)" id="chart-(\w+)"', html)}
    # 9 daily results each (the 72-h window of the assessment keeps only the latest)
    assert charts["d_dimer"] == 9 and charts["platelets"] == 9 and charts["creatinine"] == 9
    assert charts["crcl"] == 9 and charts["inr"] == 9 and charts["fibrinogen"] == 9 and charts["weight"] == 3
    assert html.count('class="dose"') == 8 * 7          # 8 doses drawn on each of the 7 charts
    # D-dimer as a multiple of the lab's ULN (3,800 / 500 = 7.6), reported units kept
    assert "3,800 ng/mL FEU" in html and "7.6" in html
    assert "135 µmol/L" in html                          # creatinine as the lab reported it


def test_unknown_patient_is_a_clear_page(view_service, loaded_fhir):
    page = requests.get(_launch_url(view_service, loaded_fhir, patient="no-such-patient"), timeout=60)
    assert page.status_code == 404 and "Patient not found" in page.text and "Scores" not in page.text


def test_the_name_is_shown_even_when_the_ehr_shows_its_own_banner(view_service, auth):
    # Issue 21 M1 changes this: with the EHR's banner off no name was shown at all, and a
    # switched tab could not be told apart. Name, birth date and read time are always shown.
    auth.need_banner = False
    browser, location, _ = _to_authorize(view_service, auth)
    page = browser.get(location, timeout=60)
    assert page.status_code == 200 and "Beatriz Almeida" in page.text and "54 y" in page.text
    assert "born " in page.text and "Data read from the EHR at" in page.text
