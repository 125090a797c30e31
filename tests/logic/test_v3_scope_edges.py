"""Clinical rules §19.8 (partial birth dates), §19.10 (therapeutic candidate not while another
anticoagulant runs), §19.12 (possible other indication, firm indications) and §19.5 (severe liver
disease), written from the rule text at their edges."""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cds_service.fhir.extract import extract_inputs
from cds_service.logic.assessment import assess
from cds_service.logic.inputs import Flag, MedicationOrder, RespiratorySupport
from cds_service.logic.policy import Policy
from test_recommendation import NOW, enox, m, rec, ward

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fhir"))
from fhir_factory import ICD10CM, cc, condition, patient  # noqa: E402

P = Policy.default()


# -- §19.8 partial birth dates ----------------------------------------------------------------
@pytest.mark.parametrize("birth,now,age,uncertain", [
    # 2008-12 on 2026-12-07: earliest day 2008-12-01 -> 18 (in scope); latest 2008-12-31 -> 17
    ("2008-12", "2026-12-07", 18, True),
    # 2008-12 on 2027-01-01: latest 2008-12-31 -> 18 as well: certain
    ("2008-12", "2027-01-01", 18, False),
    # 2008 on 2026-12-07: earliest 2008-01-01 -> 18; latest 2008-12-31 -> 17
    ("2008", "2026-12-07", 18, True),
    # 2008 on 2027-01-01: earliest -> 19, latest -> 18: certain
    ("2008", "2027-01-01", 19, False),
    ("1960-05", "2026-12-07", 66, False),
])
def test_partial_birth_date_earliest_day_sets_the_age_latest_day_the_uncertainty(birth, now, age, uncertain):
    at = datetime.fromisoformat(now).replace(hour=12, tzinfo=timezone.utc)
    inputs = extract_inputs([patient(birth=birth)], now=at, policy=P)
    assert (inputs.age_years, inputs.birth_date_partial, inputs.age_uncertain) == (age, True, uncertain)
    a = assess(inputs, P)
    assert "age_lt_18" not in a.scope.reasons      # never out of scope by itself


def test_full_birth_date_is_never_partial():
    inputs = extract_inputs([patient(birth="2008-12-31")], now=datetime(2026, 12, 7, tzinfo=timezone.utc), policy=P)
    assert (inputs.age_years, inputs.birth_date_partial, inputs.age_uncertain) == (17, False, False)


def test_age_uncertain_is_never_a_therapeutic_candidate():
    assert rec()["pathway"] == "therapeutic_candidate"
    out = rec(age_uncertain=True, birth_date="2008-12", birth_date_partial=True)
    assert out["pathway"] == "prophylaxis" and out["not_therapeutic_because"] == ["age_uncertain"]
    assert out["therapeutic"] is None


# -- §19.10 on_anticoagulant --------------------------------------------------------------------
def apixaban(kind_source="MedicationStatement/apx", **kw):
    return MedicationOrder("apixaban", "doac", dose_mg=5, doses_per_day=2, source=kind_source, **kw)


def test_home_apixaban_statement_is_no_candidate_and_shows_no_dose():
    out = rec(statements=(apixaban(),))
    assert out["pathway"] == "prophylaxis" and out["therapeutic"] is None
    assert out["not_therapeutic_because"] == ["on_anticoagulant"]
    assert "confirm_home_anticoagulant_status" in out["notes"]


@pytest.mark.parametrize("order", [
    MedicationOrder("warfarin", "vka", dose_mg=5, doses_per_day=1, source="MedicationRequest/w"),
    MedicationOrder("fondaparinux", "anticoagulant", dose_mg=2.5, doses_per_day=1, source="MedicationRequest/f"),
    MedicationOrder("rivaroxaban", "doac", dose_mg=10, doses_per_day=1, source="MedicationRequest/r"),
])
def test_active_vka_doac_or_fondaparinux_order_at_any_dose_is_no_candidate(order):
    out = rec(orders=(order,))
    assert out["pathway"] in ("prophylaxis", "keep_therapeutic")
    if out["pathway"] == "prophylaxis":
        assert "on_anticoagulant" in out["not_therapeutic_because"]
        assert "confirm_home_anticoagulant_status" not in out["notes"]


def test_prophylactic_enoxaparin_still_allows_the_candidate():
    assert rec(orders=(enox(40, 1),))["pathway"] == "therapeutic_candidate"


# -- §19.12 possible other indication -------------------------------------------------------------
def test_possible_other_indication_from_the_z_codes_and_home_statements():
    assert assess(ward(possible_other_indication=Flag(True)), P).safety.possible_other_indication is True
    assert assess(ward(statements=(apixaban(),)), P).safety.possible_other_indication is True
    assert assess(ward(), P).safety.possible_other_indication is False


@pytest.mark.parametrize("code,possible,firm", [
    ("Z79.01", True, False), ("Z86.711", True, False), ("Z86.718", True, False),
    ("Z95.2", False, True),           # stays firm (§19.12)
    ("I21.4", False, True), ("I24.9", False, True), ("I74.3", False, True), ("D68.61", False, True),
    ("I24.0", False, False),           # coronary thrombosis not resulting in MI: not listed
])
def test_condition_codes_of_possible_and_firm_indications(code, possible, firm):
    inputs = extract_inputs([patient(), condition(ICD10CM, code)], now=NOW, policy=P)
    assert (inputs.possible_other_indication is not None) is possible
    assert (inputs.other_anticoagulation_indication is not None) is firm


def test_possible_other_indication_blocks_nothing_in_the_pathway_but_is_reported():
    crit = ward(respiratory=RespiratorySupport(modalities=frozenset({"IMV"})),
                orders=(enox(90, 2),), possible_other_indication=Flag(True))
    a = assess(crit, P)
    assert a.recommendation.pathway == "deescalate" and a.safety.possible_other_indication


# -- §19.5 severe liver disease ---------------------------------------------------------------------
@pytest.mark.parametrize("order,liver", [
    (None, True),
    (MedicationOrder("argatroban", "dti", source="MedicationRequest/a", continuous=True), False),
    (MedicationOrder("bivalirudin", "dti", source="MedicationRequest/b", continuous=True), False),
    (MedicationOrder("warfarin", "vka", dose_mg=5, doses_per_day=1, source="MedicationRequest/w"), False),
])
def test_severe_liver_disease_ignores_an_inr_raised_by_an_active_anticoagulant(order, liver):
    inputs = ward(inr=m(1.8), bilirubin=m(2.5, "mg/dL"), orders=(order,) if order else ())
    assert ("severe_liver_disease" in assess(inputs, P).safety.escalation_cautions) is liver


def test_severe_liver_disease_is_never_a_contraindication_to_prophylaxis():
    a = assess(ward(inr=m(1.8), bilirubin=m(2.5, "mg/dL")), P)
    assert "severe_liver_disease" in a.safety.escalation_cautions
    assert a.safety.contraindications == () and a.regimen.drug == "enoxaparin"
