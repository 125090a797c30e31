"""The JSON Schemas (package data, cds_service/data/schemas), compiled once.

They ship inside the package (found with importlib.resources), so an installed wheel
validates requests with no checkout around. `conformance/schemas` in the repository is a
link to the same directory, for integrators. CDS_SCHEMA_DIR is an override only: a site
that wants other schemas points it at a directory of `*.schema.json` files.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from . import data

SCHEMA_DIR = Path(os.environ.get("CDS_SCHEMA_DIR") or data.path("schemas"))
SCHEMA_NAMES = ("request", "response", "discovery", "feedback", "context-patient-view",
                "context-order-select", "context-order-sign")


@lru_cache(maxsize=1)
def _registry() -> Registry:
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        resources.append((schema["$id"], Resource.from_contents(schema)))
    if not resources:
        raise RuntimeError(f"no JSON schemas found in {SCHEMA_DIR}")
    return Registry().with_resources(resources)


@lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    """`name` is the file stem, e.g. 'request', optionally with a fragment:
    'feedback#/$defs/item'."""
    stem, _, fragment = name.partition("#")
    if fragment:
        schema = {"$ref": f"{stem}.schema.json#{fragment}"}
    else:
        schema = _registry().contents(f"{stem}.schema.json")
    return Draft202012Validator(schema, registry=_registry())


def compile_all() -> None:
    """Compile every schema the service uses now (start-up, /readyz); raises if one cannot."""
    for name in SCHEMA_NAMES:
        validator(name).check_schema(_registry().contents(f"{name}.schema.json"))


def _path(error) -> str:
    parts = []
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else (f".{p}" if parts else str(p)))
    return "".join(parts)


def first_error(name: str, instance: Any, prefix: str = "") -> tuple[str, str] | None:
    """(location, message) of the most relevant error, or None when valid."""
    v = validator(name)
    errors = list(v.iter_errors(instance))
    if not errors:
        return None
    from jsonschema.exceptions import best_match
    err = best_match(errors)
    where = _path(err)
    location = f"{prefix}.{where}".strip(".") if prefix and where else (prefix or where or "(root)")
    message = err.message
    if err.absolute_path and err.absolute_path[0] == "fhirAuthorization":
        # Never echo a credential: name the rule broken, not the value.
        message = f"does not satisfy {err.validator!r}: {err.validator_value!r}"
    if len(message) > 300:  # never echo a huge value back
        message = message[:300] + "…"
    return location, message


def errors(name: str, instance: Any) -> list[str]:
    return [f"{_path(e) or '(root)'}: {e.message[:300]}" for e in validator(name).iter_errors(instance)]
