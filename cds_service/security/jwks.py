"""Fetching and caching the JWK Sets of configured `jwks_url`/`jku` URLs.

Only URLs from the trust file ever reach this module; a URL taken from a token is never
fetched (the validator checks it against the issuer's list first).

- A key set is cached for JWKS_TTL seconds (cachetools TTLCache).
- An unknown `kid` triggers one refetch of that URL, at most once per REFETCH_INTERVAL
  seconds per URL, so tokens with made-up kids cannot make us hammer an EHR.
- A failed fetch is remembered for REFETCH_INTERVAL seconds (no retry storm); a cached
  set stays in use when a refetch fails.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

import requests
from cachetools import TTLCache

from ..logging_setup import log_event
from .trust import UnusableKey, VerificationKey, parse_jwk

log = logging.getLogger("cds_service.security.jwks")

JWKS_TTL = 300.0
REFETCH_INTERVAL = 60.0
FETCH_TIMEOUT = (2.0, 3.0)   # connect, read (seconds)
MAX_JWKS_BYTES = 256 * 1024


class JwksClient:
    def __init__(self, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._session = session or requests.Session()
        self.clock = clock
        self._sets: TTLCache = TTLCache(maxsize=64, ttl=JWKS_TTL, timer=self._now)
        self._failed: TTLCache = TTLCache(maxsize=64, ttl=REFETCH_INTERVAL, timer=self._now)
        self._last_refetch: dict[str, float] = {}
        self._lock = threading.Lock()        # guards the dicts above
        self._fetch_lock = threading.Lock()  # one network fetch at a time

    def _now(self) -> float:
        return self.clock()

    def key(self, url: str, kid: str) -> VerificationKey | None:
        """The key `kid` published at `url`, or None (unknown kid, or the set is unavailable)."""
        with self._lock:
            keys = self._sets.get(url)
            failed = url in self._failed
        if keys is None:
            if failed:
                return None
            keys = self._fetch(url)
            # Just fetched: refetching for an unknown kid would find the same set.
            return keys.get(kid) if keys else None
        if kid in keys:
            return keys[kid]
        with self._lock:
            now = self.clock()
            last = self._last_refetch.get(url)
            if last is not None and now - last < REFETCH_INTERVAL:
                return None  # rate-limited: this URL was refetched for an unknown kid recently
            self._last_refetch[url] = now
        log_event(log, logging.INFO, "unknown kid: refetching JWKS", url=url, kid=kid[:100])
        keys = self._fetch(url, refresh=True)
        return keys.get(kid) if keys else None

    def status(self, url: str) -> str:
        """"ok" (a set is cached), "failed" (the last fetch failed and nothing is cached) or
        "unknown" (not fetched yet). Never fetches: for /readyz, which anyone may call."""
        with self._lock:
            if self._sets.get(url) is not None:
                return "ok"
            return "failed" if url in self._failed else "unknown"

    def _fetch(self, url: str, refresh: bool = False) -> dict[str, VerificationKey] | None:
        with self._fetch_lock:
            if not refresh:  # another thread may have fetched it while we waited
                with self._lock:
                    cached = self._sets.get(url)
                if cached is not None:
                    return cached
            try:
                keys = self._download(url)
            except (requests.RequestException, ValueError) as exc:
                # The exception text may quote the response; only its class is logged.
                log_event(log, logging.WARNING, "JWKS fetch failed", url=url, error=type(exc).__name__)
                with self._lock:
                    self._failed[url] = True
                    return self._sets.get(url)
            with self._lock:
                self._sets[url] = keys
                self._failed.pop(url, None)
            log_event(log, logging.INFO, "JWKS fetched", url=url, kids=sorted(keys))
            return keys

    def _download(self, url: str) -> dict[str, VerificationKey]:
        with self._session.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False, stream=True,
                               headers={"Accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}")
            body = bytearray()
            for chunk in resp.iter_content(chunk_size=65536):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("JWKS too large")
        doc = json.loads(body)
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ValueError("not a JWK Set")
        keys: dict[str, VerificationKey] = {}
        for jwk in doc["keys"]:
            try:
                key = parse_jwk(jwk)
            except UnusableKey as exc:  # e.g. an encryption key beside the signing keys
                log_event(log, logging.DEBUG, "JWKS key skipped", url=url, reason=str(exc))
                continue
            keys.setdefault(key.kid, key)
        return keys
