"""Issue 14, finding 4: a plain install, no checkout. Before: `pip install .` answered /healthz
200 and every hook call 500 (the JSON Schemas and the synthetic patients were not package
data), and `load-fixtures` failed the same way.

The wheel is built (pip's isolated PEP 517 build, as a user's `pip install .` does) from a copy of
just the package sources (pyproject.toml, README.md, cds_service/), installed into a fresh venv
outside the checkout, and run from a directory outside it with no CDS_* variable set:
`cds-service serve` on a free port must give a 200 hook answer with cards for a generated example,
/readyz 200, /metrics counting the call across workers, and `cds-service load-fixtures` must load
every synthetic patient into a real FHIR server.

The wheel's dependencies are not downloaded again (that took ~30 s, most of this module's time,
issue 22): the venv sees exactly the distributions the wheel's Requires-Dist names, transitively,
taken from the test environment (one symlink per top-level name, through a .pth file), and none of
the test tools; `pip check` in it must find every requirement met. So a runtime import the
metadata does not declare still fails here, as it would in a user's venv.
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
import zipfile
from email.parser import Parser
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import requests
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


def _requires(wheel: Path) -> list[str]:
    """The wheel's own Requires-Dist (not the checkout's editable install's)."""
    with zipfile.ZipFile(wheel) as zf:
        [name] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(zf.read(name).decode()).get_all("Requires-Dist") or []


def _runtime_closure(requires: list[str]) -> dict:
    """{canonical name: Distribution} of `requires` (no extra), transitively, with the extras each
    names (PyJWT[crypto] brings cryptography), resolved in this (the test) environment."""
    found: dict = {}
    todo = [(Requirement(r), frozenset()) for r in requires]
    seen: set = set()
    while todo:
        req, parent_extras = todo.pop()
        env = [{"extra": e} for e in parent_extras] or [{"extra": ""}]
        if req.marker is not None and not any(req.marker.evaluate(e) for e in env):
            continue
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            pytest.fail(f"{req} (a runtime dependency of the wheel) is not installed in the test environment")
        found[key[0]] = dist
        todo += [(Requirement(r), frozenset(req.extras)) for r in dist.requires or ()]
    return found


def _link_dependencies(dists: dict, target: Path) -> None:
    """One symlink per top-level file or package of each distribution (and its .dist-info)."""
    target.mkdir()
    for dist in dists.values():
        root = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or () if not str(f).startswith("..")}:
            if top != "__pycache__" and not (target / top).exists():
                (target / top).symlink_to(root / top)


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
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(src)],
         timeout=PIP_TIMEOUT_S)
    [wheel] = dist.glob("cds_service-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CDS_", "PYTHON", "VIRTUAL_ENV", "PROMETHEUS_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    deps = base / "deps"
    _link_dependencies(_runtime_closure(_requires(wheel)), deps)
    [site] = (venv / "lib").glob("python*/site-packages")
    (site / "runtime-dependencies.pth").write_text(f"{deps}\n")
    pip = [sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "--disable-pip-version-check"]
    _run([*pip, "install", "--quiet", "--no-deps", "--no-index", "--no-compile", str(wheel)],
         timeout=PIP_TIMEOUT_S, env=env, cwd=base)
    _run([*pip, "check"], timeout=120, env=env, cwd=base)   # every Requires-Dist met, transitively
    work = base / "run"
    work.mkdir()
    # The package that runs is the installed one, not the checkout's; no test tool is importable.
    where = _run([str(bin_dir / "python"), "-c", "import cds_service; print(cds_service.__file__)"],
                 env=env, cwd=work).stdout.strip()
    assert where.startswith(str(venv)), where
    probe = _run([str(bin_dir / "python"), "-c", "import importlib.util as u; "
                  "print([m for m in ('pytest', 'hypothesis', 'playwright') if u.find_spec(m)])"],
                 env=env, cwd=work).stdout.strip()
    assert probe == "[]", probe
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
