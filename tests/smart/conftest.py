"""Fixtures of the assessment view tests: the Medplum FHIR server (the integration tests' own
fixture), the synthetic patients loaded into it, the test authorization server in front of it,
and the service on a free loopback port with the SMART view."""
from __future__ import annotations

import os
import shutil
import threading

import pytest
import requests
from werkzeug.serving import make_server

from cds_service import create_app
from cds_service.cli.integration.fixtures import load_fixtures, post_bundle
from integration.conftest import fhir_server  # noqa: F401  (the same session fixture)

from .auth_server import AuthServer
from .trend_patient import bundle as trend_bundle


@pytest.fixture(scope="session")
def loaded_fhir(fhir_server):  # noqa: F811
    results = load_fixtures(fhir_server)
    assert [r.name for r in results if not r.ok] == [], [r.message for r in results if not r.ok]
    ok, message = post_bundle(requests.Session(), fhir_server, trend_bundle())
    assert ok, message
    return fhir_server


@pytest.fixture(scope="session")
def auth_server(loaded_fhir):
    server = AuthServer(loaded_fhir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def auth(auth_server):
    """The authorization server, reset to SMART-configuration mode for each test."""
    auth_server.reset()
    return auth_server


def serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread, f"http://127.0.0.1:{server.server_port}"


@pytest.fixture(scope="session")
def view_service(auth_server, loaded_fhir, tmp_path_factory):
    """The service (CDS_AUTH=off), allowed to read the authorization server's FHIR front and the
    FHIR server itself (open mode)."""
    database = tmp_path_factory.mktemp("smart") / "cds.sqlite3"
    app = create_app({"fhir_allowlist": f"{auth_server.iss},{loaded_fhir}", "database": str(database),
                      "fhir_timeout": 20.0,
                      # every test here launches from 127.0.0.1; the limit has its own test
                      "smart_launch_rate": 0})
    server, thread, base = serve(app)
    try:
        yield base
    finally:
        server.shutdown()
        thread.join(timeout=10)


CHROMIUM = os.environ.get("CDS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _unavailable(reason: str):
    if os.environ.get("CDS_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    """One headless chromium per test session (per xdist worker): starting it costs ~1 s."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("browser test needs the playwright package (pip install -e '.[test]')")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        _unavailable(f"browser test needs chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="session")
def dev_service(tmp_path_factory):
    """The service on a free loopback port; loopback FHIR servers are allowed by default."""
    database = tmp_path_factory.mktemp("devfhir") / "cds.sqlite3"
    server, thread, base = serve(create_app({"database": str(database), "fhir_timeout": 20.0}))
    try:
        yield base
    finally:
        server.shutdown()
        thread.join(timeout=10)
