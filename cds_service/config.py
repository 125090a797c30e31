"""All runtime configuration, read from the environment in this one module.

Every setting has a documented default (see the README's configuration table).
`create_app(config=...)` accepts a dict of the same keys (lower-case, without the
`CDS_` prefix) so tests can override them without touching the environment.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any


class ConfigError(ValueError):
    """A configuration value is present but unusable. Raised at start-up."""


def _env(name: str, default: str | None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _split(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Config:
    # Public base URL (scheme://host[:port][/prefix]) the service is reached at, when it
    # sits behind a proxy. Used to build the JWT `aud` check. Empty: derive from request.
    public_base_url: str = ""
    # "off" or "required" (JWT client authentication, see security).
    auth: str = "off"
    # Path to the trusted-issuer JSON file (iss -> jwks / jwks_url).
    trusted_issuers: str = ""
    # Leave GET /cds-services open even when auth is required (the spec's discovery is
    # often called without a token, and it carries no patient data).
    discovery_open: bool = True
    # JWT signature algorithms accepted (asymmetric only; see security/trust.py).
    jwt_algorithms: tuple[str, ...] = ("ES384", "RS384")
    # Longest accepted token lifetime (exp - now), seconds; bounds the jti replay store.
    jwt_max_lifetime: int = 3600
    # Comma-separated FHIR base-URL prefixes the service may call. Default: loopback only.
    fhir_allowlist: tuple[str, ...] = ("http://127.0.0.1", "http://localhost", "http://[::1]")
    # Deadline in seconds for the whole FHIR data phase of one hook call.
    fhir_timeout: float = 3.0
    # FHIR response cache.
    fhir_cache_ttl: float = 60.0
    fhir_cache_size: int = 512
    # SQLite file for the audit trail and feedback, or a postgresql:// URL (issue 16; it may
    # hold a password, hence repr=False).
    database: str = field(default="cds_service.sqlite3", repr=False)
    # SQLite durability: "normal" (WAL: survives crashes and restarts, no fsync per call) or
    # "full" (an fsync per commit; also survives power loss, at 0.5-2 ms per hook call).
    database_sync: str = "normal"
    # Secret key for the patient-id hash in the audit trail (HMAC-SHA256). Empty: a random
    # key is generated and kept in the database itself (see storage.py).
    audit_pepper: str = field(default="", repr=False)
    # Institution policy override file (JSON or TOML). Empty: packaged defaults.
    policy: str = ""
    # Largest accepted request body.
    max_body_bytes: int = 5 * 1024 * 1024
    # CORS allowed origins; "*" allows any.
    cors_origins: tuple[str, ...] = ("*",)
    # "production" makes the server refuse to start with auth off.
    env: str = "development"
    allow_insecure_production: bool = False
    log_level: str = "INFO"
    # --- issue 14 part B: /metrics access (see cds_service/metrics.py, README "Metrics") ---
    # GET /metrics: "true" (default) serves it; "false" answers 404.
    metrics_enabled: bool = True
    # Bearer secret for /metrics. Empty: only loopback callers without proxy headers; set:
    # every caller must send "Authorization: Bearer <secret>".
    metrics_token: str = field(default="", repr=False)
    # --- issue 16 (scale-out) + issue 15 (batched writer): see storage/, README "Scale-out" ---
    # CDS_DATABASE above is a SQLite file path or a postgresql:// URL.
    # PostgreSQL: longest wait for a pooled connection and statement_timeout (ms), inside the
    # EHR's 500 ms budget; connect timeout for new connections (background); pool size per process.
    database_timeout_ms: int = 250
    database_connect_timeout_ms: int = 2000
    database_pool_size: int = 8
    # Batched audit/lifecycle writer: commit every N rows or M ms; rows queued at most (while
    # the database is down; then new rows are dropped and logged). Crash window: N rows / M ms.
    audit_batch_rows: int = 200
    audit_batch_ms: float = 5.0
    audit_queue_max: int = 10_000
    # jti replay store: "" = the database (CDS_DATABASE); "redis://..." = Redis SET NX PX.
    replay: str = field(default="", repr=False)
    # FHIR response cache: "" = in-process; "redis://..." = shared Redis (same key, TTL, size cap).
    cache: str = field(default="", repr=False)
    redis_timeout_ms: int = 100
    redis_prefix: str = "cds:"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "Config":
        try:
            return cls(
                public_base_url=(_env("CDS_PUBLIC_BASE_URL", "") or "").rstrip("/"),
                auth=(_env("CDS_AUTH", "off") or "off").lower(),
                trusted_issuers=_env("CDS_TRUSTED_ISSUERS", "") or "",
                discovery_open=(_env("CDS_DISCOVERY_OPEN", "true") or "true").lower() in ("1", "true", "yes"),
                jwt_algorithms=_split(_env("CDS_JWT_ALGORITHMS", None)) or cls.jwt_algorithms,
                jwt_max_lifetime=int(_env("CDS_JWT_MAX_LIFETIME", "3600") or 3600),
                fhir_allowlist=_split(_env("CDS_FHIR_ALLOWLIST", None)) or cls.fhir_allowlist,
                fhir_timeout=float(_env("CDS_FHIR_TIMEOUT", "3") or 3),
                fhir_cache_ttl=float(_env("CDS_FHIR_CACHE_TTL", "60") or 60),
                fhir_cache_size=int(_env("CDS_FHIR_CACHE_SIZE", "512") or 512),
                database=_env("CDS_DATABASE", "cds_service.sqlite3") or "cds_service.sqlite3",
                database_sync=(_env("CDS_DATABASE_SYNC", "normal") or "normal").lower(),
                audit_pepper=_env("CDS_AUDIT_PEPPER", "") or "",
                policy=_env("CDS_POLICY", "") or "",
                max_body_bytes=int(_env("CDS_MAX_BODY_BYTES", str(5 * 1024 * 1024)) or 0),
                cors_origins=_split(_env("CDS_CORS_ORIGINS", "*")) or ("*",),
                env=(_env("CDS_ENV", "development") or "development").lower(),
                allow_insecure_production=(_env("CDS_ALLOW_INSECURE_PRODUCTION", "false") or "").lower()
                in ("1", "true", "yes"),
                log_level=(_env("CDS_LOG_LEVEL", "INFO") or "INFO").upper(),
                # issue 14 part B
                metrics_enabled=(_env("CDS_METRICS_ENABLED", "true") or "true").lower() in ("1", "true", "yes"),
                metrics_token=_env("CDS_METRICS_TOKEN", "") or "",
                # issue 16 (scale-out) + issue 15 (batched writer)
                database_timeout_ms=int(_env("CDS_DATABASE_TIMEOUT_MS", "250") or 250),
                database_connect_timeout_ms=int(_env("CDS_DATABASE_CONNECT_TIMEOUT_MS", "2000") or 2000),
                database_pool_size=int(_env("CDS_DATABASE_POOL_SIZE", "8") or 8),
                audit_batch_rows=int(_env("CDS_AUDIT_BATCH_ROWS", "200") or 200),
                audit_batch_ms=float(_env("CDS_AUDIT_BATCH_MS", "5") or 5),
                audit_queue_max=int(_env("CDS_AUDIT_QUEUE_MAX", "10000") or 10000),
                replay=_env("CDS_REPLAY", "") or "",
                cache=_env("CDS_CACHE", "") or "",
                redis_timeout_ms=int(_env("CDS_REDIS_TIMEOUT_MS", "100") or 100),
                redis_prefix=_env("CDS_REDIS_PREFIX", "cds:") or "cds:",
            ).validated()
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"invalid configuration value: {exc}") from None

    def with_overrides(self, overrides: dict[str, Any] | None) -> "Config":
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown configuration keys: {sorted(unknown)}")
        values = dict(overrides)
        for key in ("fhir_allowlist", "cors_origins", "jwt_algorithms"):
            if isinstance(values.get(key), str):
                values[key] = _split(values[key])
        return replace(self, **values).validated()

    def validated(self) -> "Config":
        if self.auth not in ("off", "required"):
            raise ConfigError(f"CDS_AUTH must be 'off' or 'required', not {self.auth!r}")
        if self.auth == "required" and not self.trusted_issuers:
            raise ConfigError("CDS_AUTH=required needs CDS_TRUSTED_ISSUERS (a JSON trust file)")
        if self.fhir_timeout <= 0:
            raise ConfigError("CDS_FHIR_TIMEOUT must be > 0 seconds")
        if self.database_sync not in ("normal", "full"):
            raise ConfigError("CDS_DATABASE_SYNC must be 'normal' or 'full'")
        if self.max_body_bytes <= 0:
            raise ConfigError("CDS_MAX_BODY_BYTES must be > 0")
        if "*" in self.fhir_allowlist and self.auth != "off":
            raise ConfigError("CDS_FHIR_ALLOWLIST='*' is accepted only with CDS_AUTH=off")
        if self.fhir_cache_ttl < 0:
            raise ConfigError("CDS_FHIR_CACHE_TTL must be >= 0 seconds (0 turns the FHIR cache off)")
        if self.metrics_token and len(self.metrics_token) < 16:
            raise ConfigError("CDS_METRICS_TOKEN must be at least 16 characters")
        # issue 16 (scale-out) + issue 15 (batched writer)
        if not 1 <= self.database_timeout_ms <= 60_000:
            raise ConfigError("CDS_DATABASE_TIMEOUT_MS must be between 1 and 60000 ms")
        if not 1 <= self.database_connect_timeout_ms <= 600_000:
            raise ConfigError("CDS_DATABASE_CONNECT_TIMEOUT_MS must be between 1 and 600000 ms")
        if not 1 <= self.database_pool_size <= 1000:
            raise ConfigError("CDS_DATABASE_POOL_SIZE must be between 1 and 1000")
        if not 1 <= self.audit_batch_rows <= 100_000:
            raise ConfigError("CDS_AUDIT_BATCH_ROWS must be between 1 and 100000")
        if not 0 <= self.audit_batch_ms <= 60_000:
            raise ConfigError("CDS_AUDIT_BATCH_MS must be between 0 and 60000 ms")
        if self.audit_queue_max < self.audit_batch_rows:
            raise ConfigError("CDS_AUDIT_QUEUE_MAX must be >= CDS_AUDIT_BATCH_ROWS")
        for name, url in (("CDS_REPLAY", self.replay), ("CDS_CACHE", self.cache)):
            if url and not url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError(f"{name} must be empty or a redis:// URL")
        if not 1 <= self.redis_timeout_ms <= 60_000:
            raise ConfigError("CDS_REDIS_TIMEOUT_MS must be between 1 and 60000 ms")
        if self.database.startswith(("postgresql://", "postgres://")) is False and "://" in self.database:
            raise ConfigError("CDS_DATABASE must be a SQLite file path or a postgresql:// URL")
        return self


def load_config(overrides: dict[str, Any] | None = None) -> Config:
    return Config.from_env().with_overrides(overrides)
