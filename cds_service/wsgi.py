"""WSGI entry point: `gunicorn cds_service.wsgi:app`. Configuration comes from CDS_* env vars."""
import sys

from . import create_app
from .config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # One clear line, then the exception: gunicorn stops ("Worker failed to boot") rather
    # than respawning a worker that can never start.
    print(f"cds-service: {exc}", file=sys.stderr, flush=True)
    raise
