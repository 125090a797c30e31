"""A real service instance (`python -m cds_service serve`, granian) on a free loopback port, for
the replay and check tests (issue 23). Stopped by process group (its own session)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    def __init__(self, tmp: Path, name: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"{name}.log"
        full = {k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "PROMETHEUS_"))}
        full.update({"CDS_LOG_LEVEL": "WARNING", "CDS_DATABASE": str(tmp / f"{name}.sqlite3"),
                     "PYTHONPATH": str(ROOT), **(env or {})})
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cds_service", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", "1", "--threads", "4"],
                cwd=ROOT, env=full, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"instance {name} exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"instance {name} did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:  # pragma: no cover
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
