"""CLI polish (issue 14): a closed pipe exits quietly; `fire` gives up in seconds."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import responses

from cds_service.cli import main
from cds_service.cli.integration import fire as fire_mod

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "http://cds.test"


def test_output_to_a_closed_pipe_exits_quietly():
    """Before: `cds-service example ... | head -c1` ended with a BrokenPipeError traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    proc = subprocess.Popen([sys.executable, "-m", "cds_service", "example", "sic-positive"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first byte is written
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141
    assert err == ""


class SilentServer:
    """Accepts connections on loopback and never answers (a FHIR server that hangs)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)
            except OSError:
                continue

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join(2)
        for c in self.accepted:
            c.close()
        self.sock.close()


NINE_KEYS = {f"k{i}": f"Observation?patient={{{{context.patientId}}}}&code=c{i}" for i in range(9)}


@responses.activate
def test_fire_gives_up_on_a_fhir_server_that_never_answers():
    """Before: 9 prefetch keys read one after another with 30 s each (4.5 minutes)."""
    with SilentServer() as silent:
        fhir = f"http://127.0.0.1:{silent.port}/fhir"
        responses.add_passthru(fhir)
        responses.add(responses.GET, f"{SERVICE}/cds-services", json={"services": [
            {"hook": "patient-view", "id": "coagulopathy-risk", "description": "d", "prefetch": NINE_KEYS}]})
        responses.add(responses.POST, f"{SERVICE}/cds-services/coagulopathy-risk", json={"cards": []})
        t0 = time.monotonic()
        fired = fire_mod.fire("patient-view", "p1", fhir, service_url=SERVICE, timeout=1.0)
        elapsed = time.monotonic() - t0
        assert elapsed < 4, elapsed  # one shared 1 s deadline, not nine
        assert len(silent.accepted) == 9  # the reads ran in parallel
    assert fired.status == 200 and "prefetch" not in fired.request
    assert set(fired.prefetch_omitted) == set(NINE_KEYS)
    assert all("1 s" in why or "Timeout" in why for why in fired.prefetch_omitted.values())


def test_fire_timeout_defaults_to_the_services_fhir_timeout(monkeypatch):
    monkeypatch.delenv("CDS_FHIR_TIMEOUT", raising=False)
    assert fire_mod.default_timeout() == 3.0
    monkeypatch.setenv("CDS_FHIR_TIMEOUT", "1.5")
    assert fire_mod.default_timeout() == 1.5
    monkeypatch.setenv("CDS_FHIR_TIMEOUT", "abc")
    with pytest.raises(fire_mod.FireError, match="CDS_FHIR_TIMEOUT='abc'"):
        fire_mod.default_timeout()


@responses.activate
def test_fire_cli_passes_timeout(monkeypatch):
    seen = {}

    def fake_fire(*args, **kwargs):
        seen.update(kwargs)
        raise fire_mod.FireError("stop")

    monkeypatch.setattr(fire_mod, "fire", fake_fire)
    assert main(["fire", "patient-view", "--patient", "p1", "--fhir-server", "http://f",
                 "--timeout", "2.5"]) == 2
    assert seen["timeout"] == 2.5


@responses.activate
def test_prefetch_keeps_the_services_key_order():
    fhir = "http://fhir.test"
    for i in range(9):
        responses.add(responses.GET, f"{fhir}/Observation", json={"resourceType": "Bundle", "type": "searchset"})
    prefetch, omitted = fire_mod.resolve_prefetch(fire_mod.requests.Session(), fhir, NINE_KEYS,
                                                  {"patientId": "p1"}, None, 2.0)
    assert list(prefetch) == list(NINE_KEYS) and omitted == {}
    assert json.dumps(prefetch)  # plain JSON, sendable as is
