"""The WSGI environ keys the serving layer (serving.py) sets and the app (app.py) reads: here so
that app.py does not import serving.py, which calls into app.py (no import circle)."""

BODY_ERROR_KEY = "cds.body_error"  # (status, message) when the body could not be read; app.parse_json_body
# A dict the hook call fills with its own log fields (app.answer_hook), written in the request's
# access line; absent when no access line will be written (the call then logs its own).
ACCESS_FIELDS_KEY = "cds.access_fields"
