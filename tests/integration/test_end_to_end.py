"""End to end against a real FHIR server: the synthetic patients loaded into Medplum's FHIR
router, every hook fired through the service over HTTP, with prefetch and with self-fetch.

Expected results are the hand-worked ones of conformance/patients/README.md, held in one table,
tests/integration/expected_patients.py: each patient's assessment (read back from the audit
row of the call) is checked for every patient, by prefetch and by self-fetch; the v2 cards
(clinical rules §18) once `cards_v2_merged()` says they are in.
"""
from __future__ import annotations

import difflib
import json
import re
import sqlite3
from pathlib import Path

import pytest
import requests

from cds_service.cli import main
from conftest import assert_valid_cds_response
from cds_service.fhir.codes import load_codes
from cds_service.fhir.orders import ingredients_of, medication_codings
from cds_service.fhir.templates import prefetch_templates
from cds_service.cli.integration.fire import fire
from cds_service.cli.integration.fixtures import DEFAULT_DIR, load_fixtures, load_template, template_paths
from integration.expected_patients import CARD_NEEDS, EXPECTED, ORDER_SELECT, cards_v2_merged, mismatches

pytestmark = pytest.mark.integration

CARDS_V2 = cards_v2_merged()
NEEDS_CARDS_V2 = pytest.mark.skipif(not CARDS_V2, reason="cards v2 not merged (cds_service.hooks.CARDS_VERSION < 2)")
DRAFTS = DEFAULT_DIR / "draft-orders"

DRAFT_40_DAILY = str(DEFAULT_DIR / "draft-orders" / "enoxaparin-40mg-daily.json")
DRAFT_60_Q12H = str(DEFAULT_DIR / "draft-orders" / "enoxaparin-60mg-q12h.json")
RANK = {"info": 0, "warning": 1, "critical": 2}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# patient id -> (most severe indicator, enoxaparin mg suggested or None, anti-Xa ServiceRequest
# suggested). AT_MOST_INFO: nothing above info and no new heparin order (already therapeutic).
AT_MOST_INFO = "at most info"
PATIENT_VIEW = {
    "cov-sic-imv": ("warning", 40, False),
    "cov-ddimer-ward": ("warning", (70, 40), False),   # v2 therapeutic candidate: 70 mg q12h or 40 mg daily
    "cov-bmi-40": ("warning", 80, True),
    "cov-renal-umol": ("warning", 30, True),
    "cov-plt-lt25": ("warning", None, False),        # v2 §18.1: contraindicated, nothing active: warning
    "cov-hit-history": ("warning", None, False),     # v2: heparin_avoidance (fondaparinux create)
    "cov-active-bleed": ("warning", None, False),
    "cov-on-therapeutic": (AT_MOST_INFO, None, False),
    "cov-ddu-norange": ("warning", (70, 40), False),
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
    return _fired_ok(*args, **kwargs).response["cards"]


def _fired_ok(*args, **kwargs):
    fired = fire(*args, **kwargs)
    assert fired.status == 200, fired.response
    assert_valid_cds_response(fired.response)
    return fired


def _audit(database: Path, hook_instance: str) -> tuple[dict | None, list[tuple[str, str]]]:
    """(assessment, [(card kind, indicator), ...]) the service recorded for one hook call."""
    conn = sqlite3.connect(database)
    try:
        row = conn.execute("SELECT id, assessment FROM hook_call WHERE hook_instance = ?", (hook_instance,)).fetchone()
        assert row is not None, f"no audit row for {hook_instance}"
        cards = conn.execute("SELECT kind, indicator FROM card WHERE call_id = ?", (row[0],)).fetchall()
    finally:
        conn.close()
    return (json.loads(row[1]) if row[1] else None), [tuple(c) for c in cards]


_PATIENT_VIEW_CALLS: dict[str, dict] = {}


def _patient_view_both_ways(fhir_server: str, service_url: str, database: Path, pid: str) -> dict:
    """patient-view for `pid` with the context's encounterId, once with the prefetch the service
    asks for (resolved on the FHIR server) and once with none (self-fetch); cached per patient."""
    if pid not in _PATIENT_VIEW_CALLS:
        calls = {}
        for mode, prefetch in (("prefetch", True), ("self-fetch", False)):
            # One user per call: an info card is shown once per user, patient and encounter per
            # cards.info_repeat_hours (§18.3), so a second call by the same user would hide it.
            fired = _fired_ok("patient-view", pid, fhir_server, service_url=service_url, prefetch=prefetch,
                              encounter_id=f"{pid}-enc", user_id=f"Practitioner/e2e-v2-{mode}")
            if prefetch:
                assert fired.prefetch_omitted == {}, fired.prefetch_omitted
            assessment, cards = _audit(database, fired.request["hookInstance"])
            calls[mode] = {"cards": fired.response["cards"], "assessment": assessment, "audit_cards": cards}
        _PATIENT_VIEW_CALLS[pid] = calls
    return _PATIENT_VIEW_CALLS[pid]


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


def _ids(searchset: dict) -> list[str]:
    return [e["resource"]["id"] for e in searchset.get("entry", [])]


def test_v2_prefetch_keys_run_on_a_real_fhir_server(loaded, cds_service_url):
    """encounters, statements, covid_tests and platelet_trend (data requirements §10) as the
    service declares them, answered by real FHIR search."""
    assert {"encounters", "statements", "covid_tests", "platelet_trend"} <= set(prefetch_templates())
    ward = fire("patient-view", "cov-ward-therapeutic", loaded, service_url=cds_service_url).request["prefetch"]
    assert _ids(ward["encounters"]) == ["cov-ward-therapeutic-enc"]
    assert _ids(ward["covid_tests"]) == ["cov-ward-therapeutic-sars-cov-2-pcr"]
    assert _ids(ward["statements"]) == []
    doac = fire("patient-view", "cov-home-doac", loaded, service_url=cds_service_url).request["prefetch"]
    assert _ids(doac["statements"]) == ["cov-home-doac-apixaban"]
    assert _ids(doac["medications"]) == []
    fall = fire("patient-view", "cov-plt-fall", loaded, service_url=cds_service_url).request["prefetch"]
    assert _ids(fall["platelet_trend"]) == [f"cov-plt-fall-{k}" for k in ("plt", "plt-d2", "plt-d4", "plt-d6", "plt-d8")]
    assert len(_ids(fall["administrations"])) == 7
    non_covid = fire("patient-view", "cov-non-covid", loaded, service_url=cds_service_url).request["prefetch"]
    assert _ids(non_covid["covid_tests"]) == ["cov-non-covid-sars-cov-2-pcr"]   # negative: read, not evidence


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

@pytest.mark.parametrize("pid", sorted(EXPECTED))
def test_patient_view_assessment_by_prefetch_and_self_fetch(loaded, cds_service_url, cds_database, pid):
    """Every patient's assessment-level expectations (scope, pathway, regimen, therapeutic dose,
    contraindications, anti-Xa) hold whether the data came by prefetch or by self-fetch, and
    both ways give the same cards. Out of scope: no card at all (clinical rules §1a)."""
    calls = _patient_view_both_ways(loaded, cds_service_url, cds_database, pid)
    for mode, call in calls.items():
        assert call["assessment"] is not None, mode
        assert mismatches(pid, call["assessment"]) == {}, f"{pid} by {mode}: (actual, expected)"
    assert_same_cards(calls["prefetch"]["cards"], calls["self-fetch"]["cards"])
    if not EXPECTED[pid]["in_scope"]:
        assert calls["prefetch"]["cards"] == []


@NEEDS_CARDS_V2
@pytest.mark.parametrize("pid", [
    pytest.param(pid, marks=pytest.mark.xfail(strict=True, reason=CARD_NEEDS[pid])) if pid in CARD_NEEDS else pid
    for pid in sorted(EXPECTED)])
def test_patient_view_card_v2(loaded, cds_service_url, cds_database, pid):
    """The one §18.1 catalogue card (kind and indicator, as the audit records them), or none."""
    expected = EXPECTED[pid]["card"]
    for mode, call in _patient_view_both_ways(loaded, cds_service_url, cds_database, pid).items():
        assert call["audit_cards"] == ([expected] if expected else []), \
            (mode, [c["summary"] for c in call["cards"]])
        for card in call["cards"]:
            assert len(card["summary"]) < 140


def test_encounter_id_decides_scope(loaded, cds_service_url, cds_database):
    """§1a: an encounterId that matches no Encounter means not inpatient; without one, any current
    inpatient Encounter of the patient qualifies."""
    fired = _fired_ok("patient-view", "cov-ddimer-ward", loaded, service_url=cds_service_url,
                      encounter_id="no-such-encounter")
    assessment, _ = _audit(cds_database, fired.request["hookInstance"])
    assert assessment["scope"] == {"in_scope": False, "reasons": ["not_inpatient"]}
    assert fired.response["cards"] == []
    fired = _fired_ok("patient-view", "cov-ddimer-ward", loaded, service_url=cds_service_url, prefetch=False)
    assessment, _ = _audit(cds_database, fired.request["hookInstance"])
    assert assessment["scope"] == {"in_scope": True, "reasons": []}
    assert fired.response["cards"]


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
    elif isinstance(dose_mg, tuple):   # therapeutic candidate: the two at-most-one alternatives
        therapeutic, prophylactic = dose_mg
        assert sorted(_dose(r) for r in heparins) == sorted([(therapeutic, 2), (prophylactic, 1)])
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


# ---------------------------------------------------------------- order-select (the ORDER_SELECT table)

def _updates(cards: list[dict], draft_id: str) -> list[dict]:
    return [a["resource"] for a in _actions(cards)
            if a["type"] == "update" and a["resource"].get("id") == draft_id]


def _medication_suggestions(cards: list[dict]) -> list[dict]:
    return [a["resource"] for a in _actions(cards) if a["type"] in ("create", "update")
            and a["resource"].get("resourceType") == "MedicationRequest"]


def _order_params():
    for pid, draft, spec in ORDER_SELECT:
        marks = [NEEDS_CARDS_V2] if spec["when"] == "cards_v2" else []
        yield pytest.param(pid, draft, spec, id=f"{pid}+{draft.removesuffix('.json')}-{spec['when']}", marks=marks)


@pytest.mark.parametrize("pid, draft, spec", list(_order_params()))
def test_order_select(loaded, cds_service_url, cds_database, pid, draft, spec):
    path = str(DRAFTS / draft)
    draft_id = json.loads(Path(path).read_text())["id"]
    fired = _fired_ok("order-select", pid, loaded, service_url=cds_service_url, draft_paths=[path],
                      encounter_id=f"{pid}-enc")
    self_fetched = _fire_ok("order-select", pid, loaded, service_url=cds_service_url, draft_paths=[path],
                            encounter_id=f"{pid}-enc", prefetch=False)
    cards = fired.response["cards"]
    assert_same_cards(cards, self_fetched)
    summaries = [c["summary"] for c in cards]
    if "indicator" in spec:
        if spec["indicator"] is None:
            assert cards == [], summaries
        else:
            assert max((c["indicator"] for c in cards), key=RANK.__getitem__, default=None) == spec["indicator"], \
                summaries
    if "at_most" in spec:
        assert all(RANK[c["indicator"]] <= RANK[spec["at_most"]] for c in cards), summaries
    if "update" in spec:
        updates = _updates(cards, draft_id)
        assert updates, summaries
        for resource in updates:
            assert _dose(resource) == spec["update"]
            assert resource["status"] == "draft" and resource["subject"]["reference"] == f"Patient/{pid}"
            assert _ingredients(resource) == {"enoxaparin"}
    suggested = set().union(*(_ingredients(r) for r in _medication_suggestions(cards)))
    assert spec.get("suggests", set()) <= suggested, summaries
    assert not (spec.get("never", set()) & suggested), summaries
    if spec.get("delete_draft"):
        assert any(a["type"] == "delete" and a.get("resourceId") == f"MedicationRequest/{draft_id}"
                   for a in _actions(cards)), summaries
    if spec.get("kinds"):
        _, audit_cards = _audit(cds_database, fired.request["hookInstance"])
        assert spec["kinds"] <= {kind for kind, _ in audit_cards}, audit_cards
    for word in spec.get("summary_without", ()):
        assert not [s for s in summaries if word.lower() in s.lower()], summaries


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


def test_order_sign_checks_every_draft(loaded, cds_service_url):
    cards = _fire_ok("order-sign", "cov-bmi-40", loaded, service_url=cds_service_url, draft_paths=[DRAFT_40_DAILY])
    assert [_dose(r) for r in _updates(cards, "draft-enox-40-daily")] == [(80, 1)]


# ---------------------------------------------------------------- the CLI over the real stack

def test_fire_cli_renders_cards(loaded, cds_service_url, capsys):
    code = main(["fire", "patient-view", "--patient", "cov-bmi-40", "--fhir-server", loaded,
                 "--service-url", cds_service_url])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"coagulopathy-risk (patient-view) for Patient/cov-bmi-40, "
                          f"{len(prefetch_templates())} prefetch keys")
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
