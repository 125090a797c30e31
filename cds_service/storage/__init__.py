"""The service's shared state: audit trail, feedback, card lifecycle, jti replay store.

- `base.py`: what is stored and what never is; the code both backends share.
- `sqlite.py`: a file (CDS_DATABASE a path; the zero-configuration default).
- `postgres.py`: PostgreSQL (CDS_DATABASE=postgresql://...), for two or more replicas.
- `writer.py`: the batched writer for audit and lifecycle rows (group commit).
- `migrations/`: numbered SQL migrations per backend (`cds-service migrate`).
- `redis_store.py`: the optional Redis jti store (CDS_REPLAY=redis://...).
"""
from __future__ import annotations

import logging
import sqlite3  # noqa: F401 - tests patch storage.sqlite3.connect (a locked or read-only file)

from ..runtime.errors import ServiceUnavailable
from .base import (BaseStorage, DatabaseReplayStore, IssuedCard, SqliteReplayStore, StorageError,  # noqa: F401
                   utc_iso)
from .sqlite import SqliteStorage, Storage  # noqa: F401

log = logging.getLogger("cds_service.storage")


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def open_storage(target: str, *, pepper: str = "", sync: str = "normal", config=None) -> BaseStorage:
    """The backend CDS_DATABASE names: a postgresql:// URL or a SQLite file path. Opens nothing."""
    batch = {}
    if config is not None:
        batch = {"batch_rows": config.audit_batch_rows, "batch_ms": config.audit_batch_ms,
                 "queue_max": config.audit_queue_max}
    if is_postgres(target):
        from .postgres import PostgresStorage
        extra = {}
        if config is not None:
            extra = {"timeout_ms": config.database_timeout_ms,
                     "connect_timeout_ms": config.database_connect_timeout_ms,
                     "pool_size": config.database_pool_size}
        return PostgresStorage(target, pepper=pepper, **extra, **batch)
    return SqliteStorage(target, pepper=pepper, sync=sync, **batch)


def replay_store_for(config, storage: BaseStorage):
    """CDS_REPLAY: empty -> the database (DatabaseReplayStore); redis://... -> Redis SET NX PX."""
    if config.replay.startswith(("redis://", "rediss://", "unix://")):
        from .redis_store import RedisReplayStore
        return RedisReplayStore(config.replay, prefix=config.redis_prefix, timeout_ms=config.redis_timeout_ms)
    return DatabaseReplayStore(storage)


def init_app(app, state) -> None:
    """Hang the stores on the app. Nothing is opened or written here: the database is
    reached on the first write (see BaseStorage), so a worker boots whatever its state."""
    cfg = state.config
    storage = open_storage(cfg.database, pepper=cfg.audit_pepper, sync=cfg.database_sync, config=cfg)
    state.extensions["storage"] = storage
    # Replaces the security layer's per-process default (it looks the store up per request).
    state.extensions["replay_store"] = replay_store_for(cfg, storage)

    def feedback_store(service, items):
        try:
            return storage.store_feedback(service.id, items)
        except StorageError as exc:
            # Nothing was stored (one transaction): tell the client to retry, never "ok".
            log.error("feedback not stored", extra={"fields": {"service": service.id, "error": str(exc)}})
            raise ServiceUnavailable("Audit store unavailable: feedback could not be stored; retry later.") from None

    state.extensions["feedback_store"] = feedback_store
