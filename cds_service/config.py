"""All runtime configuration, read from the environment in this one module.

Every setting has a documented default (see the README's configuration table).
`create_app(config=...)` accepts a dict of the same keys (lower-case, without the
`CDS_` prefix) so tests can override them without touching the environment.
"""
from __future__ import annotations

import os
import re
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


# --- Strict parsing of CDS_* variables (issue 14, start-up validation) -------------------
# Every checker raises ConfigError with one line: the variable, the value as given, and what
# is allowed, so `cds-service serve` stops with exit code 2 before binding a port.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _bad(name: str, value: str, allowed: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} is not valid: {allowed}")


def _bool(name: str, default: bool) -> bool:
    value = _env(name, None)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise _bad(name, value, "use true or false (also 1/0, yes/no, on/off)")


def _int(name: str, default: int, low: int, high: int) -> int:
    value = _env(name, None)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _bad(name, value, f"an integer from {low} to {high} is required") from None
    if not low <= number <= high:
        raise _bad(name, value, f"an integer from {low} to {high} is required")
    return number


def env_number(name: str, default: float, low: float, high: float, low_open: bool = False) -> float:
    value = _env(name, None)
    if value is None:
        return default
    allowed = f"a number of seconds {'>' if low_open else '>='} {low:g} and <= {high:g} is required"
    try:
        number = float(value)
    except ValueError:
        raise _bad(name, value, allowed) from None
    if number != number or number > high or number < low or (low_open and number == low):
        raise _bad(name, value, allowed)  # NaN fails the first test
    return number


def _choice(name: str, default: str, choices: tuple[str, ...], upper: bool = False) -> str:
    value = _env(name, None)
    if value is None:
        return default
    norm = value.upper() if upper else value.lower()
    if norm not in choices:
        raise _bad(name, value, "one of " + ", ".join(choices))
    return norm


def _url(name: str) -> str:
    value = _env(name, "") or ""
    if value and not (value.startswith(("https://", "http://")) and "://" in value and value.split("://", 1)[1]):
        raise _bad(name, value, "an absolute http(s) URL such as https://cds.example.org")
    return value.rstrip("/")


def _allowlist(name: str) -> tuple[str, ...]:
    """FHIR base-URL prefixes; a malformed entry would silently admit nothing, so it stops here."""
    from .fhir.allowlist import parse_server_url

    entries = _split(_env(name, None))
    for entry in entries:
        if entry == "*":
            continue
        try:
            parse_server_url(entry)
        except ValueError as exc:
            raise ConfigError(f"{name} entry {entry!r} is not valid: {exc}; give absolute http(s) "
                              "base URLs separated by commas, or *") from None
    return entries


def _origins(name: str) -> tuple[str, ...]:
    """Browser origins (scheme://host[:port], no path) or *: 'https://x.org/' would never match."""
    entries = _split(_env(name, None))
    for entry in entries:
        scheme, sep, rest = entry.partition("://")
        if entry != "*" and not (sep and scheme in ("http", "https") and rest and "/" not in rest):
            raise ConfigError(f"{name} entry {entry!r} is not valid: an origin is scheme://host[:port] "
                              "with no path or trailing slash, e.g. https://sandbox.cds-hooks.org; or *")
    return entries


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
    # --- assessment view (SMART on FHIR app, cds_service/smart/) ---
    # OAuth client_id the EHR registered for the app (public client, PKCE S256).
    smart_client_id: str = "cds-coagulopathy-view"
    # Scopes asked for at authorize (SMART v2; v1 servers: "launch openid fhirUser patient/*.read").
    smart_scopes: str = "launch openid fhirUser patient/*.rs"
    # Read an open FHIR server (no SMART configuration) without a token: "auto" (only with
    # CDS_AUTH=off), "on" or "off". Loopback or explicitly allowlisted servers only.
    smart_open_servers: str = "auto"
    # Origins allowed to frame the view (CSP frame-ancestors), besides 'self' and the explicit
    # CDS_CORS_ORIGINS entries.
    smart_frame_ancestors: tuple[str, ...] = ()
    # Longest life of a view session in seconds; a session also ends when its token expires.
    smart_session_ttl: int = 3600
    # SQLite file of the view's sessions (tokens encrypted with a key only the browser holds).
    # Empty: CDS_DATABASE + "-smart-sessions"; ":memory:" keeps them in this process.
    smart_session_db: str = ""
    # Launches per minute per client address and worker (issue 21 L5: each launch stores a
    # session and calls the EHR, with no credentials needed); 0 = no limit.
    smart_launch_rate: int = 30
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
    # --- issue 24: site profiles (cds_service/sites, README "Sites") ---
    # Path of the sites file (TOML or JSON). Set, it replaces CDS_TRUSTED_ISSUERS, CDS_POLICY,
    # CDS_FHIR_ALLOWLIST and CDS_JWT_ALGORITHMS, and every hook call needs a site's token.
    sites: str = ""
    # Secret (>= 16 chars) that signs the accepted sites file in the database (HMAC), so a
    # database writer alone cannot add a trusted issuer (review #5). `sites reload` needs it too.
    sites_reload_key: str = field(default="", repr=False)
    # --- issue 23: pseudonymised request capture for `cds-service replay` (cds_service/web/capture.py) ---
    # Directory the service writes each hook request to (pseudonymised). Empty: off (default).
    capture_dir: str = ""
    # Site key of the HMAC pseudonyms. Empty: a random key kept beside the capture directory.
    capture_key: str = field(default="", repr=False)
    # Capture is refused with CDS_ENV=production unless this is set.
    capture_allow_production: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "Config":
        # Each value is parsed by a checker that names the variable, the value and what is
        # allowed in its error (one line; the serve command exits 2 on it).
        return cls(
            public_base_url=_url("CDS_PUBLIC_BASE_URL"),
            auth=_choice("CDS_AUTH", "off", ("off", "required")),
            trusted_issuers=_env("CDS_TRUSTED_ISSUERS", "") or "",
            discovery_open=_bool("CDS_DISCOVERY_OPEN", True),
            jwt_algorithms=_split(_env("CDS_JWT_ALGORITHMS", None)) or cls.jwt_algorithms,
            jwt_max_lifetime=_int("CDS_JWT_MAX_LIFETIME", 3600, 60, 86400),
            fhir_allowlist=_allowlist("CDS_FHIR_ALLOWLIST") or cls.fhir_allowlist,
            fhir_timeout=env_number("CDS_FHIR_TIMEOUT", 3.0, low=0.0, low_open=True, high=600.0),
            fhir_cache_ttl=env_number("CDS_FHIR_CACHE_TTL", 60.0, low=0.0, high=86400.0),
            fhir_cache_size=_int("CDS_FHIR_CACHE_SIZE", 512, 0, 1_000_000),
            database=_env("CDS_DATABASE", "cds_service.sqlite3") or "cds_service.sqlite3",
            database_sync=_choice("CDS_DATABASE_SYNC", "normal", ("normal", "full")),
            audit_pepper=_env("CDS_AUDIT_PEPPER", "") or "",
            policy=_env("CDS_POLICY", "") or "",
            max_body_bytes=_int("CDS_MAX_BODY_BYTES", 5 * 1024 * 1024, 1, 1 << 31),
            cors_origins=_origins("CDS_CORS_ORIGINS") or ("*",),
            env=_choice("CDS_ENV", "development", ("development", "test", "staging", "production")),
            allow_insecure_production=_bool("CDS_ALLOW_INSECURE_PRODUCTION", False),
            log_level=_choice("CDS_LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
            # issue 14 part B: /metrics access
            metrics_enabled=_bool("CDS_METRICS_ENABLED", True),
            metrics_token=_env("CDS_METRICS_TOKEN", "") or "",
            **_smart_from_env(cls),
            # issue 16 (scale-out) + issue 15 (batched writer)
            database_timeout_ms=_int("CDS_DATABASE_TIMEOUT_MS", 250, 1, 60_000),
            database_connect_timeout_ms=_int("CDS_DATABASE_CONNECT_TIMEOUT_MS", 2000, 1, 600_000),
            database_pool_size=_int("CDS_DATABASE_POOL_SIZE", 8, 1, 1000),
            audit_batch_rows=_int("CDS_AUDIT_BATCH_ROWS", 200, 1, 100_000),
            audit_batch_ms=env_number("CDS_AUDIT_BATCH_MS", 5.0, low=0.0, high=60_000.0),
            audit_queue_max=_int("CDS_AUDIT_QUEUE_MAX", 10_000, 1, 10_000_000),
            replay=_env("CDS_REPLAY", "") or "",
            cache=_env("CDS_CACHE", "") or "",
            redis_timeout_ms=_int("CDS_REDIS_TIMEOUT_MS", 100, 1, 60_000),
            redis_prefix=_env("CDS_REDIS_PREFIX", "cds:") or "cds:",
            sites=_env("CDS_SITES", "") or "",
            sites_reload_key=_env("CDS_SITES_RELOAD_KEY", "") or "",
            # issue 23: request capture
            capture_dir=_env("CDS_CAPTURE_DIR", "") or "",
            capture_key=_env("CDS_CAPTURE_KEY", "") or "",
            capture_allow_production=_bool("CDS_CAPTURE_ALLOW_PRODUCTION", False),
        ).validated()

    def with_overrides(self, overrides: dict[str, Any] | None) -> "Config":
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown configuration keys: {sorted(unknown)}")
        values = dict(overrides)
        for key in ("fhir_allowlist", "cors_origins", "jwt_algorithms", "smart_frame_ancestors"):
            if isinstance(values.get(key), str):
                values[key] = _split(values[key])
        return replace(self, **values).validated()

    def validated(self) -> "Config":
        if self.auth not in ("off", "required"):
            raise ConfigError(f"CDS_AUTH must be 'off' or 'required', not {self.auth!r}")
        if self.sites and self.auth != "required":
            return replace(self, auth="required").validated()  # a site is known only by its token
        if self.sites:
            # Every variable the sites file replaces is refused when set (review #12b), so a
            # narrowing value (discovery closed, fewer algorithms) cannot look as if it applied.
            for name, value in (("CDS_TRUSTED_ISSUERS", self.trusted_issuers), ("CDS_POLICY", self.policy),
                                ("CDS_DISCOVERY_OPEN", not self.discovery_open),
                                ("CDS_JWT_ALGORITHMS", tuple(self.jwt_algorithms) != Config.jwt_algorithms),
                                ("CDS_FHIR_ALLOWLIST", tuple(self.fhir_allowlist) != Config.fhir_allowlist)):
                if value:
                    raise ConfigError(f"CDS_SITES replaces {name}: move it into the sites file "
                                      "(README \"Sites\") and unset it")
        if self.auth == "required" and not self.trusted_issuers and not self.sites:
            raise ConfigError("CDS_AUTH=required needs CDS_TRUSTED_ISSUERS (a JSON trust file)")
        if self.fhir_timeout <= 0:
            raise ConfigError("CDS_FHIR_TIMEOUT must be > 0 seconds")
        if self.database_sync not in ("normal", "full"):
            raise ConfigError("CDS_DATABASE_SYNC must be 'normal' or 'full'")
        if self.max_body_bytes <= 0:
            raise ConfigError("CDS_MAX_BODY_BYTES must be > 0")
        if "*" in self.fhir_allowlist and (self.auth != "off" or self.sites):
            raise ConfigError("CDS_FHIR_ALLOWLIST='*' is accepted only with CDS_AUTH=off")
        if self.fhir_cache_ttl < 0:
            raise ConfigError("CDS_FHIR_CACHE_TTL must be >= 0 seconds (0 turns the FHIR cache off)")
        if self.sites_reload_key and len(self.sites_reload_key) < 16:
            raise ConfigError("CDS_SITES_RELOAD_KEY must be at least 16 characters")
        if self.metrics_token and len(self.metrics_token) < 16:
            raise ConfigError("CDS_METRICS_TOKEN must be at least 16 characters")
        if self.smart_open_servers not in ("auto", "on", "off"):
            raise ConfigError("CDS_SMART_OPEN_SERVERS must be 'auto', 'on' or 'off'")
        for origin in self.smart_frame_ancestors:
            if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:*]+", origin):
                raise ConfigError(f"CDS_SMART_FRAME_ANCESTORS entries must be origins (https://host[:port]), "
                                  f"not {origin[:80]!r}")
        if self.smart_session_ttl <= 0:
            raise ConfigError("CDS_SMART_SESSION_TTL must be > 0 seconds")
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
        # issue 23: request capture writes (pseudonymised) patient data to disk
        if self.capture_dir and self.env == "production" and not self.capture_allow_production:
            raise ConfigError("refusing to start in production with CDS_CAPTURE_DIR set: request capture "
                              "writes pseudonymised patient data to disk. Unset it, or set "
                              "CDS_CAPTURE_ALLOW_PRODUCTION=1 if your governance allows it (README, Replay).")
        if self.capture_key and len(self.capture_key) < 16:
            raise ConfigError("CDS_CAPTURE_KEY must be at least 16 characters")
        return self


def _smart_from_env(cls) -> dict[str, Any]:
    """The assessment view's settings (CDS_SMART_*), kept apart from the hook settings."""
    return {
        "smart_client_id": _env("CDS_SMART_CLIENT_ID", cls.smart_client_id) or cls.smart_client_id,
        "smart_scopes": " ".join((_env("CDS_SMART_SCOPES", cls.smart_scopes) or cls.smart_scopes).split()),
        "smart_open_servers": _choice("CDS_SMART_OPEN_SERVERS", "auto", ("auto", "on", "off")),
        "smart_frame_ancestors": tuple(_split(_env("CDS_SMART_FRAME_ANCESTORS", None) or "")),
        "smart_session_ttl": _int("CDS_SMART_SESSION_TTL", 3600, 1, 7 * 86400),
        "smart_session_db": _env("CDS_SMART_SESSION_DB", "") or "",
        "smart_launch_rate": _int("CDS_SMART_LAUNCH_RATE", cls.smart_launch_rate, 0, 1_000_000),
    }


def load_config(overrides: dict[str, Any] | None = None) -> Config:
    return Config.from_env().with_overrides(overrides)


# --- Serving and start-up checks (issue 14) -----------------------------------------------
# Variables read by other parts than Config (the server flags, tests, tools): known, so the
# start-up check does not call them typos.
OTHER_VARIABLES = {
    "CDS_HOST", "CDS_PORT", "CDS_WORKERS", "CDS_THREADS", "CDS_HEADER_TIMEOUT", "CDS_BODY_TIMEOUT",
    "CDS_SHUTDOWN_TIMEOUT", "CDS_ACCESS_LOG", "CDS_SCHEMA_DIR", "CDS_SERVE_PID", "CDS_VENV", "CDS_FUZZ_PROFILE",
    "CDS_REQUIRE_INTEGRATION", "CDS_REQUIRE_BROWSER", "CDS_REQUIRE_PG", "CDS_TEST_PG", "CDS_TEST_REDIS",
    "CDS_BENCH_PG", "CDS_TEST_CARDS_V2",
}
CONFIG_VARIABLES = {f"CDS_{f.name.upper()}" for f in fields(Config) if f.name != "extra"}


@dataclass(frozen=True)
class ServerConfig:
    """How `cds-service serve` runs granian. Flags override these environment variables."""

    host: str = "127.0.0.1"
    port: int = 8000
    # Worker processes (each a Python interpreter with the whole app).
    workers: int = 2
    # Python threads per worker running the Flask app (serving.Front's pool). Since issue 21
    # no thread waits for a client's body; they wait only on FHIR and the database.
    threads: int = 64
    # Seconds a client may take to send the request line and headers (granian, in Rust).
    header_timeout: float = 10.0
    # Seconds a client may take to send the whole body after its headers (one deadline).
    body_timeout: float = 15.0
    # Seconds SIGTERM waits for in-flight calls before workers are killed.
    shutdown_timeout: int = 30
    access_log: bool = True

    @classmethod
    def from_env(cls) -> "ServerConfig":
        return cls(
            host=_env("CDS_HOST", cls.host) or cls.host,
            port=_int("CDS_PORT", cls.port, 0, 65535),
            workers=_int("CDS_WORKERS", cls.workers, 1, 64),
            threads=_int("CDS_THREADS", cls.threads, 1, 512),
            header_timeout=env_number("CDS_HEADER_TIMEOUT", cls.header_timeout, low=0.001, high=60.0),
            body_timeout=env_number("CDS_BODY_TIMEOUT", cls.body_timeout, low=0.0, low_open=True, high=600.0),
            shutdown_timeout=_int("CDS_SHUTDOWN_TIMEOUT", cls.shutdown_timeout, 1, 1800),
            access_log=_bool("CDS_ACCESS_LOG", cls.access_log),
        )


def unknown_variables(environ: dict[str, str] | None = None) -> list[str]:
    """CDS_* variables that nothing reads: most likely typos (CDS_FHIR_TIMOUT)."""
    environ = os.environ if environ is None else environ
    return sorted(k for k in environ if k.startswith("CDS_") and k not in CONFIG_VARIABLES | OTHER_VARIABLES)


def check_database_path(path: str) -> None:
    """The database's directory exists and is writable, or can be created.

    Checked once at start, before binding, so a wrong CDS_DATABASE stops the server with one
    line instead of worker tracebacks. Faults while running (locked, read-only, disk full)
    are the storage layer's (503, /readyz)."""
    if not path or path == ":memory:" or path.startswith(("file:", "postgresql://", "postgres://")):
        return
    parent = os.path.dirname(os.path.abspath(path))
    probe = parent
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ConfigError(f"CDS_DATABASE={path!r} is not valid: {probe!r} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "its directory" if probe == parent else f"the directory {probe!r} (to create {parent!r})"
        raise ConfigError(f"CDS_DATABASE={path!r} is not valid: {what} is not writable by this user")
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(f"CDS_DATABASE={path!r} is not valid: the file is not readable and writable")


def production_warnings(cfg: Config) -> list[str]:
    """Settings that are fine on a laptop and wrong in production (CDS_ENV=production)."""
    if cfg.env != "production":
        return []
    warnings = []
    if cfg.auth == "off":
        warnings.append("CDS_AUTH=off in production: any caller can request cards (allowed only "
                        "because CDS_ALLOW_INSECURE_PRODUCTION=true)")
    if set(cfg.fhir_allowlist) == set(Config.fhir_allowlist) and not cfg.sites:  # sites: per site
        warnings.append("CDS_FHIR_ALLOWLIST is the default (any loopback port): set it to your FHIR "
                        "server's base URL")
    if cfg.sites and not cfg.sites_reload_key:
        warnings.append("CDS_SITES_RELOAD_KEY is unset: whoever can write the audit database can "
                        "change the accepted sites file (add a trusted issuer); set it on every "
                        "replica and for `cds-service sites reload`")
    if not cfg.public_base_url:
        warnings.append("CDS_PUBLIC_BASE_URL is unset: the JWT aud check trusts the request's Host "
                        "header; set the public URL the EHR calls")
    return warnings
