"""Numbered migrations with a schema_version table (issue 16): `cds-service migrate`, and
start-up refuses a database at the wrong version with one clear line (exit 2)."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import backends
from cds_service.cli import main as cli_main
from cds_service.storage import StorageError, migrations, open_storage

ROOT = Path(__file__).resolve().parents[2]


def _serve(database: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`cds-service serve` up to its start-up checks (port 1: it never gets to bind)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(CDS_DATABASE=database)
    return subprocess.run([sys.executable, "-m", "cds_service", "serve", "--port", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def fresh_pg():
    backends.require_pg()
    name = f"cds_test_{backends.RUN_ID}_m{os.urandom(3).hex()}"
    url = backends.create_database(name)
    yield url
    backends.drop_database(name)


def test_postgres_is_never_migrated_implicitly_and_serve_refuses_it_in_one_line(fresh_pg, tmp_path, capsys):
    store = open_storage(fresh_pg)
    with pytest.raises(StorageError, match="schema version 0, this release needs .*cds-service migrate"):
        store.check_writable()
    out = _serve(fresh_pg, tmp_path)
    assert out.returncode == 2
    [line] = [l for l in out.stderr.splitlines() if l.startswith("cds-service:")]
    assert "schema version 0" in line and "run `cds-service migrate` first" in line
    assert cli_main(["migrate", "--database", fresh_pg]) == 0
    assert f"schema version 0 -> {migrations.latest('postgres')}" in capsys.readouterr().out
    assert cli_main(["migrate", "--database", fresh_pg]) == 0          # idempotent
    assert "up to date" in capsys.readouterr().out
    open_storage(fresh_pg).check_writable()


def test_a_database_from_a_newer_release_is_refused(fresh_pg, tmp_path):
    import psycopg
    open_storage(fresh_pg).migrate()
    with psycopg.connect(fresh_pg, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (99, 'future', 'x')")
    out = _serve(fresh_pg, tmp_path)
    assert out.returncode == 2 and "newer than this release's" in out.stderr
    with pytest.raises(StorageError, match="newer"):
        open_storage(fresh_pg).check_writable()
    db = tmp_path / "future.sqlite3"
    open_storage(str(db)).check_writable()
    sqlite3.connect(db).execute("INSERT INTO schema_version VALUES (99, 'future', 'x')").connection.commit()
    out = _serve(str(db), tmp_path)
    assert out.returncode == 2 and "newer than this release's" in out.stderr


def test_sqlite_creates_itself_and_records_its_version(tmp_path):
    db = tmp_path / "cds.sqlite3"
    open_storage(str(db)).check_writable()          # zero configuration: the first write creates it
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT version, name FROM schema_version").fetchall() == [(1, "initial"), (2, "site_id")]
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)


def test_a_sqlite_database_from_before_numbered_migrations_is_brought_up(tmp_path):
    """A database written by an older release (schema_version only in meta, hook_call
    without service_version): 0001 applies over it (IF NOT EXISTS) and adds the column."""
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1'), ('patient_hash_pepper', 'abc');
        CREATE TABLE hook_call (id INTEGER PRIMARY KEY, hook_instance TEXT NOT NULL, service_id TEXT NOT NULL,
            hook TEXT NOT NULL, patient_hash TEXT NOT NULL, evaluated_at TEXT NOT NULL, recorded_at TEXT NOT NULL,
            data_origin TEXT, assessment TEXT);
        INSERT INTO hook_call VALUES (1, 'old', 's', 'patient-view', 'h', 'x', 'x', NULL, NULL);
    """)
    conn.close()
    assert cli_main(["migrate", "--database", str(db)]) == 0
    conn = sqlite3.connect(db)
    # 0002 (issue 24) adds site_id after service_version; the old row is the implicit site's.
    assert [r[1] for r in conn.execute("PRAGMA table_info(hook_call)")][-2:] == ["service_version", "site_id"]
    assert conn.execute("SELECT hook_instance, site_id FROM hook_call").fetchall() == [("old", "default")]
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone() == (2,)
    assert open_storage(str(db)).patient_hash("p") == open_storage(str(db), pepper="abc").patient_hash("p")


def test_migrations_are_numbered_and_the_backends_agree_on_the_tables():
    assert migrations.latest("sqlite") == migrations.latest("postgres")
    import re
    tables = {b: set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", "".join(s for _, _, s in migrations.scripts(b))))
              for b in ("sqlite", "postgres")}
    assert tables["sqlite"] == tables["postgres"]
