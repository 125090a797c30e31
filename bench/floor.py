"""The floor: a bare Flask app that parses the same JSON body (orjson) and returns a fixed
small cards response. Served by granian exactly like the service, it is the baseline the
benchmark divides by (HTTP, WSGI, body read and parse, response), so results are machine-independent.
"""
from __future__ import annotations

import orjson
from flask import Flask, Response, request

CARDS = orjson.dumps({"cards": [{
    "uuid": "0b4b0a7e-7bde-4d5c-9c5a-2f0c6f1f7f10",
    "summary": "Consider enoxaparin 40 mg SC once daily (floor response).",
    "indicator": "info",
    "source": {"label": "Benchmark floor"},
}]})

app = Flask("floor")


@app.post("/cds-services/<service_id>")
def hook(service_id: str) -> Response:
    body = orjson.loads(request.get_data())
    if not isinstance(body, dict):
        return Response(b'{"resourceType":"OperationOutcome"}', status=400, mimetype="application/json")
    return Response(CARDS, mimetype="application/json")


@app.get("/healthz")
def healthz() -> Response:
    return Response(b'{"status":"ok"}', mimetype="application/json")
