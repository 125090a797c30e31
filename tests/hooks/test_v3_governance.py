"""Clinical rules §19.14: per-kind switches, silent mode, alert rates per 100 patient-days, and
the clinical owner / review date. Through the Flask test client with a policy file."""
from __future__ import annotations

import json
import logging
import re
import sqlite3
from datetime import date, datetime, timezone

import pytest

from audit_helpers import OS, PV, card as _card, fb as _fb
from cds_service import create_app
from cds_service.web.docs_page import render
from cds_service.cli.feedback_report import build_report, format_report
from cds_service.hooks.governance import card_mode
from cds_service.logic.policy import Policy, PolicyError
from cds_service.storage import IssuedCard, Storage
from hook_helpers import body_for, db_rows, kind, only_card, post


def _app(tmp_path, **keys):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(keys))
    db = str(tmp_path / "g.sqlite3")
    return create_app({"database": db, "policy": str(path)}), db


# -- the switch is one function of the policy --------------------------------------------------
@pytest.mark.parametrize("keys,kind_,mode", [
    ({}, "standard_prophylaxis", "shown"),
    ({"cards.silent": True}, "standard_prophylaxis", "silent"),
    ({"cards.silent_kinds": ["standard_prophylaxis"]}, "standard_prophylaxis", "silent"),
    ({"cards.silent_kinds": ["standard_prophylaxis"]}, "hit_acute", "shown"),
    ({"cards.disabled_kinds": ["standard_prophylaxis"], "cards.silent": True}, "standard_prophylaxis", "disabled"),
])
def test_card_mode(keys, kind_, mode):
    assert card_mode(Policy.default().with_overrides(keys), kind_) == mode


def test_silent_mode_writes_the_card_to_the_audit_row_and_returns_none(tmp_path):
    app, db = _app(tmp_path, **{"cards.silent": True})
    body = body_for("standard-prophylaxis")
    payload = post(app.test_client(), body)
    assert payload == {"cards": []}
    ((assessment,),) = db_rows(db, "SELECT assessment FROM hook_call")
    silent = json.loads(assessment)["governance"]["silent"]
    assert [(s["kind"], s["indicator"]) for s in silent] == [("standard_prophylaxis", "info")]
    assert silent[0]["summary"].startswith("No prophylaxis ordered")
    assert re.fullmatch(r"[0-9a-f]{16,}", silent[0]["fingerprint"])
    assert db_rows(db, "SELECT COUNT(*) FROM card") == [(0,)]
    # never entered the card lifecycle: the first real card after the pilot is not a "repeat"
    assert db_rows(db, "SELECT COUNT(*) FROM card_lifecycle") == [(0,)]


def test_the_same_card_shown_has_the_fingerprint_the_silent_row_recorded(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "v").mkdir()
    silent_app, silent_db = _app(tmp_path / "s", **{"cards.silent": True})
    shown_app, shown_db = _app(tmp_path / "v")
    body = body_for("standard-prophylaxis")
    post(silent_app.test_client(), body)
    ((assessment,),) = db_rows(silent_db, "SELECT assessment FROM hook_call")
    silent_fp = json.loads(assessment)["governance"]["silent"][0]["fingerprint"]
    body = body_for("standard-prophylaxis")
    card = only_card(post(shown_app.test_client(), body))
    assert kind(card) == "standard_prophylaxis"
    assert db_rows(shown_db, "SELECT fingerprint FROM card_lifecycle") == [(silent_fp,)]


def test_silent_kinds_silence_only_that_kind(tmp_path):
    app, db = _app(tmp_path, **{"cards.silent_kinds": ["prophylaxis_suggestion"]})
    client = app.test_client()
    assert post(client, body_for("sic-positive")) == {"cards": []}
    assert kind(only_card(post(client, body_for("standard-prophylaxis")))) == "standard_prophylaxis"


def test_disabled_kind_is_not_shown_and_is_listed_without_text(tmp_path):
    app, db = _app(tmp_path, **{"cards.disabled_kinds": ["standard_prophylaxis"]})
    assert post(app.test_client(), body_for("standard-prophylaxis")) == {"cards": []}
    ((assessment,),) = db_rows(db, "SELECT assessment FROM hook_call")
    (entry,) = json.loads(assessment)["governance"]["disabled"]
    assert entry["kind"] == "standard_prophylaxis" and "summary" not in entry


def test_silent_applies_to_order_hook_cards_too(tmp_path):
    app, _ = _app(tmp_path, **{"cards.silent": True})
    assert post(app.test_client(), body_for("bmi-42")) == {"cards": []}


def test_an_unknown_card_kind_in_a_switch_fails_at_start(tmp_path):
    with pytest.raises(PolicyError, match="unknown card kind"):
        _app(tmp_path, **{"cards.silent_kinds": ["standard_prophylaxsis"]})


# -- ownership ---------------------------------------------------------------------------------
def test_review_date_must_be_a_date():
    with pytest.raises(PolicyError, match="YYYY-MM-DD"):
        Policy.default().with_overrides({"governance.review_by": "next spring"})


def test_overdue_review_warns_at_start_and_on_the_rules_page_but_readyz_stays_green(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        app, _ = _app(tmp_path, **{"governance.owner": "Dr A. Haem, CDS committee",
                                   "governance.review_by": "2020-01-31"})
    assert any("clinical review overdue" in r.getMessage() for r in caplog.records)
    client = app.test_client()
    page = client.get("/docs/rules").get_data(as_text=True)
    assert "clinical review overdue" in page and "Dr A. Haem, CDS committee" in page
    assert client.get("/readyz").status_code == 200


def test_review_date_not_yet_reached_gives_no_warning():
    policy = Policy.default().with_overrides({"governance.owner": "Dr A", "governance.review_by": "2027-06-30"})
    assert "overdue" not in render(policy, today=date(2027, 6, 30))
    assert "overdue" in render(policy, today=date(2027, 7, 1))


# -- /docs/rules renders every section (§19.13) ----------------------------------------------------
def test_rules_page_has_no_one_character_paragraphs(client):
    page = client.get("/docs/rules").get_data(as_text=True)
    paragraphs = re.findall(r"<p>(.*?)</p>", page, flags=re.S)
    assert paragraphs
    assert [p for p in paragraphs if len(p.strip()) <= 1] == []


# -- alert rates per 100 patient-days ------------------------------------------------------------------
def _call(store, instance, patient, day, *, cards=(), governance=None, service=PV, hook="patient-view"):
    at = datetime.fromisoformat(f"{day}T10:00:00+00:00")
    store.record_call(service_id=service, hook=hook, hook_instance=instance, patient_id=patient, evaluated_at=at,
                      cards=list(cards), assessment={"governance": governance or {"silent": [], "disabled": [],
                                                                                   "encounter": "enc-" + patient}})


def test_alert_rate_report_on_a_seeded_database(tmp_path):
    """Seeded by hand; the figures below are worked out by hand.

    Patient-days (patient + encounter + day, any hook):
      p1/enc-p1 on 01-10 (two calls), p1/enc-p1 on 01-11, p2/enc-p2 on 01-10 (order hook),
      p3/enc-p3 on 01-10 (silent call), p3 with another encounter (enc-x) on 01-10  -> 5.
    Cards: standard_prophylaxis/info shown 2 (one accepted); hit_acute/critical shown 1, overridden
    with "specialist-advice"; dose_correction/warning shown 1, overridden with no reason;
    standard_prophylaxis/info silent 2; prophylaxis_suggestion/warning disabled 1.
    Per 100 patient-days = count / 5 x 100: 2 -> 40.0, 1 -> 20.0."""
    path = tmp_path / "r.db"
    store = Storage(str(path))
    _call(store, "h1", "p1", "2025-01-10", cards=[IssuedCard("standard_prophylaxis", _card("sp1", "s1", indicator="info"))])
    _call(store, "h2", "p1", "2025-01-10", cards=[IssuedCard("hit_acute", _card("ha1", indicator="critical"))])
    _call(store, "h3", "p1", "2025-01-11", cards=[IssuedCard("standard_prophylaxis", _card("sp2", "s2", indicator="info"))])
    _call(store, "h4", "p2", "2025-01-10", service=OS, hook="order-select",
          cards=[IssuedCard("dose_correction", _card("dc1", "s3"))])
    _call(store, "h5", "p3", "2025-01-10", governance={
        "encounter": "enc-p3",
        "silent": [{"uuid": "x1", "kind": "standard_prophylaxis", "indicator": "info", "summary": "s", "fingerprint": "f"}],
        "disabled": [{"kind": "prophylaxis_suggestion", "indicator": "warning", "fingerprint": "g"}]})
    _call(store, "h6", "p3", "2025-01-10", governance={
        "encounter": "enc-x",
        "silent": [{"uuid": "x2", "kind": "standard_prophylaxis", "indicator": "info", "summary": "s", "fingerprint": "f"}],
        "disabled": []})
    store.store_feedback(PV, [_fb("sp1", "accepted", acceptedSuggestions=[{"id": "s1"}]),
                              _fb("ha1", overrideReason={"reason": {"code": "specialist-advice"}})])
    store.store_feedback(OS, [_fb("dc1")])
    store.close()
    rates = build_report(sqlite3.connect(path))["alert_rates"]
    assert rates["patient_days"] == 5
    rows = {(r["kind"], r["indicator"]): r for r in rates["by_kind_and_indicator"]}
    sp = rows[("standard_prophylaxis", "info")]
    assert (sp["shown"], sp["silent"], sp["suppressed"], sp["accepted"], sp["overridden"]) == (2, 2, 0, 1, 0)
    assert sp["per_100_patient_days"] == {"shown": 40.0, "silent": 40.0, "suppressed": 0.0, "disabled": 0.0,
                                          "accepted": 20.0, "overridden": 0.0}
    ha = rows[("hit_acute", "critical")]
    assert (ha["shown"], ha["overridden"], ha["override_reasons"]) == (1, 1, {"specialist-advice": 1})
    assert ha["per_100_patient_days"]["overridden"] == 20.0
    dc = rows[("dose_correction", "warning")]
    assert dc["override_reasons"] == {"(no reason given)": 1}
    assert rows[("prophylaxis_suggestion", "warning")]["disabled"] == 1
    text = format_report(build_report(sqlite3.connect(path)), str(path))
    assert "Alert rates per 100 patient-days (patient-days: 5" in text
    assert "standard_prophylaxis / info" in text and "2 (40.00)" in text
