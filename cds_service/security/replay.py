"""JWT replay protection: each (iss, jti) is accepted once until the token expires.

`ReplayStore` is the interface; `InMemoryReplayStore` keeps the jtis in this process
(cachetools TLRUCache, each entry until its token's exp + leeway). That is exact for one
process only: under several gunicorn workers or replicas a token replayed to another
process is not caught. Such deployments need a store shared by all of them (the
database, CDS Hooks notes §11 step 8): implement `check_and_add` on it and set
`state.extensions["replay_store"]` in a layer's init_app; the security layer looks the
store up there on every request.
"""
from __future__ import annotations

import threading
import time
from typing import Protocol

from cachetools import TLRUCache

MAX_ENTRIES = 200_000


class ReplayStoreFull(RuntimeError):
    """No room to remember another jti: the token is refused (fail closed)."""


class ReplayStoreUnavailable(RuntimeError):
    """The shared jti store cannot be written (database locked, read-only, unwritable).
    The token cannot be checked for replay, so the call is refused (fail closed) - as 503
    with Retry-After, because the fault is ours, not the caller's credential."""


class ReplayStore(Protocol):
    def check_and_add(self, iss: str, jti: str, expires_at: float) -> bool:
        """Atomically record (iss, jti) until `expires_at` (epoch seconds).

        True if it was new; False if it was already seen (a replay). Raises ReplayStoreFull
        (no room: 401) or ReplayStoreUnavailable (the store cannot be written: 503)."""


class InMemoryReplayStore:
    shared = False  # per-process only (see module docstring)

    def __init__(self, maxsize: int = MAX_ENTRIES):
        self._seen: TLRUCache = TLRUCache(maxsize=maxsize, ttu=lambda _k, expires_at, _now: expires_at,
                                          timer=time.time)
        self._lock = threading.Lock()

    def check_and_add(self, iss: str, jti: str, expires_at: float) -> bool:
        key = (iss, jti)
        with self._lock:
            if key in self._seen:
                return False
            if len(self._seen) >= self._seen.maxsize:
                self._seen.expire()
                if len(self._seen) >= self._seen.maxsize:
                    # Evicting a live jti would re-open it to replay.
                    raise ReplayStoreFull("jti replay cache is full")
            self._seen[key] = expires_at
            return True
