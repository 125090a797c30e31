"""Card building blocks: the CDS Hooks 2.0 card/suggestion/action shapes, the FHIR resources
suggestions carry, and safe Markdown.

Rules held here (CDS Hooks notes §1, §7, §12):
- every card and suggestion gets a uuid4; `source` carries the label, the URL of the card
  kind's rule on this service (GET /docs/rules#<kind>, absolute) and the card kind as topic; `overrideReasons` come from our one code system; links are absolute;
- `selectionBehavior` exactly when there are suggestions;
- `prune` drops every null/""/[]/{} before a card leaves, so none is ever emitted;
- `summary` is plain text under 140 characters; `detail` is GitHub Markdown in which every
  data value passes through `md()`, because the public sandbox renders raw HTML too;
- created/updated MedicationRequests carry medicationCodeableConcept.text + coding[0] (RxNorm),
  dosageInstruction with doseAndRate.doseQuantity and timing.repeat.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from ..fhir.codes import Codes
from ..fhir.units import UCUM
from ..logic.numeric import display
from ..storage import IssuedCard
from . import vocabulary as vocab
from .base_url import FALLBACK_BASE_URL, code_system_base, public_base_url  # noqa: F401 (used here and by callers)

SUMMARY_MAX = 139


# -- JSON hygiene -------------------------------------------------------------------------
def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def prune(value: Any) -> Any:
    """Drop null and empty values at every depth (emptied containers are dropped in turn)."""
    if isinstance(value, dict):
        out = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if not _empty(v)}
    if isinstance(value, (list, tuple)):
        out = [prune(v) for v in value]
        return [v for v in out if not _empty(v)]
    if isinstance(value, str):
        return value.strip() and value
    return value


def new_id() -> str:
    return str(uuid.uuid4())


# -- text -----------------------------------------------------------------------------------
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")


def md(value: Any) -> str:
    """A data value made inert for GFM + raw HTML: entities for &<>, backslash for Markdown
    punctuation that could start emphasis, code, links or table cells; one line."""
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def num(value: float | int | None, dp: int = 1) -> str:
    """Display rounding (clinical rules §0, half-up) without trailing zeros: 7.20 -> 7.2."""
    rounded = None if value is None else display(float(value), dp)
    if rounded is None:  # absent, or not finite
        return "unknown"
    text = f"{rounded:,.{dp}f}" if dp else f"{rounded:,.0f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def num_edge(value: float | None, dp: int, edges: Iterable[float], compare_dp: int = 6) -> str:
    """`num`, with more decimals when `dp` would put the value on a decision edge it is not on
    (BMI 29.997 shown as "30" next to "below 30"). Decisions use `compare_dp` decimals (§0)."""
    if value is None:
        return num(value, dp)
    exact = round(float(value), compare_dp)
    for places in range(dp, compare_dp + 1):
        if not any(display(float(value), places) == e != exact for e in edges):
            return num(value, places)
    return num(value, compare_dp)


def when(moment: datetime | None, now: datetime) -> str:
    """"2025-01-15 08:00 UTC (4 h ago)"."""
    if moment is None:
        return "date unknown"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    stamp = moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    hours = (now - moment).total_seconds() / 3600
    if hours < 1:
        ago = "under 1 h ago" if hours >= 0 else "future-dated"
    elif hours < 48:
        ago = f"{int(hours)} h ago"
    else:
        ago = f"{int(hours // 24)} d ago"
    return f"{stamp} ({ago})"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GFM table. Cells must already be escaped (md()) or be our own text."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def summary_text(*candidates: str) -> str:
    """The first candidate that fits in SUMMARY_MAX characters (callers pass a long form
    first, then shorter ones); the last is cut at a word boundary if it still does not fit."""
    for text in candidates:
        text = " ".join(text.split())
        if 0 < len(text) <= SUMMARY_MAX:
            return text
    text = " ".join(candidates[-1].split())
    return text[: SUMMARY_MAX - 1].rsplit(" ", 1)[0] + "…"


# -- the link every card carries to the assessment view (smart/, issue 13) --------------------------
LINK_LABEL = "Open coagulopathy assessment"


def assessment_link(kind: str, hook_instance: str, base_url: str) -> dict:
    """The card's `smart` link to the view. appContext (a JSON string) names the card kind and
    the hookInstance so the view can say which card it was opened from; the view works
    without it (Oracle Health ignores appContext)."""
    return {"label": LINK_LABEL, "url": base_url.rstrip("/") + "/smart/launch", "type": "smart",
            "appContext": json.dumps({"kind": kind, "hookInstance": hook_instance}, separators=(",", ":"))}


# -- card shapes ------------------------------------------------------------------------------
def action_create(description: str, resource: dict) -> dict:
    return {"type": "create", "description": description, "resource": resource}


def action_update(description: str, resource: dict) -> dict:
    return {"type": "update", "description": description, "resource": resource}


def action_delete(description: str, resource_id: str) -> dict:
    return {"type": "delete", "description": description, "resourceId": resource_id}


def suggestion(label: str, *actions: dict, recommended: bool | None = None) -> dict:
    out = {"label": label, "uuid": new_id(), "actions": list(actions)}
    if recommended is not None:
        out["isRecommended"] = recommended
    return out


def card(kind: str, indicator: str, summary: str | Sequence[str], detail: str, *,
         suggestions: Sequence[dict] = (), selection: str = "any",
         evidence: Sequence[str] = (), base_url: str | None = None) -> IssuedCard:
    """One card of `kind` (vocabulary.CARD_KINDS), pruned. `summary`: the text, or candidates
    longest first (see summary_text). `selection` is the selectionBehavior used when there are
    suggestions: "any" when they are independent, "at-most-one" when they are alternatives."""
    if indicator not in ("info", "warning", "critical"):
        raise ValueError(f"bad indicator {indicator!r}")
    if selection == "at-most-one" and sum(bool(s.get("isRecommended")) for s in suggestions) > 1:
        raise ValueError("at most one suggestion may be recommended under at-most-one (CDS Hooks §7)")
    body = {
        "uuid": new_id(),
        "summary": summary_text(*([summary] if isinstance(summary, str) else summary)),
        "detail": detail,
        "indicator": indicator,
        "source": {"label": vocab.SOURCE_LABEL,
                   "url": vocab.source_url(kind, base_url or public_base_url()),
                   "topic": vocab.topic(kind, code_system_base(base_url))},
        "suggestions": list(suggestions),
        "overrideReasons": vocab.override_reasons(kind, code_system_base(base_url)),
        # The evidence line's citations. The assessment view's `smart` link (issue 13) is appended
        # per call where the hookInstance is known (hooks/common.respond): one call, kept there.
        "links": vocab.links(*evidence),
    }
    body = prune(body)
    if "suggestions" in body:
        body["selectionBehavior"] = selection
    return IssuedCard(kind=kind, card=body)


# -- FHIR resources carried by suggestions ------------------------------------------------------
def _coding(codes: Codes, entry: str, display: str | None = None) -> dict:
    system, code = codes.resolve(entry)
    return {"system": system, "code": code, "display": display}


def product(codes: Codes, key: str) -> dict:
    """medicationCodeableConcept for a codes.json `suggestion_products` entry."""
    spec = codes.data["suggestion_products"][key]
    return {"coding": [_coding(codes, spec["code"], spec.get("display"))], "text": spec["text"]}


def product_key(drug: str, dose_mg: float | None = None, dose_units: float | None = None,
                codes: Codes | None = None) -> str:
    """The suggestion_products key for a drug and dose: the SCD of that strength when one is
    shipped (enoxaparin_60, heparin_5000), else the ingredient."""
    strength = dose_mg if dose_mg is not None else dose_units
    if strength is not None:
        # §19.13: fondaparinux is suggested by its product (2.5 mg, 7.5 mg keys keep the decimal)
        key = f"{drug}_{int(strength)}" if float(strength).is_integer() else f"{drug}_{float(strength):g}"
        if codes is None or key in codes.data["suggestion_products"]:
            return key
    return drug


PERIOD_BY_DOSES_PER_DAY = {1: (1, 1, "d"), 2: (1, 12, "h"), 3: (1, 8, "h"), 4: (1, 6, "h")}
FREQUENCY_TEXT = {1: "once daily", 2: "every 12 hours", 3: "every 8 hours", 4: "every 6 hours"}


def dosage(codes: Codes, *, dose_mg: float | None, dose_units: float | None,
           doses_per_day: int, route: str = "subcutaneous") -> dict:
    """A dosageInstruction: doseQuantity in UCUM mg (or [iU] for heparin units),
    timing.repeat frequency/period/periodUnit, route SNOMED."""
    frequency, period, unit = PERIOD_BY_DOSES_PER_DAY[doses_per_day]
    if dose_mg is not None:
        quantity = {"value": _plain(dose_mg), "unit": "mg", "system": UCUM, "code": "mg"}
        amount = f"{num(dose_mg, 1)} mg"
    else:
        # UCUM "U" is the enzyme unit (umol/min); heparin is dosed in international units.
        quantity = {"value": _plain(dose_units), "unit": "units", "system": UCUM, "code": "[iU]"}
        amount = f"{num(dose_units, 0)} units"
    route_system, route_code = codes.resolve(codes.data["routes"][route][0])
    return {
        "sequence": 1,
        "text": f"{amount} {route} {FREQUENCY_TEXT[doses_per_day]}",
        "timing": {"repeat": {"frequency": frequency, "period": period, "periodUnit": unit}},
        "route": {"coding": [{"system": route_system, "code": route_code}], "text": route},
        "doseAndRate": [{"doseQuantity": quantity}],
    }


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def references(patient_id: str, encounter_id: str | None) -> dict:
    out = {"subject": {"reference": f"Patient/{patient_id}"}}
    if encounter_id:
        out["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    return out


def medication_request(codes: Codes, *, drug: str, dose_mg: float | None, dose_units: float | None,
                       doses_per_day: int, patient_id: str, encounter_id: str | None,
                       authored_on: datetime, note: str | None = None) -> dict:
    """A new draft MedicationRequest (create suggestion)."""
    resource = {
        "resourceType": "MedicationRequest",
        "id": new_id(),
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": product(codes, product_key(drug, dose_mg, dose_units, codes)),
        **references(patient_id, encounter_id),
        "authoredOn": authored_on.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dosageInstruction": [dosage(codes, dose_mg=dose_mg, dose_units=dose_units,
                                     doses_per_day=doses_per_day)],
        "note": [{"text": note}] if note else None,
    }
    return prune(resource)


def anti_xa_request(codes: Codes, *, patient_id: str, encounter_id: str | None,
                    authored_on: datetime, sampling: str, note: str) -> dict:
    """A draft ServiceRequest for an LMWH-calibrated anti-Xa level (LOINC 32684-3)."""
    spec = codes.data["service_requests"]["anti_xa_lmwh"]
    system, code = codes.resolve(spec["code"])
    return prune({
        "resourceType": "ServiceRequest",
        "id": new_id(),
        "status": "draft",
        "intent": "order",
        "code": {"coding": [{"system": system, "code": code}], "text": spec["text"]},
        **references(patient_id, encounter_id),
        "authoredOn": authored_on.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "occurrenceTiming": {"code": {"text": sampling}},
        "note": [{"text": note}],
    })
