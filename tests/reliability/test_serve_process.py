"""Issue 21, L6: `serve` refuses a bound port (granian's SO_REUSEPORT would share it
silently) and granian's workers stop when its main process is killed."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.reliability.test_serving import ROOT, running_server


def _serve(port: int, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env["CDS_DATABASE"] = str(tmp_path / "second.sqlite3")
    return subprocess.run([sys.executable, "-m", "cds_service", "serve", "--port", str(port)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.server   # granian in a subprocess (running_server): left out by dev.py test --fast
def test_serve_refuses_a_port_that_is_already_bound(tmp_path):
    with running_server(tmp_path, "--workers", "1") as (port, _):
        second = _serve(port, tmp_path)
    assert second.returncode == 2
    refusal = [line for line in second.stderr.splitlines() if line.startswith("cds-service:")]
    assert len(refusal) == 1 and f"cannot listen on 127.0.0.1:{port}" in refusal[0] and "in use" in refusal[0], second.stderr
    assert "CDS Hooks discovery" not in second.stdout   # refused before announcing anything


def test_serve_refuses_a_port_bound_by_another_program(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        second = _serve(other.getsockname()[1], tmp_path)
    assert second.returncode == 2 and "already in use" in second.stderr


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return open(f"/proc/{pid}/stat").read().split(") ")[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.server
def test_workers_stop_when_the_main_process_is_killed(tmp_path):
    with running_server(tmp_path, "--workers", "2") as (port, proc):
        deadline = time.monotonic() + 30
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)   # /healthz answers once the first worker is up
        workers = _children(proc.pid)
        assert len(workers) == 2, workers
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        alive = [w for w in workers if _alive(w)]
        for w in alive:  # leave nothing behind, whatever the outcome
            os.kill(w, signal.SIGKILL)
        assert alive == [], "workers kept serving after their main process died"
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex(("127.0.0.1", port)) != 0  # nobody serves the port any more
