"""`cds-service load-fixtures`: render the synthetic patient templates and load them into a
FHIR R4 server, one transaction Bundle per patient.

The templates in cds_service/data/patients/*.json (linked as conformance/patients) carry relative times, because the service
judges data against "now" with 24-72 h windows and fixed dates would go stale. A string
value that is exactly a placeholder is replaced when the Bundle is rendered:

    "{{now}}"              -> "2024-05-01T10:00:00Z"   (dateTime, UTC, whole seconds)
    "{{now-6h}}"           -> six hours earlier; offsets chain: "{{now-4h+30min}}"
    "{{date:now-67y-30d}}" -> "1957-03-31"              (a FHIR date)
    "{{year:now-18y}}"     -> "2006"                    (a partial FHIR date, v3 §19.8)

Units: y (calendar years), d, h, min. Anything else that looks like a placeholder is an
error, never passed through. Every entry is a PUT with a fixed id, so loading twice
leaves one copy of each resource.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests

from ... import data

# Package data (cds_service/data/patients; conformance/patients links to it), so an installed
# wheel loads them too.
DEFAULT_DIR = data.path("patients")
FHIR_JSON = "application/fhir+json"
TIMEOUT_S = 60

_PLACEHOLDER = re.compile(r"^\{\{(date:|year:)?now((?:[+-]\d+(?:y|d|h|min))*)\}\}$")
_OFFSET = re.compile(r"([+-])(\d+)(y|d|h|min)")
_UNITS = {"d": "days", "h": "hours", "min": "minutes"}


class FixtureError(ValueError):
    """A template that cannot be rendered (bad placeholder, not a transaction Bundle)."""


def _shift_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February into a non-leap year
        return moment.replace(year=moment.year + years, day=28)


def render_placeholder(text: str, now: datetime) -> str:
    match = _PLACEHOLDER.match(text)
    if not match:
        raise FixtureError(f"unrecognised placeholder {text!r}")
    moment = now
    for sign, amount, unit in _OFFSET.findall(match.group(2)):
        n = int(amount) * (1 if sign == "+" else -1)
        if unit == "y":
            moment = _shift_years(moment, n)
        else:
            moment += timedelta(**{_UNITS[unit]: n})
    if match.group(1) == "year:":
        return f"{moment.year:04d}"
    if match.group(1):
        return moment.date().isoformat()
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def render(template: Any, now: datetime | None = None) -> Any:
    """A deep copy of `template` with every placeholder string replaced (see module doc)."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str) and value.startswith("{{"):
            return render_placeholder(value, now)
        return value

    return walk(template)


def template_paths(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).glob("*.json") if p.is_file())


def load_template(path: Path) -> dict:
    try:
        bundle = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FixtureError(f"cannot read {path}: {exc}") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        raise FixtureError(f"{path.name} is not a FHIR transaction Bundle")
    return bundle


def outcome_text(body: Any) -> str | None:
    """The first issue's diagnostics (or details.text) of an OperationOutcome, if any."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    for issue in body.get("issue") or []:
        if isinstance(issue, dict):
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
            if text:
                return str(text)
    return None


@dataclass
class LoadResult:
    name: str
    ok: bool
    message: str


def post_bundle(session: requests.Session, base: str, bundle: dict, token: str | None = None) -> tuple[bool, str]:
    """POST one transaction Bundle to the server base. (ok, human-readable message)."""
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        resp = session.post(base.rstrip("/"), data=json.dumps(bundle), headers=headers, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        return False, f"cannot reach the FHIR server: {type(exc).__name__}"
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.status_code >= 300:
        detail = outcome_text(body) or (resp.text or "").strip()[:200] or resp.reason
        return False, f"HTTP {resp.status_code}: {detail}"
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return False, f"HTTP {resp.status_code} but the answer is not a Bundle"
    entries = body.get("entry") or []
    for index, entry in enumerate(entries):
        response = entry.get("response") if isinstance(entry, dict) else None
        status = str((response or {}).get("status", ""))
        if not status[:1] == "2":
            detail = outcome_text((response or {}).get("outcome")) or "no detail"
            return False, f"entry {index} answered {status or 'nothing'}: {detail}"
    return True, f"{len(entries)} resources"


def load_fixtures(base: str, directory: Path = DEFAULT_DIR, token: str | None = None,
                  now: datetime | None = None) -> list[LoadResult]:
    results: list[LoadResult] = []
    paths = template_paths(directory)
    if not paths:
        return [LoadResult(str(directory), False, "no *.json templates found")]
    with requests.Session() as session:
        for path in paths:
            try:
                bundle = render(load_template(path), now)
            except FixtureError as exc:
                results.append(LoadResult(path.name, False, str(exc)))
                continue
            ok, message = post_bundle(session, base, bundle, token)
            results.append(LoadResult(path.name, ok, message))
    return results


def run(args) -> int:
    results = load_fixtures(args.fhir_server, Path(args.dir) if args.dir else DEFAULT_DIR, args.token)
    for r in results:
        print(f"{'ok   ' if r.ok else 'ERROR'} {r.name}: {r.message}", flush=True)
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} loaded, {failed} failed ({args.fhir_server})",
          file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0
