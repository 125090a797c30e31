"""Audit trail and feedback persistence (SQLite). Placeholder until the hooks issue lands."""


def init_app(app, state) -> None:
    """Attach storage to the app. No-op until implemented."""
