"""Audit durability setting (CDS_DATABASE_SYNC) reaches SQLite, and bad values fail at start."""
from __future__ import annotations

import pytest

from cds_service import create_app
from cds_service.config import ConfigError


@pytest.mark.parametrize("setting,pragma", [(None, 1), ("normal", 1), ("full", 2)])
def test_sync_setting_reaches_sqlite(tmp_path, setting, pragma):
    overrides = {"database": str(tmp_path / "a.db")}
    if setting:
        overrides["database_sync"] = setting
    storage = create_app(overrides).extensions["cds"].extensions["storage"]
    assert storage.connection().execute("PRAGMA synchronous").fetchone()[0] == pragma


def test_bad_sync_value_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CDS_DATABASE_SYNC", "off")
    with pytest.raises(ConfigError):
        create_app({"database": str(tmp_path / "a.db")})
