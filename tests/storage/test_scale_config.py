"""The scale-out settings (issue 16, issue 15's batched writer) are validated at start like
every other CDS_* variable: a bad value is a ConfigError naming the variable."""
from __future__ import annotations

import pytest

from cds_service.config import ConfigError, load_config
from cds_service.storage import DatabaseReplayStore, open_storage, replay_store_for
from cds_service.storage.postgres import PostgresStorage
from cds_service.storage.sqlite import SqliteStorage


@pytest.mark.parametrize("name, value", [
    ("CDS_DATABASE_TIMEOUT_MS", "0"), ("CDS_DATABASE_TIMEOUT_MS", "abc"),
    ("CDS_DATABASE_CONNECT_TIMEOUT_MS", "0"), ("CDS_DATABASE_POOL_SIZE", "0"),
    ("CDS_AUDIT_BATCH_ROWS", "0"), ("CDS_AUDIT_BATCH_MS", "-1"), ("CDS_AUDIT_QUEUE_MAX", "10"),
    ("CDS_REPLAY", "memcached://x"), ("CDS_CACHE", "http://x"), ("CDS_REDIS_TIMEOUT_MS", "0"),
    ("CDS_DATABASE", "mysql://db/x"),
])
def test_bad_values_stop_the_start(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_config()


def test_defaults_and_backend_choice(monkeypatch, tmp_path):
    cfg = load_config({"database": str(tmp_path / "x.sqlite3")})
    assert (cfg.database_timeout_ms, cfg.audit_batch_rows, cfg.audit_batch_ms, cfg.replay, cfg.cache) == \
        (250, 200, 5.0, "", "")
    assert isinstance(open_storage(cfg.database, config=cfg), SqliteStorage)
    monkeypatch.setenv("CDS_DATABASE", "postgresql://u:secret@db.example.org:5432/cds")
    monkeypatch.setenv("CDS_DATABASE_TIMEOUT_MS", "300")
    cfg = load_config()
    store = open_storage(cfg.database, config=cfg)   # opens nothing
    assert isinstance(store, PostgresStorage) and store.timeout_ms == 300
    assert "secret" not in store.path and "secret" not in repr(cfg)
    assert isinstance(replay_store_for(cfg, store), DatabaseReplayStore)
