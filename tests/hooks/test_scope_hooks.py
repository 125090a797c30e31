"""Scope (clinical rules §1a) through the real services, with the DEFAULT scope policy (this file
is exempt from the TODO(v2 merge) relaxation in tests/conftest.py).

The example patients carry an in-progress IMP Encounter (named by the context's encounterId) and
a COVID-19 Condition linked to it, so they are in scope; here their Encounter is removed, which
puts them out of scope (not_inpatient): no cards, audited with the reasons. The in-scope path is
covered by the other hook tests.
"""
from __future__ import annotations

import json
import logging

import pytest

from cds_service import create_app

from hook_helpers import db_rows, run


@pytest.mark.parametrize("name", ["sic-positive", "hit-switch", "crcl-22"])
def test_out_of_scope_gives_no_cards_and_audits_the_reasons(tmp_path, name):
    db = str(tmp_path / "cds.sqlite3")
    client = create_app({"database": db}).test_client()

    def no_encounter(body):
        body["prefetch"]["encounters"] = {"resourceType": "Bundle", "type": "searchset"}

    _, payload = run(client, name, mutate=no_encounter)
    assert payload == {"cards": []}
    ((assessment,),) = db_rows(db, "SELECT assessment FROM hook_call")
    scope = json.loads(assessment)["scope"]
    assert scope == {"in_scope": False, "reasons": ["not_inpatient"]}
    _, payload = run(client, name)   # the example as generated: in scope, so it gets its card
    assert payload["cards"]


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
