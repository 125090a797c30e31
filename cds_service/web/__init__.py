"""The HTTP layer: the app factory, the hook route, the ASGI front, errors and the pages."""
