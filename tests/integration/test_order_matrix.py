"""§19.15: every reference patient × every draft as a real order-select request, with prefetch.

No FHIR server: each synthetic patient's Bundle (conformance/patients/) is rendered at the request
time, mutated for the §19.15 situations (table `MUTATIONS` below, the same as the patients'
README), and answered from memory as the prefetch the service declares (a small FHIR search over the
Bundle's resources: patient, code, status, _count). The request goes through the Flask test client.
Expectations come from tests/integration/order_matrix.py (one source; the README table is generated
from it and `test_readme_table_is_generated` checks they agree).

The matrix is the independent check of the v3 order check (issue 19). While the order check on
`main` is still v2, most cells fail by design, so the module runs only when the order check says it
is v3 (`cds_service.logic.order_check.V3`) or when CDS_MATRIX=1. Cells that need the parallel
v3-exposure branch are `xfail(strict=True, reason="needs v3-exposure §19.x")`.
"""
from __future__ import annotations

import copy
import json
import os
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from cds_service import create_app
from cds_service.cli.integration.fire import load_draft
from cds_service.cli.integration.fixtures import DEFAULT_DIR, load_template, render
from integration.order_matrix import (BEGIN, DRAFT, DRAFTS, END, KIND_ALIASES, PATIENT, PATIENTS, RANK, SITUATIONS,
                                      Card, draft_dose, expect, readme_block, situation_cells, situation_patient)

DRAFT_DIR = DEFAULT_DIR / "draft-orders"
README = DEFAULT_DIR / "README.md"
PATHS = {"order-select": "/cds-services/anticoagulant-order-check",
         "order-sign": "/cds-services/anticoagulant-order-sign"}
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"


def _order_check_is_v3() -> bool:
    from cds_service.logic import order_check
    return bool(getattr(order_check, "V3", False))


RUN = os.environ.get("CDS_MATRIX") == "1" or _order_check_is_v3()
needs_v3 = pytest.mark.skipif(not RUN, reason="order check is v2 (no cds_service.logic.order_check.V3); "
                                              "CDS_MATRIX=1 runs the §19.15 matrix anyway")


# ------------------------------------------------------------------ the situations as mutations

def _fhir_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _resources(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)]


def _ref(pid: str) -> dict:
    return {"reference": f"Patient/{pid}"}


def _heparin_order(pid: str, now: datetime, rid: str, text: str, *, code=("5224", "heparin"), dose=None,
                   rate=None, route=None, dispense_ml=None) -> dict:
    dar = {}
    if dose:
        dar["doseQuantity"] = dose
    if rate:
        dar["rateQuantity"] = rate
    dosage = {"sequence": 1, "text": text}
    if route:
        dosage["route"] = route
    if dar:
        dosage["doseAndRate"] = [dar]
    order = {"resourceType": "MedicationRequest", "id": rid, "status": "active", "intent": "order",
             "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code[0], "display": code[1]}],
                                           "text": text},
             "subject": _ref(pid), "encounter": {"reference": f"Encounter/{pid}-enc"},
             "authoredOn": _fhir_time(now - timedelta(days=1)), "dosageInstruction": [dosage]}
    if dispense_ml:
        order["dispenseRequest"] = {"quantity": {"value": dispense_ml, "unit": "mL", "system": UCUM, "code": "mL"}}
    return order


def _procedure(pid: str, now: datetime, rid: str, code: str, display: str, days: int) -> dict:
    return {"resourceType": "Procedure", "id": rid, "status": "in-progress", "subject": _ref(pid),
            "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
            "performedPeriod": {"start": _fhir_time(now - timedelta(days=days))}}


CREATININE = {"2160-0", "14682-9", "38483-4", "59826-8"}
IV = {"coding": [{"system": SNOMED, "code": "47625008", "display": "Intravenous route"}]}


def _codes(resource: dict) -> set[str]:
    return {c.get("code") for c in (resource.get("code") or {}).get("coding", [])}


def mutate(key: str, resources: list[dict], pid: str, now: datetime) -> list[dict]:
    """The situation `key` applied to one patient's rendered resources (README mutation table)."""
    out = copy.deepcopy(resources)
    if key == "no-creatinine":
        out = [r for r in out if not (r["resourceType"] == "Observation" and _codes(r) & CREATININE)]
    elif key == "hit-history-crcl-lt30":
        latest = max((r for r in out if r["resourceType"] == "Observation" and "2160-0" in _codes(r)),
                     key=lambda r: r["effectiveDateTime"])
        latest["valueQuantity"] = {**latest["valueQuantity"], "value": 3.0}
    elif key == "rising-creatinine":
        latest = next(r for r in out if r["resourceType"] == "Observation" and "2160-0" in _codes(r))
        later = copy.deepcopy(latest)
        later.update(id=f"{pid}-creat-rising", effectiveDateTime=_fhir_time(now - timedelta(hours=1)))
        later["valueQuantity"] = {**later["valueQuantity"], "value": 1.2}
        out.append(later)
    elif key == "crrt-prefilter-heparin":
        out.append(_procedure(pid, now, f"{pid}-crrt", "714749008", "Continuous renal replacement therapy", 1))
        out.append(_heparin_order(pid, now, f"{pid}-crrt-heparin", "heparin 25,000 units/250 mL: 500 units/h IV "
                                  "into the CRRT circuit, pre-filter", route=IV,
                                  rate={"value": 500, "unit": "units/h", "system": UCUM, "code": "[iU]/h"}))
    elif key == "pressure-bag":
        out.append(_heparin_order(pid, now, f"{pid}-pressure-bag", "heparin 1,000 units in 500 mL sodium chloride "
                                  "0.9% (2 units/mL), arterial line pressure bag",
                                  dose={"value": 1000, "unit": "units", "system": UCUM, "code": "[iU]"},
                                  dispense_ml=500))
    elif key == "hd-catheter-lock":
        out.append(_heparin_order(pid, now, f"{pid}-hd-lock", "heparin 5,000 units/mL: 2 mL per lumen as "
                                  "haemodialysis catheter lock after each session",
                                  code=("1659260", "heparin sodium 5000 UNT/ML Injectable Solution"),
                                  dose={"value": 2, "unit": "mL", "system": UCUM, "code": "mL"},
                                  route={"text": "catheter lock"}))
    elif key == "ecmo":
        out.append(_procedure(pid, now, f"{pid}-ecmo", "233573008", "Extracorporeal membrane oxygenation", 2))
    elif key == "hit-acute-plt20-argatroban":
        obs = [r for r in out if r["resourceType"] == "Observation" and "777-3" in _codes(r)]
        latest = max(obs, key=lambda r: r["effectiveDateTime"])
        latest["valueQuantity"] = {**latest["valueQuantity"], "value": 20}
    elif key == "nirmatrelvir-apixaban":
        order = _heparin_order(pid, now, f"{pid}-paxlovid", "nirmatrelvir 300 mg + ritonavir 100 mg by mouth "
                               "every 12 hours for 5 days", code=("2587892", "nirmatrelvir"))
        order["medicationCodeableConcept"]["coding"] += [
            {"system": RXNORM, "code": "85762", "display": "ritonavir"},
            {"system": "http://www.whocc.no/atc", "code": "J05AE30", "display": "nirmatrelvir and ritonavir"}]
        out.append(order)
    elif key == "partial-birth-date":
        patient = next(r for r in out if r["resourceType"] == "Patient")
        patient["birthDate"] = str(now.year - 18)
    return out


# ------------------------------------------------------------------ prefetch from memory

def _search(query: str, resources: list[dict]) -> dict:
    """A FHIR search over `resources`, as much of it as the prefetch templates use."""
    path, _, qs = query.partition("?")
    if "/" in path:
        rtype, rid = path.split("/", 1)
        return next(r for r in resources if r["resourceType"] == rtype and r.get("id") == rid)
    params = dict(parse_qsl(qs))
    found = []
    for r in resources:
        if r["resourceType"] != path:
            continue
        subject = (r.get("subject") or r.get("patient") or {}).get("reference")
        if "patient" in params and subject != f"Patient/{params['patient']}":
            continue
        if "status" in params and r.get("status") != params["status"]:
            continue
        if "code" in params:
            wanted = set(params["code"].split(","))
            have = {f"{c.get('system')}|{c.get('code')}" for c in (r.get("code") or {}).get("coding", [])}
            if not wanted & have:
                continue
        found.append(r)
    count = int(params.get("_count", 100))
    return {"resourceType": "Bundle", "type": "searchset", "total": len(found),
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in found[:count]]}


def prefetch_for(templates: dict[str, str], resources: list[dict], pid: str) -> dict:
    return {key: _search(t.replace("{{context.patientId}}", pid), resources) for key, t in templates.items()}


# ------------------------------------------------------------------ requests

def draft_resource(key: str, pid: str, weight) -> dict:
    d = DRAFT[key]
    resource = load_draft(DRAFT_DIR / d.file, pid, f"{pid}-enc")
    resource.pop("note", None)
    if d.dose is None and d.per_day:   # weight-based template: the per-patient dose (order_matrix.draft_dose)
        resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = draft_dose(d, weight)
        resource["dosageInstruction"][0]["text"] += f" = {draft_dose(d, weight):g}"
    return resource


def build_body(hook: str, pid: str, drafts: list[dict], prefetch: dict | None, fhir_server: str,
               extra_orders: list[dict] = ()) -> dict:
    context = {"userId": "Practitioner/matrix", "patientId": pid, "encounterId": f"{pid}-enc",
               "draftOrders": {"resourceType": "Bundle", "type": "collection",
                               "entry": [{"resource": r} for r in [*drafts, *extra_orders]]}}
    if hook == "order-select":
        context["selections"] = [f"MedicationRequest/{drafts[0]['id']}"]
    body = {"hook": hook, "hookInstance": str(uuid.uuid4()), "fhirServer": fhir_server, "context": context}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def situation_drafts(key: str, situation, resources: list[dict], pid: str, weight) -> tuple[list[dict], list[dict]]:
    """(drafts, other draftOrders entries) of a situation cell."""
    drafts = [draft_resource(k, pid, weight) for k in key.split("+")]
    extra: list[dict] = []
    if situation.key in ("dose-change-redraft", "dose-change-stopped"):
        active = next(r for r in resources if r["resourceType"] == "MedicationRequest" and r.get("status") == "active")
        if situation.key == "dose-change-redraft":
            drafts[0]["priorPrescription"] = {"reference": f"MedicationRequest/{active['id']}"}
        else:
            stopped = copy.deepcopy(active)
            stopped["status"] = "stopped"
            extra.append(stopped)
    return drafts, extra


# ------------------------------------------------------------------ checking a response

def kind_of(card: dict) -> str:
    return ((card.get("source") or {}).get("topic") or {}).get("code", "")


def actions_of(card: dict) -> str:
    """'-' no suggestion; else the action types of the card's suggestions: 'u', 'd', 'cd' (create + delete
    in one suggestion); several suggestions joined with '/' (sorted)."""
    codes = []
    for s in card.get("suggestions") or []:
        types = {a.get("type") for a in s.get("actions") or []}
        codes.append("".join(t[0] for t in ("create", "update", "delete") if t in types) or "-")
    return "/".join(sorted(codes)) if codes else "-"


def describe(cards: list[dict]) -> list[str]:
    return [f"{c.get('indicator')} {kind_of(c)} [{actions_of(c)}]: {c.get('summary')}" for c in cards]


def problems(expected: list[Card], cards: list[dict]) -> list[str]:
    """Why `cards` do not match the cell (empty: they do)."""
    if not expected:
        return [] if not cards else ["expected no card"]
    head = expected[0]
    wrong = []
    top = max((RANK.get(c.get("indicator"), -1) for c in cards), default=-1)
    if top != RANK[head.indicator]:
        wrong.append(f"most severe indicator should be {head.indicator}")
    kinds = KIND_ALIASES[head.kind]
    if not any(kind_of(c) in kinds and c.get("indicator") == head.indicator and actions_of(c) == head.actions
               for c in cards):
        wrong.append(f"no {head.indicator} {head.kind} card with actions {head.actions!r} ({head.why})")
    for other in expected[1:]:
        if not any(kind_of(c) in KIND_ALIASES[other.kind] for c in cards):
            wrong.append(f"no {other.kind} card ({other.why})")
    return wrong


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def matrix_client(tmp_path_factory):
    """The app with the §1a scope defaults stated explicitly (as the integration service does)."""
    tmp = tmp_path_factory.mktemp("order-matrix")
    policy = tmp / "policy.json"
    policy.write_text(json.dumps({"scope.require_covid": True, "scope.require_inpatient": True}))
    app = create_app({"database": str(tmp / "cds.sqlite3"), "policy": str(policy)})
    client = app.test_client()
    services = client.get("/cds-services").get_json()["services"]
    templates = {s["hook"]: s.get("prefetch") or {} for s in services if s["hook"] in PATHS}
    return client, templates


_NOW = datetime.now(timezone.utc).replace(microsecond=0)
_RENDERED: dict[str, list[dict]] = {}


def rendered(pid: str) -> list[dict]:
    if pid not in _RENDERED:
        _RENDERED[pid] = _resources(render(load_template(DEFAULT_DIR / f"{pid}.json"), _NOW))
    return _RENDERED[pid]


def ask(matrix_client, hook: str, pid: str, drafts: list[dict], resources: list[dict], extra=()) -> list[dict]:
    client, templates = matrix_client
    body = build_body(hook, pid, drafts, prefetch_for(templates[hook], resources, pid), "https://ehr.invalid/fhir",
                      list(extra))
    resp = client.post(PATHS[hook], data=json.dumps(body), content_type="application/json")
    assert resp.status_code == 200, resp.get_data(as_text=True)[:800]
    return resp.get_json()["cards"]


# ------------------------------------------------------------------ the tests

def test_readme_table_is_generated():
    """One source: the README's matrix block is order_matrix.readme_block() (python -m
    tests.integration.order_matrix prints it)."""
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "README has no order-matrix block"
    block = text[text.index(BEGIN):text.index(END) + len(END)]
    assert block == readme_block(), "README order-matrix block is stale: regenerate it"


def test_every_draft_template_is_a_coded_medication_request():
    for d in DRAFTS:
        resource = json.loads((DRAFT_DIR / d.file).read_text(encoding="utf-8"))
        assert resource["resourceType"] == "MedicationRequest" and resource["status"] == "draft"
        codings = resource["medicationCodeableConcept"]["coding"]
        assert any(c["system"] == RXNORM for c in codings), d.file
        dosage = resource["dosageInstruction"][0]
        assert dosage["route"]["coding"] and (dosage["timing"].get("repeat")), d.file
        assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", resource["id"]), d.file   # a FHIR id (selections name it)
        dar = dosage["doseAndRate"][0]
        assert ("rateQuantity" in dar) == (d.per_day == 0), d.file


def test_weight_based_doses_at_their_rounding_edges():
    """The per-patient dose the test writes into the two weight-based templates."""
    e, dal = DRAFT["E1kg"], DRAFT["D200"]
    assert [draft_dose(e, w) for w in (64.9, 65, 74.99, 45, 135)] == [60, 70, 70, 50, 140]
    assert [draft_dose(dal, w) for w in (64, 70.49, 90, 135)] == [12800, 14000, 18000, 18000]


CELLS = [pytest.param(p.pid, d.key, id=f"{p.pid}×{d.key}") for p in PATIENTS for d in DRAFTS]


@needs_v3
@pytest.mark.parametrize("pid,key", CELLS)
def test_matrix_cell(matrix_client, pid, key):
    patient = PATIENT[pid]
    cards = ask(matrix_client, "order-select", pid, [draft_resource(key, pid, patient.dosing_weight)], rendered(pid))
    expected = expect(patient, DRAFT[key])
    assert problems(expected, cards) == [], describe(cards)


SITUATION_CELLS = [
    pytest.param(s.key, key, id=f"{s.key}×{key}",
                 marks=[pytest.mark.xfail(strict=True, reason=s.xfail)] if s.xfails(key) else [])
    for s in SITUATIONS for key in s.drafts]


@needs_v3
@pytest.mark.parametrize("skey,key", SITUATION_CELLS)
def test_situation_cell(matrix_client, skey, key):
    situation = next(s for s in SITUATIONS if s.key == skey)
    pid = situation.base
    resources = mutate(skey, rendered(pid), pid, _NOW)
    patient = situation_patient(situation)
    drafts, extra = situation_drafts(key, situation, resources, pid, patient.dosing_weight)
    cards = ask(matrix_client, situation.hook, pid, drafts, resources, extra)
    expected = dict(situation_cells(situation))[key]
    assert problems(expected, cards) == [], describe(cards)
    if situation.hook == "order-sign":   # §19.9: one duplicate card naming both drafts
        assert sum(kind_of(c) == "duplicate_anticoagulant" for c in cards) == 1, describe(cards)
    if skey == "crrt-prefilter-heparin" and key in ("E40", "Hiv"):   # §19.2/§19.4 circuit heparin (extra cards are tolerated)
        assert not any(kind_of(c) == "escalation_warning" or "u" in actions_of(c) for c in cards), describe(cards)


def test_mutations_change_what_they_say():
    """Each mutation touches the data it names (a mutation that changes nothing would make its
    cells a copy of the base patient's)."""
    for s in SITUATIONS:
        if not s.drafts or s.key.startswith(("dose-change", "order-sign")):
            continue
        before = rendered(s.base)
        after = mutate(s.key, before, s.base, _NOW)
        assert after != before, s.key


@needs_v3
def test_every_reference_patient_has_a_row():
    """§19.15: every reference patient × every draft. A patient added to conformance/patients/ needs
    its facts in order_matrix.PATIENTS (and so a row in the README table)."""
    files = {p.stem for p in DEFAULT_DIR.glob("*.json")}
    assert files == {p.pid for p in PATIENTS}
    assert {p.name for p in DRAFT_DIR.glob("*.json")} >= {d.file for d in DRAFTS}


def test_a_renal_replacement_summary_names_the_modality_in_a_sentence(matrix_client):
    """§19.3: on renal replacement the card names the modality, never a CrCl; the summary read
    "Rivaroxaban 10 mg daily at On haemodialysis (...)" (found reading the matrix's cards)."""
    pid = "cov-haemodialysis"
    cards = ask(matrix_client, "order-select", pid, [draft_resource("R10", pid, PATIENT[pid].dosing_weight)],
                rendered(pid))
    summaries = [c["summary"] for c in cards]
    assert any(" on haemodialysis (last session " in s for s in summaries), summaries
    assert not any(" at On " in s or "CrCl" in s for s in summaries), summaries
