"""`GET /fhir/CodeSystem/<name>`: our code systems (cards/terminology.py) served where their URIs
point (issue 23). No authentication (like /docs/rules): it holds no patient data."""
from __future__ import annotations

import orjson
from flask import Blueprint, Response, current_app

from ..cards import vocabulary as vocab
from ..cards.build import code_system_base
from ..cards.terminology import TITLES, code_system
from ..runtime.errors import NotFound
from ..version import package_version

bp = Blueprint("terminology", __name__)


@bp.get(f"{vocab.CODE_SYSTEM_PATH}/<name>")
def serve_code_system(name: str) -> Response:
    if name not in TITLES:
        raise NotFound(f"No CodeSystem {name!r}: this service serves "
                       f"{', '.join(sorted(TITLES))}.")
    policy = current_app.extensions["cds"].policy
    resource = code_system(name, code_system_base(), version=package_version(),
                           publisher=policy.values.get("governance.developer"))
    resp = Response(orjson.dumps(resource), mimetype="application/fhir+json")
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp
