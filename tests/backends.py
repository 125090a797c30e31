"""The shared stores the scale-out tests need (issue 16): PostgreSQL and Redis on this machine.

CDS_TEST_PG (default postgresql://postgres@127.0.0.1:5432) and CDS_TEST_REDIS (default
redis://127.0.0.1:6379/0). A fresh database `cds_test_<random>` per test run (dropped at the
end) and a Redis key prefix `cds_test_<random>:` per run (its keys deleted at the end): the
machine's shared instances are never stopped or flushed.

Without them the tests skip with one clear line; with CDS_REQUIRE_PG=1 (.ci/run) they fail.
"""
from __future__ import annotations

import os
import secrets

import pytest

PG_BASE = os.environ.get("CDS_TEST_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
REDIS_URL = os.environ.get("CDS_TEST_REDIS", "redis://127.0.0.1:6379/0")
RUN_ID = secrets.token_hex(4)
REQUIRED = os.environ.get("CDS_REQUIRE_PG", "").lower() in ("1", "true", "yes")
_reachable: dict[str, str | None] = {}


def _unavailable(what: str, reason: str):
    line = (f"{what} not reachable ({reason}): the PostgreSQL/Redis tests are skipped "
            "(CI sets CDS_REQUIRE_PG=1 to require them)")
    if REQUIRED:
        pytest.fail(line, pytrace=False)
    pytest.skip(line)


def pg_admin():
    import psycopg
    return psycopg.connect(PG_BASE + "/postgres", autocommit=True, connect_timeout=3)


def require_pg() -> None:
    if "pg" not in _reachable:
        try:
            pg_admin().close()
            _reachable["pg"] = None
        except Exception as exc:  # ImportError, OperationalError
            _reachable["pg"] = f"{PG_BASE}: {type(exc).__name__}"
    if _reachable["pg"]:
        _unavailable("PostgreSQL", _reachable["pg"])


def require_redis() -> None:
    if "redis" not in _reachable:
        try:
            import redis
            redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
            _reachable["redis"] = None
        except Exception as exc:
            _reachable["redis"] = f"{REDIS_URL}: {type(exc).__name__}"
    if _reachable["redis"]:
        _unavailable("Redis", _reachable["redis"])


def missing() -> dict[str, str]:
    """{"pg": reason, "redis": reason} for the services that do not answer."""
    out = {}
    for name, check in (("pg", require_pg), ("redis", require_redis)):
        try:
            check()
        except BaseException:  # pytest's Skipped / Failed (outside a test)
            out[name] = _reachable.get(name) or "unreachable"
    return out


PG_FIXTURES = {"pg_url", "pg_database", "fresh_pg"}


def needs(item) -> set[str]:
    """Which shared services a collected test needs: "pg", "redis"."""
    names = set(getattr(item, "fixturenames", ()))
    params = set(map(str, getattr(getattr(item, "callspec", None), "params", {}).values()))
    out = set()
    if names & PG_FIXTURES or "postgres" in params:
        out.add("pg")
    if "redis_prefix" in names or "redis" in params:
        out.add("redis")
    return out


TABLES = ("suggestion", "card", "hook_call", "feedback", "jwt_jti", "card_lifecycle", "meta")


def create_database(name: str) -> str:
    with pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_BASE}/{name}"


def drop_database(name: str) -> None:
    from cds_service.storage.postgres import close_all_pools
    close_all_pools()
    with pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate(url: str) -> None:
    import psycopg
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        conn.execute("TRUNCATE " + ", ".join(TABLES) + " RESTART IDENTITY CASCADE")


def redis_delete_prefix(prefix: str) -> None:
    import redis
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    keys = list(client.scan_iter(match=prefix + "*", count=500))
    if keys:
        client.delete(*keys)
