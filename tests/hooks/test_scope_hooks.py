"""Scope (clinical rules §1a) through the real services, with the DEFAULT scope policy.

The hook helpers put every example patient in scope (an in-progress IMP Encounter named in the
context and a linked COVID-19 Condition, conftest.in_scope); these tests take that evidence
away again and check no cards are shown and the audit row records the reasons.
"""
from __future__ import annotations

import json
import logging

import pytest

from cds_service import create_app

from hook_helpers import db_rows, run


def _no_encounter(body):
    body["prefetch"]["encounters"] = {"resourceType": "Bundle", "type": "searchset"}


def _outpatient(body):
    body["prefetch"]["encounters"]["entry"][0]["resource"]["class"]["code"] = "AMB"


def _no_covid(body):
    body["prefetch"]["conditions"]["entry"] = [
        e for e in body["prefetch"]["conditions"]["entry"] if e["resource"]["code"].get("text") != "covid19"]


@pytest.mark.parametrize("name", ["sic-positive", "hit-switch", "crcl-22"])
@pytest.mark.parametrize("mutate, reasons", [
    (_no_encounter, ["not_inpatient"]),
    (_outpatient, ["not_inpatient"]),
    (_no_covid, ["no_covid_evidence"]),
])
def test_out_of_scope_gives_no_cards_and_audits_the_reasons(tmp_path, name, mutate, reasons):
    db = str(tmp_path / "cds.sqlite3")
    client = create_app({"database": db}).test_client()
    body, payload = run(client, name, mutate=mutate)
    if reasons == ["no_covid_evidence"] and body["hook"] != "patient-view":
        # §19.0 changes this for the order hooks: the safety layer (§19.1-§19.6, §19.9: HIT, the
        # renal table) runs for every adult inpatient, whatever the COVID-19 scope
        assert payload["cards"]
    else:
        assert payload == {"cards": []}
    ((assessment,),) = db_rows(db, "SELECT assessment FROM hook_call")
    scope = json.loads(assessment)["scope"]
    assert scope == {"in_scope": False, "reasons": reasons}


@pytest.mark.parametrize("name", ["hit-switch", "crcl-22"])
def test_safety_layer_out_of_covid_scope_is_a_policy_choice(tmp_path, name):
    """orders.safety_checks_ignore_covid_scope = false: out of COVID-19 scope, no order-hook card."""
    policy = tmp_path / "policy.json"
    policy.write_text('{"orders.safety_checks_ignore_covid_scope": false}')
    client = create_app({"database": str(tmp_path / "c.sqlite3"), "policy": str(policy)}).test_client()
    _, payload = run(client, name, mutate=_no_covid)
    assert payload == {"cards": []}


@pytest.mark.parametrize("name", ["sic-positive", "hit-switch", "crcl-22"])
def test_in_scope_patient_gets_cards_and_audits_in_scope(tmp_path, name):
    db = str(tmp_path / "cds.sqlite3")
    client = create_app({"database": db}).test_client()
    _, payload = run(client, name)
    assert payload["cards"]
    ((assessment,),) = db_rows(db, "SELECT assessment FROM hook_call")
    assert json.loads(assessment)["scope"] == {"in_scope": True, "reasons": []}


def test_emergency_encounter_is_in_scope_for_the_order_hooks_only(tmp_path):
    # §1a: the order hooks also admit EMER (scope.order_hook_extra_classes); patient-view does not.
    client = create_app({"database": str(tmp_path / "cds.sqlite3")}).test_client()

    def emergency(body):
        body["prefetch"]["encounters"]["entry"][0]["resource"]["class"]["code"] = "EMER"

    assert run(client, "crcl-22", mutate=emergency)[1]["cards"]
    assert run(client, "sic-positive", mutate=emergency)[1] == {"cards": []}


def test_startup_logs_each_scope_key_that_differs_from_its_default(tmp_path, caplog):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"scope.require_inpatient": False, "scope.min_age_years": 16}))
    with caplog.at_level(logging.WARNING, logger="cds_service.app"):
        create_app({"database": str(tmp_path / "db"), "policy": str(policy)})
    keys = [getattr(r, "fields", {}).get("key") for r in caplog.records
            if r.getMessage() == "policy scope key differs from its default"]
    assert keys == ["scope.min_age_years", "scope.require_inpatient"]


def test_startup_with_default_scope_logs_no_scope_key(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="cds_service.app"):
        create_app({"database": str(tmp_path / "db")})
    assert not [r for r in caplog.records
                if r.getMessage() == "policy scope key differs from its default"]
