"""WSGI entry point: `gunicorn cds_service.wsgi:app`. Configuration comes from CDS_* env vars."""
import gc

from . import create_app

app = create_app()

# Garbage-collector tuning for the served process (bench/RESULTS.md): parsing a prefetch
# allocates ~30 containers per Observation, and with the default threshold (700) the
# collector ran dozens of times per large request, full passes walking every module, model
# class and cached object. freeze() moves everything built at start-up out of its reach,
# and collections run after 50,000 net allocations. The service makes few reference cycles.
gc.freeze()
gc.set_threshold(50_000, 20, 20)
