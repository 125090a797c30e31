"""The JSON Schemas (package data, cds_service/data/schemas), compiled once.

They ship inside the package (found with importlib.resources), so an installed wheel
validates requests with no checkout around. `conformance/schemas` in the repository is a
link to the same directory, for integrators. CDS_SCHEMA_DIR is an override only: a site
that wants other schemas points it at a directory of `*.schema.json` files.

Two validators per schema (issue 15): `jsonschema_rs` (compiled, Rust, full 2020-12: a few
microseconds for a 100 KB hook request, against ~0.1-0.5 ms) decides whether a body is valid;
`jsonschema` runs only for a body it rejects, to word the error, so the 400 messages are
unchanged. jsonschema stays the reference: when the two disagree (Rust's `$` does not match
before a final newline as Python's does), jsonschema's "no error" wins and the body is valid
as before. fastjsonschema was not used: it knows drafts 4-7 only and ignores our
`dependentRequired` (fhirAuthorization needs fhirServer).
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from .. import data

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


@lru_cache(maxsize=1)
def _rs_registry() -> jsonschema_rs.Registry:
    reg = _registry()
    return jsonschema_rs.Registry([(uri, dict(reg.contents(uri))) for uri in sorted(
        json.loads(p.read_text(encoding="utf-8"))["$id"] for p in SCHEMA_DIR.glob("*.schema.json"))])


@lru_cache(maxsize=None)
def compiled(name: str):
    """The compiled (jsonschema_rs) validator of `name` (same naming as `validator`)."""
    stem, _, fragment = name.partition("#")
    if fragment:
        schema = {"$ref": f"{stem}.schema.json#{fragment}"}
    else:
        schema = dict(_registry().contents(f"{stem}.schema.json"))
    return jsonschema_rs.Draft202012Validator(schema, registry=_rs_registry())


def is_valid(name: str, instance: Any) -> bool:
    """The compiled check; False also when it cannot judge (then jsonschema decides)."""
    try:
        return bool(compiled(name).is_valid(instance))
    except Exception:   # an instance the Rust side cannot take: let jsonschema judge it
        return False


def check_startup() -> None:
    """Compile every schema now, or raise ConfigError naming CDS_SCHEMA_DIR (issue 21: pointing
    nowhere, the service started, /healthz stayed 200 and every hook answered 500). Called by
    `serve` before it binds and by every worker at import, like every other setting."""
    from ..config import ConfigError
    try:
        compile_all()
    except Exception as exc:  # missing directory, no schemas, unreadable or invalid JSON
        where = f"CDS_SCHEMA_DIR={os.environ['CDS_SCHEMA_DIR']!r}" if os.environ.get("CDS_SCHEMA_DIR") \
            else f"the packaged schemas ({SCHEMA_DIR})"
        raise ConfigError(f"{where} is not valid: {type(exc).__name__}: {str(exc)[:200]} "
                          f"(a directory with {', '.join(n + '.schema.json' for n in SCHEMA_NAMES[:2])}, …)") from None


# name -> the registry whose schema passed check_schema. The registry is loaded once per process
# (lru_cache), so checking it again on every /readyz re-validated the same objects against the
# 2020-12 metaschema: 30-180 ms of CPU per probe (issue 22). A cleared cache is checked anew.
_CHECKED: dict[str, Registry] = {}


def compile_all() -> None:
    """Compile every schema the service uses now (start-up, /readyz); raises if one cannot."""
    registry = _registry()
    for name in SCHEMA_NAMES:
        if _CHECKED.get(name) is not registry:
            validator(name).check_schema(registry.contents(f"{name}.schema.json"))
            _CHECKED[name] = registry
        compiled(name)


def _path(error) -> str:
    parts = []
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else (f".{p}" if parts else str(p)))
    return "".join(parts)


def first_error(name: str, instance: Any, prefix: str = "") -> tuple[str, str] | None:
    """(location, message) of the most relevant error, or None when valid."""
    if is_valid(name, instance):
        return None
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
