"""The jti replay store on every backend (issue 16): the database (SQLite file, PostgreSQL)
and Redis (CDS_REPLAY). Atomic (one winner under concurrent sends), expiry by TTL, fail
closed (ReplayStoreUnavailable, answered 503 by the security layer)."""
from __future__ import annotations

import threading
import time

import pytest

import backends
from cds_service.security.replay import ReplayStoreUnavailable
from cds_service.storage import DatabaseReplayStore, open_storage
from cds_service.storage.redis_store import RedisReplayStore


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def stores(request, tmp_path):
    """Two stores over the same shared state, as two workers or replicas."""
    if request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        return RedisReplayStore(backends.REDIS_URL, prefix=prefix), RedisReplayStore(backends.REDIS_URL, prefix=prefix)
    target = str(tmp_path / "cds.sqlite3") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    return DatabaseReplayStore(open_storage(target)), DatabaseReplayStore(open_storage(target))


def test_a_jti_is_accepted_once_across_stores(stores):
    first, second = stores
    exp = time.time() + 300
    assert first.check_and_add("https://ehr.example", "jti-1", exp) is True
    assert second.check_and_add("https://ehr.example", "jti-1", exp) is False
    assert first.check_and_add("https://ehr.example", "jti-1", exp) is False
    assert second.check_and_add("https://other.example", "jti-1", exp) is True  # another issuer


def test_concurrent_sends_of_one_jti_have_exactly_one_winner(stores):
    exp = time.time() + 300
    results, barrier, opening = [], threading.Barrier(8), threading.Lock()

    def send(store, i):
        # Each thread opens its own connection first, one at a time: the race under test is the
        # insert, not eight first opens of a fresh SQLite file (which may fail closed when the
        # machine is loaded: "database is locked" while setting WAL, answered 503 in service).
        with opening:
            assert store.check_and_add("iss", f"warm-{i}", exp) is True
        barrier.wait()
        results.append(store.check_and_add("iss", "raced", exp))

    threads = [threading.Thread(target=send, args=(stores[i % 2], i)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_an_expired_jti_is_not_a_replay(stores):
    first, second = stores
    assert first.check_and_add("iss", "k", time.time() - 1) is True     # recorded, already expired
    assert second.check_and_add("iss", "k", time.time() + 60) is True   # not live: accepted again
    assert first.check_and_add("iss", "k", time.time() + 60) is False


def test_redis_keys_expire_by_ttl_and_hide_the_jti(redis_prefix):
    import redis
    store = RedisReplayStore(backends.REDIS_URL, prefix=redis_prefix)
    store.check_and_add("iss", "secret-jti", time.time() + 30)
    client = redis.Redis.from_url(backends.REDIS_URL)
    [key] = list(client.scan_iter(match=redis_prefix + "*"))
    assert b"secret-jti" not in key and 0 < client.pttl(key) <= 30_000


def test_database_store_purges_expired_rows_at_most_once_a_minute(backend_db):
    store = DatabaseReplayStore(open_storage(backend_db))
    assert store.check_and_add("iss", "old", time.time() - 1) is True      # first call: a purge cycle
    store.check_and_add("iss", "new", time.time() + 60)                      # not one: "old" stays
    assert sorted(store._storage.query("SELECT jti FROM jwt_jti")) == [("new",), ("old",)]
    store._last_purge = 0.0
    store.check_and_add("iss", "newer", time.time() + 60)
    assert sorted(store._storage.query("SELECT jti FROM jwt_jti")) == [("new",), ("newer",)]


def _free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_stores_fail_closed():
    port = _free_port()
    pg = open_storage(f"postgresql://postgres@127.0.0.1:{port}/x")
    pg.timeout_ms = 100
    for store in (DatabaseReplayStore(pg), RedisReplayStore(f"redis://127.0.0.1:{port}/0", timeout_ms=100)):
        with pytest.raises(ReplayStoreUnavailable):
            store.check_and_add("iss", "j", time.time() + 60)
