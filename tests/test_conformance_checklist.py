"""CDS Hooks notes §13, the black-box conformance checklist: one test per item (1-22, 25-27),
through the Flask test client, FHIR mocked with `responses`. Items 23, 24 and 28 (JWT, token
hygiene) are in tests/security/, 29 (TLS) is a deployment matter; the p95 half of item 22 is
measured by the benchmark, not here (no timed assertions in unit tests)."""
from __future__ import annotations

import copy
import json
import re
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import responses
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from cds_service import create_app
from cds_service.cli.examples import SCENARIOS, build as build_example
from conftest import assert_no_empty, assert_operation_outcome, in_scope

sys.path.insert(0, str(Path(__file__).resolve().parent / "hooks"))
from hook_helpers import FakeFhir, db_rows, queries, strip_uuids  # noqa: E402


def build(name, now=None):
    """The example body in v2 scope (conftest.in_scope)."""
    return in_scope(build_example(name, now))

NOW = datetime.now(timezone.utc)
PATHS = {"patient-view": "/cds-services/coagulopathy-risk",
         "order-select": "/cds-services/anticoagulant-order-check",
         "order-sign": "/cds-services/anticoagulant-order-sign"}
SERVICES = {"coagulopathy-risk": "patient-view", "anticoagulant-order-check": "order-select",
            "anticoagulant-order-sign": "order-sign"}
ENDPOINTS = ["/cds-services"] + [f"/cds-services/{s}" for s in SERVICES] \
    + [f"/cds-services/{s}/feedback" for s in SERVICES]
TOKENS_2_0 = {"context.patientId", "context.userId", "context.encounterId", "userPractitionerId",
              "userPractitionerRoleId", "userPatientId", "userRelatedPersonId"}
HTTP = re.compile(r"^https?://[^\s/]+")
RESOURCE_ID = re.compile(r"^[A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")
ACCESS_TOKEN = "conformance-access-token-1c4e"
BASE = "http://127.0.0.1:8080/fhir"


def _post(client, body, path=None):
    return client.post(path or PATHS[body["hook"]], data=json.dumps(body), content_type="application/json")


def _ok(client, body) -> dict:
    resp = _post(client, body)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    return resp.get_json()


@pytest.fixture(scope="module")
def all_responses(tmp_path_factory):
    """(request, response) for every example scenario: the cards items 10-17 look at."""
    app = create_app({"database": str(tmp_path_factory.mktemp("conf") / "cds.sqlite3")})
    client = app.test_client()
    out = []
    for name in SCENARIOS:
        body = build(name, NOW)
        out.append((body, _ok(client, body)))
    assert sum(len(p["cards"]) for _, p in out) >= 10
    return out


def _cards(all_responses):
    return [(body, card) for body, payload in all_responses for card in payload["cards"]]


def _suggestions(all_responses):
    return [(body, card, s) for body, card in _cards(all_responses) for s in card.get("suggestions", ())]


def _drafts(body) -> set[str]:
    bundle = body["context"].get("draftOrders") or {}
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])}


def _self_fetch_body(name, *, drop=None, token=True):
    """Example `name` with prefetch keys `drop` (default: all) removed, and the fake server's
    answers for them (the values the full prefetch held)."""
    body = build(name, NOW)
    full = copy.deepcopy(body["prefetch"])
    for key in (drop or list(full)):
        del body["prefetch"][key]
    if token:
        body["fhirAuthorization"] = {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "user/*.read", "subject": "Practitioner/example"}
    return body, full


def _answers(app, body, full):
    service = next(s for s in app.extensions["cds"].registry if s.hook == body["hook"])
    q = queries(service, body["context"])
    return {q[k]: v for k, v in full.items()}


# -- discovery ---------------------------------------------------------------------------------------
def test_item_01_discovery_returns_services(client):
    resp = client.get("/cds-services")
    assert resp.status_code == 200
    services = resp.get_json()["services"]
    assert isinstance(services, list) and services


def test_item_02_service_fields_and_hooks(client):
    services = client.get("/cds-services").get_json()["services"]
    for s in services:
        for field in ("hook", "id", "description", "title"):
            assert isinstance(s[field], str) and s[field].strip(), field
    assert {s["id"]: s["hook"] for s in services} == SERVICES


def test_item_03_prefetch_templates_use_only_2_0_tokens(client):
    for s in client.get("/cds-services").get_json()["services"]:
        for template in s["prefetch"].values():
            tokens = re.findall(r"{{\s*([^}]*?)\s*}}", template)
            assert tokens and set(tokens) <= TOKENS_2_0, template
            assert "today()" not in template
            assert "(" not in template, f"FHIRPath in {template}"


# -- CORS, content type, routing, validation ---------------------------------------------------------------
@pytest.mark.parametrize("path", ENDPOINTS)
def test_item_04_preflight_without_authorization(path, tmp_path):
    app = create_app({"database": str(tmp_path / "a.sqlite3"), "auth": "required",
                      "trusted_issuers": str(_trust_file(tmp_path))})
    resp = app.test_client().options(path, headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert 200 <= resp.status_code < 300
    assert resp.headers.get("Access-Control-Allow-Origin")
    methods = {m.strip().upper() for m in resp.headers["Access-Control-Allow-Methods"].split(",")}
    headers = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"GET", "POST", "OPTIONS"} <= methods and {"authorization", "content-type"} <= headers


def _trust_file(tmp_path) -> Path:
    jwk = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key()))
    path = tmp_path / "trust.json"
    path.write_text(json.dumps({"https://ehr.example.org": {"jwks": {"keys": [{**jwk, "kid": "k1"}]}}}))
    return path


def test_item_05_every_response_has_cors_and_json(client, tmp_path):
    body = build("sic-positive", NOW)
    secured = create_app({"database": str(tmp_path / "s.sqlite3"), "auth": "required",
                          "trusted_issuers": str(_trust_file(tmp_path))}).test_client()
    big = create_app({"database": str(tmp_path / "b.sqlite3"), "max_body_bytes": 1000}).test_client()
    no_server = {k: v for k, v in build("sic-positive", NOW).items() if k != "fhirServer"}
    del no_server["prefetch"]["labs"]
    responses_ = {
        200: [client.get("/cds-services"), client.get("/healthz"), _post(client, body),
              client.post(PATHS["patient-view"] + "/feedback", json={
                  "card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": "2025-01-15T12:00:00Z",
                  "acceptedSuggestions": [{"id": str(uuid.uuid4())}]})],
        400: [_post(client, "{not json", PATHS["patient-view"])],
        401: [_post(secured, body)],
        404: [_post(client, body, "/cds-services/nope"), client.get("/nope")],
        405: [client.delete("/cds-services")],
        412: [_post(client, no_server)],
        413: [_post(big, body)],
        415: [client.post(PATHS["patient-view"], data="x", content_type="text/plain")],
    }
    for status, resps in responses_.items():
        for resp in resps:
            assert resp.status_code == status, (status, resp.get_data(as_text=True)[:300])
            assert resp.headers.get("Access-Control-Allow-Origin"), status
            assert resp.mimetype == "application/json", (status, resp.mimetype)
            resp.get_json()


def test_item_06_unknown_service_is_404(client):
    assert_operation_outcome(_post(client, build("sic-positive", NOW), "/cds-services/unknown-service"), 404)


@pytest.mark.parametrize("change", ["invalid-json", "no-hook", "no-hookInstance", "no-context", "hook-mismatch"])
def test_item_07_bad_requests_are_400(client, change):
    body = build("sic-positive", NOW)
    if change == "invalid-json":
        resp = _post(client, json.dumps(body)[:-3], PATHS["patient-view"])
    elif change == "hook-mismatch":
        body["hook"] = "order-select"
        resp = _post(client, body, PATHS["patient-view"])
    else:
        del body[change.removeprefix("no-")]
        resp = _post(client, body, PATHS["patient-view"])
    assert_operation_outcome(resp, 400)


@pytest.mark.parametrize("name,field", [("sic-positive", "patientId"), ("sic-positive", "userId"),
                                        ("bmi-42", "selections"), ("bmi-42", "draftOrders"),
                                        ("sign-bmi-42", "draftOrders")])
def test_item_08_missing_context_fields_are_400(client, name, field):
    body = build(name, NOW)
    del body["context"][field]
    assert_operation_outcome(_post(client, body), 400)


# -- cards ---------------------------------------------------------------------------------------------
def test_item_09_full_prefetch_gives_cards_and_no_advice_is_exactly_empty(client):
    assert _ok(client, build("sic-positive", NOW))["cards"]
    assert _ok(client, build("nothing-to-say", NOW)) == {"cards": []}
    assert _ok(client, build("dose-ok", NOW)) == {"cards": []}


def test_item_10_card_summary_indicator_source(all_responses):
    for _, card in _cards(all_responses):
        assert isinstance(card["summary"], str) and 1 <= len(card["summary"]) <= 139
        assert card["indicator"] in ("info", "warning", "critical")
        assert isinstance(card["source"]["label"], str) and card["source"]["label"].strip()
        for key in ("url", "icon"):
            if key in card["source"]:
                assert HTTP.match(card["source"][key]), card["source"][key]


def test_item_11_card_uuids_are_uuids_and_unique(all_responses):
    for _, payload in all_responses:
        ids = [c["uuid"] for c in payload["cards"]]
        assert len(ids) == len(set(ids))
        for i in ids:
            uuid.UUID(i)


def test_item_12_no_null_or_empty_values(all_responses):
    for _, payload in all_responses:
        assert set(payload) == {"cards"}
        for card in payload["cards"]:
            assert_no_empty(card)


def test_item_13_selection_behavior_iff_suggestions(all_responses):
    for _, card in _cards(all_responses):
        if "suggestions" in card:
            assert card["selectionBehavior"] in ("at-most-one", "any")
        else:
            assert "selectionBehavior" not in card


def test_item_14_suggestion_label_uuid_actions(all_responses):
    seen = 0
    for _, card in _cards(all_responses):
        suggestions = card.get("suggestions", [])
        for s in suggestions:
            seen += 1
            assert isinstance(s["label"], str) and s["label"].strip()
            uuid.UUID(s["uuid"])
            if "actions" in s:
                assert s["actions"]
        if card.get("selectionBehavior") == "at-most-one":
            assert sum(1 for s in suggestions if s.get("isRecommended") is True) <= 1
    assert seen >= 5


def test_item_15_action_shapes(all_responses):
    kinds = set()
    for _, _, s in _suggestions(all_responses):
        for action in s.get("actions", ()):
            kinds.add(action["type"])
            assert action["type"] in ("create", "update", "delete")
            assert isinstance(action["description"], str) and action["description"].strip()
            if action["type"] == "delete":
                assert RESOURCE_ID.match(action["resourceId"]) and "resource" not in action
            else:
                assert action["resource"]["resourceType"]
    assert kinds == {"create", "update", "delete"}


def test_item_16_order_hook_targets_are_draft_orders(all_responses):
    checked = 0
    for body, _, s in _suggestions(all_responses):
        if body["hook"] == "patient-view":
            continue
        drafts = _drafts(body)
        created = []
        for action in s.get("actions", ()):
            if action["type"] == "create":
                created.append(action["resource"]["resourceType"])
            elif action["type"] == "update":
                checked += 1
                assert f"{action['resource']['resourceType']}/{action['resource']['id']}" in drafts
            else:
                checked += 1
                assert action["resourceId"] in drafts
                assert action["resourceId"].split("/")[0] in created, "delete paired with a create"
    assert checked >= 2


def test_item_17_override_reasons_and_links(all_responses):
    for _, card in _cards(all_responses):
        for reason in card.get("overrideReasons", ()):
            assert reason["code"] and reason["system"] and reason["display"]
        for link in card.get("links", ()):
            assert link["label"] and HTTP.match(link["url"]) and link["type"] in ("absolute", "smart")
            assert ("appContext" not in link) or link["type"] == "smart"


# -- prefetch and FHIR access --------------------------------------------------------------------------
@pytest.mark.parametrize("token", [True, False])
def test_item_18_absent_keys_are_fetched_with_the_same_cards(app, client, token):
    expected = strip_uuids(_ok(client, build("sic-positive", NOW)))
    body, full = _self_fetch_body("sic-positive", token=token)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeFhir(rsps, _answers(app, body, full))
        got = strip_uuids(_ok(client, body))
    assert got == expected
    assert fake.headers
    for headers in fake.headers:
        if token:
            assert headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
        else:
            assert "Authorization" not in headers


@pytest.mark.parametrize("server", ["missing", "unreachable", "not-allowlisted"])
def test_item_19_required_key_unobtainable_is_412(client, server):
    body, _ = _self_fetch_body("sic-positive", drop=["labs"])
    if server == "missing":
        del body["fhirServer"]
        del body["fhirAuthorization"]     # fhirAuthorization requires fhirServer
    elif server == "not-allowlisted":
        body["fhirServer"] = "https://fhir.elsewhere.example.org/r4"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:   # nothing answers
        resp = _post(client, body)
        if server != "unreachable":
            assert not rsps.calls, "no request to a missing or non-allowlisted server"
    body_ = assert_operation_outcome(resp, 412)
    assert ACCESS_TOKEN not in json.dumps(body_)


def test_item_20_null_key_is_no_data_and_empty_searchset_gives_no_card(client):
    body = build("sic-positive", NOW)
    body["prefetch"]["allergies"] = None
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        assert _ok(client, body)["cards"]
        assert not rsps.calls
    hit = build("hit", NOW)
    # v2 (§18.1): HIT history with nothing active is a heparin_avoidance warning
    assert [c["source"]["topic"]["code"] for c in _ok(client, hit)["cards"]] == ["heparin_avoidance"]
    hit["prefetch"]["conditions"] = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    assert all(c["source"]["topic"]["code"] != "heparin_avoidance" for c in _ok(client, hit)["cards"])


def test_item_21_operation_outcome_refetches_or_412_and_foreign_entries_are_ignored(app, client):
    outcome = {"resourceType": "OperationOutcome",
               "issue": [{"severity": "error", "code": "timeout", "diagnostics": "search timed out"}]}
    expected = strip_uuids(_ok(client, build("sic-positive", NOW)))
    body, full = _self_fetch_body("sic-positive", drop=["labs"])
    body["prefetch"]["labs"] = outcome
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeFhir(rsps, _answers(app, body, {"labs": full["labs"]}))
        assert strip_uuids(_ok(client, body)) == expected
    body["fhirAuthorization"]["access_token"] = "another-user-token"    # not served from the cache
    with responses.RequestsMock(assert_all_requests_are_fired=False):   # the refetch fails
        assert_operation_outcome(_post(client, body), 412)
    mixed = build("sic-positive", NOW)
    mixed["prefetch"]["labs"]["entry"] += [
        {"resource": outcome, "search": {"mode": "outcome"}},
        {"resource": {"resourceType": "Patient", "id": "other"}, "search": {"mode": "include"}},
        {"resource": {"resourceType": "Condition", "id": "stray"}, "search": {"mode": "match"}},
        {"search": {"mode": "match"}}, "not an entry"]
    assert strip_uuids(_ok(client, mixed)) == expected


def test_item_22_repeated_hook_instance_gives_equivalent_cards(client):
    body = build("bmi-42", NOW)
    first, second = _ok(client, body), _ok(client, copy.deepcopy(body))
    assert first["cards"] and strip_uuids(first) == strip_uuids(second)


# -- feedback ----------------------------------------------------------------------------------------
def _issued(client):
    payload = _ok(client, build("bmi-42", NOW))
    return payload["cards"][0]


def test_item_25_feedback_forms_are_200_and_repeats_stored_once(client, app_config):
    card = _issued(client)
    url = PATHS["order-select"] + "/feedback"
    accepted = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2025-01-15T12:01:00Z",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}
    overridden = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2025-01-15T12:02:00Z",
                  "overrideReason": {"reason": {"code": "other", "system": "https://example.org/override"},
                                     "userComment": "discussed with pharmacy"}}
    for payload in ({"feedback": [accepted]}, overridden, {"feedback": [accepted, overridden]}, accepted):
        resp = client.post(url, json=payload)
        assert resp.status_code == 200 and resp.mimetype == "application/json"
    rows = db_rows(app_config["database"], "SELECT outcome, outcome_timestamp FROM feedback WHERE card_uuid = ?",
                   card["uuid"])
    assert sorted(r[0] for r in rows) == ["accepted", "overridden"]


@pytest.mark.parametrize("change", ["no-card", "no-outcome", "no-outcomeTimestamp", "bad-outcome",
                                    "accepted-without-suggestions"])
def test_item_26_malformed_feedback_is_400(client, change):
    item = {"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": "2025-01-15T12:01:00Z",
            "acceptedSuggestions": [{"id": str(uuid.uuid4())}]}
    if change.startswith("no-"):
        del item[change.removeprefix("no-")]
    elif change == "bad-outcome":
        item["outcome"] = "ignored"
    else:
        del item["acceptedSuggestions"]
    assert_operation_outcome(client.post(PATHS["patient-view"] + "/feedback", json={"feedback": [item]}), 400)


def test_item_27_feedback_joins_to_hook_instance_and_patient(app, client, app_config):
    body = build("bmi-42", NOW)
    card = _ok(client, body)["cards"][0]
    client.post(PATHS["order-select"] + "/feedback", json={
        "card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2025-01-15T12:02:00Z"})
    storage = app.extensions["cds"].extensions["storage"]
    ((instance, patient_hash, outcome),) = db_rows(
        app_config["database"],
        "SELECT h.hook_instance, h.patient_hash, f.outcome FROM feedback f JOIN card c ON c.uuid = f.card_uuid"
        " JOIN hook_call h ON h.id = c.call_id WHERE f.card_uuid = ?", card["uuid"])
    assert instance == body["hookInstance"] and outcome == "overridden"
    assert patient_hash == storage.patient_hash(body["context"]["patientId"])
