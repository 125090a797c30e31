"""Safety v2 (clinical rules §10.1, §10.2, §10.4), from the rules, at their edges."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cds_service.logic.assessment import assess
from cds_service.logic.inputs import (UNMAPPED_ANTICOAGULANT, Flag, HitRecord, Measurement,
                                      MedicationOrder, PatientInputs)
from cds_service.logic.policy import Policy
from cds_service.logic.safety import hit_status, hit_suspected

P = Policy.default()
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


def plt(value, days_ago=0.0, comparator=None):
    return Measurement(value, "10*9/L", NOW - timedelta(days=days_ago), comparator)


def hit(days_ago=None):
    return HitRecord(onset=None if days_ago is None else NOW - timedelta(days=days_ago),
                     source="Condition/hit")


def status(records, platelets):
    return hit_status(hit_records=records, hit_history=bool(records), platelets=platelets,
                      now=NOW, policy=P)


# -- HIT recency (§10.1): dated onset within 100 days, platelets < 150 --------------------------
@pytest.mark.parametrize("days, platelets, expected", [
    (99, plt(149), "hit_acute"),
    (99, plt(150), "hit_recent"),
    (101, plt(149), "hit_history"),
    (101, plt(60), "hit_history"),
    (99, None, "hit_recent"),            # no platelet count in the window
    (2, plt(60), "hit_acute"),
])
def test_hit_recency_edges(days, platelets, expected):
    assert status((hit(days),), platelets) == expected


def test_undated_hit_is_history_even_with_low_platelets():
    # a recordedDate never makes HIT recent: a 2015 HIT typed in today is history
    assert status((hit(None),), plt(60)) == "hit_history"


def test_unsettled_platelet_bound_is_treated_as_no_count():
    assert status((hit(10),), plt(200, comparator="<")) == "hit_recent"
    assert status((hit(10),), plt(100, comparator="<")) == "hit_acute"


def test_hit_flag_without_records_is_history():
    assert hit_status(hit_records=(), hit_history=True, platelets=plt(60), now=NOW,
                      policy=P) == "hit_history"


def test_at_most_one_hit_code_and_acute_wins():
    assert status((hit(None), hit(300), hit(5)), plt(80)) == "hit_acute"


# -- hit_suspected: platelet fall on heparin ----------------------------------------------------
def suspected(started_days_ago, trend, *, active=True, last_given_days_ago=None):
    return hit_suspected(heparin_started=NOW - timedelta(days=started_days_ago),
                         platelet_trend=trend, now=NOW, policy=P, heparin_active=active,
                         last_heparin_given=None if last_given_days_ago is None
                         else NOW - timedelta(days=last_given_days_ago))


@pytest.mark.parametrize("latest, expected", [(101, False), (100, True)])  # 49.5 % vs 50 % fall
def test_fall_49_vs_50_percent_on_day_5(latest, expected):
    # highest 200 since heparin started; latest 101 is a 49.5 % fall, 100 is 50 %
    assert suspected(5, (plt(200, 3), plt(latest, 0))) is expected


@pytest.mark.parametrize("day, expected", [(4.9, False), (5.0, True)])
def test_heparin_day_4_vs_5(day, expected):
    assert suspected(day, (plt(200, 3), plt(90, 0))) is expected


def test_fall_to_below_100_from_150():
    assert suspected(6, (plt(150, 4), plt(99, 0))) is True      # 34 % fall but < 100 from >= 150
    assert suspected(6, (plt(149, 4), plt(99, 0))) is False     # from below 150, 33.6 % fall
    assert suspected(6, (plt(150, 4), plt(100, 0))) is False


def test_only_counts_since_heparin_started_count():
    # the 300 was before heparin: the highest since heparin is 160, 160 -> 120 is a 25 % fall
    assert suspected(6, (plt(300, 8), plt(160, 4), plt(120, 0))) is False


def test_no_heparin_or_single_count_is_not_suspected():
    assert hit_suspected(heparin_started=None, platelet_trend=(plt(200, 3), plt(50)), now=NOW,
                         policy=P, heparin_active=True, last_heparin_given=None) is False
    assert suspected(6, (plt(50, 0),)) is False


# §10.1 "a heparin (any dose) active or given": a course stopped long ago, with no active
# order, does not make a current platelet fall a fall "on heparin". Given within the platelet
# trend window (14 days) still counts (the count since heparin started is what is read).
@pytest.mark.parametrize("last_given_days_ago, expected", [
    (None, False),      # started 40 days ago, never given, no active order
    (30, False),        # last given 30 days ago
    (14.1, False),      # just outside window.platelet_trend_days
    (14.0, True),       # at the edge of the window
    (2, True),          # given 2 days ago (order since stopped)
])
def test_heparin_not_active_counts_only_when_given_within_the_trend_window(last_given_days_ago, expected):
    trend = (plt(220, 10), plt(90, 0))      # a 59 % fall, to < 100 from >= 150
    assert suspected(40, trend, active=False, last_given_days_ago=last_given_days_ago) is expected


def test_active_heparin_order_counts_without_any_administration():
    assert suspected(6, (plt(220, 3), plt(90, 0)), active=True, last_given_days_ago=None) is True


def test_through_the_assessment_a_stopped_course_is_not_suspected():
    from cds_service.logic.inputs import Administration
    trend = (plt(220, 10), plt(90, 0))
    old = tuple(Administration("enoxaparin", "lmwh", time=NOW - timedelta(days=d), dose_mg=40)
                for d in (40, 35, 30))
    kw = dict(platelets=plt(90), platelet_trend=trend, heparin_started=NOW - timedelta(days=40),
              administrations=old)
    assert "hit_suspected" not in safety(**kw)["contraindications"]
    recent = old + (Administration("heparin", "anticoagulant", time=NOW - timedelta(days=1),
                                   dose_units=5000),)
    assert safety(**{**kw, "administrations": recent})["contraindications"] == ["hit_suspected"]
    # an active order (no administration recorded) is "active"
    assert safety(**{**kw, "administrations": (), "orders": (enox(40, 1),)})["contraindications"] \
        == ["hit_suspected"]
    # a non-heparin (fondaparinux) given yesterday is not heparin exposure
    fonda = old + (Administration("fondaparinux", "anticoagulant", time=NOW - timedelta(days=1),
                                  dose_mg=2.5),)
    assert "hit_suspected" not in safety(**{**kw, "administrations": fonda})["contraindications"]


# -- through the assessment ---------------------------------------------------------------------
def enox(dose, per_day, **kw):
    kw.setdefault("source", "MedicationRequest/e")
    return MedicationOrder("enoxaparin", "lmwh", dose_mg=dose, doses_per_day=per_day, **kw)


def base(**kw):
    args = dict(now=NOW, age_years=60, sex="male", weight=Measurement(80, "kg", NOW),
                height=Measurement(178, "cm", NOW), creatinine=Measurement(1.0, "mg/dL", NOW),
                platelets=plt(200), hemoglobin=Measurement(12, "g/dL", NOW))
    args.update(kw)
    return PatientInputs(**args)


def safety(**kw):
    return assess(base(**kw), P).to_json()["safety"]


def test_suspected_only_without_recorded_hit():
    trend = (plt(220, 3), plt(100, 0))
    kw = dict(platelets=plt(100), platelet_trend=trend, heparin_started=NOW - timedelta(days=6),
              orders=(enox(40, 1),))
    assert safety(**kw)["contraindications"] == ["hit_suspected"]
    assert safety(hit_records=(hit(None),), hit_history=Flag(True), **kw)["contraindications"] \
        == ["hit_history"]


def test_contraindication_order_acute_hit_with_bleeding():
    s = safety(active_bleeding=Flag(True), hit_records=(hit(3),), platelets=plt(60))
    assert s["contraindications"] == ["active_bleeding", "hit_acute"]


@pytest.mark.parametrize("order, running", [
    (MedicationOrder("argatroban", "dti", continuous=True), ["argatroban"]),
    (MedicationOrder("bivalirudin", "dti", continuous=True), ["bivalirudin"]),
    (MedicationOrder("fondaparinux", "anticoagulant", dose_mg=7.5, doses_per_day=1), ["fondaparinux"]),
    (MedicationOrder("fondaparinux", "anticoagulant", dose_mg=5.0, doses_per_day=1), ["fondaparinux"]),
    (MedicationOrder("fondaparinux", "anticoagulant", dose_mg=2.5, doses_per_day=1), []),
    (MedicationOrder("apixaban", "doac", dose_mg=5, doses_per_day=2), []),
])
def test_running_non_heparin_therapeutic_anticoagulant(order, running):
    assert safety(orders=(order,))["non_heparin_anticoagulant_running"] == running


# -- cautions (§10.2) ---------------------------------------------------------------------------
def test_recent_intracranial_haemorrhage_window():
    ich = Flag(True, "Condition/ich", NOW - timedelta(days=90))
    assert "recent_intracranial_haemorrhage" in safety(recent_intracranial_haemorrhage=ich)[
        "escalation_cautions"]
    old = Flag(True, "Condition/ich", NOW - timedelta(days=91))
    assert "recent_intracranial_haemorrhage" not in safety(recent_intracranial_haemorrhage=old)[
        "escalation_cautions"]


@pytest.mark.parametrize("inr, bili, orders, expected", [
    (1.51, 2.0, (), True),
    (1.5, 2.0, (), False),                    # INR must be > 1.5
    (1.51, 1.99, (), False),                  # bilirubin must be >= 2.0
    (1.8, 3.0, (MedicationOrder("warfarin", "vka", dose_mg=5, doses_per_day=1),), False),
    (1.8, 3.0, (MedicationOrder("apixaban", "doac", dose_mg=5, doses_per_day=2),), False),
    (None, 3.0, (), False),
])
def test_severe_liver_disease(inr, bili, orders, expected):
    kw = dict(bilirubin=Measurement(bili, "mg/dL", NOW), orders=orders)
    if inr is not None:
        kw["inr"] = Measurement(inr, "", NOW)
    assert ("severe_liver_disease" in safety(**kw)["escalation_cautions"]) is expected


def test_warfarin_statement_also_explains_the_inr():
    s = safety(inr=Measurement(2.5, "", NOW), bilirubin=Measurement(3.0, "mg/dL", NOW),
               statements=(MedicationOrder("warfarin", "vka", source="MedicationStatement/w"),))
    assert "severe_liver_disease" not in s["escalation_cautions"]


def test_dual_antiplatelet_counts_statements():
    asa = MedicationOrder("aspirin", "antiplatelet", source="MedicationRequest/a")
    clop = MedicationOrder("clopidogrel", "antiplatelet", source="MedicationStatement/c")
    assert "dual_antiplatelet_therapy" in safety(orders=(asa,), statements=(clop,))[
        "escalation_cautions"]
    assert "dual_antiplatelet_therapy" not in safety(orders=(asa,))["escalation_cautions"]


def test_other_indication_is_reported():
    assert safety(other_anticoagulation_indication=Flag(True, "Condition/af"))[
        "other_anticoagulation_indication"] is True
    assert safety()["other_anticoagulation_indication"] is False


# -- exposure and duplicates (§10.4) ------------------------------------------------------------
def test_home_doac_statement_is_exposure_but_never_classified():
    s = safety(statements=(MedicationOrder("apixaban", "doac", dose_mg=2.5, doses_per_day=2,
                                           source="MedicationStatement/apx"),))
    assert s["current_order_class"] is None and s["current_orders"] == []
    assert [e["ingredient"] for e in s["anticoagulants_active"]] == ["apixaban"]
    assert s["anticoagulants_active"][0]["kind"] == "statement"
    assert s["duplicate_anticoagulant"] is None


def test_same_ingredient_twice_is_a_duplicate():
    s = safety(orders=(enox(40, 1, source="MedicationRequest/1"),
                       MedicationOrder("enoxaparin", "lmwh", dose_mg=40, doses_per_day=1,
                                       source="MedicationRequest/2")))
    assert s["duplicate_anticoagulant"] == {"urgency": "warning"}


def test_two_therapeutic_orders_are_critical():
    s = safety(orders=(enox(80, 2), MedicationOrder("apixaban", "doac", dose_mg=5, doses_per_day=2)))
    assert s["duplicate_anticoagulant"] == {"urgency": "critical"}


@pytest.mark.parametrize("inr, urgency", [(1.9, "info"), (2.0, "critical")])
def test_vka_bridge_is_info_while_inr_below_2(inr, urgency):
    s = safety(inr=Measurement(inr, "", NOW),
               orders=(enox(80, 2), MedicationOrder("warfarin", "vka", dose_mg=5, doses_per_day=1)))
    assert s["duplicate_anticoagulant"] == {"urgency": urgency}


def test_unmapped_anticoagulant_counts_as_exposure():
    unmapped = MedicationOrder("unmapped", UNMAPPED_ANTICOAGULANT, source="MedicationRequest/x")
    s = safety(orders=(unmapped, enox(40, 1)))
    assert len(s["anticoagulants_active"]) == 2 and s["duplicate_anticoagulant"] is not None
