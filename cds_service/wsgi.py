"""WSGI entry point: `gunicorn cds_service.wsgi:app`. Configuration comes from CDS_* env vars."""
from . import create_app

app = create_app()
