"""jti replay protection shared through the database: two app instances (two gunicorn
workers in production) over one database file refuse the same token twice."""
from __future__ import annotations

import time

from cds_service import create_app
from cds_service.storage import SqliteReplayStore, Storage


def test_replay_store_is_shared_across_processes_on_one_database(tmp_path):
    path = str(tmp_path / "audit.db")
    first, second = SqliteReplayStore(Storage(path)), SqliteReplayStore(Storage(path))
    exp = time.time() + 300
    assert first.check_and_add("https://ehr.example", "jti-1", exp) is True
    assert second.check_and_add("https://ehr.example", "jti-1", exp) is False
    # Same jti from another issuer is a different token.
    assert second.check_and_add("https://other.example", "jti-1", exp) is True


def test_expired_jti_rows_are_purged(tmp_path):
    store = SqliteReplayStore(Storage(str(tmp_path / "audit.db")))
    assert store.check_and_add("iss", "old", time.time() - 1) is True
    store._last_purge = 0.0  # the next call is a purge cycle (purges run at most once a minute)
    store.check_and_add("iss", "new", time.time() + 60)
    rows = store._storage.connection().execute("SELECT jti FROM jwt_jti").fetchall()
    assert [r[0] for r in rows] == ["new"]


def test_app_uses_the_database_store(tmp_path):
    app = create_app({"database": str(tmp_path / "audit.db")})
    assert isinstance(app.extensions["cds"].extensions["replay_store"], SqliteReplayStore)


def test_live_jti_is_refused_between_purges_and_an_expired_row_is_taken_over(tmp_path):
    store = SqliteReplayStore(Storage(str(tmp_path / "audit.db")))
    assert store.check_and_add("iss", "j", time.time() + 60) is True
    assert store.check_and_add("iss", "j", time.time() + 60) is False   # live: replay
    assert store.check_and_add("iss", "k", time.time() - 1) is True     # recorded, already expired
    assert store.check_and_add("iss", "k", time.time() + 60) is True    # not purged yet, not live
