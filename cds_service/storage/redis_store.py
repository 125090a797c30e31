"""Redis jti replay store (CDS_REPLAY=redis://...): `SET key 1 NX PX ttl`, atomic across
replicas, expired by Redis itself (PX: the token's exp + leeway), no scan, no purge.

The key is `<CDS_REDIS_PREFIX>jti:<sha256(iss NUL jti)>`: bounded, and the issuer's jti
values are not readable from the key space. Fails closed like the database store: Redis
unreachable or slower than CDS_REDIS_TIMEOUT_MS -> ReplayStoreUnavailable (503 +
Retry-After), never an unchecked call.
"""
from __future__ import annotations

import hashlib
import math
import time


class RedisReplayStore:
    shared = True

    def __init__(self, url: str, prefix: str = "cds:", timeout_ms: int = 100, client=None):
        import redis
        self._errors = (redis.exceptions.RedisError, OSError)
        timeout = timeout_ms / 1000
        self._client = client or redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                                      retry_on_timeout=False, health_check_interval=30,
                                                      retry=_one_quick_retry())
        self._prefix = prefix

    def key(self, iss: str, jti: str) -> str:
        return self._prefix + "jti:" + hashlib.sha256(f"{iss}\x00{jti}".encode("utf-8")).hexdigest()

    def check_and_add(self, iss: str, jti: str, expires_at: float) -> bool:
        from ..security.replay import ReplayStoreUnavailable
        ttl_ms = math.ceil((expires_at - time.time()) * 1000)
        if ttl_ms <= 0:
            return True  # already expired: nothing to remember (as the database store's takeover)
        try:
            return bool(self._client.set(self.key(iss, jti), b"1", nx=True, px=ttl_ms))
        except self._errors as exc:
            raise ReplayStoreUnavailable(f"jti store (Redis) unavailable: {type(exc).__name__}: {exc}") from None

    def check(self) -> None:
        """For /readyz: ReplayStoreUnavailable when Redis does not answer."""
        from ..security.replay import ReplayStoreUnavailable
        try:
            self._client.ping()
        except self._errors as exc:
            raise ReplayStoreUnavailable(f"jti store (Redis) unavailable: {type(exc).__name__}: {exc}") from None


def _one_quick_retry():
    """One immediate retry on a fresh connection (a connection broken while idle, e.g. after a
    Redis restart), never redis-py's default exponential backoff: the EHR's budget is 500 ms."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    return Retry(NoBackoff(), 1)
