"""End to end against a real FHIR server: the synthetic patients loaded into Medplum's FHIR
router, every hook fired through the service over HTTP, with prefetch and with self-fetch.

Expected cards are the hand-worked ones of conformance/patients/README.md.
"""
from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import pytest
import requests

from cds_service.cli import main
from conftest import assert_valid_cds_response
from cds_service.fhir.codes import load_codes
from cds_service.fhir.orders import ingredients_of, medication_codings
from cds_service.integration.fire import fire
from cds_service.integration.fixtures import DEFAULT_DIR, load_fixtures, load_template, template_paths

pytestmark = pytest.mark.integration

DRAFT_40_DAILY = str(DEFAULT_DIR / "draft-orders" / "enoxaparin-40mg-daily.json")
DRAFT_60_Q12H = str(DEFAULT_DIR / "draft-orders" / "enoxaparin-60mg-q12h.json")
RANK = {"info": 0, "warning": 1, "critical": 2}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# patient id -> (most severe indicator, enoxaparin mg suggested or None, anti-Xa ServiceRequest
# suggested). AT_MOST_INFO: nothing above info and no new heparin order (already therapeutic).
AT_MOST_INFO = "at most info"
PATIENT_VIEW = {
    "cov-sic-imv": ("warning", 40, False),
    "cov-ddimer-ward": ("warning", 40, False),
    "cov-bmi-40": ("warning", 80, True),
    "cov-renal-umol": ("warning", 30, True),
    "cov-plt-lt25": ("critical", None, False),
    "cov-hit-history": ("critical", None, False),
    "cov-active-bleed": ("critical", None, False),
    "cov-on-therapeutic": (AT_MOST_INFO, None, False),
    "cov-ddu-norange": ("warning", 40, False),
    "cov-no-weight": ("warning", 40, False),
    "cov-healthy-control": ("info", 40, False),  # no signal: everyone admitted gets prophylaxis
}


@pytest.fixture(scope="module")
def loaded(fhir_server):
    results = load_fixtures(fhir_server)
    assert [r.name for r in results if not r.ok] == [], [r.message for r in results if not r.ok]
    _inpatient_encounters(fhir_server)
    return fhir_server


def _inpatient_encounters(base: str) -> None:
    """v2 scope (clinical rules §1a) by the real rules: each synthetic patient without an
    Encounter gets an in-progress inpatient one (class IMP) on the server (their COVID-19
    Conditions date from 5 days ago, so they are current). A bridge until the synthetic
    patients carry their own Encounters (issue 11, synthetic patients): a no-op for a patient
    that has one."""
    for path in template_paths(DEFAULT_DIR):
        pid = path.stem
        found = requests.get(f"{base}/Encounter", params={"patient": pid}, timeout=10).json()
        if found.get("entry"):
            continue
        encounter = {"resourceType": "Encounter", "id": f"{pid}-enc", "status": "in-progress",
                     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                     "subject": {"reference": f"Patient/{pid}"}}
        resp = requests.put(f"{base}/Encounter/{pid}-enc", json=encounter, timeout=10,
                            headers={"Content-Type": "application/fhir+json"})
        assert resp.status_code in (200, 201), resp.text[:500]


# ---------------------------------------------------------------- helpers

def _ingredients(resource: dict) -> set[str]:
    """Ingredients named by the codings (RxNorm IN or SCD, ATC), as the service reads orders."""
    return {name for name, _cls in ingredients_of(medication_codings(resource, {}), load_codes())}


def _dose(resource: dict) -> tuple[float | None, float | None]:
    """(mg per dose, doses per day) of a MedicationRequest suggestion."""
    dosage = (resource.get("dosageInstruction") or [{}])[0]
    quantity = ((dosage.get("doseAndRate") or [{}])[0].get("doseQuantity") or {})
    repeat = (dosage.get("timing") or {}).get("repeat") or {}
    hours = {"h": 1, "d": 24}.get(repeat.get("periodUnit"))
    per_day = repeat.get("frequency", 1) * 24 / (repeat["period"] * hours) if hours and repeat.get("period") else None
    mg = quantity.get("value") if quantity.get("unit") == "mg" or quantity.get("code") == "mg" else None
    return mg, per_day


def _actions(cards: list[dict]) -> list[dict]:
    return [a for c in cards for s in c.get("suggestions") or [] for a in s.get("actions") or []]


def _normalised(payload) -> list[str]:
    """The response as lines of JSON, blanking what differs between two calls by design: every
    UUID (cards, suggestions, new resource ids) and authoredOn (the call time) of suggestions."""
    def blank(value):
        if isinstance(value, dict):
            return {k: "<call time>" if k == "authoredOn" else blank(v) for k, v in value.items()}
        if isinstance(value, list):
            return [blank(v) for v in value]
        return value
    text = json.dumps(blank(payload), sort_keys=True, indent=1, ensure_ascii=False)
    return _UUID.sub("<uuid>", text).splitlines()


def assert_same_cards(a, b) -> None:
    left, right = _normalised(a), _normalised(b)
    assert left == right, "\n".join(difflib.unified_diff(left, right, "prefetch", "self-fetch", lineterm="", n=1))


def _fire_ok(*args, **kwargs) -> list[dict]:
    fired = fire(*args, **kwargs)
    assert fired.status == 200, fired.response
    assert_valid_cds_response(fired.response)
    return fired.response["cards"]


# ---------------------------------------------------------------- loading

def test_loading_is_idempotent_and_searchable(loaded):
    # A second load PUTs the same ids: no duplicate appears.
    assert all(r.ok for r in load_fixtures(loaded))
    for path in template_paths(DEFAULT_DIR):
        template = load_template(path)
        pid = path.stem
        expected = sum(e["resource"]["resourceType"] == "Observation" for e in template["entry"])
        bundle = requests.get(f"{loaded}/Observation", params={"patient": pid, "_count": 500}, timeout=10).json()
        assert len(bundle.get("entry", [])) == expected, pid
        patient = requests.get(f"{loaded}/Patient/{pid}", timeout=10).json()
        assert patient["name"][0]["given"]


def test_prefetch_templates_run_on_a_real_fhir_server(loaded, cds_service_url):
    """The service's own templates (token lists, _sort=-date) answered by real FHIR search."""
    fired = fire("patient-view", "cov-sic-imv", loaded, service_url=cds_service_url)
    assert fired.prefetch_omitted == {}
    prefetch = fired.request["prefetch"]
    assert prefetch["patient"]["id"] == "cov-sic-imv"
    labs = [e["resource"] for e in prefetch["labs"]["entry"]]
    assert {r["id"] for r in labs} == {f"cov-sic-imv-{k}" for k in
                                       ("plt-prev", "plt", "inr", "pt", "fib", "ddimer", "creat", "bili", "hb")}
    dates = [r["effectiveDateTime"] for r in labs]
    assert dates == sorted(dates, reverse=True), "_sort=-date"
    assert {e["resource"]["id"] for e in prefetch["bedside"]["entry"]} == \
        {"cov-sic-imv-pao2", "cov-sic-imv-fio2", "cov-sic-imv-map"}
    assert {e["resource"]["id"] for e in prefetch["body"]["entry"]} == {"cov-sic-imv-weight", "cov-sic-imv-height"}
    assert [e["resource"]["id"] for e in prefetch["procedures"]["entry"]] == ["cov-sic-imv-imv"]
    assert prefetch["medications"].get("entry", []) == []
    # v2 keys (§10): the platelet counts come again under platelet_trend; the others are searchsets
    # the real server answers (encounters, statements and covid_tests hold what the patient has).
    trend = [e["resource"] for e in prefetch["platelet_trend"]["entry"]]
    assert {r["id"] for r in trend} == {"cov-sic-imv-plt-prev", "cov-sic-imv-plt"}
    assert [r["effectiveDateTime"] for r in trend] == sorted((r["effectiveDateTime"] for r in trend), reverse=True)
    for key in ("encounters", "statements", "covid_tests"):
        assert prefetch[key]["resourceType"] == "Bundle" and prefetch[key]["type"] == "searchset", key
    on_therapy = fire("patient-view", "cov-on-therapeutic", loaded, service_url=cds_service_url)
    assert [e["resource"]["id"] for e in on_therapy.request["prefetch"]["medications"]["entry"]] == \
        ["cov-on-therapeutic-enox-therapeutic"]


# ---------------------------------------------------------------- patient-view

@pytest.mark.parametrize("pid", sorted(PATIENT_VIEW))
def test_patient_view_same_cards_with_prefetch_and_self_fetch(loaded, cds_service_url, pid):
    # One user per call: the same info card is shown to one user at most once in 24 h (§18.3).
    with_prefetch = _fire_ok("patient-view", pid, loaded, service_url=cds_service_url,
                             user_id="Practitioner/e2e-prefetch")
    self_fetched = _fire_ok("patient-view", pid, loaded, service_url=cds_service_url, prefetch=False,
                            user_id="Practitioner/e2e-self-fetch")
    assert_same_cards(with_prefetch, self_fetched)

    indicator, dose_mg, anti_xa = PATIENT_VIEW[pid]
    top = max((c["indicator"] for c in with_prefetch), key=RANK.__getitem__, default=None)
    creates = [a["resource"] for a in _actions(with_prefetch) if a["type"] == "create"]
    heparins = [r for r in creates if r["resourceType"] == "MedicationRequest"
                and _ingredients(r) & {"heparin", "enoxaparin", "dalteparin", "tinzaparin"}]
    if indicator == AT_MOST_INFO:
        assert top in (None, "info") and not heparins
        return
    assert top == indicator, [c["summary"] for c in with_prefetch]
    if dose_mg is None:
        assert heparins == []
    else:
        assert [(_ingredients(r), _dose(r)) for r in heparins] == [({"enoxaparin"}, (dose_mg, 1))]
        assert heparins[0]["status"] == "draft"
        assert heparins[0]["subject"]["reference"] == f"Patient/{pid}"
    anti_xa_orders = [r for r in creates if r["resourceType"] == "ServiceRequest"]
    assert bool(anti_xa_orders) == anti_xa


def test_hit_card_offers_fondaparinux_not_heparin(loaded, cds_service_url):
    cards = _fire_ok("patient-view", "cov-hit-history", loaded, service_url=cds_service_url)
    text = " ".join(c["summary"] + " " + c.get("detail", "") for c in cards).lower()
    assert "fondaparinux" in text and "2.5 mg" in text


# ---------------------------------------------------------------- order-select dose corrections

def _updates(cards: list[dict], draft_id: str) -> list[dict]:
    return [a["resource"] for a in _actions(cards)
            if a["type"] == "update" and a["resource"].get("id") == draft_id]


@pytest.mark.parametrize("pid, draft, mg, per_day", [
    ("cov-bmi-40", DRAFT_40_DAILY, 80, 1),        # BMI 44.1: 40 mg -> 80 mg
    ("cov-renal-umol", DRAFT_40_DAILY, 30, 1),    # CrCl 16.7: 40 mg -> 30 mg
    ("cov-renal-umol", DRAFT_60_Q12H, 60, 1),     # 1 mg/kg q12h at CrCl < 30 -> q24h
])
def test_order_select_updates_the_draft_dose(loaded, cds_service_url, pid, draft, mg, per_day):
    draft_id = json.loads(Path(draft).read_text())["id"]
    cards = _fire_ok("order-select", pid, loaded, service_url=cds_service_url, draft_paths=[draft])
    assert max(RANK[c["indicator"]] for c in cards) == RANK["warning"]
    updates = _updates(cards, draft_id)
    assert updates, [c["summary"] for c in cards]
    for resource in updates:
        assert _dose(resource) == (mg, per_day)
        assert resource["status"] == "draft" and resource["subject"]["reference"] == f"Patient/{pid}"
        assert _ingredients(resource) == {"enoxaparin"}


def test_order_select_hit_switches_to_fondaparinux(loaded, cds_service_url):
    cards = _fire_ok("order-select", "cov-hit-history", loaded, service_url=cds_service_url,
                     draft_paths=[DRAFT_40_DAILY])
    # v2 §18.4: HIT history (undated or > 100 days) + heparin draft is a WARNING, with the switch
    # offered when §11 row 1 gives fondaparinux (acute/recent HIT would be critical, no switch).
    assert max(RANK[c["indicator"]] for c in cards) == RANK["warning"]
    switches = [s for c in cards for s in c.get("suggestions") or []
                if [a["type"] for a in s.get("actions") or []][:2] == ["create", "delete"]]
    assert switches, "HIT: create fondaparinux, then delete the enoxaparin draft"
    create, delete = switches[0]["actions"][:2]
    assert _ingredients(create["resource"]) == {"fondaparinux"}
    assert _dose(create["resource"]) == (2.5, 1)
    assert delete["resourceId"] == "MedicationRequest/draft-enox-40-daily"
    assert "resource" not in delete


def test_order_select_right_dose_gives_no_card(loaded, cds_service_url):
    assert _fire_ok("order-select", "cov-healthy-control", loaded, service_url=cds_service_url,
                    draft_paths=[DRAFT_40_DAILY]) == []


def test_order_sign_checks_every_draft(loaded, cds_service_url):
    cards = _fire_ok("order-sign", "cov-bmi-40", loaded, service_url=cds_service_url, draft_paths=[DRAFT_40_DAILY])
    assert [_dose(r) for r in _updates(cards, "draft-enox-40-daily")] == [(80, 1)]


# ---------------------------------------------------------------- the CLI over the real stack

def test_fire_cli_renders_cards(loaded, cds_service_url, capsys):
    code = main(["fire", "patient-view", "--patient", "cov-bmi-40", "--fhir-server", loaded,
                 "--service-url", cds_service_url])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("coagulopathy-risk (patient-view) for Patient/cov-bmi-40, 13 prefetch keys")
    assert re.search(r"^\[\d\] WARNING: ", out, re.M)
    assert "80 mg" in out


def test_fire_cli_reports_a_prefetch_key_it_could_not_fill(loaded, cds_service_url, capsys):
    code = main(["fire", "patient-view", "--patient", "no-such-patient", "--fhir-server", loaded,
                 "--service-url", cds_service_url])
    captured = capsys.readouterr()
    assert "prefetch 'patient' omitted (HTTP 404" in captured.err
    # The service reads the 404 as "no such resource" (null), so it answers, with nothing to go on.
    assert code == 0
    assert not re.search(r"^\[\d\] (WARNING|CRITICAL)", captured.out, re.M)
