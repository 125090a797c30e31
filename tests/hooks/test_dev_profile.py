"""The dev profile (issue 22): `python3 dev.py serve` repeats info cards on every call; production
shows an info card once per 24 h per user, patient and encounter (clinical-rules §16, §18.3)
and logs every withheld card in one line: kind, reason, fingerprint, no patient data."""
from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timezone

import pytest

from cds_service import cli
from cds_service.web.app import create_app
from cds_service.cli.examples import build
from conftest import in_scope
from hook_helpers import post

NOW = datetime.now(timezone.utc).replace(microsecond=0)
PATIENT_ID = "example-patient-pid"


def chart_open(app) -> list[dict]:
    """The Sandbox reopening the same patient: same user, same data, a new hookInstance."""
    body = build("standard-prophylaxis", NOW)
    body["prefetch"]["procedures"]["entry"] = []   # v2: the info standard_prophylaxis card (test_lifecycle)
    in_scope(body)
    body["hookInstance"] = str(uuid.uuid4())
    body["context"]["userId"] = "Practitioner/example"
    return post(app.test_client(), body)["cards"]


def test_dev_profile_repeats_the_info_card(tmp_path):
    app = create_app({"database": str(tmp_path / "cds.sqlite3"), "policy": str(cli.DEV_POLICY)})
    first, second, third = chart_open(app), chart_open(app), chart_open(app)
    assert [c["indicator"] for c in first] == ["info"]
    assert [c["summary"] for c in second] == [c["summary"] for c in third] == [first[0]["summary"]]


def test_production_withholds_the_repeat_and_logs_it(tmp_path, caplog):
    app = create_app({"database": str(tmp_path / "cds.sqlite3"), "env": "production",
                      "allow_insecure_production": True})  # the production policy, auth aside
    [shown] = chart_open(app)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="cds_service")
    assert chart_open(app) == []
    lines = [r for r in caplog.records if r.getMessage() == "card withheld"]
    assert len(lines) == 1
    fields = lines[0].fields
    assert fields["kind"] == shown["source"]["topic"]["code"] and fields["reason"] == "info_repeat"
    assert len(fields["fingerprint"]) >= 16 and fields["indicator"] == "info"
    text = json.dumps(fields)
    body = build("standard-prophylaxis", NOW)
    assert body["context"]["patientId"] not in text and "Practitioner/example" not in text


@pytest.fixture
def serve_env(monkeypatch, tmp_path):
    for key in [k for k in __import__("os").environ if k.startswith("CDS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("CDS_DATABASE", str(tmp_path / "db.sqlite3"))
    monkeypatch.setenv("CDS_POLICY", "")   # serve --dev writes it: removed again after the test
    monkeypatch.delenv("CDS_POLICY")
    for key in ("CDS_BODY_TIMEOUT", "CDS_THREADS", "CDS_ACCESS_LOG", "CDS_ENV"):  # serve writes them
        monkeypatch.setenv(key, {"CDS_ACCESS_LOG": "true", "CDS_ENV": "development"}.get(key, "1"))
    execs = []
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: execs.append(argv))
    return execs


def test_serve_dev_says_so_in_json_at_start(serve_env, capsys):
    assert cli.main(["serve", "--dev", "--port", "0"]) == 0 and serve_env
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]   # every line JSON
    assert lines[0]["msg"] == "cds-service starting" and lines[0]["info_repeat_hours"] == 0
    assert any(line["msg"].startswith("dev profile: info cards repeat on every call") for line in lines)


def test_serve_without_dev_keeps_24_h(serve_env, capsys):
    assert cli.main(["serve", "--port", "0"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["info_repeat_hours"] == 24
    assert not any("repeat on every call" in line["msg"] for line in lines)


def test_dev_is_refused_in_production(serve_env, capsys):
    assert cli.main(["serve", "--dev", "--production"]) == 2
    assert serve_env == [] and "refused with CDS_ENV=production" in capsys.readouterr().err


def test_dev_py_serve_adds_the_dev_profile(monkeypatch):
    import dev
    seen = []
    monkeypatch.setattr(dev, "ensure_venv", lambda extras: None)
    monkeypatch.setattr(dev, "run", lambda cmd: seen.append(cmd) or 0)
    monkeypatch.delenv("CDS_ENV", raising=False)
    dev.main(["serve", "--port", "9"])
    dev.main(["serve", "--production"])
    dev.main(["fhir"])
    assert seen[0][-3:] == ["--dev", "--port", "9"]
    assert "--dev" not in seen[1] and seen[2][-1] == "dev-fhir"


def test_dev_py_test_runs_in_parallel_unless_told_otherwise():
    import dev
    n = str(dev.workers())
    assert dev.test_args(["--fast"]) == ["-n", n, "--dist", "worksteal", "--fast"]
    assert dev.test_args(["--dist", "loadfile"]) == ["-n", n, "--dist", "loadfile"]
    assert dev.test_args(["-n", "0", "tests/x.py"]) == ["-n", "0", "tests/x.py"]
    assert dev.test_args(["-n2"]) == ["-n2"] and dev.test_args(["--numprocesses=3"]) == ["--numprocesses=3"]


def test_dev_py_test_runs_one_worker_more_than_the_cores_and_at_most_four(monkeypatch):
    import dev
    for cores, expected in ((1, 2), (2, 3), (3, 4), (16, 4)):
        monkeypatch.setattr(dev.os, "sched_getaffinity", lambda pid, c=cores: set(range(c)), raising=False)
        assert dev.workers() == expected


def test_dev_py_test_keeps_bytecode_outside_the_checkout(monkeypatch):
    """Issue 22: with PYTHONDONTWRITEBYTECODE set every worker recompiled everything; dev.py test
    sends compiled files to the venv instead, and leaves a prefix the user chose alone."""
    import dev
    monkeypatch.setattr(dev, "ensure_venv", lambda extras: None)
    monkeypatch.setattr(dev, "run", lambda cmd: 0)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    dev.main(["test", "--fast"])
    import os
    assert "PYTHONDONTWRITEBYTECODE" not in os.environ
    assert os.environ["PYTHONPYCACHEPREFIX"] == str(dev.VENV / "pycache")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", "/elsewhere")
    dev.main(["test"])
    assert os.environ["PYTHONDONTWRITEBYTECODE"] == "1" and os.environ["PYTHONPYCACHEPREFIX"] == "/elsewhere"
