"""WSGI entry point, for other WSGI servers and the benchmarks: `granian --interface wsgi
cds_service.wsgi:app`. `cds-service serve` runs the ASGI front instead (asgi.py, issue 21),
which imports `flask_app` and `server_cfg` from here. Configuration comes from CDS_* env vars,
the serving ones included (config.ServerConfig). `app` wraps the Flask app in
serving.ServingMiddleware (a helper-thread body reader with a deadline, JSON access log): it
is not slow-body safe at scale, the ASGI front is."""
import gc
import sys

from . import create_app
from .config import ConfigError, ServerConfig, check_database_path
from .fhir.codes import CodeDataError
from .fhir.extract import preload_models
from .logic.policy import PolicyError
from .web.schemas import check_startup as check_schemas
from .web.serving import ServingMiddleware

try:
    server_cfg = ServerConfig.from_env()
    flask_app = create_app()
    check_database_path(flask_app.extensions["cds"].config.database)
    check_schemas()
except (ConfigError, PolicyError, CodeDataError) as exc:
    # One clear line, then the exception (the serve command checks all of this before it
    # starts the server, so this is reached only when the server is started another way).
    print(f"cds-service: {exc}", file=sys.stderr, flush=True)
    raise
app = ServingMiddleware(flask_app, max_body_bytes=flask_app.extensions["cds"].config.max_body_bytes,
                        body_timeout=server_cfg.body_timeout, access_log_enabled=server_cfg.access_log,
                        max_pending_readers=4 * server_cfg.threads)
preload_models()  # import the R4B validation models now, not on a worker's first hook call

# Garbage-collector tuning for the served process (bench/RESULTS.md): parsing a prefetch
# allocates ~30 containers per Observation, and with the default threshold (700) the
# collector ran dozens of times per large request, full passes walking every module, model
# class and cached object. freeze() moves everything built at start-up out of its reach,
# and collections run after 50,000 net allocations. The service makes few reference cycles.
gc.freeze()
gc.set_threshold(50_000, 20, 20)
