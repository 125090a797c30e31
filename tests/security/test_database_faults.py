"""Issue 14, finding 2: the audit database locked, read-only or unwritable.

Before: the jti store failed closed with a 401 (an EHR reads that as bad credentials, and the
log blamed a "full replay store"), and a worker could not even boot (the schema was written
at start-up, so gunicorn halted the whole server). Now:
- the app factory and its first request never need the database (a worker always boots);
- an authenticated hook call or feedback answers 503 + Retry-After with an OperationOutcome
  naming "Audit store unavailable", never 401 and never an unchecked 200 (the jti store still
  fails closed);
- /readyz answers 503 with the reason, /healthz stays 200 (liveness);
- once the database is writable again, calls succeed.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from cds_service import storage as storage_module
from cds_service.security.replay import ReplayStoreUnavailable
from cds_service.security.tokens import TokenValidator
from cds_service.storage import SqliteReplayStore, Storage
from security_helpers import (FEEDBACK, PV, bearer, es_key, feedback_body, hook_body, jwks, make_app,  # noqa: F401
                              mint, rs_key)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def short_waits(monkeypatch):
    # A lock held longer than the busy timeout is a fault; keep the test's waits short.
    monkeypatch.setattr(SqliteReplayStore, "BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(Storage, "BUSY_TIMEOUT_MS", 300)


def _create_db(path: Path) -> None:
    """A database as a previous run left it (schema, WAL)."""
    store = Storage(str(path))
    store.check_writable()
    store.close()


@contextmanager
def locked(path: Path):
    """Another process's writer holding the database (BEGIN EXCLUSIVE)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@contextmanager
def read_only(path: Path, monkeypatch):
    """The file opened read-only by SQLite (SQLITE_READONLY on every write). chmod would not
    do when the tests run as root, so the open itself is made read-only (mode=ro)."""
    real = sqlite3.connect

    def ro_connect(target, *args, uri=False, **kwargs):
        if not uri and str(target) == str(path):
            return real(f"file:{target}?mode=ro", *args, uri=True, **kwargs)
        return real(target, *args, uri=uri, **kwargs)

    monkeypatch.setattr(storage_module.sqlite3, "connect", ro_connect)
    try:
        yield
    finally:
        monkeypatch.setattr(storage_module.sqlite3, "connect", real)


def _assert_store_unavailable(resp) -> None:
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.status_code != 401
    assert int(resp.headers["Retry-After"]) > 0
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome" and "cards" not in body
    issue = body["issue"][0]
    assert issue["code"] == "transient" and "Audit store unavailable" in issue["diagnostics"]
    assert "WWW-Authenticate" not in resp.headers
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


def _post(client, path, body, token):
    return client.post(path, data=json.dumps(body), content_type="application/json", headers=bearer(token))


def _check_fault(app, mint) -> None:
    client = app.test_client()
    assert client.get("/healthz").status_code == 200          # liveness: the process answers
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"]
    body = ready.get_json()
    assert body["status"] == "unavailable" and body["checks"]["database"] != "ok"
    assert body["checks"]["policy"] == body["checks"]["codes"] == body["checks"]["schemas"] == "ok"
    assert "database" in body["reason"]
    _assert_store_unavailable(_post(client, PV, hook_body(), mint()))
    _assert_store_unavailable(_post(client, FEEDBACK, feedback_body(), mint(aud="http://localhost" + FEEDBACK)))


def test_locked_database_boots_and_answers_503_not_401(tmp_path, make_app, mint):
    db = tmp_path / "cds.sqlite3"
    _create_db(db)
    with locked(db):
        app = make_app()  # boots while another writer holds the file
        _check_fault(app, mint)
    # The lock released: the same worker recovers, no restart needed.
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    resp = _post(client, PV, hook_body(), mint())
    assert resp.status_code == 200 and resp.get_json()["cards"]


def test_locked_fresh_database_before_any_schema(tmp_path, make_app, mint):
    db = tmp_path / "cds.sqlite3"
    sqlite3.connect(db).execute("CREATE TABLE other (x)").connection.commit()  # no schema of ours yet
    with locked(db):
        _check_fault(make_app(), mint)


def test_read_only_database_boots_and_answers_503_not_401(tmp_path, make_app, mint, monkeypatch):
    db = tmp_path / "cds.sqlite3"
    _create_db(db)
    with read_only(db, monkeypatch):
        app = make_app()
        _check_fault(app, mint)
        ready = app.test_client().get("/readyz").get_json()
        assert "readonly" in ready["checks"]["database"]


def test_unwritable_database_path_boots_and_answers_503_not_401(tmp_path, make_app, mint):
    db = tmp_path / "no-such-dir" / "cds.sqlite3"
    app = make_app(database=str(db))
    _check_fault(app, mint)
    assert not db.parent.exists()


def test_the_log_names_the_audit_store_not_a_full_replay_store(tmp_path, make_app, mint, caplog):
    app = make_app(database=str(tmp_path / "missing" / "cds.sqlite3"))
    caplog.set_level("DEBUG")
    _post(app.test_client(), PV, hook_body(), mint())
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "audit store unavailable" in text
    assert "replay store is full" not in text and "replay store full" not in text


def test_jti_store_unavailable_never_accepts_the_token(mint, jwks):
    """Fail closed at the validator: the error propagates, no identity is returned."""
    from cds_service.security.jwks import JwksClient
    from cds_service.security.trust import parse_entry
    from security_helpers import BASE, ISS

    class Broken:
        def check_and_add(self, iss, jti, expires_at):
            raise ReplayStoreUnavailable("audit database write failed: database is locked")

    validator = TokenValidator(issuers={ISS: parse_entry(ISS, {"jwks": jwks})}, algorithms=("ES384",),
                               max_lifetime=3600, jwks=JwksClient(), replay_store=lambda: Broken())
    with pytest.raises(ReplayStoreUnavailable):
        validator.validate("Bearer " + mint(), BASE + PV)


def test_without_auth_the_advice_is_not_withheld(tmp_path):
    """CDS_AUTH=off: no jti to record; a failed audit write is logged and the cards are given
    (README, Feedback and audit). /readyz still reports the fault."""
    from cds_service import create_app
    app = create_app({"database": str(tmp_path / "missing" / "cds.sqlite3")})
    client = app.test_client()
    resp = client.post(PV, data=json.dumps(hook_body()), content_type="application/json")
    assert resp.status_code == 200 and resp.get_json()["cards"]
    assert client.get("/readyz").status_code == 503


@pytest.mark.server
@pytest.mark.parametrize("fault", ["locked", "unwritable"])
def test_a_server_worker_boots_with_the_database_down(tmp_path, fault):
    """The worker's import (cds_service.wsgi, what every server worker runs at boot) succeeds
    with the database locked or unwritable: no crash loop, so a server never halts over it."""
    db = tmp_path / ("missing/cds.sqlite3" if fault == "unwritable" else "cds.sqlite3")
    if fault == "locked":
        _create_db(db)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(CDS_DATABASE=str(db), CDS_LOG_LEVEL="WARNING")
    code = ("from cds_service.wsgi import app\n"
            "c = app.app.test_client()  # the Flask app inside the serving middleware\n"
            "print(c.get('/healthz').status_code, c.get('/readyz').status_code)\n")

    def run():
        return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=120)

    if fault == "locked":
        with locked(db):
            out = run()
    else:
        out = run()
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["200", "503"]
