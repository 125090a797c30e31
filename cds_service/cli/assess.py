"""`cds-service assess BUNDLE.json [--now ISO-DATETIME] [--policy FILE] [--encounter ID] [--strict]`.

Reads one patient's FHIR R4 Bundle (collection, searchset or transaction), extracts the
inputs exactly as the hooks do (fhir/extract.py), runs the assessment and prints its JSON
on stdout. A bad file or argument exits 2 with one line on stderr; nothing is guessed.
With --strict every resource whose values are used is also validated with the fhir.resources
R4B models (the hooks check only the fields they read: fhir/model.py); one that fails is
dropped with its reason under `rejected`, as the hooks drop a resource that fails their check.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from typing import Any

BUNDLE_TYPES = ("collection", "searchset", "transaction")
PROG = "cds-service assess"


class AssessInputError(Exception):
    """A problem with the command's inputs (exit 2, one line on stderr)."""


def parse_now(text: str | None) -> datetime:
    """--now: an ISO 8601 date-time (offset optional, read as UTC when absent); default now."""
    if text is None:
        return datetime.now(timezone.utc)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AssessInputError(f"--now {text!r} is not an ISO 8601 date-time "
                               "(e.g. 2024-03-10T12:00:00Z)") from None
    if len(text.strip()) <= 10:
        raise AssessInputError(f"--now {text!r} needs a time (e.g. {text.strip()}T12:00:00Z)")
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def read_bundle(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise AssessInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        bundle = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AssessInputError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        found = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        raise AssessInputError(f"{path} is not a FHIR Bundle (resourceType {found!r})")
    if bundle.get("type") not in BUNDLE_TYPES:
        raise AssessInputError(f"{path}: Bundle type {bundle.get('type')!r} is not one of "
                               f"{', '.join(BUNDLE_TYPES)}")
    if "entry" in bundle and not isinstance(bundle["entry"], list):
        raise AssessInputError(f"{path}: Bundle.entry must be a list")
    return bundle


def bundle_inputs(bundle: dict[str, Any]) -> tuple[list[dict], dict[str, str], str | None]:
    """(resources, fullUrl aliases, patient id) of a Bundle. A resource without an id but with
    a `urn:uuid:` fullUrl (usual in transactions) gets the uuid as id, so references to it
    resolve. More than one distinct Patient is an input error."""
    from ..fhir.bundle import bundle_entries

    resources: list[dict] = []
    aliases: dict[str, str] = {}
    for full_url, resource in bundle_entries(bundle):
        rtype = resource["resourceType"]
        if not isinstance(resource.get("id"), str) and full_url and full_url.startswith("urn:uuid:"):
            resource = {**resource, "id": full_url[len("urn:uuid:"):]}
        if full_url and isinstance(resource.get("id"), str):
            aliases[full_url] = f"{rtype}/{resource['id']}"
        resources.append(resource)
    patient_ids = list(dict.fromkeys(r.get("id") for r in resources if r["resourceType"] == "Patient"))
    if len(patient_ids) > 1:
        raise AssessInputError(f"Bundle holds more than one Patient ({', '.join(map(str, patient_ids))}); "
                               "assess reads one patient's resources")
    return resources, aliases, (patient_ids[0] if patient_ids else None)


def run(args: argparse.Namespace) -> int:
    from ..fhir.codes import CodeDataError, load_codes
    from ..logic.policy import Policy, PolicyError

    try:
        now = parse_now(args.now)
        policy = Policy.load(args.policy or os.environ.get("CDS_POLICY") or None)
        codes = load_codes(policy["codes.extra_file"])
        bundle = read_bundle(args.bundle)
        resources, aliases, patient_id = bundle_inputs(bundle)
    except (AssessInputError, PolicyError, CodeDataError) as exc:
        print(f"{PROG}: {exc}".replace("\n", " "), file=sys.stderr)
        return 2

    from ..fhir.extract import extract_inputs
    from ..logic.assessment import assess

    inputs = extract_inputs(resources, now=now, policy=policy, codes=codes, patient_id=patient_id,
                            aliases=aliases, encounter_id=getattr(args, "encounter", None) or None,
                            strict=bool(getattr(args, "strict", False)))
    print(json.dumps(assess(inputs, policy).to_json(), indent=2, ensure_ascii=False, default=str))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("assess", help="assess one patient's FHIR Bundle and print the assessment JSON")
    p.add_argument("bundle", metavar="BUNDLE.json", help="FHIR R4 Bundle: collection, searchset or transaction")
    p.add_argument("--now", metavar="ISO-DATETIME", help="evaluation time for the lookback windows "
                   "(default: the current time)")
    p.add_argument("--policy", metavar="FILE", help="policy overrides (JSON or TOML); default CDS_POLICY")
    p.add_argument("--encounter", metavar="ID", help="plays the hook context's encounterId "
                   "(only that Encounter is judged for scope)")
    p.add_argument("--strict", action="store_true", help="also validate every used resource with the "
                   "fhir.resources R4B models (slower); a resource that fails is dropped, its reason "
                   "under `rejected`")
    p.set_defaults(func=run)
