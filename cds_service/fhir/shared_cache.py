"""The FHIR response cache in Redis (CDS_CACHE=redis://...), shared by every replica.

Same contract as the in-process TTLCache of data.py: keyed by (fhirServer, query, SHA-256 of
the access token or "anon"), so one token never sees data fetched with another; values are
the serialised JSON under the same size cap (MAX_CACHED_ENTRY_BYTES), kept for
CDS_FHIR_CACHE_TTL (Redis PX). The Redis key is `<CDS_REDIS_PREFIX>fhir:<sha256 of the
three>`: bounded, and no patient id or query is readable in the key space.

Redis down or slower than CDS_REDIS_TIMEOUT_MS: the call goes on without the cache (a miss,
and no write), `cds_fhir_cache{result="error"}` counts it, and one error is logged per
LOG_EVERY_S. Nothing here can fail a hook call.
"""
from __future__ import annotations

import hashlib
import logging
import time

import orjson

from ..runtime import metrics

log = logging.getLogger("cds_service.fhir.cache")


class RedisCache:
    LOG_EVERY_S = 60.0

    def __init__(self, url: str, *, ttl_s: float, prefix: str = "cds:", timeout_ms: int = 100, client=None):
        import redis
        self._errors = (redis.exceptions.RedisError, OSError)
        timeout = timeout_ms / 1000
        self._client = client or redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                                      retry_on_timeout=False,
                                                      retry=_one_quick_retry())
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._prefix = prefix
        self._last_log = 0.0

    def key(self, ckey: tuple) -> str:
        return self._prefix + "fhir:" + hashlib.sha256(orjson.dumps(list(ckey))).hexdigest()

    def _failed(self, action: str, exc: Exception) -> None:
        metrics.fhir_cache_error()
        now = time.monotonic()
        if now - self._last_log >= self.LOG_EVERY_S:
            self._last_log = now
            log.error("FHIR cache (Redis) unavailable; calls go on without it",
                      extra={"fields": {"action": action, "error": f"{type(exc).__name__}: {exc}"}})

    def get(self, ckey: tuple) -> bytes | None:
        try:
            return self._client.get(self.key(ckey))
        except self._errors as exc:
            self._failed("get", exc)
            return None

    def put(self, ckey: tuple, raw: bytes) -> None:
        try:
            self._client.set(self.key(ckey), raw, px=self._ttl_ms)
        except self._errors as exc:
            self._failed("put", exc)

    def clear(self) -> None:
        """Delete this prefix's cache keys (tests, tools)."""
        try:
            keys = list(self._client.scan_iter(match=self._prefix + "fhir:*", count=500))
            if keys:
                self._client.delete(*keys)
        except self._errors as exc:
            self._failed("clear", exc)


def _one_quick_retry():
    """One immediate retry on a fresh connection (a connection broken while idle, e.g. after a
    Redis restart), never redis-py's default exponential backoff: the EHR's budget is 500 ms."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    return Retry(NoBackoff(), 1)
