"""CDS client authentication (JWT) - see the Security issue. Placeholder until it lands."""


def init_app(app, state) -> None:
    """Attach authentication to the app. No-op until the security layer is implemented."""
