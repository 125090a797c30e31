"""Data requirements v2 readers (extract_inputs): Encounters, SARS-CoV-2 tests, COVID-19
Conditions, HIT records, other indications, recent ICH, renal replacement, MedicationStatements,
product codes and unmapped anticoagulants, count units, flushes, circuit heparin,
administrations, heparin start, platelet and creatinine series, FiO2 20.9 %.

now = 2024-03-10T12:00Z (fhir_factory.NOW); policy defaults.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from cds_service.fhir.codes import load_codes
from cds_service.fhir.extract import extract_inputs
from cds_service.fhir.orders import normalise_orders
from cds_service.logic.inputs import UNMAPPED_ANTICOAGULANT
from fhir_factory import (ATC, ICD10, ICD10CM, LOINC, NOW, PID, RXNORM, SCT, allergy, cc, condition,
                          every, med_request, obs, patient, policy, procedure, qty)

INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def run(*resources, pol=None, **kw):
    return extract_inputs(list(resources), now=NOW, policy=pol or policy(), **kw)


def t(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ------------------------------------------------------------------ Encounter (§2a)


def encounter(eid="e1", status="in-progress", code="IMP", system=ACTCODE, **extra):
    e = {"resourceType": "Encounter", "id": eid, "status": status,
         "subject": {"reference": f"Patient/{PID}"}, "period": {"start": "2024-03-08T10:00:00Z"}}
    if code is not None:
        e["class"] = {"system": system, "code": code}
    e.update(extra)
    return e


def test_encounter_status_class_id_and_context_encounter_id():
    inputs = run(patient(), encounter(), encounter("e2", status="finished", code="AMB"), encounter_id="e1")
    assert inputs.encounter_id == "e1"
    by_id = {e.id: e for e in inputs.encounters}
    assert by_id["e1"].status == "in-progress" and by_id["e1"].class_code == "IMP"
    assert by_id["e1"].period_start == t("2024-03-08T10:00:00Z") and by_id["e1"].source == "Encounter/e1"
    assert by_id["e2"].status == "finished" and by_id["e2"].class_code == "AMB"


def test_encounter_class_in_another_system_is_not_read_unless_the_code_file_maps_it(tmp_path):
    local = "http://hospital.example/encounter-class"
    assert run(encounter(code="INPT", system=local)).encounters[0].class_code is None
    extra = tmp_path / "codes.json"
    extra.write_text(json.dumps({"systems": {"LOCALCLASS": local},
                                 "encounter_classes": {"LOCALCLASS:INPT": "IMP"}}))
    codes = load_codes(str(extra))
    assert run(encounter(code="INPT", system=local), codes=codes).encounters[0].class_code == "IMP"


def test_encounter_of_another_patient_or_entered_in_error_is_ignored():
    other = encounter("e9", subject={"reference": "Patient/someone-else"})
    inputs = run(patient(), other, encounter("e8", status="entered-in-error"))
    assert inputs.encounters == ()


@pytest.mark.parametrize("broken", [
    {"status": "admitted"},                       # not an Encounter status
    {"status": None},
    {"class": {"system": ACTCODE, "code": 7}},    # not valid R4B
])
def test_malformed_encounter_is_dropped_with_a_reason_that_names_no_patient(broken):
    enc = {k: v for k, v in {**encounter("bad-enc"), **broken}.items() if v is not None}
    inputs = run(patient(), enc)
    assert inputs.encounters == ()
    assert "Encounter/bad-enc" in inputs.rejected["encounter"]
    assert PID not in inputs.rejected["encounter"].replace("Encounter/bad-enc", "")


# ------------------------------------------------------------------ SARS-CoV-2 tests (§3.2)


def covid_test(value=None, *, code="94500-6", at="2024-03-09T08:00:00Z", interpretation=None, **kw):
    extra = {}
    if value is not None:
        extra["valueCodeableConcept"] = cc(SCT, value)
    if interpretation is not None:
        extra["interpretation"] = [cc(INTERP, interpretation)]
    return obs(code, None, at=at, **extra, **kw)


@pytest.mark.parametrize("test,positive", [
    (covid_test("10828004"), True),                        # positive
    (covid_test("260373001"), True),                       # detected
    (covid_test(interpretation="POS"), True),
    (covid_test(interpretation="DET"), True),
    (covid_test("260415000"), False),                      # not detected
    (covid_test(interpretation="NEG"), False),
    (covid_test("10828004", code="94762-2"), False),       # antibody test never counts
    (covid_test("10828004", code="94558-4"), True),        # rapid antigen
    (covid_test("10828004", status="preliminary"), False),
])
def test_covid_test_positive_by_value_or_interpretation(test, positive):
    found = run(patient(), test).covid_positive_tests
    assert bool(found) is positive
    if positive:
        assert found[0].source == f"Observation/{test['id']}" and found[0].time == t("2024-03-09T08:00:00Z")


@pytest.mark.parametrize("at,used", [("2024-02-25T12:00:00Z", True),     # exactly 14 days: inside
                                     ("2024-02-25T11:59:59Z", False),
                                     ("2024-03-10T12:05:01Z", False)])   # beyond the future tolerance
def test_covid_test_window_is_14_days(at, used):
    assert bool(run(covid_test("10828004", at=at)).covid_positive_tests) is used


def test_covid_panel_components_are_read():
    panel = obs("94531-1", None, component=[
        {"code": cc(LOINC, "94533-7"), "valueCodeableConcept": cc(SCT, "260415000")},
        {"code": cc(LOINC, "94534-5"), "valueCodeableConcept": cc(SCT, "260373001")}])
    assert len(run(panel).covid_positive_tests) == 1
    negative = obs("94531-1", None, component=[
        {"code": cc(LOINC, "94533-7"), "valueCodeableConcept": cc(SCT, "260415000")}])
    assert run(negative).covid_positive_tests == ()


def test_malformed_covid_test_is_dropped_with_a_reason():
    bad = covid_test("10828004", oid="bad-test", issued="yesterday")
    inputs = run(patient(), bad)
    assert inputs.covid_positive_tests == ()
    assert inputs.rejected["covid_test"].startswith("Observation/bad-test")


# ------------------------------------------------------------------ Conditions (§6)


def test_covid_condition_with_its_encounter_and_onset_else_recorded_date():
    linked = condition(SCT, "840539006", cid="cv1", encounter={"reference": "Encounter/e1"},
                       onsetDateTime="2024-03-08T00:00:00Z", recordedDate="2024-03-09T00:00:00Z")
    recorded = condition(ICD10CM, "U07.1", cid="cv2", recordedDate="2024-02-01")
    resolved = condition(SCT, "840539006", clinical="resolved", cid="cv3")
    inputs = run(patient(), linked, recorded, resolved)
    by_source = {c.source: c for c in inputs.covid_conditions}
    assert set(by_source) == {"Condition/cv1", "Condition/cv2"}
    assert by_source["Condition/cv1"].encounter_id == "e1"
    assert by_source["Condition/cv1"].time == t("2024-03-08T00:00:00Z")
    assert by_source["Condition/cv2"].encounter_id is None and by_source["Condition/cv2"].time == t("2024-02-01T00:00:00Z")
    assert inputs.covid19 is not None and inputs.covid19.present   # the v1 flag is kept


def test_covid_condition_encounter_given_as_a_bundle_urn_is_read_through_the_aliases():
    # a transaction Bundle (assess CLI): Condition.encounter names the Encounter by its fullUrl
    urn = "urn:uuid:00000000-0000-4000-8000-0000000000e1"
    linked = condition(SCT, "840539006", cid="cv1", encounter={"reference": urn})
    inputs = run(patient(), linked, aliases={urn: "Encounter/e1"})
    assert [c.encounter_id for c in inputs.covid_conditions] == ["e1"]
    assert [c.encounter_id for c in run(patient(), linked).covid_conditions] == [None]


@pytest.mark.parametrize("coding,onset,expected", [
    ((SCT, "73397007"), {"onsetDateTime": "2024-03-08T00:00:00Z"}, t("2024-03-08T00:00:00Z")),
    ((SCT, "111588002"), {"onsetPeriod": {"start": "2024-01-01T00:00:00Z"}}, t("2024-01-01T00:00:00Z")),
    ((ICD10CM, "D75.822"), {"recordedDate": "2024-03-08"}, None),      # recordedDate never dates it
    ((ICD10CM, "D75.82"), {"onsetString": "last year"}, None),
    ((ICD10CM, "D75.829"), {}, None),
])
def test_hit_record_recency_only_from_a_dated_onset(coding, onset, expected):
    inputs = run(patient(), condition(*coding, clinical="resolved", cid="hit1", **onset))
    assert [(h.onset, h.source) for h in inputs.hit_records] == [(expected, "Condition/hit1")]
    assert inputs.hit_history is not None


def test_d75_821_non_immune_hit_is_not_hit():
    inputs = run(patient(), condition(ICD10CM, "D75.821", onsetDateTime="2024-03-08T00:00:00Z"))
    assert inputs.hit_records == () and inputs.hit_history is None


def test_hit_reaction_on_an_allergy_is_dated_by_the_reaction_onset():
    a = allergy(RXNORM, "5224", manifestation="73397007", recordedDate="2024-03-09")
    a["reaction"][0]["onset"] = "2024-02-20T00:00:00Z"
    undated = allergy(RXNORM, "5224", manifestation="73397007", recordedDate="2024-03-09")
    inputs = run(patient(), a, undated)
    assert sorted((h.onset is None) for h in inputs.hit_records) == [False, True]
    assert t("2024-02-20T00:00:00Z") in [h.onset for h in inputs.hit_records]


@pytest.mark.parametrize("coding,present", [
    ((SCT, "128053003"), True),          # DVT
    ((SCT, "59282003"), True),           # PE
    ((ICD10CM, "I26.99"), True),         # I26* family
    ((ICD10CM, "I82.401"), True),        # I82.4*
    ((ICD10CM, "I48.91"), True),         # AF
    ((SCT, "5370000"), True),            # atrial flutter
    ((ICD10CM, "Z95.2"), True),          # mechanical valve
    ((ICD10, "I51.3"), True),            # intracardiac thrombus
    ((ICD10, "I24.0"), False),           # coronary thrombosis is not
    ((ICD10CM, "I82.0"), False),         # Budd-Chiari: not in the list
])
def test_other_indication_for_anticoagulation(coding, present):
    flag = run(patient(), condition(*coding)).other_anticoagulation_indication
    assert (flag is not None and flag.present) is present


def test_resolved_other_indication_does_not_count():
    assert run(condition(SCT, "49436004", clinical="resolved")).other_anticoagulation_indication is None


@pytest.mark.parametrize("onset,recent", [("2024-12-11T12:00:00Z", False),   # future beyond tolerance
                                          ("2023-12-12T12:00:00Z", True),    # 89 days
                                          ("2023-12-11T12:00:00Z", True),    # exactly 90 days
                                          ("2023-12-10T12:00:00Z", False)])  # 91 days
def test_recent_intracranial_haemorrhage_within_90_days(onset, recent):
    flag = run(condition(ICD10CM, "I61.9", clinical="resolved", onsetDateTime=onset)).recent_intracranial_haemorrhage
    assert (flag is not None) is recent


def test_undated_intracranial_haemorrhage_is_not_called_recent():
    assert run(condition(SCT, "1386000", clinical="resolved")).recent_intracranial_haemorrhage is None


# ------------------------------------------------------------------ renal replacement (§6)


@pytest.mark.parametrize("resource,present", [
    (procedure("302497006"), True),                                                     # HD in progress
    (procedure("714749008", status="completed", end="2024-03-07T13:00:00Z"), True),     # CRRT 71 h ago
    (procedure("71192002", status="completed", end="2024-03-07T11:00:00Z"), False),     # PD 73 h ago
    (procedure("108241001", status="not-done"), False),
    (condition(ICD10CM, "N18.6"), True),                                                # ESKD active
    (condition(SCT, "46177005", clinical="resolved"), False),
])
def test_renal_replacement(resource, present):
    flag = run(patient(), resource).renal_replacement
    assert flag is not None and flag.present is present


# ------------------------------------------------------------------ medicines (§8)


def statement(code="1364445", *, system=RXNORM, status="active", end=None, sid="ms1", **extra):
    s = {"resourceType": "MedicationStatement", "id": sid, "status": status,
         "subject": {"reference": f"Patient/{PID}"}, "medicationCodeableConcept": cc(system, code),
         "effectivePeriod": {"start": "2023-06-01"}}
    if end:
        s["effectivePeriod"]["end"] = end
    s.update(extra)
    return s


def test_active_statement_is_exposure_never_an_order():
    inputs = run(patient(), statement())
    assert inputs.orders == ()
    [s] = inputs.statements
    assert (s.ingredient, s.drug_class, s.source) == ("apixaban", "doac", "MedicationStatement/ms1")
    assert s.authored_on == t("2023-06-01T00:00:00Z")


@pytest.mark.parametrize("end,kept", [("2024-03-10T11:00:00Z", False), ("2024-03-11", True), (None, True)])
def test_statement_with_a_past_effective_period_end_is_ignored(end, kept):
    assert bool(run(statement(end=end)).statements) is kept


@pytest.mark.parametrize("status", ["completed", "stopped", "intended", "entered-in-error"])
def test_only_active_statements_count(status):
    assert run(statement(status=status)).statements == ()


def test_malformed_statement_is_dropped_with_a_reason():
    inputs = run(patient(), statement(sid="bad-ms", dateAsserted="not a date"))
    assert inputs.statements == ()
    assert inputs.rejected["medication_statement"].startswith("MedicationStatement/bad-ms")


@pytest.mark.parametrize("code,ingredient", [("1364445", "apixaban"), ("1232086", "rivaroxaban"),
                                             ("855332", "warfarin"), ("309362", "clopidogrel")])
def test_product_codes_map_to_their_ingredient(code, ingredient):
    [order] = run(med_request(code, dose=qty(1, "{pill}"), timing=every(1, "d"))).orders
    assert order.ingredient == ingredient


def test_unmapped_anticoagulant_class_code_is_exposure_and_named_once():
    # §19.4 changes the second code (v2 counted any B01AX; only B01AX05 counts now)
    a = med_request("B01AE99", system=ATC, rid="mr-x1")
    b = med_request("B01AF99", system=ATC, rid="mr-x2")
    inputs = run(patient(), a, b)
    assert [(o.ingredient, o.drug_class) for o in inputs.orders] == [("unmapped", UNMAPPED_ANTICOAGULANT)] * 2
    assert list(inputs.rejected).count("medications.unmapped_anticoagulant") == 1
    assert "MedicationRequest/mr-x1" in inputs.rejected["medications.unmapped_anticoagulant"]


def test_unmapped_anticoagulant_product_listed_in_the_code_file(tmp_path):
    extra = tmp_path / "codes.json"
    extra.write_text(json.dumps({"anticoagulant_products_without_ingredient": ["RXNORM:999001"]}))
    inputs = run(med_request("999001"), codes=load_codes(str(extra)))
    assert [o.drug_class for o in inputs.orders] == [UNMAPPED_ANTICOAGULANT]


def test_rxnorm_order_that_maps_to_nothing_is_listed_once():
    inputs = run(med_request("161", rid="para"), med_request("161", rid="para2"), med_request("197361"))
    assert inputs.orders == ()
    assert inputs.rejected["medications.unmapped_rxnorm"].endswith("161, 197361")


def test_drafts_never_become_unmapped_exposure():
    assert normalise_orders(med_request("B01AE99", system=ATC, status="draft"), load_codes()) == []


@pytest.mark.parametrize("unit", ["{pill}", "{syringe}", "{each}", "{dose}", "{unit}", "1"])
def test_count_units_through_the_strength_map(unit):
    [order] = run(med_request("854235", dose=qty(1, unit), timing=every(1, "d"))).orders
    assert order.dose_mg == pytest.approx(40.0)


def test_count_of_heparin_syringes_gives_units():
    [order] = run(med_request("2121591", dose=qty(1, "{pill}"), timing=every(12, "h"))).orders
    assert order.dose_units == pytest.approx(5000.0) and order.dose_mg is None


def test_count_unit_without_a_strength_is_not_determinable():
    [order] = run(med_request("67108", dose=qty(1, "{pill}"), timing=every(1, "d"))).orders
    assert order.dose_mg is None and order.dose_units is None


def test_as_needed_codeable_concept_is_ignored_like_as_needed_boolean():
    prn = med_request("67108", dose=qty(40, "mg"), dosage_extra={"asNeededCodeableConcept": {"text": "pain"}})
    assert run(prn).orders == ()


def test_authored_on_and_encounter_from_the_request():
    [order] = run(med_request("67108", dose=qty(40, "mg"), authoredOn="2024-03-09T09:00:00Z",
                              encounter={"reference": "Encounter/e1"})).orders
    assert order.authored_on == t("2024-03-09T09:00:00Z") and order.encounter_id == "e1"


def heparin_with_strength(units_per_ml, rid="hep"):
    med = {"resourceType": "Medication", "id": "med", "code": cc(RXNORM, "5224"),
           "ingredient": [{"itemCodeableConcept": cc(RXNORM, "5224"),
                           "strength": {"numerator": qty(units_per_ml, "[iU]"), "denominator": qty(1, "mL")}}]}
    return med_request(None, rid=rid, medicationReference={"reference": "#med"}, contained=[med],
                       dose=qty(500, "[iU]"), timing=every(8, "h"), route="47625008")


@pytest.mark.parametrize("strength,order", [(100, False), (10, False), (1000, True), (101, True)])
def test_heparin_flush_of_at_most_100_units_per_ml_is_not_an_anticoagulant(strength, order):
    # 500 U per administration, no rate: §19.4 step 3 at <= 100 U/mL
    assert bool(run(heparin_with_strength(strength)).orders) is order


@pytest.mark.parametrize("text", ["Heparin lock flush after each use", "flush line", "LOCK: 3 mL"])
def test_heparin_order_whose_dosage_text_says_flush_or_lock_is_still_an_anticoagulant(text):
    """§19.4 changes this (v2 made any order whose text said flush or lock a flush): text never
    overrides step 5, so 5,000 U q12h of unknown concentration is anticoagulant exposure."""
    r = med_request("5224", dose=qty(5000, "[iU]"), timing=every(12, "h"), dosage_extra={"text": text})
    assert len(run(r).orders) == 1


def test_prophylactic_heparin_whose_text_says_nothing_of_flushes_counts():
    r = med_request("5224", dose=qty(5000, "[iU]"), timing=every(12, "h"), dosage_extra={"text": "blocks"})
    assert len(run(r).orders) == 1


def heparin_infusion():
    r = med_request("5224", route="47625008", timing=None)
    r["dosageInstruction"][0]["doseAndRate"] = [{"rateQuantity": qty(1000, "[iU]/h")}]
    return r


def circuit_infusion():
    r = heparin_infusion()
    r["dosageInstruction"][0]["text"] = "into the circuit"   # "ordered for the circuit" (§10.4)
    return r


@pytest.mark.parametrize("circuit", ["233573008", "714749008"])
def test_circuit_heparin_during_ecmo_or_crrt_is_exposure_marked_circuit(circuit):
    """§19.4 changes this (v2 dropped circuit heparin from exposure): it counts, with `circuit`."""
    [order] = run(circuit_infusion(), procedure(circuit)).orders
    assert order.circuit is True
    # the order says it is for the circuit: circuit even with no Procedure in progress (contract v3)
    [order] = run(circuit_infusion()).orders
    assert order.circuit is True
    # any UFH order while an ECMO/CRRT Procedure is in progress is circuit heparin (contract v3)
    [order] = run(heparin_infusion(), procedure(circuit)).orders
    assert order.circuit is True
    [order] = run(heparin_infusion(), procedure(circuit, status="completed", end="2024-03-10T10:00:00Z")).orders
    assert order.circuit is False


def administration(code="5224", at="2024-03-05T08:00:00Z", status="completed", aid=None, dose=None, **extra):
    a = {"resourceType": "MedicationAdministration", "id": aid or f"ma-{at[:13]}", "status": status,
         "subject": {"reference": f"Patient/{PID}"}, "medicationCodeableConcept": cc(RXNORM, code),
         "effectiveDateTime": at}
    if dose:
        a["dosage"] = {"dose": dose}
    a.update(extra)
    return a


def test_administrations_oldest_first_and_the_heparin_start():
    inputs = run(patient(), administration("67108", "2024-03-08T08:00:00Z", dose=qty(40, "mg")),
                 administration("5224", "2024-03-06T08:00:00Z", dose=qty(5000, "[iU]")),
                 administration("1364445", "2024-03-04T08:00:00Z"),
                 administration("5224", "2024-03-07T08:00:00Z", status="not-done"),
                 med_request("67108", dose=qty(40, "mg"), authoredOn="2024-03-01T00:00:00Z"))
    assert [(a.ingredient, a.time) for a in inputs.administrations] == [
        ("apixaban", t("2024-03-04T08:00:00Z")), ("heparin", t("2024-03-06T08:00:00Z")),
        ("enoxaparin", t("2024-03-08T08:00:00Z"))]
    assert inputs.administrations[2].dose_mg == 40 and inputs.administrations[1].dose_units == 5000
    assert inputs.heparin_started == t("2024-03-06T08:00:00Z")


def test_heparin_start_from_the_earliest_active_order_when_nothing_was_given():
    inputs = run(med_request("67108", dose=qty(40, "mg"), authoredOn="2024-03-03T00:00:00Z"),
                 med_request("5224", dose=qty(5000, "[iU]"), authoredOn="2024-03-02T00:00:00Z"),
                 med_request("1364445", authoredOn="2024-02-01T00:00:00Z"))
    assert inputs.heparin_started == t("2024-03-02T00:00:00Z")
    assert run(med_request("1364445", authoredOn="2024-02-01T00:00:00Z")).heparin_started is None


def test_heparin_flush_administration_is_heparin_for_hit_never_exposure():
    """§19.4 changes this: a flush given still counts as heparin for HIT (the hit_suspected start)."""
    flush = administration("1442414", dosage={"text": "heparin lock flush", "dose": qty(3, "mL")})
    inputs = run(flush)
    assert [a.flush for a in inputs.administrations] == [True]
    assert inputs.heparin_started == t("2024-03-05T08:00:00Z") and inputs.orders == ()


# ------------------------------------------------------------------ series


def plt(value, at, **kw):
    return obs("777-3", qty(value, "10*9/L"), at=at, **kw)


def test_platelet_trend_14_days_oldest_first_deduplicated():
    same = plt(210, "2024-03-05T08:00:00Z", oid="p-same")
    inputs = run(plt(250, "2024-02-25T12:00:00Z"),          # exactly 14 days: inside
                 plt(260, "2024-02-25T11:59:00Z"),          # outside
                 plt(120, "2024-03-10T08:00:00Z"), same, dict(same),
                 obs("26515-7", qty(210000, "/uL"), at="2024-03-05T08:00:00Z"))   # same count, other code
    assert [(m.value, m.time) for m in inputs.platelet_trend] == [
        (250, t("2024-02-25T12:00:00Z")), (pytest.approx(210), t("2024-03-05T08:00:00Z")),
        (120, t("2024-03-10T08:00:00Z"))]
    assert inputs.platelets.value == 120


def test_creatinine_series_in_the_labs_window_in_mg_dl():
    inputs = run(obs("2160-0", qty(1.0, "mg/dL"), at="2024-03-07T12:00:00Z"),
                 obs("14682-9", qty(132.6, "umol/L"), at="2024-03-09T12:00:00Z"),
                 obs("2160-0", qty(0.9, "mg/dL"), at="2024-03-07T11:00:00Z"))   # 73 h: outside
    assert [round(m.value, 3) for m in inputs.creatinine_series] == [1.0, 1.5]
    assert inputs.creatinine_series[1].reported_unit == "umol/L"


# ------------------------------------------------------------------ smaller v2 fixes


def test_fio2_of_20_9_percent_room_air_is_accepted():
    inputs = run(obs("3150-0", qty(20.9, "%"), at="2024-03-10T08:00:00Z"))
    assert inputs.fio2.value == pytest.approx(0.209)
    assert inputs.respiratory.room_air_documented


@pytest.mark.parametrize("applies,used", [
    (None, True),
    ([cc(SCT, "248153007")], True),                 # male: the patient's own sex
    ([cc(SCT, "248152002")], False),                # female
    ([cc(SCT, "77386006")], False),                 # pregnancy: another population
])
def test_reference_range_applies_to_another_population(applies, used):
    entry = {"high": qty(0.5, "mg/L")}
    if applies:
        entry["appliesTo"] = applies
    d = obs("48065-7", qty(2.0, "mg/L"), referenceRange=[entry])
    assert (run(patient(gender="male"), d).d_dimer.reference_high_mg_l is not None) is used


@pytest.mark.parametrize("low,high,used", [(18, 120, True), (0, 17, False)])
def test_reference_range_age_band_must_hold_the_patient(low, high, used):
    entry = {"high": qty(0.5, "mg/L"), "age": {"low": {"value": low, "unit": "a"}, "high": {"value": high, "unit": "a"}}}
    d = obs("48065-7", qty(2.0, "mg/L"), referenceRange=[entry])
    assert (run(patient(), d).d_dimer.reference_high_mg_l is not None) is used


# ------------------------------------------------------------------ product codes checked against VSAC


@pytest.mark.parametrize("code,dose,mg,units", [
    ("854245", qty(0.8, "mL"), 120.0, None),      # 0.8 mL of 150 mg/mL (the v2 table had it as 100 mg/1 mL)
    ("854248", qty(1, "mL"), 100.0, None),        # 1 mL of 100 mg/mL
    ("854248", qty(1, "{syringe}"), 100.0, None),
    ("854255", qty(0.4, "mL"), 40.0, None),       # multi-dose vial, 100 mg/mL
    ("854255", qty(1, "{each}"), None, None),     # a count of a multi-dose vial is no dose
    ("861360", qty(1, "{pill}"), 2.5, None),      # fondaparinux 2.5 mg/0.5 mL
    ("978733", qty(1, "{syringe}"), None, 5000.0),  # dalteparin 5000 IU/0.2 mL
    ("1798389", qty(1, "{syringe}"), None, 5000.0),  # heparin 5000 U/1 mL
])
def test_strength_map_of_single_dose_injectables(code, dose, mg, units):
    [order] = run(med_request(code, dose=dose, timing=every(1, "d"))).orders
    assert (order.dose_mg, order.dose_units) == (pytest.approx(mg) if mg else None, pytest.approx(units) if units else None)


def test_desirudin_is_an_anticoagulant_product_without_an_ingredient_in_the_table():
    [order] = run(med_request("402248")).orders
    assert order.drug_class == UNMAPPED_ANTICOAGULANT


def test_dabigatran_etexilate_ingredient_code_maps():
    assert [o.ingredient for o in run(med_request("1037042")).orders] == ["dabigatran"]


def test_lock_flush_product_code_is_never_an_anticoagulant():
    assert run(med_request("1442414", dose=qty(3, "mL"))).orders == ()


@pytest.mark.parametrize("strength", [100, 50, 10, 2])
def test_premixed_heparin_infusion_with_a_weight_based_rate_is_not_a_flush(strength):
    """A 25,000 U/250 mL (100 U/mL) or /500 mL (50 U/mL) bag run at a rate is therapeutic heparin.
    §19.4 changes the 2-10 U/mL case (v2 called it a flush at any rate): with a rate, a flush only
    below 50 U/h, and 18 U/kg/h cannot be shown to be below 50 U/h (fails closed)."""
    r = heparin_with_strength(strength)
    r["dosageInstruction"][0]["doseAndRate"] = [{"rateQuantity": qty(18, "[iU]/(kg.h)")}]
    assert len(run(r).orders) == 1
