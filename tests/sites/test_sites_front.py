"""Issue 21 with issue 24's sites: the ASGI front (serving.Front) authenticates a hook call on
its headers through the sites layer's own authenticate, before reading the body, and hands
the site to the sites gate (one validation: a second would meet its own jti as a replay)."""
from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

from cds_service import create_app
from cds_service.cli.examples import build
from sites_helpers import FHIR_A, PV, Keys, write_sites

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from test_front import Client, front_for, run  # noqa: E402

BASE = "http://localhost"


def test_sites_are_authenticated_on_the_headers_before_the_body(tmp_path):
    keys = Keys()
    path = write_sites(tmp_path, keys)
    app = create_app({"sites": str(path), "database": str(tmp_path / "cds.sqlite3")})
    c = Client(front_for(app))
    headers = {"Content-Type": "application/json", "Host": "localhost", "Content-Length": "100000"}
    t0 = time.monotonic()
    for auth in ({}, {"Authorization": "Bearer nope"},
                 {"Authorization": "Bearer " + keys.token("a", BASE + PV, tenant="unknown-tenant")}):
        out = run(c.request("POST", PV, {**headers, **auth}, stall=True))
        assert out["status"] in (401, 403) and out["receive_calls"] == 0, out
    assert time.monotonic() - t0 < 3
    assert json.loads(out["body"])["issue"][0]["code"] == "forbidden"   # the sites layer's own answer

    body = build("sic-positive")
    body["hookInstance"], body["fhirServer"] = str(uuid.uuid4()), FHIR_A
    raw = json.dumps(body).encode()
    token = keys.token("a", BASE + PV, tenant="a-main")
    ok = run(c.request("POST", PV, {**headers, "Content-Length": str(len(raw)), "Authorization": f"Bearer {token}"},
                       chunks=[(0, raw)]))
    assert ok["status"] == 200 and "cards" in json.loads(ok["body"]), ok["body"][:300]
    # The token was validated once (by the front): the same token again is a replay.
    again = run(c.request("POST", PV, {**headers, "Content-Length": "2", "Authorization": f"Bearer {token}"},
                          chunks=[(0, b"{}")]))
    assert again["status"] == 401 and again["receive_calls"] == 0
