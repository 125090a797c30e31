"""Issue 14, finding 9 (integrator's list): /metrics, /readyz, the version, package data.

/metrics is parsed with prometheus_client's own parser. Counters are process-wide, so each
test compares the values before and after what it does.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import responses
from prometheus_client.parser import text_string_to_metric_families

from cds_service import create_app
from cds_service.runtime import metrics
from cds_service.cli import main as cli_main
from cds_service.cli.examples import build
from cds_service.version import full_version, package_version

ROOT = Path(__file__).resolve().parents[1]
PV = "/cds-services/coagulopathy-risk"
OS = "/cds-services/anticoagulant-order-check"


def scrape(client, **kwargs) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} from GET /metrics."""
    resp = client.get("/metrics", **kwargs)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def delta(before, after, name, **labels) -> float:
    labels.setdefault("site", "default")  # issue 24: every metric carries the calling site
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def _post(client, path, body, **kwargs):
    return client.post(path, data=json.dumps(body), content_type="application/json", **kwargs)


@pytest.fixture
def client(tmp_path):
    return create_app({"database": str(tmp_path / "cds.sqlite3")}).test_client()


def test_metrics_count_calls_latency_cards_feedback_and_412(client):
    before = scrape(client)
    resp = _post(client, PV, build("sic-positive"))
    assert resp.status_code == 200
    [card] = resp.get_json()["cards"]
    assert _post(client, OS, build("bmi-42")).status_code == 200
    assert _post(client, PV, {"hook": "patient-view"}).status_code == 400
    no_server = build("sic-positive")
    del no_server["prefetch"]["labs"], no_server["fhirServer"]
    assert _post(client, PV, no_server).status_code == 412
    feedback = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2025-01-15T12:00:00Z",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}
    assert _post(client, PV + "/feedback", feedback).status_code == 200
    metrics.card_suppressed("prophylaxis_suggestion", "snoozed")
    after = scrape(client)

    service = "coagulopathy-risk"
    assert delta(before, after, "cds_hook_calls_total", service=service, status="200") == 1
    assert delta(before, after, "cds_hook_calls_total", service=service, status="400") == 1
    assert delta(before, after, "cds_hook_calls_total", service=service, status="412") == 1
    assert delta(before, after, "cds_hook_calls_total", service="anticoagulant-order-check", status="200") == 1
    assert delta(before, after, "cds_hook_call_duration_seconds_count", service=service) == 3
    assert delta(before, after, "cds_hook_call_duration_seconds_bucket", service=service, le="+Inf") == 3
    assert delta(before, after, "cds_hook_call_duration_seconds_sum", service=service) > 0
    assert delta(before, after, "cds_cards_total", service=service, kind="prophylaxis_suggestion",
                 indicator="warning") == 1
    assert delta(before, after, "cds_cards_total", service="anticoagulant-order-check",
                 kind="dose_correction", indicator="warning") == 1
    assert delta(before, after, "cds_precondition_failed_total", service=service, cause="no_fhir_server") == 1
    assert delta(before, after, "cds_feedback_total", service=service, outcome="accepted") == 1
    assert delta(before, after, "cds_cards_suppressed_total", kind="prophylaxis_suggestion", reason="snoozed") == 1


@responses.activate
def test_metrics_count_fhir_round_trips_cache_hits_and_misses(client):
    empty = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    responses.add(responses.POST, re.compile(r"http://127\.0\.0\.1:8080/fhir/?$"), status=500)
    responses.add(responses.GET, re.compile(r"http://127\.0\.0\.1:8080/fhir/.*"), json=empty)
    body = build("sic-positive")
    del body["prefetch"]["allergies"]
    before = scrape(client)
    assert _post(client, PV, body).status_code == 200
    middle = scrape(client)
    assert _post(client, PV, body).status_code == 200
    after = scrape(client)
    assert delta(before, middle, "cds_fhir_cache_total", result="miss") == 1
    assert delta(middle, after, "cds_fhir_cache_total", result="hit") == 1
    assert delta(before, middle, "cds_fhir_requests_total", service="coagulopathy-risk") >= 1
    assert delta(before, middle, "cds_fhir_round_trips_total", service="coagulopathy-risk") >= 1
    assert delta(middle, after, "cds_fhir_requests_total", service="coagulopathy-risk") == 0


def test_412_causes_are_classified():
    assert metrics.precondition_cause("not prefetched and it cannot be fetched: no answer within the 3 s "
                                      "FHIR deadline") == "timeout"
    assert metrics.precondition_cause("not prefetched and it cannot be fetched: fhirServer refused access "
                                      "(401)") == "fhir_auth"
    assert metrics.precondition_cause("not prefetched and it cannot be fetched: fhirServer is not allowed "
                                      "by this service's allowlist") == "not_allowed"
    assert metrics.precondition_cause("fetching it failed: fhirServer answered 503") == "fhir_http_error"


def test_jwt_rejections_by_reason_class_never_the_token(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm
    jwk = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key()))
    jwk.update(kid="k1", alg="ES384")
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps({"https://ehr.example.org": {"jwks": {"keys": [jwk]}}}))
    client = create_app({"database": str(tmp_path / "cds.sqlite3"), "auth": "required",
                         "trusted_issuers": str(trust)}).test_client()
    secret = "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJ4In0.c2VjcmV0LXNpZ25hdHVyZS12YWx1ZQ"
    before = scrape(client)
    assert _post(client, PV, build("sic-positive")).status_code == 401
    assert _post(client, PV, build("sic-positive"), headers={"Authorization": "Bearer " + secret}).status_code == 401
    assert _post(client, PV, build("sic-positive"), headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    after = scrape(client)
    assert delta(before, after, "cds_jwt_rejections_total", reason="missing") == 1
    assert delta(before, after, "cds_jwt_rejections_total", reason="header") == 1  # no typ, no kid
    assert delta(before, after, "cds_jwt_rejections_total", reason="malformed") == 1
    text = client.get("/metrics").get_data(as_text=True)
    assert secret not in text and "c2VjcmV0" not in text and "dXNlcjpwYXNz" not in text


def test_metrics_access_loopback_only_by_default(client):
    assert client.get("/metrics").status_code == 200  # the test client calls from 127.0.0.1
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    outside = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert outside.status_code == 403 and outside.get_json()["resourceType"] == "OperationOutcome"
    # A reverse proxy on the same host makes every caller look like loopback: refused.
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
    assert client.get("/metrics", headers={"Forwarded": "for=203.0.113.9"}).status_code == 403


def test_metrics_with_a_token_need_it_from_everyone(tmp_path):
    token = "metrics-secret-0123456789"
    client = create_app({"database": str(tmp_path / "a.sqlite3"), "metrics_token": token}).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-secret-0123456"}).status_code == 401
    ok = {"Authorization": f"Bearer {token}"}
    assert client.get("/metrics", headers=ok).status_code == 200
    assert client.get("/metrics", headers=ok, environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200


def test_metrics_can_be_disabled(tmp_path):
    client = create_app({"database": str(tmp_path / "a.sqlite3"), "metrics_enabled": False}).test_client()
    assert client.get("/metrics").status_code == 404


def test_short_metrics_token_is_a_config_error(tmp_path):
    from cds_service.config import ConfigError
    with pytest.raises(ConfigError, match="CDS_METRICS_TOKEN"):
        create_app({"database": str(tmp_path / "a.sqlite3"), "metrics_token": "short"})


def test_prepare_multiprocess_uses_an_empty_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    assert metrics.prepare_multiprocess(1) is None and metrics.MULTIPROC_ENV not in os.environ
    stale = tmp_path / "counter_123.db"
    stale.write_bytes(b"old")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    assert metrics.prepare_multiprocess(2) == str(tmp_path) and not stale.exists()
    monkeypatch.delenv(metrics.MULTIPROC_ENV)
    fresh = metrics.prepare_multiprocess(3)
    assert fresh and os.path.isdir(fresh) and not os.listdir(fresh) and os.environ[metrics.MULTIPROC_ENV] == fresh


def test_multiprocess_exposition_adds_up_processes(tmp_path):
    """Two processes count into one directory; the exposition shows the sum."""
    code = ("from cds_service.runtime import metrics\n"
            "metrics.hook_call('coagulopathy-risk', 200, 0.01)\n")
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60, cwd=ROOT)
    reader = ("from cds_service.runtime import metrics\n"
              "print(metrics.exposition()[0].decode())\n")
    text = subprocess.run([sys.executable, "-c", reader], env=env, check=True, timeout=60, cwd=ROOT,
                          capture_output=True, text=True).stdout
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
              if s.labels.get("service") == "coagulopathy-risk" and s.name == "cds_hook_calls_total"}
    assert values == {"cds_hook_calls_total": 2.0}


# --- /readyz -------------------------------------------------------------------------------------

def test_readyz_when_everything_is_in_place(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ready", "version": full_version(),
                               "checks": {"database": "ok", "policy": "ok", "codes": "ok", "schemas": "ok"}}


def test_readyz_reports_schemas_that_cannot_be_compiled(tmp_path):
    """CDS_SCHEMA_DIR is an override only; pointed at a directory without schemas the worker
    still boots, /readyz says why it is not ready, and hook calls are not answered blindly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(CDS_SCHEMA_DIR=str(tmp_path), CDS_DATABASE=str(tmp_path / "a.sqlite3"), CDS_LOG_LEVEL="CRITICAL")
    code = ("import json\nfrom cds_service import create_app\n"
            "c = create_app().test_client()\nr = c.get('/readyz')\n"
            "print(r.status_code, json.dumps(r.get_json()['checks']))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    status, checks = out.stdout.split(" ", 1)
    checks = json.loads(checks)
    assert status == "503" and checks["schemas"].startswith("not compiled") and checks["database"] == "ok"


def test_healthz_is_liveness_only(tmp_path):
    client = create_app({"database": str(tmp_path / "missing" / "a.sqlite3")}).test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503


# --- version -------------------------------------------------------------------------------------

def test_version_in_cli_startup_log_and_audit_row(tmp_path, capsys, caplog):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"cds-service {full_version()}"
    assert full_version().startswith(package_version())
    if (ROOT / ".git").exists():  # a checkout: git describe is part of it
        assert "(git " in full_version()
    caplog.set_level(logging.INFO)
    db = tmp_path / "a.sqlite3"
    client = create_app({"database": str(db)}).test_client()
    [started] = [r for r in caplog.records if r.getMessage() == "cds-service started"]
    assert started.fields["version"] == full_version()
    assert _post(client, PV, build("sic-positive")).status_code == 200
    assert sqlite3.connect(db).execute("SELECT service_version FROM hook_call").fetchall() == [(full_version(),)]


def test_an_older_database_gets_the_version_column_on_first_write(tmp_path):
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript("""CREATE TABLE hook_call (id INTEGER PRIMARY KEY, hook_instance TEXT NOT NULL,
        service_id TEXT NOT NULL, hook TEXT NOT NULL, patient_hash TEXT NOT NULL, evaluated_at TEXT NOT NULL,
        recorded_at TEXT NOT NULL, data_origin TEXT, assessment TEXT);""")
    conn.close()
    client = create_app({"database": str(db)}).test_client()
    assert _post(client, PV, build("sic-positive")).status_code == 200
    assert sqlite3.connect(db).execute("SELECT service_version FROM hook_call").fetchall() == [(full_version(),)]


# --- package data --------------------------------------------------------------------------------

def test_schemas_and_patients_are_package_data_with_conformance_links():
    from cds_service import data
    from cds_service.web import schemas
    from cds_service.cli.integration.fixtures import DEFAULT_DIR
    packaged = data.path("schemas")
    assert sorted(p.name for p in packaged.glob("*.schema.json")) == sorted(
        f"{name}.schema.json" for name in schemas.SCHEMA_NAMES)
    assert DEFAULT_DIR == data.path("patients") and len(list(DEFAULT_DIR.glob("cov-*.json"))) == 35   # + 10 of issue 20
    # One source of truth: the conformance kit's paths are links to the package's directories.
    for name in ("schemas", "patients"):
        link = ROOT / "conformance" / name
        assert link.is_symlink() and link.resolve() == data.path(name).resolve()
    # setuptools ships them (pyproject package-data patterns cover every file).
    import tomllib
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cds_service"]
    package_root = ROOT / "cds_service"
    for path in (package_root / "data").rglob("*"):
        if path.is_file() and path.suffix != ".py" and "__pycache__" not in path.parts:
            rel = path.relative_to(package_root)
            assert any(rel.match(p.replace("**/", "*/")) or rel.match(p.replace("**/", "*/*/"))
                       or rel.match(p.replace("**/", "")) for p in patterns), rel
