"""Issue 21 M1 and M2 for the assessment view.

M1: a second launch in the same browser silently switched an open tab to the new patient.
Each launch now gets its own session bound to the tab (an id in the URL path plus a cookie
scoped to that path); a tab never changes patient.
M2: the session cookie lost `Secure` when the Host header was loopback, even with an https
CDS_PUBLIC_BASE_URL (a reverse proxy on the same host)."""
from __future__ import annotations

import pytest
import responses

from cds_service import create_app
from cds_service.runtime.errors import CDSError
from cds_service.smart import views

BASE = "http://127.0.0.1:9/fhir"


def _open_server():
    responses.add(responses.GET, BASE + "/.well-known/smart-configuration", status=404)
    responses.add(responses.GET, BASE + "/metadata", json={"resourceType": "CapabilityStatement"})


@responses.activate
def test_a_second_launch_never_changes_the_patient_of_an_open_tab(tmp_path, monkeypatch):
    _open_server()
    seen = []

    def evaluate(state, *, patient_id, **kwargs):
        seen.append(patient_id)
        raise CDSError("stop here", status=412)

    monkeypatch.setattr(views, "evaluate_for_view", evaluate)
    app = create_app({"database": str(tmp_path / "db"), "fhir_allowlist": "http://127.0.0.1"})
    browser = app.test_client()   # one browser: one cookie jar
    first = browser.get("/smart/launch", query_string={"iss": BASE, "patient": "p-first"}).headers["Location"]
    second = browser.get("/smart/launch", query_string={"iss": BASE, "patient": "p-second"}).headers["Location"]
    assert first != second and first.startswith("/smart/view/") and second.startswith("/smart/view/")
    browser.get(first)
    browser.get(second)
    browser.get(first)
    assert seen == ["p-first", "p-second", "p-first"]
    # The tab id alone is not enough (another browser), nor the cookie on another tab's URL.
    assert app.test_client().get(first).status_code == 401
    assert browser.get("/smart/view/" + "b" * 24).status_code == 401
    assert browser.get("/smart/view").status_code == 401


@pytest.mark.parametrize("public,host,secure", [
    ("https://cds.example.org", "http://127.0.0.1:8000", True),   # a proxy on the same host
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000", False),
    ("", "http://127.0.0.1:8000", False),
    ("", "http://cds.internal", True),
])
@responses.activate
def test_cookie_secure_follows_the_public_base_url(tmp_path, public, host, secure):
    _open_server()
    app = create_app({"database": str(tmp_path / "db"), "fhir_allowlist": "http://127.0.0.1",
                      "public_base_url": public})
    resp = app.test_client().get("/smart/launch", query_string={"iss": BASE, "patient": "p-1"}, base_url=host)
    assert resp.status_code == 303
    assert ("Secure" in resp.headers["Set-Cookie"]) is secure


@responses.activate
def test_launches_are_rate_limited_per_address_before_any_session_or_outbound_call(tmp_path):
    """Issue 21 L5: every unauthenticated launch stored a session row and called the EHR."""
    _open_server()
    app = create_app({"database": str(tmp_path / "db"), "fhir_allowlist": "http://127.0.0.1",
                      "smart_launch_rate": 5})
    client = app.test_client()

    def launch(addr):
        return client.get("/smart/launch", query_string={"iss": BASE, "patient": "p-1"},
                          environ_base={"REMOTE_ADDR": addr})

    assert [launch("10.0.0.1").status_code for _ in range(5)] == [303] * 5
    calls = len(responses.calls)
    refused = launch("10.0.0.1")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "Set-Cookie" not in refused.headers and len(responses.calls) == calls
    assert launch("10.0.0.2").status_code == 303   # another address has its own budget


@responses.activate
def test_an_unopened_session_expires_quickly_an_opened_one_lives_on(tmp_path, monkeypatch):
    from cds_service.smart import sessions
    _open_server()
    monkeypatch.setattr(views, "evaluate_for_view",
                        lambda state, **kw: (_ for _ in ()).throw(CDSError("stop", status=412)))
    app = create_app({"database": str(tmp_path / "db"), "fhir_allowlist": "http://127.0.0.1"})
    browser = app.test_client()
    opened = browser.get("/smart/launch", query_string={"iss": BASE, "patient": "p-1"}).headers["Location"]
    unused = browser.get("/smart/launch", query_string={"iss": BASE, "patient": "p-2"}).headers["Location"]
    assert browser.get(opened).status_code == 502          # opened: the page (data stopped here)
    real = sessions.time.time
    monkeypatch.setattr(sessions.time, "time", lambda: real() + views.UNUSED_TTL + 5)
    monkeypatch.setattr(views.time, "time", lambda: real() + views.UNUSED_TTL + 5)
    assert browser.get(unused).status_code == 401           # never opened: gone
    assert browser.get(opened).status_code == 502           # still there
