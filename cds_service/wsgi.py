"""WSGI entry point: `gunicorn cds_service.wsgi:app`. Configuration comes from CDS_* env vars."""
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
