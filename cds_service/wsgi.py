"""WSGI entry point: `gunicorn cds_service.wsgi:app`. Configuration comes from CDS_* env vars."""
from . import create_app
from .fhir.extract import preload_models

app = create_app()
preload_models()  # import the R4B validation models now, not on a worker's first hook call
