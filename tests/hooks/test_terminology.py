"""Issue 23: our codes resolve. Every CodeSystem URL a card carries answers 200 with an R4
CodeSystem listing every code the service can emit; override reasons map to the CDS Hooks 3.0
non-adherence categories and feedback-report groups by them; old rows with the placeholder
https://cds.example.org/CodeSystem/... URIs are read as the same codes."""
from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from fhir.resources.R4B.codesystem import CodeSystem  # R4B's CodeSystem is R4's (no R4 module in 8.x)

from cds_service import create_app
from cds_service.cli.feedback_report import build_report, format_report, report_connection
from cds_service.cards import vocabulary as vocab
from cds_service.cards.terminology import NON_ADHERENCE_CATEGORIES, NON_ADHERENCE_SYSTEM, REASON_CATEGORY
from hook_helpers import SCENARIO_NAMES, run

LEGACY_REASON = "https://cds.example.org/CodeSystem/override-reason"


def _codings(payload: dict):
    for card in payload["cards"]:
        yield card["source"]["topic"]
        yield from card["overrideReasons"]


def _get_code_system(client, url: str) -> dict:
    parts = urlsplit(url)
    resp = client.get(parts.path, base_url=f"{parts.scheme}://{parts.netloc}")
    assert resp.status_code == 200, (url, resp.get_data(as_text=True)[:300])
    assert resp.mimetype == "application/fhir+json"
    return resp.get_json()


def test_every_emitted_code_system_url_answers_an_r4_code_system_with_every_code(client):
    seen: dict[str, set[str]] = {}
    for name in SCENARIO_NAMES:
        _, payload = run(client, name)
        for coding in _codings(payload):
            seen.setdefault(coding["system"], set()).add(coding["code"])
    # the scenarios give cards, so both systems are emitted, under the request's host
    assert set(seen) == {"http://localhost/fhir/CodeSystem/card-kind",
                         "http://localhost/fhir/CodeSystem/override-reason"}
    declared = {"http://localhost/fhir/CodeSystem/card-kind": set(vocab.CARD_KINDS),
                "http://localhost/fhir/CodeSystem/override-reason": set(vocab.OVERRIDE_REASONS)}
    for url, codes in seen.items():
        body = _get_code_system(client, url)
        resource = CodeSystem.model_validate(body)   # raises on anything R4 does not allow
        assert resource.url == url and resource.content == "complete" and resource.status == "active"
        listed = {c.code for c in resource.concept}
        assert codes <= listed                       # what the cards carried ...
        assert listed == declared[url]               # ... and every code the service can emit
        assert resource.count == len(listed)
        assert all(c.display for c in resource.concept)


def test_card_kinds_of_every_kind_are_listed_without_a_second_declaration(client):
    """The CodeSystem is derived from vocabulary.CARD_KINDS: a kind added there (as the v3
    branches do) appears at once."""
    vocab.CARD_KINDS["zz_test_kind"] = "A kind added for this test"
    try:
        body = client.get("/fhir/CodeSystem/card-kind").get_json()
    finally:
        del vocab.CARD_KINDS["zz_test_kind"]
    assert {"code": "zz_test_kind", "display": "A kind added for this test"}.items() <= \
        next(c for c in body["concept"] if c["code"] == "zz_test_kind").items()


def test_override_reasons_carry_their_3_0_category_as_a_property(client):
    body = client.get("/fhir/CodeSystem/override-reason").get_json()
    CodeSystem.model_validate(body)
    (prop,) = body["property"]
    assert prop == {"code": "non-adherence-category", "uri": NON_ADHERENCE_SYSTEM, "type": "Coding",
                    "description": prop["description"]}
    by_code = {c["code"]: c["property"][0]["valueCoding"] for c in body["concept"]}
    assert set(by_code) == set(vocab.OVERRIDE_REASONS) == set(REASON_CATEGORY)
    assert all(v["system"] == NON_ADHERENCE_SYSTEM and v["code"] in NON_ADHERENCE_CATEGORIES for v in by_code.values())
    # read from the ballot definitions: risk/benefit and contraindication concerns; patient values
    assert by_code["bleeding-risk"]["code"] == "recipient-concerns-outcomes"
    assert by_code["patient-declined"]["code"] == "does-not-align-preferences"
    assert by_code["already-addressed"]["code"] == "cds-not-applicable"
    assert by_code["specialist-advice"]["code"] == "recipient-disagrees-evidence"


def test_unknown_code_system_is_a_404_operation_outcome(client):
    resp = client.get("/fhir/CodeSystem/nope")
    assert resp.status_code == 404 and resp.get_json()["resourceType"] == "OperationOutcome"


def test_public_base_and_policy_base_mint_the_systems(tmp_path):
    app = create_app({"database": str(tmp_path / "a.db"), "public_base_url": "https://cds.hospital.test/cds"})
    client = app.test_client()
    _, payload = run(client, "sic-positive")
    card = payload["cards"][0]
    assert card["source"]["topic"]["system"] == "https://cds.hospital.test/cds/fhir/CodeSystem/card-kind"
    assert card["source"]["url"].startswith("https://cds.hospital.test/cds/docs/rules#")
    body = client.get("/fhir/CodeSystem/card-kind").get_json()
    assert body["url"] == "https://cds.hospital.test/cds/fhir/CodeSystem/card-kind"

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"vocabulary": {"system_base": "https://terminology.hospital.test/"}}))
    app = create_app({"database": str(tmp_path / "b.db"), "public_base_url": "https://cds.hospital.test",
                      "policy": str(policy)})
    client = app.test_client()
    _, payload = run(client, "sic-positive")
    card = payload["cards"][0]
    assert card["source"]["topic"]["system"] == "https://terminology.hospital.test/fhir/CodeSystem/card-kind"
    assert {r["system"] for r in card["overrideReasons"]} == {
        "https://terminology.hospital.test/fhir/CodeSystem/override-reason"}
    # the rule page stays on the service itself
    assert card["source"]["url"].startswith("https://cds.hospital.test/docs/rules#")
    assert client.get("/fhir/CodeSystem/override-reason").get_json()["url"] == \
        "https://terminology.hospital.test/fhir/CodeSystem/override-reason"


def _override(client, card, code, system, minute):
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": f"2026-03-10T09:{minute:02d}:00Z",
            "overrideReason": {"reason": {"code": code, "system": system}}}
    resp = client.post("/cds-services/coagulopathy-risk/feedback", json=item)
    assert resp.status_code == 200, resp.get_data(as_text=True)


def test_feedback_report_groups_by_3_0_category_and_reads_old_uris_as_the_same_codes(tmp_path):
    db = str(tmp_path / "r.db")
    client = create_app({"database": db}).test_client()
    cards = []
    for _ in range(5):
        _, payload = run(client, "sic-positive")
        cards.append(payload["cards"][0])
    new_system = cards[0]["overrideReasons"][0]["system"]
    assert new_system == "http://localhost/fhir/CodeSystem/override-reason"
    _override(client, cards[0], "bleeding-risk", LEGACY_REASON, 1)          # a row from before issue 23
    _override(client, cards[1], "bleeding-risk", new_system, 2)             # the same code, new URI
    _override(client, cards[2], "patient-declined", new_system, 3)
    _override(client, cards[3], "not-convenient-feasible", NON_ADHERENCE_SYSTEM, 4)  # a 3.0 client
    _override(client, cards[4], "other", "http://example.org/elsewhere", 5)

    conn = report_connection(db)
    try:
        report = build_report(conn)
    finally:
        conn.close()
    (kind_row,) = report["by_kind"]
    assert kind_row["overridden"] == 5
    assert kind_row["override_reasons"] == {"bleeding-risk": 2, "not-convenient-feasible (%s)" % NON_ADHERENCE_SYSTEM: 1,
                                            "other (http://example.org/elsewhere)": 1, "patient-declined": 1}
    assert kind_row["override_categories"] == {"recipient-concerns-outcomes": 2, "(unmapped)": 1,
                                               "does-not-align-preferences": 1, "not-convenient-feasible": 1}
    totals = {r["category"]: r for r in report["override_categories"]}
    assert totals["recipient-concerns-outcomes"] == {
        "category": "recipient-concerns-outcomes", "system": NON_ADHERENCE_SYSTEM,
        "display": "Recipient has concerns regarding potential health outcomes", "overridden": 2,
        "reasons": {"bleeding-risk": 2}}
    assert totals["(unmapped)"]["system"] is None and totals["(unmapped)"]["overridden"] == 1
    text = format_report(report, db)
    assert "Overrides by CDS Hooks 3.0 non-adherence category" in text
    assert "  recipient-concerns-outcomes: 2 (bleeding-risk x 2)" in text


@pytest.mark.parametrize("system", [None, LEGACY_REASON, "https://a.test/fhir/CodeSystem/override-reason"])
def test_our_code_reads_every_uri_we_ever_used(system):
    from cds_service.cards.terminology import our_code
    assert our_code("override-reason", system, "bleeding-risk") == "bleeding-risk"
    assert our_code("override-reason", "http://loinc.org", "bleeding-risk") is None
    assert our_code("card-kind", LEGACY_REASON, "x") is None


@pytest.mark.parametrize("base", ["terminology.hospital.test", "ftp://x.test", "https://x.test/?a=1"])
def test_a_system_base_that_is_not_a_url_stops_the_start(tmp_path, base):
    from cds_service.logic.policy import PolicyError
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"vocabulary.system_base": base}))
    with pytest.raises(PolicyError, match="vocabulary.system_base"):
        create_app({"database": str(tmp_path / "db"), "policy": str(policy)})


def test_every_card_kind_offers_override_reasons_with_display():
    """cds-resp-4 on every card, also for a kind added without its own reason list."""
    for kind in [*vocab.CARD_KINDS, "a_kind_without_a_row"]:
        reasons = vocab.override_reasons(kind, "https://cds.test")
        assert reasons and all(r["display"] == vocab.OVERRIDE_REASONS[r["code"]] for r in reasons)
        assert {r["system"] for r in reasons} == {"https://cds.test/fhir/CodeSystem/override-reason"}
    # no base given: the one cards use (outside a request, the local default)
    assert vocab.topic("anti_xa")["system"] == "http://127.0.0.1:8000/fhir/CodeSystem/card-kind"
