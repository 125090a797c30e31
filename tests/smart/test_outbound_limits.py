"""Issue 21 L1-L3: the assessment view's outbound SMART calls.

L1: a 200 MB token answer was read in full before the size check (worker 98 -> 498 MB).
L2: a slow discovery document kept a launch hanging for more than 40 s.
L3: an allowlisted server's SMART configuration could make the service POST the code and
verifier to any port on its own host."""
from __future__ import annotations

import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer

import pytest
import responses

from cds_service import create_app
from cds_service.smart import oauth


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class _Threaded(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@pytest.fixture
def server():
    """A local server whose answers the test sets: path -> WSGI iterable factory."""
    routes, sent = {}, {"bytes": 0}

    def app(environ, start_response):
        factory = routes.get(environ["PATH_INFO"])
        if factory is None:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b"{}"]
        start_response("200 OK", [("Content-Type", "application/json")])

        def body():
            for chunk in factory():
                sent["bytes"] += len(chunk)
                yield chunk
        return body()

    httpd = make_server("127.0.0.1", 0, app, server_class=_Threaded, handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", routes, sent
    httpd.shutdown()


def test_a_huge_token_answer_is_cut_at_the_cap_without_reading_it(server):
    base, routes, sent = server
    routes["/token"] = lambda: (b'{"access_token": "' + b"a" * 1_000_000 for _ in range(200))   # ~200 MB
    t0 = time.monotonic()
    with pytest.raises(oauth.LaunchError, match="too large"):
        oauth.exchange_code(base + "/token", code="c", redirect_uri="https://x/cb", client_id="c", verifier="v")
    assert time.monotonic() - t0 < 5
    time.sleep(0.5)
    assert sent["bytes"] < 20_000_000, sent   # the server stopped well short of 200 MB


def test_a_slow_discovery_document_ends_the_launch_at_the_deadline(server, monkeypatch):
    base, routes, _ = server
    monkeypatch.setattr(oauth, "DEADLINE_S", 1.0)

    def trickle():
        yield b'{"authorization_endpoint": "'
        for _ in range(100):
            time.sleep(0.3)    # each read well inside requests' 5 s read timeout
            yield b"a"
    routes["/fhir/.well-known/smart-configuration"] = trickle
    t0 = time.monotonic()
    with pytest.raises(oauth.LaunchError, match="did not answer within 1 s"):
        oauth.discover(base + "/fhir")
    assert time.monotonic() - t0 < 2.0


ISS = "http://127.0.0.1:9/fhir"


def _smart_config(token: str, authorize: str = "http://127.0.0.1:9/auth/authorize"):
    responses.add(responses.GET, ISS + "/.well-known/smart-configuration",
                  json={"authorization_endpoint": authorize, "token_endpoint": token})


@pytest.mark.parametrize("allowlist,token,authorize,status", [
    # default loopback list: the token endpoint on another port of the same host is refused
    ("http://127.0.0.1", "http://127.0.0.1:6379/token", None, 403),
    ("http://127.0.0.1", "http://127.0.0.1:9/auth/token", "http://127.0.0.1:5432/authorize", 403),
    ("http://127.0.0.1", "http://127.0.0.1:9/auth/token", None, 302),          # iss's own origin
    ("http://127.0.0.1,http://127.0.0.1:8443", "http://127.0.0.1:8443/token", None, 302),  # listed
    ("http://127.0.0.1", "http://127.0.0.1:9/fhir/..;/admin/token", None, 403),
])
@responses.activate
def test_smart_endpoints_pass_the_allowlist_and_stay_on_iss_unless_listed(tmp_path, allowlist, token,
                                                                         authorize, status):
    _smart_config(token, *(authorize,) if authorize else ())
    app = create_app({"database": str(tmp_path / "db"), "fhir_allowlist": allowlist})
    resp = app.test_client().get("/smart/launch", query_string={"iss": ISS, "launch": "l-1"})
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    if status == 403:
        assert "Set-Cookie" not in resp.headers
