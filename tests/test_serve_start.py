"""Issue 22, a newcomer's first start: a busy port is one line and exit 2, and granian's
warning about the (explicitly set) thread count is not printed on every start."""
from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import pytest

from cds_service import cli
from cds_service.logging_setup import ThreadsSetFilter

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.port_check
def test_busy_port_is_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    for key in [k for k in os.environ if k.startswith("CDS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("CDS_DATABASE", str(tmp_path / "db.sqlite3"))
    monkeypatch.setattr(cli.os, "execv", lambda *a: (_ for _ in ()).throw(AssertionError("exec")))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert cli.main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"cds-service: cannot listen on 127.0.0.1:{port}: ")
    assert "in use" in err


@pytest.mark.port_check
def test_free_port_is_not_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli._port_in_use("127.0.0.1", port) is None


def test_granian_threads_warning_is_dropped_other_lines_kept():
    config = json.loads((ROOT / "cds_service" / "granian_logging.json").read_text())
    assert config["handlers"]["console"]["filters"] == ["threads_set"]
    keep = logging.LogRecord("_granian", logging.WARNING, "", 0, "Listening at: http://x", None, None)
    drop = logging.LogRecord("_granian", logging.WARNING, "", 0,
                             "Configuration allows spawning up to 64 Python threads, which seems quite high", None, None)
    assert ThreadsSetFilter().filter(keep) and not ThreadsSetFilter().filter(drop)
    argv = cli.granian_argv(__import__("cds_service.config", fromlist=["ServerConfig"]).ServerConfig(threads=64))
    # ASGI (issue 21): granian's own thread counts are set explicitly; the app's 64 threads are
    # serving.Front's pool, sized from CDS_THREADS, never granian's default.
    assert argv[argv.index("--interface") + 1] == "asgi" and argv[argv.index("--runtime-threads") + 1] == "2"


def test_sqlite_side_files_are_ignored():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {"*.sqlite3-wal", "*.sqlite3-shm"} <= set(ignored)


def test_two_dev_py_first_runs_install_once(tmp_path, monkeypatch):
    """`dev.py serve` and `dev.py fhir` started together on a fresh clone: one installs, the
    other waits for it (before, the second found the venv's python without pip and crashed)."""
    import threading
    import time

    import dev
    venv = tmp_path / ".venv"
    monkeypatch.setattr(dev, "VENV", venv)
    monkeypatch.setattr(dev, "PY", venv / "bin" / "python")
    installs = []

    def install(extras, stamp, digest):
        installs.append(extras)
        time.sleep(0.3)                     # creating the venv and pip install take a while
        dev.PY.parent.mkdir(parents=True)
        dev.PY.write_text("")
        stamp.write_text(digest)

    monkeypatch.setattr(dev, "_install", install)
    threads = [threading.Thread(target=dev.ensure_venv, args=("",)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert installs == [""]
