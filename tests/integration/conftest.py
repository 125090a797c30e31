"""A real FHIR R4 server for the integration tests, and the service under test over HTTP.

`fhir_server` (session scope) installs tests/fhir_server once (npm, cached in its
node_modules), starts Medplum's FHIR router with its in-memory repository on a free
loopback port and stops it at the end. Without node/npm the tests skip with the reason;
.ci/run installs both so CI runs them.

`cds_service_url` runs the Flask app in a thread (werkzeug `make_server`) on a free port,
allowlisted to call that FHIR server; `cds_database` is its audit database (each hook call's
assessment and card kinds, read by the end-to-end tests).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from cds_service import create_app

SERVER_DIR = Path(__file__).resolve().parent.parent / "fhir_server"
INSTALL_TIMEOUT_S = 300
START_TIMEOUT_S = 60


def _node_major(node: str) -> int:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    try:
        return int(out.strip().lstrip("v").split(".")[0])
    except ValueError:
        return 0


def _install(npm: str) -> None:
    """npm ci from the lock file, once: skipped when the pinned packages are already there.
    Under pytest-xdist every worker starts its own server (session fixture per worker), so the
    install is serialised with a file lock: two `npm ci` in one directory break each other."""
    import fcntl
    marker = SERVER_DIR / "node_modules" / "@medplum" / "fhir-router" / "package.json"
    if marker.exists():
        return
    with open(SERVER_DIR / ".npm-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # released when the file closes
        if marker.exists():                # another worker installed it while we waited
            return
        command = "ci" if (SERVER_DIR / "package-lock.json").exists() else "install"
        proc = subprocess.run([npm, command, "--no-audit", "--no-fund", "--loglevel=error"], cwd=SERVER_DIR,
                              capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        if proc.returncode != 0 or not marker.exists():
            pytest.fail(f"npm {command} in {SERVER_DIR} failed ({proc.returncode}): {proc.stderr[-2000:]}")


def _unavailable(reason: str):
    # CI sets CDS_REQUIRE_INTEGRATION=1: there a missing server is a failure, never a quiet skip.
    if os.environ.get("CDS_REQUIRE_INTEGRATION") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory):
    """Base URL of a running in-memory FHIR R4 server (Medplum router)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        _unavailable("integration tests need node and npm on PATH for the in-memory FHIR server "
                    "(tests/fhir_server); .ci/run installs them")
    major = _node_major(node)
    if major < 20:
        _unavailable(f"the in-memory FHIR server needs Node >= 20 (found {major or 'unknown'})")
    _install(npm)
    # @medplum/core references the global WebSocket, which Node 20-21 keep behind a flag.
    argv = [node, *(["--experimental-websocket"] if major < 22 else []), "server.mjs", "0"]
    log = tmp_path_factory.mktemp("fhir-server") / "stderr.log"
    with open(log, "w") as err:  # a file, not a pipe: a chatty server can never block on it
        proc = subprocess.Popen(argv, cwd=SERVER_DIR, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        port = _wait_for_port(proc, log)
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, proc)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_for_port(proc: subprocess.Popen, log: Path) -> int:
    """server.mjs prints 'listening <port>' once bound."""
    result: dict[str, str] = {}

    def read() -> None:
        line = proc.stdout.readline()
        result["line"] = line

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_S)
    line = result.get("line", "")
    if not line.startswith("listening "):
        proc.kill()
        err = log.read_text(errors="replace")[-2000:]
        pytest.fail(f"in-memory FHIR server did not start: {line!r} {err}")
    return int(line.split()[1])


def _wait_ready(base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"in-memory FHIR server exited with {proc.returncode}")
        try:
            if requests.get(f"{base}/metadata", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    pytest.fail("in-memory FHIR server did not answer /metadata in time")


@pytest.fixture(autouse=True, scope="session")
def _fire_waits_like_the_test_service():
    """`fire` resolves prefetch within CDS_FHIR_TIMEOUT (3 s by default), as the service would;
    the test service below allows 20 s, and so does fire here: on a shared machine the in-memory
    server can take longer than 3 s for a search, and a key fire omits is not what these tests
    are about."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CDS_FHIR_TIMEOUT", "20")
        yield


@pytest.fixture(scope="session")
def cds_database(tmp_path_factory) -> Path:
    """The audit database of `cds_service_url`: tests read each call's assessment from it."""
    return tmp_path_factory.mktemp("cds") / "cds.sqlite3"


@pytest.fixture(scope="session")
def cds_service_url(fhir_server, cds_database):
    """The Flask app on a free loopback port, allowed to call only the test FHIR server."""
    database = cds_database
    # The clinical-rules §1a scope defaults, stated explicitly: tests/conftest.py relaxes
    # scope.require_covid and scope.require_inpatient session-wide until every hook-test patient
    # carries an Encounter and COVID-19 evidence; the synthetic patients do, and their scope is
    # part of what these tests check.
    policy = database.parent / "scope-policy.json"
    policy.write_text(json.dumps({"scope.require_covid": True, "scope.require_inpatient": True}))
    # The deadline is raised from 3 s: the in-memory server evaluates FHIRPath per resource on
    # every search, and CI machines are shared. Deadlines are the data layer's own tests' job.
    app = create_app({"fhir_allowlist": fhir_server, "database": str(database), "fhir_timeout": 20.0,
                      "policy": str(policy)})
    storage = app.extensions["cds"].extensions.get("storage")

    @app.after_request
    def _commit_audit(response):
        # Audit rows are committed by a batched writer a few ms after the answer (issue 15/16);
        # the tests read each call's row right after its response.
        if storage is not None:
            storage.flush()
        return response

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="cds-service", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)

