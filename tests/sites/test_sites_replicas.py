"""Issue 24 on two real `cds-service serve` replicas sharing one PostgreSQL database: the same
two-hospital sites file, and a reload that both replicas apply without a restart."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
from test_replicas import PUBLIC, replicas  # noqa: E402,F401  (the replicas fixture)

from cds_service.cli import main as cli_main  # noqa: E402
from cds_service.cli.examples import build  # noqa: E402
from sites_helpers import FHIR_B, OS, PV, Keys, sites_toml, write_sites  # noqa: E402

def fresh(name: str, **changes) -> dict:
    body = build(name)
    body["hookInstance"] = str(uuid.uuid4())
    body.update(changes)
    return body


def until(predicate, seconds: float) -> float:
    """Seconds it took for predicate() to hold; fails after `seconds`."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < seconds, "not within the time allowed"
        time.sleep(0.25)
    return time.monotonic() - start


def test_two_sites_on_two_replicas_and_a_reload_both_apply(tmp_path, replicas, pg_url):
    keys = Keys()
    path = write_sites(tmp_path, keys)
    both = replicas(2, CDS_SITES=str(path))
    token = lambda who, tenant, p: keys.token(who, PUBLIC + p, tenant=tenant)  # noqa: E731
    for replica in both:
        a = replica.post(OS, fresh("bmi-42"), token("a", "a-main", OS))
        b = replica.post(OS, fresh("bmi-42", fhirServer=FHIR_B), token("b", "b-1", OS))
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        assert "consider 80 mg" in a.json()["cards"][0]["summary"]
        assert "consider 60 mg" in b.json()["cards"][0]["summary"]
        cross = replica.post(OS, fresh("bmi-42", fhirServer=FHIR_B), token("a", "a-main", OS))
        assert cross.status_code == 403 and "fhirServer check failed" in cross.text
        assert replica.post(OS, fresh("bmi-42"), token("a", "b-1", OS)).status_code == 403
        silent = replica.post(PV, fresh("sic-positive"), token("c", "c-east", PV))
        assert silent.status_code == 200 and silent.json() == {"cards": []}

    # feedback-report --site on PostgreSQL: one B call and one silent C call per replica.
    def site_calls(site: str) -> int:
        import contextlib
        import io
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli_main(["feedback-report", "--database", pg_url, "--json", "--site", site]) == 0
        return json.loads(out.getvalue())["totals"]["hook_calls"]

    until(lambda: site_calls("hospital-b") == 2 and site_calls("clinic-c") == 2, 10)
    assert site_calls("hospital-a") == 2 and site_calls("nowhere") == 0

    def a_is_silent(replica) -> bool:
        resp = replica.post(PV, fresh("sic-positive"), token("a", "a-main", PV))
        assert resp.status_code == 200, resp.text
        return resp.json() == {"cards": []}

    assert not any(a_is_silent(r) for r in both)
    path.write_text(sites_toml(mode_a="silent"))
    assert cli_main(["sites", "reload", str(path), "--database", pg_url]) == 0
    for replica in both:
        assert until(lambda: a_is_silent(replica), 10) < 10

    # A broken file is refused in one line; both replicas keep site A silent (not off).
    path.write_text(sites_toml(mode_a="off") + "\n[sites.hospital-a.oops\n")
    assert cli_main(["sites", "reload", str(path), "--database", pg_url]) == 2
    time.sleep(3)
    assert all(a_is_silent(r) for r in both)

    # SIGHUP (granian respawns the workers, which read the broken file): the accepted
    # configuration stays and the replica keeps answering.
    os.kill(both[0].proc.pid, signal.SIGHUP)
    time.sleep(1)
    assert until(lambda: a_is_silent(both[0]), 20) < 20
    assert until(lambda: "sites file refused; the accepted configuration stays" in both[0].log.read_text(), 10) < 10
