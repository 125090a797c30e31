"""The audit row of a hook call (same cards, same assessment, no token, no raw patient id),
feedback joined to it, and self-fetch vs full prefetch giving the same answer."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from cds_service import create_app
from hook_helpers import FakeFhir, body_for, db_rows, post, queries, run, strip_uuids

TOKEN = "ACCESS-TOKEN-7f3c9e-never-store-me"
BASE = "http://127.0.0.1:8080/fhir"


def _with_token(body):
    body["fhirServer"] = BASE
    body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                 "scope": "user/*.read", "subject": "Practitioner/example"}


def _db_bytes(path: str) -> bytes:
    return b"".join(p.read_bytes() for p in Path(path).parent.glob(Path(path).name + "*"))


def test_audit_row_holds_the_cards_and_assessment_but_no_token(app, client, app_config):
    db = app_config["database"]
    body, payload = run(client, "sic-positive", mutate=_with_token)
    card = payload["cards"][0]
    storage = app.extensions["cds"].extensions["storage"]
    ((call_id, instance, service, hook, patient_hash, assessment),) = db_rows(
        db, "SELECT id, hook_instance, service_id, hook, patient_hash, assessment FROM hook_call")
    assert (instance, service, hook) == (body["hookInstance"], "coagulopathy-risk", "patient-view")
    assert patient_hash == storage.patient_hash("example-sic")
    assessment = json.loads(assessment)
    # The same assessment the card was built from: 60 mg (BMI tier), SIC 5, anti-Xa indicated.
    assert assessment["regimen"]["dose_mg"] == 60 and assessment["regimen"]["basis"] == "bmi_ge_30"
    # §19.7 changes anti-Xa: escalated_dose is removed for the BMI 30-<40 tier (60 mg daily)
    assert assessment["sic"]["total"] == 5 and assessment["anti_xa"]["indicated"] is False
    assert db_rows(db, "SELECT uuid, call_id, kind, indicator, summary FROM card") == [
        (card["uuid"], call_id, "prophylaxis_suggestion", "warning", card["summary"])]
    assert sorted(r[0] for r in db_rows(db, "SELECT uuid FROM suggestion WHERE card_uuid = ?", card["uuid"])) \
        == sorted(s["uuid"] for s in card["suggestions"])
    raw = _db_bytes(db)
    assert TOKEN.encode() not in raw and b"access_token" not in raw
    assert b"Patient/example-sic" not in raw


def test_calls_without_cards_are_audited_too(client, app_config):
    body, payload = run(client, "nothing-to-say")
    assert payload == {"cards": []}
    rows = db_rows(app_config["database"], "SELECT hook_instance, assessment IS NOT NULL FROM hook_call")
    assert rows == [(body["hookInstance"], 1)]


def test_feedback_joins_to_the_hook_call_and_survives_restart(tmp_path):
    db = str(tmp_path / "cds.sqlite3")
    first = create_app({"database": db}).test_client()
    body, payload = run(first, "bmi-42")
    card = payload["cards"][0]
    accepted = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2025-03-10T09:31:00Z",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}
    resp = first.post("/cds-services/anticoagulant-order-check/feedback", json={"feedback": [accepted]})
    assert resp.get_json() == {"status": "ok", "stored": 1, "duplicates": 0, "unmatched": 0}

    second = create_app({"database": db}).test_client()     # restart over the same file
    overridden = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2025-03-10T09:32:00Z",
                  "overrideReason": {"reason": {"code": "therapeutic-indication",
                                                "system": "https://cds.example.org/CodeSystem/override-reason"},
                                     "userComment": "on treatment dose for DVT"}}
    resp = second.post("/cds-services/anticoagulant-order-check/feedback", json=overridden)  # bare object
    assert resp.get_json() == {"status": "ok", "stored": 1, "duplicates": 0, "unmatched": 0}
    resp = second.post("/cds-services/anticoagulant-order-check/feedback", json={"feedback": [accepted]})
    assert resp.get_json() == {"status": "ok", "stored": 0, "duplicates": 1, "unmatched": 0}

    storage = second.application.extensions["cds"].extensions["storage"]
    joined = db_rows(db, "SELECT f.outcome, h.hook_instance, h.patient_hash, c.kind, f.accepted_suggestions,"
                         " f.override_code, f.override_comment FROM feedback f"
                         " JOIN card c ON c.uuid = f.card_uuid JOIN hook_call h ON h.id = c.call_id"
                         " ORDER BY f.outcome_timestamp")
    assert joined == [
        ("accepted", body["hookInstance"], storage.patient_hash("example-obese"), "dose_correction",
         json.dumps([card["suggestions"][0]["uuid"]]).replace(" ", ""), None, None),
        ("overridden", body["hookInstance"], storage.patient_hash("example-obese"), "dose_correction", None,
         "therapeutic-indication", "on treatment dose for DVT"),
    ]


@pytest.mark.parametrize("name", ["sic-positive", "hit-switch", "standard-prophylaxis"])
def test_self_fetch_gives_the_same_assessment_and_cards_as_full_prefetch(tmp_path, name):
    app = create_app({"database": str(tmp_path / "a.sqlite3"), "fhir_cache_size": 0})
    client = app.test_client()
    full = body_for(name)
    _with_token(full)
    fetched = json.loads(json.dumps(full))
    prefetch = fetched.pop("prefetch")
    service = app.extensions["cds"].registry.get(
        {"patient-view": "coagulopathy-risk", "order-select": "anticoagulant-order-check"}[full["hook"]])
    context = {k: v for k, v in full["context"].items() if isinstance(v, str)}
    answers = {query: prefetch[key] for key, query in queries(service, context).items()}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        server = FakeFhir(rsps, answers, base=BASE)
        from_server = post(client, fetched)
    assert server.batches and all(h.get("Authorization") == f"Bearer {TOKEN}" for h in server.headers)
    from_prefetch = post(client, full)
    assert from_server["cards"], "the scenario must produce a card"
    assert strip_uuids(from_server) == strip_uuids(from_prefetch)
    rows = db_rows(str(tmp_path / "a.sqlite3"), "SELECT assessment FROM hook_call ORDER BY id")
    assert len(rows) == 2
    first, second = (json.loads(r[0]) for r in rows)
    if "card_lifecycle" in first:  # patient-view: card uuids and fingerprints, per call
        assert [c["fingerprint"] for c in first.pop("card_lifecycle")["shown"]] == \
            [c["fingerprint"] for c in second.pop("card_lifecycle")["shown"]]
    assert first == second
