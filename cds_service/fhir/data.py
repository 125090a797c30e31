"""Data acquisition: prefetch, self-fetch, cache, 412. Placeholder until the FHIR data issue lands."""


def init_app(app, state) -> None:
    """Attach the FHIR data layer to the app. No-op until implemented."""
