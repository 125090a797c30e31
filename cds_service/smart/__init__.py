"""The assessment view: a SMART on FHIR app served by this service (issue 13).

Cards link to it (`assessment_link`, cards/build.py); the EHR launches it (`/smart/launch`, SMART App Launch
2.0 EHR launch, public client with PKCE S256); it reads the patient's data through the same
data layer and runs the same assessment as the hooks, and shows the scores, every input,
the trends over the stay, the safety checks and the sources (`/smart/view`).

Modules: oauth.py (discovery, PKCE, token exchange), sessions.py (server-side session store),
data.py (evaluation and trend series), charts.py (inline SVG), page.py (view model and HTML),
views.py (the Flask blueprint and its security headers).
"""
from __future__ import annotations

import logging
import re

from ..cards.build import LINK_LABEL, assessment_link  # noqa: F401  (a card's link to this view)

_LAUNCH_QUERY = re.compile(r"(/smart/(?:launch|callback))\?[^\s\"']*")


class LaunchQueryFilter(logging.Filter):
    """Access logs (werkzeug, gunicorn) never keep the launch or callback query: it carries the
    patient id (open servers), the launch handle, the code and the state."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/smart/" in message:
            record.msg, record.args = _LAUNCH_QUERY.sub(r"\1?[query removed]", message), ()
        return True


def _filter_access_logs() -> None:
    for name in ("werkzeug", "gunicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, LaunchQueryFilter) for f in logger.filters):
            logger.addFilter(LaunchQueryFilter())


def session_db_path(cfg) -> str:
    """CDS_SMART_SESSION_DB, else a file beside the audit database: cds.sqlite3 ->
    cds.smart-sessions.sqlite3 (":memory:" stays in memory)."""
    if cfg.smart_session_db:
        return cfg.smart_session_db
    if cfg.database == ":memory:":
        return ":memory:"
    stem = cfg.database[:-len(".sqlite3")] if cfg.database.endswith(".sqlite3") else cfg.database
    return stem + ".smart-sessions.sqlite3"


def init_app(app, state) -> None:
    """Register the blueprint, open the session store, keep launch queries out of access logs."""
    from .sessions import SessionStore
    from .views import bp
    cfg = state.config
    state.extensions["smart_sessions"] = SessionStore(session_db_path(cfg))
    app.register_blueprint(bp)
    _filter_access_logs()
