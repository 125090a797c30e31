"""Helpers for the hook-level tests: example bodies (dated relative to a fixed `now`), posting
them, and one strict check every response goes through."""
from __future__ import annotations

import copy
import json
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path

from fhir.resources.R4B import get_fhir_model_class

from cds_service.cli.examples import SCENARIOS, build
from cds_service.cards import vocabulary as vocab
from conftest import assert_valid_cds_response, in_scope

# The data-layer tests' fake FHIR server (batch + GET on `responses`), reused as is.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fhir"))
from _data_support import FakeFhir, queries  # noqa: E402

__all__ = ["FakeFhir", "queries"]

PATHS = {"patient-view": "/cds-services/coagulopathy-risk",
         "order-select": "/cds-services/anticoagulant-order-check",
         "order-sign": "/cds-services/anticoagulant-order-sign"}
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def body_for(name: str, now: datetime | None = None) -> dict:
    """Example `name` dated relative to `now` (default: the clock, as the service evaluates
    at the request time), in v2 scope (conftest.in_scope: an IMP Encounter named in the
    context and the COVID-19 Condition linked to it)."""
    return in_scope(build(name, now or datetime.now(timezone.utc)))


def post(client, body: dict):
    resp = client.post(PATHS[body["hook"]], data=json.dumps(body), content_type="application/json")
    assert resp.status_code == 200, resp.get_data(as_text=True)[:800]
    payload = resp.get_json()
    check_response(body, payload)
    return payload


def run(client, name: str, now: datetime | None = None, mutate=None) -> tuple[dict, dict]:
    """(request body, response) for example `name`, after `mutate(body)`."""
    body = body_for(name, now)
    if mutate:
        mutate(body)
    return body, post(client, body)


def only_card(payload: dict) -> dict:
    assert len(payload["cards"]) == 1, [c["summary"] for c in payload["cards"]]
    return payload["cards"][0]


def kind(card: dict) -> str:
    return card["source"]["topic"]["code"]


def actions(card: dict) -> list[dict]:
    return [a for s in card.get("suggestions", ()) for a in s.get("actions", ())]


def draft_entries(body: dict) -> dict[str, dict]:
    bundle = body["context"].get("draftOrders") or {}
    return {f"{e['resource']['resourceType']}/{e['resource'].get('id')}": e["resource"]
            for e in bundle.get("entry", [])}


def active_orders(body: dict) -> set[str]:
    """"MedicationRequest/<id>" of the active orders in the request's prefetch."""
    bundle = (body.get("prefetch") or {}).get("medications") or {}
    return {f"MedicationRequest/{e['resource']['id']}" for e in bundle.get("entry", ())
            if e.get("resource", {}).get("resourceType") == "MedicationRequest"
            and e["resource"].get("status") in ("active", "on-hold")}


def check_response(body: dict, payload: dict) -> None:
    """CDS Hooks notes §7/§12/§13 on every response, plus our card rules."""
    assert_valid_cds_response(payload)
    uuids = []
    drafts = draft_entries(body)
    pid = body["context"]["patientId"]
    for card in payload["cards"]:
        uuids.append(card["uuid"])
        assert 0 < len(card["summary"]) < 140
        assert card["detail"].strip()
        source = card["source"]
        # the service's own rule page for this kind (GET /docs/rules, absolute)
        assert source["label"] and source["url"].startswith(("http://", "https://"))
        assert source["url"].endswith(f"{vocab.DOCS_PATH}#{source['topic']['code']}")
        # issue 23: our codes are minted under one base (the public base, or the policy's
        # vocabulary.system_base: tests/hooks/test_terminology.py) and resolve there
        system = source["topic"]["system"]
        assert system.startswith(("http://", "https://")) and system.endswith(f"{vocab.CODE_SYSTEM_PATH}/card-kind")
        base = system[: -len(f"{vocab.CODE_SYSTEM_PATH}/card-kind")]
        assert source["topic"]["code"] in vocab.CARD_KINDS and source["topic"]["display"]
        reasons = card["overrideReasons"]
        assert reasons and all(r["system"] == vocab.system_url(vocab.OVERRIDE_REASON, base) and r["code"] in vocab.OVERRIDE_REASONS
                               and r["display"] == vocab.OVERRIDE_REASONS[r["code"]] for r in reasons)
        evidence = [link for link in card["links"] if link["type"] == "absolute"]
        assert evidence and all(link["url"].startswith("https://") and "appContext" not in link
                                for link in evidence)
        # Issue 13: exactly one smart link, to the assessment view, naming the card and hookInstance.
        [view] = [link for link in card["links"] if link["type"] != "absolute"]
        assert view["type"] == "smart" and view["label"] == "Open coagulopathy assessment"
        assert view["url"].endswith("/smart/launch")
        assert json.loads(view["appContext"]) == {"kind": source["topic"]["code"],
                                                   "hookInstance": body["hookInstance"]}
        assert ("selectionBehavior" in card) == ("suggestions" in card)
        active = active_orders(body)
        for s in card.get("suggestions", ()):
            uuids.append(s["uuid"])
            seen_types: list[str] = []
            for action in s["actions"]:
                if action["type"] == "delete":
                    assert "resource" not in action
                    if body["hook"] == "patient-view":
                        # §18.1: deletes name an active order by its id
                        assert action["resourceId"] in active, "delete target must be an active order"
                    else:
                        # CDS Hooks notes §12: in order hooks only draftOrders entries; a create of
                        # the same type comes first when there is one (§18.4 HIT: a delete alone)
                        assert action["resourceId"] in drafts, "delete target must be a draftOrders entry"
                    continue
                resource = action["resource"]
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)  # R4B valid
                assert resource["status"] == "draft" and resource["intent"] == "order"
                assert resource["subject"] == {"reference": f"Patient/{pid}"}
                if body["context"].get("encounterId"):
                    assert resource["encounter"] == {"reference": f"Encounter/{body['context']['encounterId']}"}
                if resource["resourceType"] == "MedicationRequest":
                    check_medication_request(resource)
                if action["type"] == "update":
                    key = f"{resource['resourceType']}/{resource['id']}"
                    assert key in drafts, "update target must be a draftOrders entry"
                    for field in ("subject", "encounter"):
                        assert resource.get(field) == drafts[key].get(field)
                else:
                    assert f"{resource['resourceType']}/{resource['id']}" not in drafts, "create needs a new id"
                seen_types.append(resource["resourceType"])
    assert len(uuids) == len(set(uuids)), "card and suggestion uuids must be unique"


def check_medication_request(resource: dict) -> None:
    """What the notes (§7) and the sandbox (§12) need of a created/updated MedicationRequest."""
    concept = resource["medicationCodeableConcept"]
    assert concept["text"] and concept["coding"][0]["system"] == RXNORM and concept["coding"][0]["code"]
    dose = resource["dosageInstruction"][0]
    quantity = dose["doseAndRate"][0]["doseQuantity"]
    assert quantity["system"] == UCUM and quantity["code"] in ("mg", "[iU]") and quantity["value"] > 0
    repeat = dose["timing"]["repeat"]
    assert {"frequency", "period", "periodUnit"} <= set(repeat)


def medication(resource: dict) -> tuple[str, float, str, tuple]:
    """(RxNorm code, dose value, dose unit code, (frequency, period, periodUnit))."""
    dose = resource["dosageInstruction"][0]
    repeat = dose["timing"]["repeat"]
    quantity = dose["doseAndRate"][0]["doseQuantity"]
    return (resource["medicationCodeableConcept"]["coding"][0]["code"], quantity["value"], quantity["code"],
            (repeat["frequency"], repeat["period"], repeat["periodUnit"]))


def strip_uuids(value):
    """The response with what differs between equivalent answers blanked: uuids, the ids and
    authoredOn of created resources."""
    value = copy.deepcopy(value)

    def walk(v):
        if isinstance(v, dict):
            if v.get("type") == "create" and isinstance(v.get("resource"), dict):
                v["resource"]["id"] = "*"
            for k in list(v):
                if k in ("uuid", "authoredOn"):
                    v[k] = "*"
                else:
                    walk(v[k])
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(value)
    return value


def db_rows(path: str, sql: str, *args):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


SCENARIO_NAMES = list(SCENARIOS)
