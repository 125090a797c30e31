"""Card lifecycle (clinical-rules §18.3) through real HTTP: two app instances (two workers)
sharing one audit database, a third one as a restart. The lifecycle's clock is injected
(`state.extensions["clock"]`); the FHIR data stays dated at the real request time.

Cards are picked by indicator, not by catalogue wording: the standard-prophylaxis example gives
an info card, sic-positive a warning with a created order, contraindicated a critical card
without suggestions (v2 catalogue, clinical-rules §18.1: see `_v2_variant`)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from cds_service.web.app import create_app
from cds_service.cli import main as cli_main
from cds_service.cli.feedback_report import build_report, report_connection
from cds_service.hooks import lifecycle
from cds_service.storage import IssuedCard, StorageError
from cds_service.cli.examples import build
from conftest import in_scope
from hook_helpers import LOINC, body_for, kind, medication, post

T0 = datetime.now(timezone.utc).replace(microsecond=0)
# The FHIR data of every call is dated from one instant: a body rebuilt a second later would carry
# a "new" platelet count (its time moved), which rightly ends a snooze (§18.3) and made tests flaky.
DATA_NOW = T0
H = timedelta(hours=1)
USER = "Practitioner/example"
PV = "coagulopathy-risk"


@pytest.fixture
def db(backend_db):
    """The shared audit database: a SQLite file, or PostgreSQL (issue 16: the lifecycle suite
    runs against both backends; on PostgreSQL the two apps are two replicas)."""
    return backend_db


def db_rows(db: str, sql: str) -> list[tuple]:
    conn = report_connection(db)
    try:
        return [tuple(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


@pytest.fixture
def workers(db):
    """Two app instances on one database file, as two gunicorn workers."""
    return create_app({"database": db}), create_app({"database": db})


def at(app, moment: datetime):
    app.extensions["cds"].extensions["clock"] = lambda: moment
    return app


def _v2_variant(name: str, body: dict) -> None:
    """The v2 catalogue (§18.1) gives the indicator each test relies on:
    - standard-prophylaxis without its oxygen record (severity unknown: prophylaxis pathway, no
      signal, nothing active): the info standard_prophylaxis card;
    - contraindicated (active bleeding) with apixaban active for atrial fibrillation: critical,
      and no suggestion ("review with the treating team": another indication is recorded)."""
    pid = body["context"]["patientId"]
    if name == "standard-prophylaxis":
        body["prefetch"]["procedures"]["entry"] = []
    elif name == "contraindicated":
        body["prefetch"]["conditions"]["entry"].append({"resource": {
            "resourceType": "Condition", "id": f"{pid}-af",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I48.91"}]},
            "subject": {"reference": f"Patient/{pid}"}}, "search": {"mode": "match"}})
        body["prefetch"]["medications"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
            "resourceType": "MedicationRequest", "id": f"{pid}-apixaban", "status": "active", "intent": "order",
            "subject": {"reference": f"Patient/{pid}"},
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": "1364430"}], "text": "apixaban"},
            "dosageInstruction": [{"timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                                   "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg",
                                                                     "system": "http://unitsofmeasure.org",
                                                                     "code": "mg"}}]}]},
            "search": {"mode": "match"}}]}


def call(app, name: str, moment: datetime, *, user: str = USER, encounter: str | None = None, mutate=None):
    """Post example `name` (data dated at the real now) with the lifecycle clock at `moment`."""
    body = build(name, DATA_NOW)
    if encounter:   # before in_scope, so that the in-progress inpatient Encounter carries this id
        body["context"]["encounterId"] = encounter
    in_scope(body)
    _v2_variant(name, body)
    body["hookInstance"] = str(uuid.uuid4())   # each chart open is a new hook call
    body["context"]["userId"] = user
    if mutate:
        mutate(body)
    return post(at(app, moment).test_client(), in_scope(body))["cards"]


def feedback(app, card: dict, outcome: str, when: datetime = T0, **extra):
    item = {"card": card["uuid"], "outcome": outcome, "outcomeTimestamp": when.isoformat(), **extra}
    if outcome == "accepted" and "acceptedSuggestions" not in extra:
        item["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
    resp = app.test_client().post(f"/cds-services/{PV}/feedback", json={"feedback": [item]})
    assert resp.status_code == 200 and resp.get_json()["stored"] == 1, resp.get_json()


REASON = {"reason": {"code": "patient-declined", "system": "https://cds.example.org/CodeSystem/override-reason"}}


def lifecycle_rows(db: str):
    return db_rows(db, "SELECT kind, indicator, status, reason, fingerprint FROM card_lifecycle ORDER BY id")


def last_audit(db: str) -> dict:
    return json.loads(db_rows(db, "SELECT assessment FROM hook_call ORDER BY id DESC LIMIT 1")[0][0])


def observation(body: dict, loinc: str) -> dict:
    # Only the latest-value keys: platelet_trend (v2) repeats the platelet counts for hit_suspected.
    found = [e["resource"] for k, v in body["prefetch"].items() if k != "platelet_trend"
             for e in (v or {}).get("entry", ())
             if e["resource"]["resourceType"] == "Observation"
             and any(c["system"] == LOINC and c["code"] == loinc for c in e["resource"]["code"]["coding"])]
    assert len(found) == 1, loinc
    return found[0]


def one(cards: list, indicator: str) -> dict:
    assert len(cards) == 1 and cards[0]["indicator"] == indicator, [(c["indicator"], c["summary"]) for c in cards]
    return cards[0]


# -- info cards: at most once per cards.info_repeat_hours --------------------------------------------
def test_info_card_is_shown_once_per_24_h_across_workers_and_restarts(workers, db):
    first, second = workers
    shown = one(call(first, "standard-prophylaxis", T0), "info")
    assert call(second, "standard-prophylaxis", T0 + H) == []
    assert call(first, "standard-prophylaxis", T0 + 24 * H - timedelta(seconds=1)) == []
    restarted = create_app({"database": db})
    assert call(restarted, "standard-prophylaxis", T0 + 12 * H) == []
    again = one(call(restarted, "standard-prophylaxis", T0 + 24 * H), "info")   # the window is over
    assert kind(again) == kind(shown) and again["uuid"] != shown["uuid"]
    assert call(second, "standard-prophylaxis", T0 + 30 * H) == []               # a new window from 24 h

    rows = lifecycle_rows(db)
    assert [(r[2], r[3]) for r in rows] == [("shown", None), ("suppressed", "info_repeat"),
                                           ("suppressed", "info_repeat"), ("suppressed", "info_repeat"),
                                           ("shown", None), ("suppressed", "info_repeat")]
    assert len({r[4] for r in rows}) == 1, "the same card has one fingerprint"
    audit = last_audit(db)["card_lifecycle"]
    assert audit["shown"] == [] and audit["user"] == "context.userId"
    assert [(s["kind"], s["indicator"], s["reason"], s["fingerprint"]) for s in audit["suppressed"]] == \
        [(kind(shown), "info", "info_repeat", rows[0][4])]


def test_a_retried_call_is_answered_again(workers):
    first, second = workers
    body = body_for("standard-prophylaxis", DATA_NOW)
    _v2_variant("standard-prophylaxis", body)
    shown = one(post(at(first, T0).test_client(), body)["cards"], "info")
    retried = one(post(at(second, T0 + H / 60).test_client(), body)["cards"], "info")  # same hookInstance
    assert retried["summary"] == shown["summary"]
    assert call(second, "standard-prophylaxis", T0 + H) == []                        # a new chart open


def test_info_repeat_is_per_user_patient_and_encounter(workers):
    first, second = workers
    one(call(first, "standard-prophylaxis", T0, encounter="enc-1"), "info")
    assert call(second, "standard-prophylaxis", T0 + H, encounter="enc-1") == []
    one(call(second, "standard-prophylaxis", T0 + H, encounter="enc-1", user="Practitioner/colleague"), "info")
    one(call(second, "standard-prophylaxis", T0 + H, encounter="enc-2"), "info")     # a new admission

    def other_patient(body):
        old = body["context"]["patientId"]
        body["context"]["patientId"] = "other-patient"
        body["prefetch"] = json.loads(json.dumps(body["prefetch"]).replace(old, "other-patient"))
    one(call(second, "standard-prophylaxis", T0 + H, encounter="enc-1", mutate=other_patient), "info")


def test_warning_cards_are_not_repeat_limited(workers):
    first, second = workers
    one(call(first, "sic-positive", T0), "warning")
    one(call(second, "sic-positive", T0 + H), "warning")


def test_no_raw_ids_in_the_lifecycle_table(workers, db):
    first, _ = workers
    call(first, "standard-prophylaxis", T0, encounter="enc-raw-77", user="Practitioner/raw-user-88")
    dump = repr(db_rows(db, "SELECT * FROM card_lifecycle"))
    for raw in ("enc-raw-77", "raw-user-88", "example-standard"):
        assert raw not in dump
    rows = db_rows(db, "SELECT user_hash, patient_hash, encounter_hash FROM card_lifecycle")
    storage = first.extensions["cds"].extensions["storage"]
    assert rows == [(storage.pseudonym("user", "Practitioner/raw-user-88"), storage.patient_hash("example-standard"),
                     storage.pseudonym("encounter", "enc-raw-77"))]


# -- override snooze (patient-view only) ------------------------------------------------------------
def test_overridden_warning_stays_away_24_h_for_that_user_then_returns(workers, db):
    first, second = workers
    card = one(call(first, "sic-positive", T0), "warning")
    feedback(second, card, "overridden")                                # no reason needed below critical
    assert call(second, "sic-positive", T0 + H) == []
    assert call(first, "sic-positive", T0 + 24 * H - timedelta(seconds=1)) == []
    one(call(second, "sic-positive", T0 + H, user="Practitioner/colleague"), "warning")
    assert call(create_app({"database": db}), "sic-positive", T0 + 2 * H) == []   # a restart keeps it
    one(call(second, "sic-positive", T0 + 24 * H), "warning")
    reasons = [r[3] for r in lifecycle_rows(db) if r[2] == "suppressed"]
    assert reasons == ["override_snooze"] * 3


def test_overridden_info_card_stays_away_72_h(workers):
    first, second = workers
    card = one(call(first, "standard-prophylaxis", T0), "info")
    feedback(first, card, "overridden", overrideReason=REASON)
    assert call(second, "standard-prophylaxis", T0 + 71 * H) == []
    one(call(second, "standard-prophylaxis", T0 + 72 * H), "info")


def test_critical_card_is_snoozed_only_after_an_override_with_a_reason(workers, db):
    first, second = workers
    card = one(call(first, "contraindicated", T0), "critical")
    feedback(first, card, "overridden")                                  # no reason: no snooze
    again = one(call(second, "contraindicated", T0), "critical")
    feedback(second, again, "overridden", overrideReason={"userComment": "bleeding controlled"})
    assert call(first, "contraindicated", T0 + H) == []
    assert call(second, "contraindicated", T0 + 4 * H - timedelta(seconds=1)) == []
    one(call(second, "contraindicated", T0 + 4 * H), "critical")
    assert [r[3] for r in lifecycle_rows(db)] == [None, None, "override_snooze", "override_snooze", None]


def test_accepted_does_not_snooze(workers):
    first, second = workers
    card = one(call(first, "sic-positive", T0), "warning")
    feedback(first, card, "accepted")
    one(call(second, "sic-positive", T0 + H), "warning")


def test_snooze_starts_no_later_than_the_feedback_is_received(workers):
    first, second = workers
    card = one(call(first, "sic-positive", T0), "warning")
    feedback(first, card, "overridden", T0 + 100 * H)  # a client clock far ahead cannot lengthen it
    assert call(second, "sic-positive", T0 + H) == []
    one(call(second, "sic-positive", T0 + 25 * H), "warning")


# -- a changed recommendation or situation ends it ------------------------------------------------------
def weight(kg: float):
    def mutate(body):
        observation(body, "29463-7")["valueQuantity"]["value"] = kg
    return mutate


def test_a_changed_dose_is_a_new_card(workers, db):
    first, second = workers
    card = one(call(first, "sic-positive", T0), "warning")
    feedback(first, card, "overridden")
    assert call(second, "sic-positive", T0 + H) == []
    # 80 kg at 170 cm: BMI 27.7, below the 30 tier: another dose, so another card.
    other = one(call(second, "sic-positive", T0 + 2 * H, mutate=weight(80)), "warning")
    old = [medication(a["resource"]) for s in card["suggestions"] for a in s["actions"]
           if a["resource"]["resourceType"] == "MedicationRequest"]
    new = [medication(a["resource"]) for s in other["suggestions"] for a in s["actions"]
           if a["resource"]["resourceType"] == "MedicationRequest"]
    assert old and new and old[0][1] != new[0][1]
    fingerprints = [r[4] for r in lifecycle_rows(db)]
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]


def new_platelet_count(body):
    platelets = observation(body, "777-3")
    later = (datetime.fromisoformat(platelets["effectiveDateTime"].replace("Z", "+00:00")) + timedelta(minutes=30))
    platelets["effectiveDateTime"] = platelets["issued"] = later.isoformat().replace("+00:00", "Z")


def test_a_new_platelet_count_ends_the_snooze_with_the_same_card(workers, db):
    first, second = workers
    card = one(call(first, "sic-positive", T0), "warning")
    feedback(first, card, "overridden")
    assert call(second, "sic-positive", T0 + H) == []
    again = one(call(second, "sic-positive", T0 + 2 * H, mutate=new_platelet_count), "warning")
    assert again["summary"] == card["summary"]
    rows = lifecycle_rows(db)
    assert rows[0][4] == rows[2][4], "same fingerprint: only the situation changed"
    # The card shown in the new situation was not overridden: it is not snoozed.
    one(call(first, "sic-positive", T0 + 3 * H, mutate=new_platelet_count), "warning")


def test_a_new_anticoagulant_order_ends_the_snooze(workers):
    first, second = workers
    card = one(call(first, "contraindicated", T0), "critical")
    feedback(first, card, "overridden", overrideReason=REASON)
    assert call(second, "contraindicated", T0 + H) == []
    # An enoxaparin order now active: the card changes (it concerns the order) or at least the
    # situation does; either way it is shown again.
    from cds_service.cli.examples import build
    order = next(e for e in build("hit-switch", datetime.now(timezone.utc))["context"]["draftOrders"]["entry"])

    def with_order(body):
        resource = dict(order["resource"], status="active", id="active-enox",
                        subject={"reference": f"Patient/{body['context']['patientId']}"})
        resource.pop("encounter", None)
        body["prefetch"]["medications"] = {"resourceType": "Bundle", "type": "searchset",
                                           "entry": [{"resource": resource, "search": {"mode": "match"}}]}
    cards = call(second, "contraindicated", T0 + 2 * H, mutate=with_order)
    assert len(cards) == 1 and cards[0]["indicator"] == "critical"


# -- order hooks: never ---------------------------------------------------------------------------------
def test_order_hook_cards_are_never_snoozed_nor_repeated_away(workers, db):
    first, second = workers
    cards = call(first, "bmi-42", T0)
    assert cards
    item = {"card": cards[0]["uuid"], "outcome": "overridden", "outcomeTimestamp": T0.isoformat(),
            "overrideReason": REASON}
    assert first.test_client().post("/cds-services/anticoagulant-order-check/feedback", json=item).status_code == 200
    for moment in (T0 + H, T0 + 2 * H):
        again = call(second, "bmi-42", moment)
        assert [c["summary"] for c in again] == [c["summary"] for c in cards]
    assert lifecycle_rows(db) == []
    assert "card_lifecycle" not in last_audit(db)


# -- faults, the report ------------------------------------------------------------------------------
def test_a_lifecycle_store_failure_shows_every_card(workers, monkeypatch, db):
    first, second = workers
    one(call(first, "standard-prophylaxis", T0), "info")
    storage = second.extensions["cds"].extensions["storage"]

    def broken(*args, **kwargs):
        raise StorageError("disk I/O error")
    monkeypatch.setattr(storage, "lifecycle_decide", broken)
    one(call(second, "standard-prophylaxis", T0 + H), "info")
    assert last_audit(db)["card_lifecycle"] == {"error": "not applied; every card shown"}


def test_feedback_report_counts_shown_suppressed_accepted_overridden_per_kind(workers, db, capsys):
    first, second = workers
    info = one(call(first, "standard-prophylaxis", T0), "info")
    assert call(second, "standard-prophylaxis", T0 + H) == []
    warning = one(call(first, "sic-positive", T0), "warning")
    feedback(first, warning, "overridden", overrideReason=REASON)
    assert call(second, "sic-positive", T0 + H) == []
    assert call(second, "sic-positive", T0 + 2 * H) == []
    feedback(second, info, "accepted")
    conn = report_connection(db)
    report = build_report(conn)
    conn.close()
    by_kind = {r["kind"]: r for r in report["by_kind"]}
    assert {k: (r["shown"], r["suppressed"], r["accepted"], r["overridden"]) for k, r in by_kind.items()} == {
        kind(info): (1, 1, 1, 0), kind(warning): (1, 2, 0, 1)}
    assert by_kind[kind(info)]["suppressed_reasons"] == {"info_repeat": 1}
    assert by_kind[kind(warning)]["suppressed_reasons"] == {"override_snooze": 2}
    assert by_kind[kind(warning)]["override_reasons"] == {"patient-declined": 1}
    assert report["lifecycle"] == {"suppressed": 3, "suppressed_reasons": {"info_repeat": 1, "override_snooze": 2}}
    assert cli_main(["feedback-report", "--database", db]) == 0
    text = capsys.readouterr().out
    assert "suppressed cards 3 (info_repeat 1, override_snooze 2)" in text
    assert f"{kind(warning)}: override_snooze x 2" in text and f"{kind(warning)}: patient-declined x 1" in text


# -- fingerprints (pure) ---------------------------------------------------------------------------------
def _card(dose: float, *, uuid: str = "u1", rid: str = "r1", summary: str = "s") -> dict:
    resource = {"resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
                "medicationCodeableConcept": {"coding": [{"system": "rx", "code": "854235"}]},
                "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": dose, "code": "mg"}}],
                                       "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}]}
    return {"uuid": uuid, "summary": summary, "indicator": "info",
            "suggestions": [{"uuid": uuid + "s", "label": "x", "actions": [{"type": "create", "resource": resource}]}]}


def test_fingerprint_ignores_uuids_ids_and_text_but_not_the_dose_or_kind():
    fp = lambda kind_, card: lifecycle.fingerprint(kind_, lifecycle.recommendation_of(IssuedCard(kind_, card)))
    base = fp("standard_prophylaxis", _card(40))
    assert fp("standard_prophylaxis", _card(40.0, uuid="u2", rid="r2", summary="other words")) == base
    assert fp("standard_prophylaxis", _card(60)) != base
    assert fp("prophylaxis_suggestion", _card(40)) != base


def test_a_builder_stated_recommendation_is_the_fingerprint():
    stated = lifecycle.with_recommendation(IssuedCard("duplicate_anticoagulant", _card(40)), ("apixaban", "enoxaparin"))
    same = IssuedCard("duplicate_anticoagulant", _card(60), recommendation=("apixaban", "enoxaparin"))
    assert lifecycle.recommendation_of(stated) == ("apixaban", "enoxaparin")
    assert lifecycle.fingerprint("duplicate_anticoagulant", lifecycle.recommendation_of(stated)) == \
        lifecycle.fingerprint("duplicate_anticoagulant", lifecycle.recommendation_of(same))


# -- the policy keys -----------------------------------------------------------------------------------
def test_snooze_hours_follow_the_policy_and_bad_values_are_refused(tmp_path):
    from cds_service.logic.policy import Policy, PolicyError
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"cards": {"info_repeat_hours": 2,
                                            "override_snooze_hours": {"info": 1, "warning": 1, "critical": 1}}}))
    app = create_app({"database": str(tmp_path / "p.sqlite3"), "policy": str(policy)})
    one(call(app, "standard-prophylaxis", T0), "info")
    assert call(app, "standard-prophylaxis", T0 + 2 * H - timedelta(seconds=1)) == []
    one(call(app, "standard-prophylaxis", T0 + 2 * H), "info")
    for bad in ({"info": 72}, {"info": 72, "warning": -1, "critical": 4}, [72, 24, 4],
                {"info": 72, "warning": 24, "critical": True}):
        with pytest.raises(PolicyError, match="cards.override_snooze_hours"):
            Policy.default().with_overrides({"cards.override_snooze_hours": bad})
    with pytest.raises(PolicyError, match="cards.info_repeat_hours"):
        Policy.default().with_overrides({"cards.info_repeat_hours": -1})
