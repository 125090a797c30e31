"""extract_inputs and normalise_order: FHIR rules of fhir-data-requirements.md, one behaviour per test.

now = 2024-03-10T12:00Z throughout (fhir_factory.NOW); windows are the policy defaults
(labs 72 h, blood gas/vitals/support 24 h, weight 30 d, future tolerance 5 min).
"""
from __future__ import annotations

import copy
import logging

import pytest

from cds_service.fhir.codes import load_codes
from cds_service.fhir.extract import extract_inputs
from cds_service.fhir.orders import is_current_order, normalise_order, normalise_orders
from fhir_factory import (ATC, GTS, ICD10, ICD10CM, LOINC, NOW, PID, RXNORM, SCT, allergy, cc, condition,
                          every, med_request, obs, patient, policy, procedure, qty)

CODES = load_codes()


def run(*resources, pol=None, **kw):
    return extract_inputs(list(resources), now=NOW, policy=pol or policy(), **kw)


def plt(value, at="2024-03-10T08:00:00Z", **kw):
    return obs("777-3", qty(value, "10*9/L"), at=at, **kw)


# ------------------------------------------------------------------ status and time


@pytest.mark.parametrize("status,used", [("final", True), ("amended", True), ("corrected", True),
                                         ("preliminary", False), ("registered", False),
                                         ("cancelled", False), ("unknown", False),
                                         ("entered-in-error", False)])
def test_observation_status(status, used):
    inputs = run(patient(), plt(100, status=status))
    assert (inputs.platelets is not None) is used


@pytest.mark.parametrize("at,used", [
    ("2024-03-07T12:00:00Z", True),      # exactly 72 h before now: inside
    ("2024-03-07T11:59:59Z", False),     # one second older
    ("2024-03-10T12:05:00Z", True),      # exactly the 5-min future tolerance
    ("2024-03-10T12:05:01Z", False),
])
def test_lab_window_and_future_tolerance_edges(at, used):
    assert (run(plt(100, at=at)).platelets is not None) is used


@pytest.mark.parametrize("at,used", [("2024-03-09T12:00:00Z", True), ("2024-03-09T11:59:00Z", False)])
def test_vitals_window_edges(at, used):
    assert (run(obs("8478-0", qty(65, "mm[Hg]"), at=at)).map is not None) is used


@pytest.mark.parametrize("at,used", [("2024-02-09T12:00:00Z", True), ("2024-02-09T11:00:00Z", False)])
def test_weight_window_30_days(at, used):
    assert (run(obs("29463-7", qty(80, "kg"), at=at)).weight is not None) is used


def test_height_has_no_window_by_default_but_a_policy_can_set_one():
    old = obs("8302-2", qty(170, "cm"), at="2001-01-01T00:00:00Z")
    assert run(old).height.value == 170
    assert run(old, pol=policy(**{"window.height_days": 365})).height is None


def test_window_is_a_policy_key():
    at = "2024-03-09T12:00:00Z"   # 24 h old
    assert run(plt(90, at=at), pol=policy(**{"window.labs_hours": 23})).platelets is None


def test_effective_time_precedence():
    o = plt(100, at=None, effectivePeriod={"start": "2024-03-01T00:00:00Z", "end": "2024-03-10T06:00:00Z"},
            issued="2024-03-10T07:00:00Z")
    assert run(o).platelets.time.isoformat() == "2024-03-10T06:00:00+00:00"
    only_start = plt(100, at=None, effectivePeriod={"start": "2024-03-10T05:00:00Z"})
    assert run(only_start).platelets.time.hour == 5
    instant = plt(100, at=None, effectiveInstant="2024-03-10T04:00:00Z", issued="2024-03-10T07:00:00Z")
    assert run(instant).platelets.time.hour == 4
    issued_only = plt(100, at=None, issued="2024-03-10T07:00:00Z")
    assert run(issued_only).platelets.time.hour == 7
    assert run(plt(100, at=None)).platelets is None      # no time at all: cannot be placed


def test_dateTime_with_offset_is_compared_in_absolute_time():
    # 13:04+01:00 == 12:04Z, within the 5-min tolerance
    assert run(plt(100, at="2024-03-10T13:04:00+01:00")).platelets is not None


def test_latest_value_wins_and_ties_go_to_later_issued_then_later_listed():
    older, newer = plt(100, at="2024-03-09T08:00:00Z"), plt(200, at="2024-03-10T08:00:00Z")
    assert run(newer, older).platelets.value == 200
    a = plt(110, issued="2024-03-10T09:00:00Z")
    b = plt(120, issued="2024-03-10T08:30:00Z")
    assert run(a, b).platelets.value == 110          # same effective time, later issued
    c, d = plt(130), plt(140)
    assert run(c, d).platelets.value == 140          # full tie: listed later
    assert run(d, c).platelets.value == 130


def test_value_kinds_other_than_quantity_are_skipped():
    absent = obs("777-3", None, dataAbsentReason=cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", "error"))
    string = obs("777-3", None, valueString="clumped")
    older = plt(180, at="2024-03-09T08:00:00Z")
    inputs = run(absent, string, older)
    assert inputs.platelets.value == 180 and "platelets" not in inputs.rejected


def test_unknown_code_or_text_only_code_is_ignored():
    o = obs("99999-9", qty(100, "10*9/L"))
    t = {**plt(100), "code": {"text": "Platelets"}}
    assert run(o, t).platelets is None


# ------------------------------------------------------------------ units, rejections, validation


def test_unknown_unit_makes_input_not_determinable_with_reason():
    inputs = run(obs("777-3", qty(150, "g/L")))
    assert inputs.platelets is None
    assert "not an accepted unit" in inputs.rejected["platelets"]


def test_newer_unusable_value_is_recorded_even_when_an_older_one_is_used():
    inputs = run(plt(180, at="2024-03-09T08:00:00Z"), plt(5000, at="2024-03-10T08:00:00Z"))
    assert inputs.platelets.value == 180
    assert "not plausible" in inputs.rejected["platelets"]
    assert "older value was used" in inputs.rejected["platelets"]


def test_invalid_resource_is_dropped_and_next_candidate_used(caplog):
    bad = plt(90, at="2024-03-10T09:00:00Z")
    bad["valueQuantity"]["system"] = 42           # not a uri: R4B validation fails
    good = plt(140, at="2024-03-10T07:00:00Z")
    with caplog.at_level(logging.WARNING, logger="cds_service.fhir.extract"):
        inputs = run(bad, good)
    assert inputs.platelets.value == 140
    assert "not valid FHIR R4B" in inputs.rejected["platelets"]
    assert any("not valid FHIR R4B" in r.getMessage() for r in caplog.records)


def test_invalid_resources_everywhere_never_raise():
    junk = [{"resourceType": "Observation"}, {"resourceType": "Condition", "code": 5}, {"x": 1}, "str",
            {"resourceType": "Procedure", "status": "in-progress", "code": "IMV"},
            {"resourceType": "MedicationRequest", "status": "active", "medicationCodeableConcept": []},
            {"resourceType": "Patient", "id": PID, "birthDate": "not a date"}]
    inputs = extract_inputs(junk, now=NOW, policy=policy())
    assert inputs.platelets is None and inputs.age_years is None and inputs.orders == ()


def test_invalid_patient_is_dropped_with_reason():
    p = patient()
    p["gender"] = ["male"]
    inputs = run(p)
    assert inputs.sex is None and "patient" in inputs.rejected


def test_si_creatinine_keeps_reported_unit():
    inputs = run(obs("14682-9", qty(176.8, "umol/L")))
    assert inputs.creatinine.value == pytest.approx(2.0)
    assert (inputs.creatinine.reported_value, inputs.creatinine.reported_unit) == (176.8, "umol/L")


# ------------------------------------------------------------------ components and comparators


def test_sofa_subscores_from_panel_components():
    panel = obs("96790-1", qty(7, "{score}"), at="2024-03-10T06:00:00Z", component=[
        {"code": cc(LOINC, "96823-0"), "valueQuantity": qty(3, "{score}")},
        {"code": cc(LOINC, "96826-3"), "valueQuantity": qty(4, "{score}")},
        {"code": cc(LOINC, "96828-9"), "valueQuantity": {"value": 0}},
    ])
    sofa = run(panel).recorded_sofa
    assert (sofa.total.value, sofa.respiratory.value, sofa.cardiovascular.value, sofa.renal.value) == (7, 3, 4, 0)
    assert sofa.hepatic is None and sofa.respiratory.time.hour == 6


def test_component_of_a_non_final_panel_is_skipped():
    panel = obs("24336-0", None, status="preliminary", component=[
        {"code": cc(LOINC, "3150-0"), "valueQuantity": qty(40, "%")}])
    assert run(panel).fio2 is None


def test_fio2_and_pao2_in_one_blood_gas_panel_give_pf():
    panel = obs("24336-0", None, at="2024-03-10T10:00:00Z", component=[
        {"code": cc(LOINC, "2703-7"), "valueQuantity": qty(60, "mm[Hg]")},
        {"code": cc(LOINC, "3150-0"), "valueQuantity": qty(40, "%")}])
    inputs = run(panel)
    assert inputs.pf_ratio.value == pytest.approx(150.0)      # 60 / 0.40
    assert inputs.fio2.value == pytest.approx(0.4)


def test_comparator_is_carried_as_a_bound():
    inputs = run(obs("48065-7", qty(20, "mg/L", comparator=">")))
    assert inputs.d_dimer.value.comparator == ">" and inputs.d_dimer.value.value == 20


def test_comparator_on_weight_is_refused():
    inputs = run(obs("29463-7", qty(150, "kg", comparator=">")))
    assert inputs.weight is None and "bound" in inputs.rejected["weight"]


# ------------------------------------------------------------------ D-dimer and PT referenceRange


def ddimer(code, value, unit, rr=None, **kw):
    extra = {"referenceRange": rr} if rr is not None else {}
    return obs(code, qty(value, unit), **extra, **kw)


def test_d_dimer_basis_from_code_and_unit():
    d = run(ddimer("48066-5", 600, "ng/mL")).d_dimer
    assert (d.basis_from_code, d.basis_from_unit, d.value.value) == ("DDU", None, 0.6)
    d = run(ddimer("7799-0", 1.2, "mg/L{FEU}")).d_dimer
    assert (d.basis_from_code, d.basis_from_unit) == (None, "FEU")
    d = run(ddimer("48065-7", 1.2, "mg/L{DDU}")).d_dimer       # disagreement is left to logic
    assert (d.basis_from_code, d.basis_from_unit) == ("FEU", "DDU")


def test_reference_range_untyped_without_unit_inherits_value_unit():
    d = run(ddimer("48065-7", 3000, "ng/mL", rr=[{"high": {"value": 500}}])).d_dimer
    assert d.reference_high_mg_l == pytest.approx(0.5)     # 500 ng/mL -> 0.5 mg/L


def test_reference_range_with_its_own_unit():
    d = run(ddimer("48065-7", 3000, "ng/mL", rr=[{"high": qty(0.5, "mg/L")}])).d_dimer
    assert d.reference_high_mg_l == pytest.approx(0.5)


def test_reference_range_typed_normal_is_used_other_types_are_not():
    normal = {"type": cc("http://terminology.hl7.org/CodeSystem/referencerange-meaning", "normal"),
              "high": qty(0.5, "mg/L")}
    treatment = {"type": cc("http://terminology.hl7.org/CodeSystem/referencerange-meaning", "treatment"),
                 "high": qty(0.9, "mg/L")}
    assert run(ddimer("48065-7", 2, "mg/L", rr=[treatment, normal])).d_dimer.reference_high_mg_l == 0.5
    assert run(ddimer("48065-7", 2, "mg/L", rr=[treatment])).d_dimer.reference_high_mg_l is None


def test_reference_range_applies_to_another_population_is_not_used():
    pregnant = {"appliesTo": [cc(SCT, "77386006")], "high": qty(1.0, "mg/L")}
    female = {"appliesTo": [cc(SCT, "248152002")], "high": qty(0.45, "mg/L")}
    male = {"appliesTo": [cc(SCT, "248153007")], "high": qty(0.55, "mg/L")}
    rr = [pregnant, female, male]
    assert run(patient(gender="male"), ddimer("48065-7", 2, "mg/L", rr=rr)).d_dimer.reference_high_mg_l == 0.55
    assert run(patient(gender="female"), ddimer("48065-7", 2, "mg/L", rr=rr)).d_dimer.reference_high_mg_l == 0.45
    assert run(patient(gender="unknown"), ddimer("48065-7", 2, "mg/L", rr=rr)).d_dimer.reference_high_mg_l is None


def test_reference_range_age_band():
    banded = [{"age": {"low": {"value": 18}, "high": {"value": 50}}, "high": qty(0.5, "mg/L")},
              {"age": {"low": {"value": 51}}, "high": qty(0.64, "mg/L")}]
    # born 1960-03-10, now 2024-03-10: 64 completed years
    assert run(patient(), ddimer("48065-7", 2, "mg/L", rr=banded)).d_dimer.reference_high_mg_l == 0.64


def test_reference_range_in_unknown_unit_is_not_used():
    d = run(ddimer("48065-7", 2, "mg/L", rr=[{"high": qty(0.5, "mg/mL")}])).d_dimer
    assert d.reference_high_mg_l is None and d.value.value == 2


def test_pt_reference_high_from_its_own_range():
    pt = run(obs("5902-2", qty(17.5, "s"), referenceRange=[{"low": qty(11, "s"), "high": {"value": 13.5}}])).pt
    assert (pt.seconds.value, pt.reference_high_s, pt.normal_control_s) == (17.5, 13.5, None)


# ------------------------------------------------------------------ P/F pairing


def gas(code, value, unit, at):
    return obs(code, qty(value, unit), at=at)


def test_recorded_pf_preferred_over_computed():
    inputs = run(gas("2703-7", 60, "mm[Hg]", "2024-03-10T10:00:00Z"), gas("3150-0", 40, "%", "2024-03-10T10:00:00Z"),
                 gas("50984-4", 180, "mm[Hg]", "2024-03-10T06:00:00Z"))
    assert inputs.pf_ratio.value == 180


@pytest.mark.parametrize("fio2_at,expected", [
    ("2024-03-10T09:00:00Z", 150.0),      # 60 min before the PaO2: pairs (edge inside)
    ("2024-03-10T08:59:00Z", None),       # 61 min: no pair
])
def test_pf_pairing_window_edges(fio2_at, expected):
    inputs = run(gas("2703-7", 60, "mm[Hg]", "2024-03-10T10:00:00Z"), gas("3150-0", 40, "%", fio2_at))
    assert (inputs.pf_ratio.value if inputs.pf_ratio else None) == (pytest.approx(expected) if expected else None)


def test_pf_uses_the_nearest_fio2():
    inputs = run(gas("2703-7", 90, "mm[Hg]", "2024-03-10T10:00:00Z"),
                 gas("3150-0", 60, "%", "2024-03-10T09:20:00Z"),     # 40 min away
                 gas("3150-0", 30, "%", "2024-03-10T10:10:00Z"))     # 10 min away
    assert inputs.pf_ratio.value == pytest.approx(300.0)           # 90 / 0.30


def test_pf_from_kpa_and_unitless_fio2_percent():
    inputs = run(gas("2703-7", 8, "kPa", "2024-03-10T10:00:00Z"),
                 obs("3150-0", {"value": 50}, at="2024-03-10T10:00:00Z"))
    assert inputs.pf_ratio.value == pytest.approx(8 * 7.50062 / 0.5)   # 120.00992


# ------------------------------------------------------------------ patient


@pytest.mark.parametrize("birth,age", [("1960-03-10", 64), ("1960-03-11", 63), ("1960", 64), ("1960-04", 63),
                                       (None, None)])
def test_age_in_completed_years_with_partial_dates(birth, age):
    assert run(patient(birth=birth)).age_years == age


@pytest.mark.parametrize("gender,sex", [("male", "male"), ("female", "female"), ("other", None),
                                        ("unknown", None), (None, None)])
def test_sex(gender, sex):
    assert run(patient(gender=gender)).sex == sex


def test_patient_scope_ignores_other_patients_resources():
    mine, theirs = plt(100, at="2024-03-09T08:00:00Z"), plt(20, subject="other")
    group = {**plt(10), "subject": {"reference": "Group/g1"}}
    no_subject = plt(55, at="2024-03-08T08:00:00Z", subject=None)
    inputs = run(patient(), theirs, group, mine)
    assert inputs.platelets.value == 100 and inputs.patient_id == PID
    assert run(patient(), no_subject, theirs).platelets.value == 55


def test_patient_scope_with_absolute_and_urn_references():
    absolute = {**plt(120), "subject": {"reference": "https://ehr.example/fhir/Patient/p1"}}
    assert run(patient(), absolute).platelets.value == 120
    urn = {**plt(130), "subject": {"reference": "urn:uuid:1111"}}
    assert run(patient(), urn).platelets is None
    assert run(patient(), urn, aliases={"urn:uuid:1111": "Patient/p1"}).platelets.value == 130


def test_explicit_patient_id_selects_the_patient():
    inputs = run(patient("p2", birth="1990-01-01"), patient(), plt(100), patient_id=PID)
    assert inputs.age_years == 64 and inputs.platelets.value == 100


# ------------------------------------------------------------------ conditions


def test_entered_in_error_and_refuted_conditions_are_ignored():
    c1 = condition(SCT, "131148009", verification="refuted")
    c2 = condition(SCT, "131148009", verification="entered-in-error")
    assert run(c1, c2).active_bleeding is None
    c3 = condition(SCT, "131148009", verification="unconfirmed")
    assert run(c3).active_bleeding.present is True


@pytest.mark.parametrize("system,code", [(SCT, "131148009"), (ICD10, "I61.9"), (ICD10CM, "K92.2"),
                                         (ICD10, "I60"), (ICD10CM, "R58")])
def test_active_bleeding_codes_and_icd_families(system, code):
    assert run(condition(system, code)).active_bleeding.present


def test_icd_prefix_matching_is_only_for_families():
    assert run(condition(ICD10, "R58.1")).active_bleeding is None        # R58 is exact, not a family
    assert run(condition(ICD10, "K92.21")).active_bleeding is None


@pytest.mark.parametrize("clinical", ["active", "recurrence", "relapse"])
def test_active_bleeding_statuses(clinical):
    assert run(condition(SCT, "74474003", clinical=clinical)).active_bleeding.present


def test_bleeding_with_past_abatement_is_recent_not_active():
    c = condition(SCT, "74474003", abatementDateTime="2024-03-01T00:00:00Z")
    inputs = run(c)
    assert inputs.active_bleeding is None and inputs.recent_bleeding.present


def test_bleeding_with_future_abatement_is_still_active():
    assert run(condition(SCT, "74474003", abatementDateTime="2024-03-20T00:00:00Z")).active_bleeding.present


@pytest.mark.parametrize("field,value,recent", [
    ("abatementDateTime", "2024-02-09T12:00:00Z", True),     # exactly 30 days: inside
    ("abatementDateTime", "2024-02-09T11:00:00Z", False),
    ("onsetDateTime", "2024-02-20T00:00:00Z", True),
    ("recordedDate", "2024-01-01T00:00:00Z", False),
])
def test_recent_bleeding_window(field, value, recent):
    c = condition(SCT, "131148009", clinical="resolved", **{field: value})
    assert (run(c).recent_bleeding is not None) is recent


def test_abatement_wins_over_onset_for_recent_bleeding():
    c = condition(SCT, "131148009", clinical="resolved", onsetDateTime="2023-01-01T00:00:00Z",
                  abatementDateTime="2024-03-05T00:00:00Z")
    assert run(c).recent_bleeding.time.day == 5


@pytest.mark.parametrize("clinical,present", [("active", True), (None, True), ("resolved", False),
                                              ("inactive", False)])
def test_bleeding_disorder_status(clinical, present):
    c = condition(ICD10, "D68.32", clinical=clinical)
    assert (run(c).bleeding_disorder is not None) is present


@pytest.mark.parametrize("code", ["D68.5", "D68.6", "D65", "D69.6"])
def test_excluded_haematological_codes_are_not_bleeding_disorders(code):
    assert run(condition(ICD10, code)).bleeding_disorder is None


@pytest.mark.parametrize("clinical", ["active", "resolved", "inactive", None])
def test_hit_history_any_clinical_status(clinical):
    assert run(condition(ICD10CM, "D75.82", clinical=clinical)).hit_history.present


def test_hit_lookback_when_set():
    old = condition(SCT, "73397007", onsetDateTime="2023-01-01")
    assert run(old).hit_history.present
    assert run(old, pol=policy(**{"safety.hit_lookback_days": 100})).hit_history is None


def test_covid_condition_status():
    assert run(condition(ICD10, "U07.1")).covid19.present
    assert run(condition(SCT, "840539006", clinical="resolved")).covid19 is None


def test_pregnancy_later_source_wins():
    cond = condition(SCT, "77386006", recordedDate="2024-03-01")
    not_preg = obs("82810-3", None, at="2024-03-05T00:00:00Z", valueCodeableConcept=cc(LOINC, "LA26683-5"))
    assert run(cond, not_preg).pregnancy.present is False
    later_cond = condition(SCT, "77386006", recordedDate="2024-03-08")
    assert run(later_cond, not_preg).pregnancy.present is True
    preg = obs("82810-3", None, at="2024-03-05T00:00:00Z", valueCodeableConcept=cc(SCT, "77386006"))
    assert run(preg).pregnancy.present is True
    unknown = obs("82810-3", None, at="2024-03-09T00:00:00Z", valueCodeableConcept=cc(LOINC, "LA4489-6"))
    assert run(preg, unknown).pregnancy.present is True       # "unknown" says nothing
    assert run().pregnancy is None


# ------------------------------------------------------------------ allergies


@pytest.mark.parametrize("system,code", [(RXNORM, "5224"), (RXNORM, "67108"), (SCT, "372877000"),
                                         (SCT, "294872001")])
def test_heparin_allergy_codes(system, code):
    assert run(allergy(system, code)).heparin_allergy.present


@pytest.mark.parametrize("clinical,verification,present", [
    ("active", None, True), (None, None, True), ("inactive", None, False), ("resolved", None, False),
    ("active", "refuted", False), ("active", "entered-in-error", False), ("active", "unconfirmed", True)])
def test_allergy_status(clinical, verification, present):
    a = allergy(RXNORM, "5224", clinical=clinical, verification=verification)
    assert (run(a).heparin_allergy is not None) is present


def test_hit_via_allergy_reaction():
    inputs = run(allergy(RXNORM, "5224", manifestation="73397007"))
    assert inputs.heparin_allergy.present and inputs.hit_history.present
    assert run(allergy(RXNORM, "5224", manifestation="271807003")).hit_history is None


def test_allergy_of_another_patient_is_ignored():
    a = allergy(RXNORM, "5224")
    a["patient"] = {"reference": "Patient/other"}
    assert run(patient(), a).heparin_allergy is None


# ------------------------------------------------------------------ respiratory support


@pytest.mark.parametrize("code,mod", [("1258985005", "IMV"), ("40617009", "IMV"), ("428311008", "NIV"),
                                      ("47545007", "CPAP"), ("870533002", "HFNC"), ("57485005", "low-flow"),
                                      ("371907003", "low-flow"), ("371908008", "low-flow")])
def test_procedure_modalities(code, mod):
    assert run(procedure(code)).respiratory.modalities == {mod}


def test_generic_artificial_respiration_yields_to_a_specific_code():
    assert run(procedure("428311008", extra_codes=("40617009",))).respiratory.modalities == {"NIV"}


def test_hfnc_via_nasal_cannula_with_high_flow_device():
    assert run(procedure("371907003", used="426854004")).respiratory.modalities == {"HFNC"}


def test_ecmo_and_vasopressor_procedures():
    r = run(procedure("233573008"), procedure("870386000")).respiratory
    assert r.ecmo and r.vasopressor_procedure and r.modalities == frozenset()


@pytest.mark.parametrize("status", ["preparation", "not-done", "on-hold", "unknown", "entered-in-error"])
def test_ignored_procedure_statuses(status):
    assert run(procedure("1258985005", status=status)).respiratory.modalities == frozenset()


@pytest.mark.parametrize("end,counted", [("2024-03-09T12:00:00Z", True), ("2024-03-09T11:59:00Z", False)])
def test_completed_procedure_window(end, counted):
    p = procedure("428311008", status="completed", start="2024-03-09T00:00:00Z", end=end)
    assert (run(p).respiratory.modalities == {"NIV"}) is counted


def test_in_progress_takes_precedence_over_completed():
    imv_done = procedure("1258985005", status="completed", start="2024-03-09T20:00:00Z",
                         end="2024-03-10T06:00:00Z")
    o2_now = procedure("57485005", status="in-progress", start="2024-03-10T06:00:00Z")
    assert run(imv_done, o2_now).respiratory.modalities == {"low-flow"}
    assert run(imv_done).respiratory.modalities == {"IMV"}


def test_oxygen_status_observations():
    on_o2 = obs("371825009", None, system=SCT)
    room = obs("722742002", None, system=SCT)
    cancelled = obs("722742002", None, system=SCT, valueBoolean=False)
    assert run(on_o2).respiratory.modalities == {"low-flow"}
    assert run(room).respiratory.room_air_documented
    assert not run(cancelled).respiratory.room_air_documented


def test_fio2_021_without_support_is_room_air():
    room = obs("3150-0", qty(21, "%"))
    assert run(room).respiratory.room_air_documented
    assert not run(room, procedure("57485005")).respiratory.room_air_documented
    assert not run(obs("3150-0", qty(28, "%"))).respiratory.room_air_documented


def test_no_records_means_nothing_documented():
    r = run(patient()).respiratory
    assert r.modalities == frozenset() and not r.room_air_documented


# ------------------------------------------------------------------ vasoactives


def admin(code, rate=None, *, status="in-progress", start="2024-03-10T06:00:00Z", end=None, ratio=None):
    a = {"resourceType": "MedicationAdministration", "id": f"ma-{code}-{status}", "status": status,
         "subject": {"reference": f"Patient/{PID}"}, "medicationCodeableConcept": cc(RXNORM, code)}
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        a["effectivePeriod"] = period
    else:
        a["effectiveDateTime"] = "2024-03-10T06:00:00Z"
    dosage = {}
    if rate:
        dosage["rateQuantity"] = rate
    if ratio:
        dosage["rateRatio"] = ratio
    if dosage:
        a["dosage"] = dosage
    return a


def test_vasoactive_per_kg_rate():
    v = run(admin("7512", qty(0.12, "ug/kg/min"))).vasoactives
    assert [(x.ingredient, x.rate_ug_kg_min, x.meets_min_duration) for x in v] == [("norepinephrine", 0.12, True)]


def test_vasoactive_per_minute_rate_divided_by_weight():
    w = obs("29463-7", qty(80, "kg"))
    v = run(w, admin("3992", qty(8, "ug/min"))).vasoactives[0]
    assert v.rate_ug_kg_min == pytest.approx(0.1)          # 8 ug/min / 80 kg
    no_weight = run(admin("3992", qty(8, "ug/min")))
    assert no_weight.vasoactives[0].rate_ug_kg_min is None
    assert "body weight" in no_weight.rejected["vasoactive.epinephrine"]


def test_vasoactive_rate_ratio():
    ratio = {"numerator": qty(6, "ug/kg"), "denominator": qty(1, "h")}
    assert run(admin("3628", ratio=ratio)).vasoactives[0].rate_ug_kg_min == pytest.approx(0.1)


@pytest.mark.parametrize("start,meets", [("2024-03-10T11:00:00Z", True), ("2024-03-10T11:01:00Z", False),
                                         (None, True)])
def test_vasoactive_minimum_duration(start, meets):
    a = admin("7512", qty(0.05, "ug/kg/min"), start=start)
    assert run(a).vasoactives[0].meets_min_duration is meets


def test_completed_vasoactive_window_and_duration():
    done = admin("7512", qty(0.2, "ug/kg/min"), status="completed", start="2024-03-09T20:00:00Z",
                 end="2024-03-10T02:00:00Z")
    assert run(done).vasoactives[0].meets_min_duration
    old = admin("7512", qty(0.2, "ug/kg/min"), status="completed", start="2024-03-08T20:00:00Z",
                end="2024-03-09T02:00:00Z")
    assert run(old).vasoactives == ()


def test_highest_rate_per_ingredient_and_unknown_rate():
    a = admin("7512", qty(0.05, "ug/kg/min"))
    b = {**admin("7512", qty(0.3, "ug/kg/min")), "id": "ma-2"}
    v = run(a, b, admin("11149")).vasoactives
    assert {(x.ingredient, x.rate_ug_kg_min) for x in v} == {("norepinephrine", 0.3), ("vasopressin", None)}


def test_vasoactive_medication_request_with_rate():
    req = med_request("7512", route="47625008", authoredOn="2024-03-10T09:00:00Z",
                      dosage_extra={"doseAndRate": [{"rateQuantity": qty(0.08, "ug/kg/min")}]})
    inputs = run(req)
    assert inputs.vasoactives[0].rate_ug_kg_min == 0.08 and inputs.orders == ()
    no_rate = med_request("7512", dose=qty(1, "mg"))
    assert run(no_rate).vasoactives == ()


# ------------------------------------------------------------------ orders (normalise_order)


def order(**kw):
    return normalise_order(med_request(**kw), CODES, {})


def test_enoxaparin_mg_daily():
    o = order(dose=qty(40, "mg"), timing=every(1, "d", 1))
    assert (o.ingredient, o.drug_class, o.dose_mg, o.doses_per_day, o.route, o.continuous) == \
        ("enoxaparin", "lmwh", 40, 1, "subcutaneous", False)


@pytest.mark.parametrize("timing,per_day", [
    (every(12, "h", 1), 2), (every(1, "d", 2), 2), (every(1, "d"), 1), (every(8, "h"), 3),
    (every(720, "min"), 2), (every(43200, "s"), 2), (every(1, "wk", 7), 1), (every(1, "mo", 30), 1),
    ({"code": cc(GTS, "BID")}, 2), ({"code": cc(GTS, "QOD")}, 0.5), ({"code": cc(GTS, "Q4H")}, 6),
    ({"code": cc(GTS, "TID")}, 3), ({"code": cc(GTS, "QD")}, 1), ({"code": cc(GTS, "AM")}, 1),
    ({"repeat": {"timeOfDay": ["08:00:00", "20:00:00"]}}, 2),
    ({"code": {"text": "twice daily"}}, None), (None, None), (every(1, "a"), None),
])
def test_doses_per_day(timing, per_day):
    assert order(dose=qty(40, "mg"), timing=timing).doses_per_day == per_day


def test_repeat_wins_over_code():
    t = {**every(24, "h", 1), "code": cc(GTS, "BID")}
    assert order(dose=qty(40, "mg"), timing=t).doses_per_day == 1


@pytest.mark.parametrize("dose,mg", [(qty(4000, "[IU]"), 40), (qty(6000, unit="IU", system=None), 60),
                                     (qty(0.04, "g"), 40), (qty(0.4, "mL"), None)])
def test_enoxaparin_dose_units(dose, mg):
    assert order(dose=dose, timing=every(1, "d")).dose_mg == (pytest.approx(mg) if mg else None)


def test_ml_and_syringe_doses_through_the_scd_strength_map():
    assert order(code="854235", dose=qty(0.4, "mL")).dose_mg == pytest.approx(40)     # 40 mg / 0.4 mL
    assert order(code="854238", dose=qty(1, "{syringe}")).dose_mg == 60
    heparin = order(code="2121591", dose=qty(0.5, "mL"), timing=every(12, "h"))
    assert (heparin.ingredient, heparin.dose_units, heparin.dose_mg) == ("heparin", pytest.approx(5000), None)


def test_heparin_units_and_iv_infusion():
    sc = order(code="5224", dose=qty(5000, "[iU]"), timing={"code": cc(GTS, "TID")})
    assert (sc.dose_units, sc.doses_per_day, sc.continuous) == (5000, 3, False)
    iv = order(code="5224", dose=qty(5000, "U"), route="47625008")
    assert iv.route == "intravenous" and iv.continuous
    rate = normalise_order(med_request("5224", route=None, dosage_extra={
        "doseAndRate": [{"rateQuantity": qty(1000, "U/h")}]}), CODES, {})
    assert rate.continuous


def test_unknown_dose_unit_leaves_dose_undetermined():
    o = order(dose=qty(40, "mcg"))
    assert o is not None and o.dose_mg is None and o.dose_units is None


def test_dose_range_high_and_lowest_sequence():
    r = med_request(dosage_extra={"doseAndRate": [{"doseRange": {"low": qty(40, "mg"), "high": qty(60, "mg")}}]})
    assert normalise_order(r, CODES, {}).dose_mg == 60
    r = med_request(dose=qty(80, "mg"))
    r["dosageInstruction"][0]["sequence"] = 2
    r["dosageInstruction"].insert(1, {"sequence": 1, "doseAndRate": [{"doseQuantity": qty(40, "mg")}]})
    assert normalise_order(r, CODES, {}).dose_mg == 40


@pytest.mark.parametrize("change", [{"doNotPerform": True}, {"intent": "proposal"}, {"intent": "plan"}])
def test_ignored_requests(change):
    assert normalise_order({**med_request(dose=qty(40, "mg")), **change}, CODES, {}) is None


def test_prn_is_ignored():
    assert order(dose=qty(40, "mg"), dosage_extra={"asNeededBoolean": True}) is None
    assert order(dose=qty(40, "mg"), dosage_extra={"asNeededBoolean": False}) is not None


def test_unmapped_or_missing_medication_is_ignored():
    assert order(code="999999", dose=qty(40, "mg")) is None
    assert order(code=None, dose=qty(40, "mg")) is None
    text_only = {**med_request(dose=qty(40, "mg")), "medicationCodeableConcept": {"text": "enoxaparin"}}
    assert normalise_order(text_only, CODES, {}) is None


def test_atc_and_snomed_substance_and_referenced_medications():
    assert order(code="B01AB05", system=ATC, dose=qty(40, "mg")).ingredient == "enoxaparin"
    med = {"resourceType": "Medication", "id": "m1", "code": {"text": "Clexane 40"},
           "ingredient": [{"itemCodeableConcept": cc(RXNORM, "67108")}]}
    ref = {**med_request(code=None, dose=qty(40, "mg")), "medicationReference": {"reference": "Medication/m1"}}
    assert normalise_order(ref, CODES, {"Medication/m1": med}).ingredient == "enoxaparin"
    assert normalise_order(ref, CODES, {}) is None
    contained = {**ref, "contained": [{**med, "id": "c1"}], "medicationReference": {"reference": "#c1"}}
    assert normalise_order(contained, CODES, {}).ingredient == "enoxaparin"


def test_combination_products_count_each_ingredient():
    orders = normalise_orders(med_request("B01AC34", system=ATC, dose=qty(1, "{each}")), CODES, {})
    assert [o.ingredient for o in orders] == ["aspirin", "clopidogrel"]


def test_normalise_order_does_not_filter_on_status():
    draft = med_request(dose=qty(40, "mg"), status="draft")
    assert normalise_order(draft, CODES, {}).status == "draft"
    assert not is_current_order(draft) and is_current_order(med_request())


def test_only_active_orders_are_current_in_extraction():
    active = med_request(dose=qty(40, "mg"), timing=every(1, "d"))
    stopped = med_request("1191", dose=qty(81, "mg"), status="stopped")
    draft = med_request("32968", dose=qty(75, "mg"), status="draft")
    assert [o.ingredient for o in run(active, stopped, draft).orders] == ["enoxaparin"]


def test_medication_reference_resolved_from_bundle_resources():
    med = {"resourceType": "Medication", "id": "m9", "code": cc(RXNORM, "854235")}
    req = {**med_request(code=None, dose=qty(0.4, "mL")), "medicationReference": {"reference": "Medication/m9"}}
    assert run(med, req).orders[0].dose_mg == pytest.approx(40)


def test_invalid_order_is_dropped():
    req = med_request(dose=qty(40, "mg"))
    req["authoredOn"] = "yesterday"
    assert run(req).orders == ()


def test_extraction_does_not_mutate_input():
    resources = [patient(), plt(100), obs("48065-7", qty(1, "mg/L"), referenceRange=[{"high": {"value": 0.5}}])]
    before = copy.deepcopy(resources)
    run(*resources)
    assert resources == before


def test_pf_falls_back_to_the_latest_pairable_pao2():
    inputs = run(gas("2703-7", 70, "mm[Hg]", "2024-03-10T11:00:00Z"),       # no FiO2 near it
                 gas("2703-7", 80, "mm[Hg]", "2024-03-10T06:00:00Z"),
                 gas("3150-0", 50, "%", "2024-03-10T06:30:00Z"))
    assert inputs.pf_ratio.value == pytest.approx(160.0)                    # 80 / 0.50
    assert inputs.pao2.value == 80 and inputs.pf_ratio.time.hour == 6


def test_pf_not_computable_is_recorded():
    inputs = run(gas("2703-7", 70, "mm[Hg]", "2024-03-10T11:00:00Z"), gas("3150-0", 50, "%", "2024-03-10T06:30:00Z"))
    assert inputs.pf_ratio is None and "fio2_pairing_minutes" in inputs.rejected["pf_ratio"]
    assert inputs.pao2.value == 70 and inputs.fio2.value == 0.5


# ------------------------------------------------------------------ more inputs


def test_urine_output_period_must_span_24_hours():
    day = obs("9187-6", qty(1.2, "L"), at=None,
              effectivePeriod={"start": "2024-03-09T08:00:00Z", "end": "2024-03-10T08:00:00Z"})
    short = obs("9187-6", qty(300, "mL"), at=None,
                effectivePeriod={"start": "2024-03-09T20:00:00Z", "end": "2024-03-10T10:00:00Z"})
    inputs = run(day, short)
    assert inputs.urine_output_24h.value == 1200 and inputs.urine_output_24h.time.hour == 8
    assert run(obs("9192-6", qty(450, "mL/(24.h)"))).urine_output_24h.value == 450


def test_worst_in_window_for_sofa_only_inputs():
    maps = [obs("8478-0", qty(v, "mm[Hg]"), at=f"2024-03-10T{h:02d}:00:00Z") for v, h in ((62, 2), (80, 9))]
    plts = [plt(80, at="2024-03-09T08:00:00Z"), plt(120)]
    worst = run(*maps, *plts, pol=policy(**{"sofa.value_selection": "worst_in_window"}))
    assert worst.map.value == 62 and worst.platelets.value == 120    # platelets also feed SIC/DIC: latest
    assert run(*maps, *plts).map.value == 80


def test_recorded_bmi_and_anti_xa_windows():
    inputs = run(obs("39156-5", qty(41.2, "kg/m2"), at="2024-02-20T00:00:00Z"),
                 obs("32684-3", qty(0.35, "[IU]/mL"), at="2024-03-07T12:00:00Z"))
    assert inputs.recorded_bmi.value == 41.2 and inputs.anti_xa.value == 0.35
    assert run(obs("3274-8", qty(0.35, "U/mL"), at="2024-03-07T11:00:00Z")).anti_xa is None


def test_recorded_sofa_subscore_out_of_range_is_rejected():
    inputs = run(obs("96823-0", qty(5, "{score}")))
    assert inputs.recorded_sofa.respiratory is None and "recorded_sofa.respiratory" in inputs.rejected


def test_gcs_and_hemoglobin_si():
    inputs = run(obs("9269-2", {"value": 13}), obs("59260-0", qty(5, "mmol/L")))
    assert inputs.gcs.value == 13 and inputs.hemoglobin.value == pytest.approx(8.055)


def test_preload_models_is_idempotent():
    from cds_service.fhir.extract import preload_models
    preload_models()
    preload_models()
    assert run(plt(100)).platelets.value == 100
