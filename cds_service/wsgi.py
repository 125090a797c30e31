"""WSGI entry point: `gunicorn cds_service.wsgi:app`. Configuration comes from CDS_* env vars."""
import gc
import sys

from . import create_app
from .config import ConfigError
from .fhir.codes import CodeDataError
from .fhir.extract import preload_models
from .logic.policy import PolicyError

try:
    app = create_app()
except (ConfigError, PolicyError, CodeDataError) as exc:
    # One clear line, then the exception: gunicorn stops ("Worker failed to boot") rather
    # than respawning a worker that can never start.
    print(f"cds-service: {exc}", file=sys.stderr, flush=True)
    raise
preload_models()  # import the R4B validation models now, not on a worker's first hook call

# Garbage-collector tuning for the served process (bench/RESULTS.md): parsing a prefetch
# allocates ~30 containers per Observation, and with the default threshold (700) the
# collector ran dozens of times per large request, full passes walking every module, model
# class and cached object. freeze() moves everything built at start-up out of its reach,
# and collections run after 50,000 net allocations. The service makes few reference cycles.
gc.freeze()
gc.set_threshold(50_000, 20, 20)
