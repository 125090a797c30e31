"""Contraindications, escalation cautions and order classes (clinical-rules.md §10)."""
import pytest

from cds_service.logic.inputs import Measurement, MedicationOrder
from cds_service.logic.policy import Policy
from cds_service.logic.safety import (assess_safety, classify_order, contraindications,
                                      escalation_cautions)

P = Policy.default()


def m(value, comparator=None):
    return Measurement(value, "x", comparator=comparator)


def safety(**kw):
    args = dict(active_bleeding=False, recent_bleeding=False, bleeding_disorder=False,
                hit_history=False, heparin_allergy=False, platelets=m(200), fibrinogen_g_l=m(3.0),
                hemoglobin_g_dl=m(12.0), orders=(), weight_kg=80.0, crcl_lt_30=False, policy=P)
    args.update(kw)
    return assess_safety(**args)


@pytest.mark.parametrize("platelets, contra, cautions", [
    (24.9, ("platelets_lt_25",), ("platelets_lt_50",)),   # < 25 is also listed as < 50
    (25.0, (), ("platelets_lt_50",)),
    (24.9999999, (), ("platelets_lt_50",)),               # 6-dp rounding: 25.000000
    (49.9, (), ("platelets_lt_50",)),
    (50.0, (), ()),
])
def test_platelet_edges(platelets, contra, cautions):
    s = safety(platelets=m(platelets))
    assert s.contraindications == contra
    assert s.escalation_cautions == cautions


@pytest.mark.parametrize("fibrinogen, contra, cautions", [
    (0.49, ("fibrinogen_lt_0.5",), ("fibrinogen_lt_1.0",)),
    (0.5, (), ("fibrinogen_lt_1.0",)),
    (0.99, (), ("fibrinogen_lt_1.0",)),
    (1.0, (), ()),
])
def test_fibrinogen_edges(fibrinogen, contra, cautions):
    s = safety(fibrinogen_g_l=m(fibrinogen))
    assert (s.contraindications, s.escalation_cautions) == (contra, cautions)


@pytest.mark.parametrize("hb, cautions", [(7.9, ("hemoglobin_lt_8",)), (8.0, ())])
def test_hemoglobin_edge(hb, cautions):
    assert safety(hemoglobin_g_dl=m(hb)).escalation_cautions == cautions


def test_all_codes_in_rule_order():
    orders = (MedicationOrder("clopidogrel", "antiplatelet"), MedicationOrder("aspirin", "antiplatelet"))
    s = safety(active_bleeding=True, recent_bleeding=True, bleeding_disorder=True,
               hit_history=True, heparin_allergy=True, platelets=m(10), fibrinogen_g_l=m(0.3),
               hemoglobin_g_dl=m(6.0), orders=orders)
    assert s.contraindications == ("active_bleeding", "platelets_lt_25", "fibrinogen_lt_0.5",
                                   "hit_history", "heparin_allergy")
    assert s.escalation_cautions == ("platelets_lt_50", "hemoglobin_lt_8", "fibrinogen_lt_1.0",
                                     "dual_antiplatelet_therapy", "recent_bleeding",
                                     "bleeding_disorder")


@pytest.mark.parametrize("orders, dual", [
    ((MedicationOrder("aspirin", "antiplatelet"), MedicationOrder("clopidogrel", "antiplatelet")), True),
    ((MedicationOrder("aspirin", "antiplatelet"), MedicationOrder("aspirin", "antiplatelet")), False),
    ((MedicationOrder("aspirin", "antiplatelet"),
      MedicationOrder("ticagrelor", "antiplatelet", status="draft")), False),
    ((MedicationOrder("aspirin", "antiplatelet"), MedicationOrder("warfarin", "vka")), False),
])
def test_dual_antiplatelet(orders, dual):
    assert ("dual_antiplatelet_therapy" in safety(orders=orders).escalation_cautions) is dual


def test_bounds_count_only_when_they_settle():
    # "<20" is below 25 and 50 whatever the true value
    s = safety(platelets=m(20, "<"))
    assert s.contraindications == ("platelets_lt_25",)
    assert "platelets_lt_50" in s.escalation_cautions
    # ">20" might be 30 or 300: neither code, and both are undetermined
    s = safety(platelets=m(20, ">"))
    assert s.contraindications == () and s.escalation_cautions == ()
    assert s.undetermined == ("platelets_lt_25", "platelets_lt_50")
    # ">60" settles both as absent
    assert safety(platelets=m(60, ">")).undetermined == ()


def test_missing_labs_raise_nothing_but_are_undetermined():
    s = safety(platelets=None, fibrinogen_g_l=None, hemoglobin_g_dl=None)
    assert s.contraindications == () and s.escalation_cautions == ()
    assert s.undetermined == ("platelets_lt_25", "fibrinogen_lt_0.5", "platelets_lt_50",
                              "hemoglobin_lt_8", "fibrinogen_lt_1.0")


def test_policy_overrides_move_the_edges():
    p = P.with_overrides({"safety.platelets_abs_min": 30, "safety.hemoglobin_caution_min_g_dl": 7.0})
    assert contraindications(active_bleeding=False, platelets=m(29.9), fibrinogen_g_l=None,
                             hit_history=False, heparin_allergy=False, policy=p) == ("platelets_lt_25",)
    assert escalation_cautions(platelets=None, hemoglobin_g_dl=m(7.5), fibrinogen_g_l=None, orders=(),
                               recent_bleeding=False, bleeding_disorder=False, policy=p) == ()


def enox(dose, per_day):
    return MedicationOrder("enoxaparin", "lmwh", dose_mg=dose, doses_per_day=per_day)


def units(name, dose, per_day, drug_class="lmwh", **kw):
    return MedicationOrder(name, drug_class, dose_units=dose, doses_per_day=per_day, **kw)


def mg(name, dose, per_day, drug_class):
    return MedicationOrder(name, drug_class, dose_mg=dose, doses_per_day=per_day)


@pytest.mark.parametrize("order, weight, crcl_lt_30, expected", [
    # enoxaparin >= 2 doses/day, per dose mg/kg at 100 kg: 0.4 and 0.7 edges
    (enox(39.9, 2), 100, False, "prophylactic"),      # 0.399
    (enox(40, 2), 100, False, "intermediate"),        # 0.4
    (enox(69.9, 2), 100, False, "intermediate"),      # 0.699
    (enox(70, 2), 100, False, "therapeutic"),         # 0.7
    (enox(100, 2), 100, False, "therapeutic"),        # 1 mg/kg q12h
    (enox(40, 2), 130, False, "prophylactic"),        # 0.31 mg/kg: the §10.3 side effect
    (enox(30, 3), 100, False, "prophylactic"),        # per dose 0.3
    # enoxaparin once daily, daily mg/kg at 100 kg: 0.7 and 1.4 edges
    (enox(69.9, 1), 100, False, "prophylactic"),      # 0.699
    (enox(70, 1), 100, False, "intermediate"),        # 0.7
    (enox(140, 1), 100, False, "intermediate"),       # 1.4 exactly is not > 1.4
    (enox(140.1, 1), 100, False, "therapeutic"),      # 1.401
    (enox(150, 1), 100, False, "therapeutic"),        # 1.5 mg/kg daily
    (enox(40, 1), 56, False, "prophylactic"),         # §19.0 changes v2 (0.714 mg/kg: "intermediate"): 40 mg once daily is prophylactic by the list
    (enox(40, 1), 57.2, False, "prophylactic"),       # 0.699
    # renal: once daily >= 0.7 mg/kg is therapeutic when CrCl < 30
    (enox(70, 1), 100, True, "therapeutic"),
    (enox(69.9, 1), 100, True, "prophylactic"),
    (enox(70, 1), 100, None, "intermediate"),         # CrCl unknown: the renal row needs true
    # weight unknown
    (enox(40, 1), None, None, "prophylactic"),
    (enox(41, 1), None, None, "intermediate"),
    (enox(80, 1), None, None, "intermediate"),
    (enox(80.1, 1), None, None, "therapeutic"),
    (enox(40, 2), None, None, "intermediate"),
    (enox(41, 2), None, None, "therapeutic"),
    (enox(30, 3), None, None, "therapeutic"),         # "otherwise"
    # unreadable
    (enox(None, 1), 80, False, None),
    (enox(40, None), 80, False, None),
    # UFH
    (units("heparin", 5000, 2, "anticoagulant", route="subcutaneous"), 80, False, "prophylactic"),
    (units("heparin", 7499, 3, "anticoagulant", route="subcutaneous"), 80, False, "prophylactic"),
    (units("heparin", 7500, 3, "anticoagulant", route="subcutaneous"), 80, False, "intermediate"),
    (units("heparin", 5000, 2, "anticoagulant"), 80, False, "prophylactic"),   # route not stated
    (units("heparin", 5000, 1, "anticoagulant", route="intravenous"), 80, False, "therapeutic"),
    (units("heparin", None, None, "anticoagulant", continuous=True), None, None, "therapeutic"),
    (units("heparin", None, 2, "anticoagulant", route="subcutaneous"), 80, False, None),
    (units("heparin", 5000, None, "anticoagulant", route="subcutaneous"), 80, False, None),
    # dalteparin / tinzaparin at 70 kg: 140 IU/kg/day = 9,800 IU/day
    (units("dalteparin", 5000, 1), 70, False, "prophylactic"),
    (units("dalteparin", 5001, 1), 70, False, "intermediate"),
    (units("dalteparin", 9799, 1), 70, False, "intermediate"),
    (units("dalteparin", 9800, 1), 70, False, "therapeutic"),
    (units("dalteparin", 2500, 2), 70, False, "intermediate"),  # not once daily
    (units("dalteparin", 5000, 2), 70, False, "therapeutic"),   # 142.9 IU/kg/day
    (units("tinzaparin", 4500, 1), 70, False, "prophylactic"),
    (units("tinzaparin", 4501, 1), 70, False, "intermediate"),
    (units("tinzaparin", 4500, 1), 30, False, "therapeutic"),   # 150 IU/kg/day: per kg first
    (units("dalteparin", 5000, 1), None, None, "prophylactic"),
    (units("dalteparin", 7500, 1), None, None, None),           # intermediate or therapeutic?
    # fondaparinux
    (mg("fondaparinux", 2.5, 1, "anticoagulant"), 80, False, "prophylactic"),
    (mg("fondaparinux", 2.5, 2, "anticoagulant"), 80, False, "therapeutic"),  # 5 mg/day
    (mg("fondaparinux", 4.9, 1, "anticoagulant"), 80, False, "intermediate"),
    (mg("fondaparinux", 5, 1, "anticoagulant"), 80, False, "therapeutic"),
    (mg("fondaparinux", 7.5, 1, "anticoagulant"), 80, False, "therapeutic"),
    # DOACs
    (mg("rivaroxaban", 10, 1, "doac"), 80, False, "prophylactic"),
    (mg("rivaroxaban", 15, 1, "doac"), 80, False, "therapeutic"),
    (mg("rivaroxaban", 10, 2, "doac"), 80, False, "therapeutic"),
    (mg("apixaban", 2.5, 2, "doac"), 80, False, "prophylactic"),
    (mg("apixaban", 5, 2, "doac"), 80, False, "therapeutic"),
    (mg("apixaban", None, 2, "doac"), 80, False, None),
    (MedicationOrder("dabigatran", "doac"), None, None, "therapeutic"),
    (MedicationOrder("edoxaban", "doac"), None, None, "therapeutic"),
    (MedicationOrder("warfarin", "vka"), None, None, "therapeutic"),
    (MedicationOrder("argatroban", "dti"), None, None, "therapeutic"),
    (MedicationOrder("bivalirudin", "dti"), None, None, "therapeutic"),
    (MedicationOrder("aspirin", "antiplatelet", dose_mg=100, doses_per_day=1), 80, False, None),
])
def test_classify_order(order, weight, crcl_lt_30, expected):
    assert classify_order(order, weight, crcl_lt_30, P) == expected


def test_classify_order_policy_override():
    p = P.with_overrides({"orders.q12h_therapeutic_mg_kg": 0.8})
    assert classify_order(enox(70, 2), 100, False, p) == "intermediate"


def test_current_order_class_is_the_highest_active_one():
    orders = (enox(40, 1), MedicationOrder("warfarin", "vka", status="draft"),
              MedicationOrder("aspirin", "antiplatelet"), enox(80, 2))
    s = safety(orders=orders, weight_kg=80.0)
    assert s.current_order_class == "therapeutic"      # 80 mg q12h at 80 kg = 1 mg/kg
    assert s.already_therapeutic is True
    assert [c for _, c in s.orders] == ["prophylactic", "therapeutic"]


@pytest.mark.parametrize("orders, expected", [
    ((), None),
    ((enox(None, 1),), None),                              # unclassifiable: no class
    ((enox(40, 1), enox(None, 2)), "prophylactic"),
    ((MedicationOrder("warfarin", "vka", status="draft"),), None),  # drafts are never current
])
def test_current_order_class_null_cases(orders, expected):
    s = safety(orders=orders)
    assert s.current_order_class == expected
    assert s.already_therapeutic is False
