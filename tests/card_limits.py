"""The §18.2 card limits (clinical-rules.md), as one reusable check.

`assert_card_ok(card, request_body, resources=None)` fails when a card breaks any of:
- the summary is 1 to SUMMARY_LIMIT - 1 characters (under 140: the Inferno CRD kit flags 140);
- the detail is at most DETAIL_LIMIT characters (600; §18.2 says "at most about 600");
- no FHIR id of a resource in the request (context ids, draftOrders, prefetch) or in the data the
  service read (`resources`) appears in the summary or the detail as a whole token;
- no null (or empty "" [] {}) value anywhere in the card;
- `selectionBehavior` exactly when there are suggestions, and one of "any" / "at-most-one";
- every `update` names a draft of context.draftOrders (ResourceType/id of the resource), every
  `delete` a draft or an active order (MedicationRequest or MedicationStatement, status active or
  on-hold) of the request or the data read.

Ids that cannot be told from clinical text are not searched: ids under 3 characters, ids of at
most 4 digits (they read as values: "platelets 42") and ids of fewer than 8 letters only (they
read as words or units: "min", "daily"). Real ids (uuids, "example-sic", "12345") are searched.

tests/conftest.py applies it to every card of every hook response any test receives (test
client or a served app), so no test can return a card that breaks the limits.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

SUMMARY_LIMIT = 140      # exclusive: len(summary) < 140
DETAIL_LIMIT = 600       # inclusive: len(detail) <= 600
ACTIVE_STATUSES = ("active", "on-hold")


def _walk_resources(value: Any) -> Iterable[dict]:
    """Every FHIR resource (a dict with resourceType) nested anywhere in `value`."""
    if isinstance(value, dict):
        if isinstance(value.get("resourceType"), str):
            yield value
        for child in value.values():
            yield from _walk_resources(child)
    elif isinstance(value, list):
        for child in value:
            yield from _walk_resources(child)


def _all_resources(body: dict, resources: Iterable[dict] | None) -> list[dict]:
    found = list(_walk_resources(body.get("context", {}))) + list(_walk_resources(body.get("prefetch") or {}))
    found += [r for r in (resources or ()) if isinstance(r, dict)]
    return found


def request_ids(body: dict, resources: Iterable[dict] | None = None) -> set[str]:
    """The FHIR ids a card must never show: context ids and every resource id seen."""
    ids: set[str] = set()
    ctx = body.get("context") if isinstance(body.get("context"), dict) else {}
    for key in ("patientId", "encounterId", "userId"):
        value = ctx.get(key)
        if isinstance(value, str) and value:
            ids.add(value.rsplit("/", 1)[-1])
    for resource in _all_resources(body, resources):
        rid = resource.get("id")
        if isinstance(rid, str) and rid:
            ids.add(rid)
    return {i for i in ids if len(i) >= 3 and not re.fullmatch(r"\d{1,4}", i)
            and not re.fullmatch(r"[A-Za-z]{1,7}", i)}


def _refs(resources: Iterable[dict], types: tuple[str, ...], statuses: tuple[str, ...] | None) -> set[str]:
    out = set()
    for r in resources:
        if r.get("resourceType") in types and isinstance(r.get("id"), str):
            if statuses is None or r.get("status") in statuses:
                out.add(f"{r['resourceType']}/{r['id']}")
    return out


def draft_refs(body: dict) -> set[str]:
    ctx = body.get("context") if isinstance(body.get("context"), dict) else {}
    return _refs(_walk_resources(ctx.get("draftOrders") or {}), ("MedicationRequest", "ServiceRequest",
                                                                  "MedicationStatement"), None)


def active_order_refs(body: dict, resources: Iterable[dict] | None = None) -> set[str]:
    everything = list(_walk_resources(body.get("prefetch") or {})) + list(resources or ())
    return _refs(everything, ("MedicationRequest", "MedicationStatement"), ACTIVE_STATUSES)


def _empty_paths(value: Any, path: str) -> list[str]:
    if value is None or value == "" or value == [] or value == {}:
        return [path]
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _empty_paths(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _empty_paths(v, f"{path}[{i}]")
    return out


def card_problems(card: dict, body: dict, resources: Iterable[dict] | None = None) -> list[str]:
    """Every §18.2 limit `card` breaks (empty when none)."""
    resources = list(resources or ())
    problems: list[str] = []
    summary, detail = card.get("summary"), card.get("detail", "")
    if not isinstance(summary, str) or not 0 < len(summary) < SUMMARY_LIMIT:
        problems.append(f"summary must be 1-{SUMMARY_LIMIT - 1} characters, "
                        f"got {len(summary) if isinstance(summary, str) else summary!r}")
    if not isinstance(detail, str):
        problems.append("detail must be a string")
        detail = ""
    elif len(detail) > DETAIL_LIMIT:
        problems.append(f"detail is {len(detail)} characters (limit {DETAIL_LIMIT})")
    text = f"{summary}\n{detail}"
    for fhir_id in sorted(request_ids(body, resources)):
        if re.search(rf"(?<![A-Za-z0-9\-]){re.escape(fhir_id)}(?![A-Za-z0-9\-])", text):
            problems.append(f"FHIR id {fhir_id!r} appears in the card text")
    problems += [f"null or empty value at {p}" for p in _empty_paths(card, "card")]
    suggestions = card.get("suggestions")
    if ("selectionBehavior" in card) != bool(suggestions):
        problems.append("selectionBehavior must be present exactly when there are suggestions")
    elif suggestions and card["selectionBehavior"] not in ("any", "at-most-one"):
        problems.append(f"selectionBehavior {card['selectionBehavior']!r} is not any/at-most-one")
    drafts = draft_refs(body)
    deletable = drafts | active_order_refs(body, resources)
    for s in suggestions or ():
        for action in s.get("actions") or ():
            if action.get("type") == "update":
                res = action.get("resource") or {}
                ref = f"{res.get('resourceType')}/{res.get('id')}"
                if ref not in drafts:
                    problems.append(f"update of {ref}, which is not a draft order of the request")
            elif action.get("type") == "delete":
                ref = action.get("resourceId")
                if ref not in deletable:
                    problems.append(f"delete of {ref!r}, which is neither a draft nor an active order")
    return problems


def assert_card_ok(card: dict, request_body: dict, resources: Iterable[dict] | None = None) -> None:
    problems = card_problems(card, request_body, resources)
    assert not problems, f"card {card.get('summary')!r} breaks §18.2: " + "; ".join(problems)


def assert_cards_ok(request_body: dict, payload: dict, resources: Iterable[dict] | None = None) -> None:
    for card in payload.get("cards") or ():
        assert_card_ok(card, request_body, resources)
