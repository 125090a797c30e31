"""ASGI entry point: `granian --interface asgi cds_service.asgi:app` (what `cds-service serve`
runs). The Flask app and its start-up checks are wsgi.py's; `app` wraps it in serving.Front
(JWT on the headers, bodies read in granian's event loop, /healthz in the loop; issue 21)."""
from .web.serving import Front, watch_parent
from .wsgi import flask_app, server_cfg

app = Front(flask_app, max_body_bytes=flask_app.extensions["cds"].config.max_body_bytes,
            body_timeout=server_cfg.body_timeout, threads=server_cfg.threads,
            access_log_enabled=server_cfg.access_log)
watch_parent()  # L6: a worker whose granian main process died stops serving the port
