"""Scope (clinical rules §1a, v2): reasons in order, each at its edge, written from the rules."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cds_service.logic.assessment import assess
from cds_service.logic.inputs import CovidCondition, EncounterInfo, Flag, PatientInputs
from cds_service.logic.policy import Policy
from cds_service.logic.scope import assess_scope, completed_years, loosened_keys

P = Policy.default()
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
IMP = EncounterInfo("enc-1", "in-progress", "IMP", NOW - timedelta(days=3))
COVID_LINKED = CovidCondition(encounter_id="enc-1", time=NOW - timedelta(days=200))


def inp(**kw):
    base = dict(now=NOW, age_years=60, birth_date="1963-06-01", encounters=(IMP,),
                covid_conditions=(COVID_LINKED,))
    base.update(kw)
    return PatientInputs(**base)


def reasons(policy=P, hook="patient-view", patient_found=True, **kw):
    return assess_scope(inp(**kw), policy, hook=hook, patient_found=patient_found).reasons


def test_adult_inpatient_with_linked_covid_is_in_scope():
    scope = assess_scope(inp(), P)
    assert scope.in_scope and scope.to_json() == {"in_scope": True, "reasons": []}


# -- age: completed years at now ------------------------------------------------------------
@pytest.mark.parametrize("birth, expected", [
    ("2006-03-02", ("age_lt_18",)),   # 17 y 364 d on 2024-03-01
    ("2006-03-01", ()),               # 18 y exactly
])
def test_age_edge(birth, expected):
    assert reasons(birth_date=birth, age_years=None) == expected


def test_unknown_age_is_not_a_reason():
    assert reasons(birth_date=None, age_years=None) == ()


def test_age_from_age_years_when_no_full_birth_date():
    assert reasons(birth_date="2007", age_years=16) == ("age_lt_18",)


def test_29_february_birthday_is_reached_on_1_march():
    assert completed_years(datetime(2008, 2, 29).date(), datetime(2026, 2, 28).date()) == 17
    assert completed_years(datetime(2008, 2, 29).date(), datetime(2026, 3, 1).date()) == 18


# -- COVID-19 evidence -----------------------------------------------------------------------
def test_no_evidence():
    assert reasons(covid_conditions=()) == ("no_covid_evidence",)


@pytest.mark.parametrize("days, expected", [(20.9, ()), (21.0, ()), (21.1, ("no_covid_evidence",))])
def test_unlinked_condition_counts_only_within_21_days(days, expected):
    cond = CovidCondition(encounter_id=None, time=NOW - timedelta(days=days))
    assert reasons(covid_conditions=(cond,)) == expected


def test_condition_linked_to_the_current_encounter_counts_whatever_its_age():
    assert reasons() == ()


def test_condition_linked_to_another_encounter_and_old_does_not_count():
    cond = CovidCondition(encounter_id="enc-old", time=NOW - timedelta(days=60))
    assert reasons(covid_conditions=(cond,)) == ("no_covid_evidence",)


def test_undated_unlinked_condition_does_not_count():
    assert reasons(covid_conditions=(CovidCondition(),)) == ("no_covid_evidence",)


@pytest.mark.parametrize("days, expected", [(14.0, ()), (14.1, ("no_covid_evidence",))])
def test_positive_test_within_14_days(days, expected):
    test = Flag(True, "Observation/pcr", NOW - timedelta(days=days))
    assert reasons(covid_conditions=(), covid_positive_tests=(test,)) == expected


def test_require_covid_false_and_its_v1_alias():
    assert reasons(policy=P.with_overrides({"scope.require_covid": False}), covid_conditions=()) == ()
    assert reasons(policy=P.with_overrides({"scope.require_covid_condition": False}),
                   covid_conditions=()) == ()


# -- inpatient -------------------------------------------------------------------------------
def test_no_encounter_data_is_not_inpatient():
    # the linked Condition no longer has a current Encounter; it is old, so COVID fails too
    assert reasons(encounters=()) == ("no_covid_evidence", "not_inpatient")


@pytest.mark.parametrize("status, cls, ok", [
    ("in-progress", "IMP", True), ("onleave", "ACUTE", True), ("in-progress", "NONAC", True),
    ("in-progress", "OBSENC", True), ("in-progress", "SS", True),
    ("finished", "IMP", False), ("planned", "IMP", False), ("in-progress", "AMB", False),
    ("in-progress", None, False), ("in-progress", "EMER", False),
])
def test_current_and_inpatient(status, cls, ok):
    enc = EncounterInfo("enc-1", status, cls)
    assert ("not_inpatient" in reasons(encounters=(enc,))) is not ok


@pytest.mark.parametrize("hook, ok", [("patient-view", False), ("order-select", True),
                                      ("order-sign", True)])
def test_emer_only_in_order_hooks(hook, ok):
    enc = EncounterInfo("enc-1", "in-progress", "EMER")
    assert ("not_inpatient" in reasons(hook=hook, encounters=(enc,))) is not ok


def test_context_encounter_id_matching_no_encounter_is_not_inpatient():
    assert "not_inpatient" in reasons(encounter_id="enc-unknown")


def test_context_encounter_must_itself_qualify():
    amb = EncounterInfo("enc-amb", "in-progress", "AMB")
    assert "not_inpatient" in reasons(encounter_id="enc-amb", encounters=(IMP, amb))
    assert reasons(encounter_id="enc-1", encounters=(IMP, amb)) == ()


def test_without_context_id_any_encounter_may_qualify():
    amb = EncounterInfo("enc-amb", "finished", "AMB")
    assert reasons(encounters=(amb, IMP)) == ()


def test_require_inpatient_false():
    assert reasons(policy=P.with_overrides({"scope.require_inpatient": False}), encounters=(),
                   covid_conditions=(CovidCondition(time=NOW),)) == ()


# -- patient not found, order of reasons, assessment ------------------------------------------
def test_all_reasons_in_rule_order():
    assert reasons(patient_found=False, birth_date="2010-01-01", encounters=(),
                   covid_conditions=()) == ("patient_not_found", "age_lt_18", "no_covid_evidence",
                                            "not_inpatient")


def test_assessment_is_computed_out_of_scope_too():
    out = assess(inp(encounters=(), covid_conditions=()), P, patient_found=False).to_json()
    assert out["scope"] == {"in_scope": False, "reasons": ["patient_not_found", "no_covid_evidence",
                                                           "not_inpatient"]}
    assert out["regimen"]["basis"] == "pending_weight"   # still assessed


def test_loosened_keys_names_each_scope_key_that_differs():
    assert loosened_keys(P) == {}
    p = P.with_overrides({"scope.require_covid": False, "scope.inpatient_classes": ["IMP"]})
    assert loosened_keys(p) == {"scope.require_covid": False, "scope.inpatient_classes": ["IMP"]}
