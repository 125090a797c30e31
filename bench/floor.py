"""The floors: bare Flask apps that parse the same JSON body and return a fixed small cards
response. Served by granian like the service (the same command line, WSGI interface: a bare
Flask app is WSGI), they are the baseline the benchmark divides by (HTTP, body read and parse,
response), so results are machine-independent.

- `app`: the floor of issue 25, parsing with the standard library's `json`;
- `app_orjson`: the same with orjson (the service's parser), reported next to it.
"""
from __future__ import annotations

import json

import orjson
from flask import Flask, Response, request

CARDS = orjson.dumps({"cards": [{
    "uuid": "0b4b0a7e-7bde-4d5c-9c5a-2f0c6f1f7f10",
    "summary": "Consider enoxaparin 40 mg SC once daily (floor response).",
    "indicator": "info",
    "source": {"label": "Benchmark floor"},
}]})


def make(loads) -> Flask:
    floor = Flask("floor")

    @floor.post("/cds-services/<service_id>")
    def hook(service_id: str) -> Response:
        body = loads(request.get_data())
        if not isinstance(body, dict):
            return Response(b'{"resourceType":"OperationOutcome"}', status=400, mimetype="application/json")
        return Response(CARDS, mimetype="application/json")

    @floor.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', mimetype="application/json")

    return floor


app = make(json.loads)
app_orjson = make(orjson.loads)
