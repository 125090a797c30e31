"""`cds-service fire`: act as a CDS client against a running service and a FHIR server.

It reads the service's discovery, picks the service for the hook, resolves that service's
prefetch templates against the FHIR server the way the public sandbox does (a key whose
fetch fails is omitted, so the service fetches it itself), builds a CDS Hooks 2.0 request
and prints the cards readably (or the raw JSON with --json).
"""
from __future__ import annotations

import copy
import html
import json
import re
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ...fhir.templates import TemplateError
from ...fhir.templates import fill_template as _fill

from .fixtures import FHIR_JSON, outcome_text

DEFAULT_TIMEOUT_S = 3.0  # the service's default CDS_FHIR_TIMEOUT: fire waits as long as it would
SERVICE_MARGIN_S = 10.0  # the service's own answer: its FHIR phase plus this
PREFETCH_THREADS = 16
ORDER_HOOKS = ("order-select", "order-sign")
# SMART v1 read scopes for the resource types the services read (see discovery usageRequirements).
READ_SCOPES = " ".join(f"user/{t}.read" for t in (
    "Patient", "Observation", "Condition", "MedicationRequest", "MedicationAdministration",
    "AllergyIntolerance", "Procedure", "Encounter", "MedicationStatement"))


class FireError(Exception):
    """The client could not build or send the request (exit status 2)."""


@dataclass
class Fired:
    """What was sent and what came back."""

    service_id: str
    request: dict[str, Any]
    status: int
    response: Any
    prefetch_omitted: dict[str, str] = field(default_factory=dict)  # key -> why


# ---------------------------------------------------------------- discovery and prefetch

def default_timeout() -> float:
    """CDS_FHIR_TIMEOUT as the service reads it (checked the same way), else 3 s."""
    from ...config import ConfigError, env_number

    try:
        return env_number("CDS_FHIR_TIMEOUT", DEFAULT_TIMEOUT_S, low=0.0, low_open=True, high=600.0)
    except ConfigError as exc:
        raise FireError(str(exc)) from None


def discover(session: requests.Session, service_url: str) -> list[dict]:
    url = f"{service_url.rstrip('/')}/cds-services"
    try:
        resp = session.get(url, headers={"Accept": "application/json"}, timeout=SERVICE_MARGIN_S)
        body = resp.json()
    except (requests.RequestException, ValueError) as exc:
        raise FireError(f"cannot read discovery at {url}: {type(exc).__name__}") from None
    if resp.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("services"), list):
        raise FireError(f"discovery at {url} answered HTTP {resp.status_code} without a services list")
    return [s for s in body["services"] if isinstance(s, dict)]


def pick_service(services: list[dict], hook: str, service_id: str | None = None) -> dict:
    matches = [s for s in services if s.get("hook") == hook and (service_id is None or s.get("id") == service_id)]
    if len(matches) == 1:
        return matches[0]
    offered = ", ".join(f"{s.get('id')} ({s.get('hook')})" for s in services) or "none"
    if not matches:
        raise FireError(f"no service for hook {hook!r}" + (f" with id {service_id!r}" if service_id else "")
                        + f"; discovery offers: {offered}")
    raise FireError(f"several services answer {hook!r}; choose one with --service: {offered}")


def fill_template(template: str, context: dict[str, Any]) -> str | None:
    """The service's own token substitution (fhir.templates); None when a token cannot be
    filled, so the key is omitted as the sandbox does."""
    try:
        return _fill(template, context)
    except TemplateError:
        return None


def fhir_get(session: requests.Session, fhir_server: str, query: str, token: str | None,
             timeout: float = DEFAULT_TIMEOUT_S) -> tuple[Any, str | None]:
    """(resource, None) on success, (None, why) on failure."""
    headers = {"Accept": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        resp = session.get(f"{fhir_server.rstrip('/')}/{query.lstrip('/')}", headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        return None, type(exc).__name__
    try:
        body = resp.json()
    except ValueError:
        return None, f"HTTP {resp.status_code}, not JSON"
    if resp.status_code != 200:
        return None, f"HTTP {resp.status_code}" + (f": {outcome_text(body)}" if outcome_text(body) else "")
    if not isinstance(body, dict) or "resourceType" not in body:
        return None, "not a FHIR resource"
    return body, None


def resolve_prefetch(session: requests.Session, fhir_server: str, templates: dict[str, str],
                     context: dict[str, Any], token: str | None,
                     timeout: float = DEFAULT_TIMEOUT_S) -> tuple[dict[str, Any], dict[str, str]]:
    """Like the public sandbox: a key whose fetch fails is omitted, never sent as null.

    The reads run in parallel and share one deadline, `timeout` seconds, as the service's own
    FHIR phase does (CDS_FHIR_TIMEOUT): against a server that never answers, fire gives up
    after `timeout`, not after one wait per key."""
    prefetch: dict[str, Any] = {}
    omitted: dict[str, str] = {}
    queries: dict[str, str] = {}
    for key, template in templates.items():
        query = fill_template(template, context) if isinstance(template, str) else None
        if query is None:
            omitted[key] = "a token in the template cannot be filled from the context"
        else:
            queries[key] = query
    if not queries:
        return prefetch, omitted
    deadline = time.monotonic() + timeout
    pool = ThreadPoolExecutor(max_workers=min(PREFETCH_THREADS, len(queries)), thread_name_prefix="fire-prefetch")
    try:
        futures = {pool.submit(fhir_get, session, fhir_server, q, token, timeout): k for k, q in queries.items()}
        done, _ = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        for future, key in futures.items():
            if future not in done:
                omitted[key] = f"no answer within {timeout:g} s"
                continue
            resource, why = future.result()
            if why:
                omitted[key] = why
            else:
                prefetch[key] = resource
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a stuck read ends at its own timeout
    # Keys in the service's order, as a sequential fetch would have sent them.
    return ({k: prefetch[k] for k in templates if k in prefetch},
            {k: omitted[k] for k in templates if k in omitted})


# ---------------------------------------------------------------- the request

def load_draft(path: str | Path, patient_id: str, encounter_id: str | None = None) -> dict:
    try:
        resource = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FireError(f"cannot read draft order {path}: {exc}") from None
    if not isinstance(resource, dict) or resource.get("resourceType") != "MedicationRequest":
        raise FireError(f"{path} must hold one MedicationRequest")
    if not resource.get("id"):
        raise FireError(f"{path}: the draft MedicationRequest needs an id (selections and updates name it)")
    resource = copy.deepcopy(resource)
    resource.setdefault("status", "draft")
    resource.setdefault("subject", {"reference": f"Patient/{patient_id}"})
    if encounter_id:
        resource.setdefault("encounter", {"reference": f"Encounter/{encounter_id}"})
    return resource


def build_request(hook: str, patient_id: str, fhir_server: str, *, user_id: str = "Practitioner/cds-fire",
                  encounter_id: str | None = None, prefetch: dict[str, Any] | None = None,
                  token: str | None = None, drafts: list[dict] | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": user_id, "patientId": patient_id}
    if encounter_id:
        context["encounterId"] = encounter_id
    if hook in ORDER_HOOKS:
        if not drafts:
            raise FireError(f"{hook} needs at least one --draft-order")
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": d} for d in drafts]}
        if hook == "order-select":
            context["selections"] = [f"MedicationRequest/{d['id']}" for d in drafts]
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_server,
        "context": context,
    }
    if token:
        body["fhirAuthorization"] = {
            "access_token": token, "token_type": "Bearer", "expires_in": 300,
            "scope": READ_SCOPES, "subject": "cds-service-fire", "patient": patient_id,
        }
    if prefetch:
        body["prefetch"] = prefetch
    return body


def fire(hook: str, patient_id: str, fhir_server: str, *, service_url: str = "http://127.0.0.1:8000",
         prefetch: bool = True, draft_paths: list[str] | None = None, token: str | None = None,
         user_id: str = "Practitioner/cds-fire", encounter_id: str | None = None,
         service_id: str | None = None, session: requests.Session | None = None,
         timeout: float | None = None) -> Fired:
    timeout = default_timeout() if timeout is None else timeout
    own = session is None
    session = session or requests.Session()
    try:
        service = pick_service(discover(session, service_url), hook, service_id)
        drafts = [load_draft(p, patient_id, encounter_id) for p in draft_paths or []]
        context = {"userId": user_id, "patientId": patient_id, **({"encounterId": encounter_id} if encounter_id else {})}
        values: dict[str, Any] = {}
        omitted: dict[str, str] = {}
        if prefetch and isinstance(service.get("prefetch"), dict):
            values, omitted = resolve_prefetch(session, fhir_server, service["prefetch"], context, token, timeout)
        body = build_request(hook, patient_id, fhir_server, user_id=user_id, encounter_id=encounter_id,
                             prefetch=values, token=token, drafts=drafts)
        url = f"{service_url.rstrip('/')}/cds-services/{service['id']}"
        try:
            resp = session.post(url, data=json.dumps(body), timeout=timeout + SERVICE_MARGIN_S,
                                headers={"Content-Type": "application/json", "Accept": "application/json"})
        except requests.RequestException as exc:
            raise FireError(f"cannot reach {url}: {type(exc).__name__}") from None
        try:
            answer = resp.json()
        except ValueError:
            answer = resp.text
        return Fired(service["id"], body, resp.status_code, answer, omitted)
    finally:
        if own:
            session.close()


# ---------------------------------------------------------------- rendering

_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def _inline(text: str) -> str:
    text = _LINK.sub(lambda m: m.group(1) if m.group(1) == m.group(2) else f"{m.group(1)} <{m.group(2)}>", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\1", text)
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"<br\s*/?>", " ", text, flags=re.I)
    text = re.sub(r"\\([\\`*_{}\[\]()#+\-.!|<>])", r"\1", text)
    return html.unescape(text)


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [_inline(c.strip()) for c in re.split(r"(?<!\\)\|", inner)]


def markdown_to_text(markdown: str) -> list[str]:
    """GitHub-flavoured Markdown as plain lines: tables aligned, emphasis and links unwrapped."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            widths = [max(len(row[i]) if i < len(row) else 0 for row in table) for i in range(max(map(len, table)))]
            out.extend("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() for row in table)
            table.clear()

    for raw in markdown.splitlines():
        line = raw.rstrip()
        if line.lstrip().startswith("|"):
            if not _TABLE_RULE.match(line):
                table.append(_cells(line))
            continue
        flush()
        heading = re.match(r"^\s{0,3}#{1,6}\s+(.*)$", line)
        if heading:
            out.append(_inline(heading.group(1)).upper())
        elif re.match(r"^\s*([-*_]\s*){3,}$", line):
            out.append("")
        else:
            out.append(_inline(re.sub(r"^(\s*)[*+]\s+", r"\1- ", line)))
    flush()
    # collapse runs of blank lines
    lines: list[str] = []
    for line in out:
        if line or (lines and lines[-1]):
            lines.append(line)
    return lines[:-1] if lines and not lines[-1] else lines


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _timing(dosage: dict) -> str:
    repeat = ((dosage.get("timing") or {}).get("repeat") or {})
    if "period" in repeat:
        freq = repeat.get("frequency", 1)
        return f"{_num(freq)}x every {_num(repeat['period'])} {repeat.get('periodUnit', '')}".strip()
    return ((dosage.get("timing") or {}).get("code") or {}).get("text", "")


def describe_resource(resource: Any) -> str:
    if not isinstance(resource, dict):
        return ""
    rtype = resource.get("resourceType", "?")
    if rtype == "MedicationRequest":
        med = resource.get("medicationCodeableConcept") or {}
        name = med.get("text") or next((c.get("display") for c in med.get("coding") or [] if c.get("display")), "")
        dosage = (resource.get("dosageInstruction") or [{}])[0]
        dose = ((dosage.get("doseAndRate") or [{}])[0].get("doseQuantity") or {})
        dose_text = f"{_num(dose['value'])} {dose.get('unit', '')}".strip() if "value" in dose else ""
        parts = [p for p in (name, dose_text, _timing(dosage)) if p]
        return f"MedicationRequest/{resource.get('id', '?')}: " + ", ".join(parts)
    if rtype == "ServiceRequest":
        code = resource.get("code") or {}
        text = code.get("text") or next((c.get("display") for c in code.get("coding") or [] if c.get("display")), "")
        return f"ServiceRequest/{resource.get('id', '?')}: {text}".rstrip(": ")
    return f"{rtype}/{resource.get('id', '?')}"


def render_cards(response: dict, header: str = "") -> str:
    cards = response.get("cards") or []
    lines = [header] if header else []
    lines.append(f"{len(cards)} card{'s' if len(cards) != 1 else ''}" if cards else "No cards.")
    for number, card in enumerate(cards, 1):
        lines.append("")
        lines.append(f"[{number}] {str(card.get('indicator', '?')).upper()}: {card.get('summary', '')}")
        source = card.get("source") or {}
        if source:
            lines.append(f"    source: {source.get('label', '')}" + (f" <{source['url']}>" if source.get("url") else ""))
        if card.get("detail"):
            lines.append("")
            lines.extend(f"    {line}".rstrip() for line in markdown_to_text(card["detail"]))
        suggestions = card.get("suggestions") or []
        if suggestions:
            behaviour = card.get("selectionBehavior", "")
            lines.append("")
            lines.append(f"    Suggestions ({behaviour}):" if behaviour else "    Suggestions:")
            for s_number, suggestion in enumerate(suggestions, 1):
                flag = "  [recommended]" if suggestion.get("isRecommended") else ""
                lines.append(f"      {s_number}. {suggestion.get('label', '')}{flag}")
                for action in suggestion.get("actions") or []:
                    target = describe_resource(action.get("resource")) or action.get("resourceId", "")
                    lines.append(f"         - {action.get('type', '?')}: {action.get('description', '')}")
                    if target:
                        lines.append(f"           {target}")
        links = card.get("links") or []
        if links:
            lines.append("")
            lines.append("    Links:")
            lines.extend(f"      - {link.get('label', '')} <{link.get('url', '')}>" for link in links)
        reasons = card.get("overrideReasons") or []
        if reasons:
            lines.append("    Override reasons: " + "; ".join(str(r.get("display") or r.get("code")) for r in reasons))
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI

def run(args) -> int:
    try:
        fired = fire(args.hook, args.patient, args.fhir_server, service_url=args.service_url,
                     prefetch=not args.no_prefetch, draft_paths=args.draft_order, token=args.token,
                     user_id=args.user, encounter_id=args.encounter, service_id=args.service,
                     timeout=getattr(args, "timeout", None))
    except FireError as exc:
        print(f"cds-service fire: {exc}", file=sys.stderr)
        return 2
    for key, why in fired.prefetch_omitted.items():
        print(f"prefetch {key!r} omitted ({why}); the service will fetch it itself", file=sys.stderr)
    if fired.status != 200 or not isinstance(fired.response, dict):
        detail = outcome_text(fired.response) or (str(fired.response)[:300] if fired.response else "no body")
        print(f"{fired.service_id} answered HTTP {fired.status}: {detail}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(fired.response, indent=2, ensure_ascii=False))
    else:
        mode = "without prefetch" if args.no_prefetch else f"{len(fired.request.get('prefetch') or {})} prefetch keys"
        print(render_cards(fired.response, f"{fired.service_id} ({args.hook}) for Patient/{args.patient}, {mode}"))
    return 0
