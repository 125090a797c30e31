"""Issue 14, finding 4: a plain install, no checkout. Before: `pip install .` answered /healthz
200 and every hook call 500 (the JSON Schemas and the synthetic patients were not package
data), and `load-fixtures` failed the same way.

The wheel is built from a copy of just the package sources (pyproject.toml, README.md,
cds_service/), installed with its dependencies (pip's cache keeps this fast; no --no-deps)
into a fresh venv outside the checkout, and run from a directory outside it with no CDS_*
variable set: `cds-service serve` on a free port must give a 200 hook answer with cards for a
generated example, /readyz 200, /metrics counting the call across workers, and
`cds-service load-fixtures` must load every synthetic patient into a real FHIR server.
It is an integration test (it needs the FHIR server), so CI runs it (CDS_REQUIRE_INTEGRATION=1).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT_S = 600
START_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{argv}: {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin directory, working directory outside the checkout, environment)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "cds_service", src / "cds_service",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = base / "dist"
    # Building our own wheel needs no dependencies installed; installing it does (below).
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(src)],
         timeout=PIP_TIMEOUT_S)
    [wheel] = dist.glob("cds_service-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CDS_", "PYTHON", "VIRTUAL_ENV", "PROMETHEUS_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    _run([str(bin_dir / "pip"), "install", "--quiet", "--disable-pip-version-check", str(wheel)],
         timeout=PIP_TIMEOUT_S, env=env, cwd=base)
    work = base / "run"
    work.mkdir()
    # The package that runs is the installed one, not the checkout's.
    where = _run([str(bin_dir / "python"), "-c", "import cds_service; print(cds_service.__file__)"],
                 env=env, cwd=work).stdout.strip()
    assert where.startswith(str(venv)), where
    return bin_dir, work, env


@pytest.fixture(scope="module")
def served(installed):
    bin_dir, work, env = installed
    port = _free_port()
    env = {**env, "CDS_DATABASE": str(work / "cds.sqlite3"), "CDS_LOG_LEVEL": "WARNING"}
    log = open(work / "serve.log", "w")
    proc = subprocess.Popen([str(bin_dir / "cds-service"), "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, (work / "serve.log").read_text()[-3000:]
            try:
                if requests.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (work / "serve.log").read_text()[-3000:]
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers (own session)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def test_installed_wheel_serves_cards(installed, served):
    bin_dir, work, env = installed
    assert requests.get(served + "/readyz", timeout=10).json()["status"] == "ready"
    example = _run([str(bin_dir / "cds-service"), "example", "sic-positive"], env=env, cwd=work).stdout
    resp = requests.post(served + "/cds-services/coagulopathy-risk", data=example,
                         headers={"Content-Type": "application/json"}, timeout=30)
    assert resp.status_code == 200, resp.text[:1000]
    cards = resp.json()["cards"]
    assert cards and cards[0]["indicator"] == "warning"
    # /metrics (loopback: open) counts the call whichever worker answered it.
    from prometheus_client.parser import text_string_to_metric_families
    text = requests.get(served + "/metrics", timeout=10).text
    calls = {tuple(sorted(s.labels.items())): s.value
             for family in text_string_to_metric_families(text) if family.name == "cds_hook_calls"
             for s in family.samples if s.name == "cds_hook_calls_total"}
    assert calls.get((("service", "coagulopathy-risk"), ("site", "default"), ("status", "200"))) == 1.0, text[:3000]
    version = _run([str(bin_dir / "cds-service"), "--version"], env=env, cwd=work).stdout
    assert version.startswith("cds-service ") and "git" not in version  # no checkout: no git describe


def test_installed_wheel_loads_the_synthetic_patients(installed, fhir_server):
    bin_dir, work, env = installed
    out = _run([str(bin_dir / "cds-service"), "load-fixtures", "--fhir-server", fhir_server],
               env=env, cwd=work, timeout=300)
    packaged = len(list((Path(__file__).resolve().parents[2] / "cds_service" / "data" / "patients").glob("*.json")))
    assert packaged == 35 and f"{packaged} loaded, 0 failed" in out.stdout, out.stdout  # 25 + issue 20's ten
    patient = requests.get(f"{fhir_server}/Patient/cov-sic-imv", timeout=10)
    assert patient.status_code == 200 and json.loads(patient.text)["id"] == "cov-sic-imv"
