"""Clinical rules §19.4 (v3): flushes and locks in five ordered steps, at their edges; the ATC
fallback; text never overriding a rate or a large dose. Written from the rule text.

1. rate present: a flush only if < 50 U/h (orders.flush_max_units_per_hour) and <= 5 U/mL;
2. no rate, <= 5 U/mL, a bag of >= 100 mL: pressure-bag flush;
3. no rate, a lock/flush product or <= 100 U/mL, and <= 500 U per administration: flush;
4. no rate, >= 1,000 U/mL with a lock route or lock text: catheter lock;
5. anything else is exposure.
"""
from __future__ import annotations

import pytest

from cds_service.fhir.extract import extract_inputs
from cds_service.logic.inputs import UNMAPPED_ANTICOAGULANT
from fhir_factory import ATC, NOW, RXNORM, cc, every, med_request, policy, qty


def run(*resources, pol=None):
    return extract_inputs(list(resources), now=NOW, policy=pol or policy())


_Q8H = object()


def heparin(per_ml, *, dose=None, rate=None, text=None, bag_ml=None, dispense_ml=None, route="47625008",
            timing=_Q8H):
    """A heparin order whose contained Medication states `per_ml` U/mL (as units over 1 mL, or
    over the bag volume when `bag_ml` is given)."""
    volume = bag_ml or 1
    med = {"resourceType": "Medication", "id": "med", "code": cc(RXNORM, "5224"),
           "ingredient": [{"itemCodeableConcept": cc(RXNORM, "5224"),
                           "strength": {"numerator": qty(per_ml * volume, "[iU]"),
                                        "denominator": qty(volume, "mL")}}]}
    r = med_request(None, medicationReference={"reference": "#med"}, contained=[med], route=route,
                    dose=dose, timing=None if rate else every(8, "h") if timing is _Q8H else timing)
    if rate is not None:
        r["dosageInstruction"][0]["doseAndRate"] = [{"rateQuantity": rate}]
    if text:
        r["dosageInstruction"][0]["text"] = text
    if dispense_ml is not None:
        r["dispenseRequest"] = {"quantity": qty(dispense_ml, "mL")}
    return r


def exposure(resource, **kw) -> bool:
    inputs = run(resource, **kw)
    flushes = len(inputs.heparin_flushes)
    assert len(inputs.orders) + flushes == 1   # a flush is kept apart, never lost
    return bool(inputs.orders)


# ------------------------------------------------------------------ step 1: a rate is present

@pytest.mark.parametrize("rate,expected", [(49, False), (50, True)])
def test_step1_rate_49_is_a_flush_50_is_exposure(rate, expected):
    assert exposure(heparin(5, rate=qty(rate, "[iU]/h"))) is expected


@pytest.mark.parametrize("per_ml,expected", [(5, False), (5.1, True)])
def test_step1_concentration_5_is_a_flush_5_1_is_exposure_with_a_rate(per_ml, expected):
    assert exposure(heparin(per_ml, rate=qty(40, "[iU]/h"))) is expected


def test_step1_rate_in_ml_per_hour_times_the_concentration():
    assert exposure(heparin(4, rate=qty(12, "mL/h"))) is False     # 48 U/h
    assert exposure(heparin(4, rate=qty(12.5, "mL/h"))) is True    # 50 U/h


def test_step1_the_rate_limit_is_the_policy_key():
    pol = policy(**{"orders.flush_max_units_per_hour": 40})
    assert exposure(heparin(5, rate=qty(45, "[iU]/h")), pol=pol) is True
    assert exposure(heparin(5, rate=qty(39, "[iU]/h")), pol=pol) is False


def test_step1_a_weight_based_rate_cannot_be_shown_below_50_u_per_hour():
    assert exposure(heparin(2, rate=qty(18, "[iU]/(kg.h)"))) is True


def test_step1_text_never_overrides_a_rate_the_reported_infusion():
    """The pharmacist's case: 25,000 U/250 mL at 1,400 U/h, "flush line with NS before starting"."""
    r = heparin(100, bag_ml=250, rate=qty(1400, "[iU]/h"), text="flush line with NS before starting")
    inputs = run(r)
    assert [o.ingredient for o in inputs.orders] == ["heparin"] and inputs.heparin_flushes == ()


# ------------------------------------------------------------------ step 2: pressure bags

@pytest.mark.parametrize("bag,expected", [(99, True), (100, False)])
def test_step2_pressure_bag_of_100_ml_is_a_flush_99_ml_is_not(bag, expected):
    # 2 U/mL, no rate, no dose: only step 2 can make it a flush
    assert exposure(heparin(2, bag_ml=bag)) is expected


def test_step2_bag_volume_from_the_dispense_quantity():
    assert exposure(heparin(2, dispense_ml=500)) is False
    assert exposure(heparin(5.1, dispense_ml=500)) is True


# ------------------------------------------------------------------ step 3: small doses

@pytest.mark.parametrize("units,expected", [(500, False), (501, True)])
def test_step3_500_units_per_administration_is_a_flush_501_is_exposure(units, expected):
    assert exposure(heparin(100, dose=qty(units, "[iU]"))) is expected


def test_step3_dose_in_ml_of_a_100_u_per_ml_product():
    assert exposure(heparin(100, dose=qty(5, "mL"))) is False      # 500 U
    assert exposure(heparin(100, dose=qty(5.1, "mL"))) is True     # 510 U


def test_step3_lock_flush_product_code_with_a_small_volume():
    r = med_request("1442414", dose=qty(3, "mL"), timing=every(8, "h"))
    assert exposure(r) is False


# ------------------------------------------------------------------ step 4: catheter locks

@pytest.mark.parametrize("per_ml,expected", [(999, True), (1000, False)])
def test_step4_lock_of_1000_u_per_ml_is_not_exposure_999_is(per_ml, expected):
    # a lock is given after each session (no schedule) or at most daily: review-v3 H9 made a lock
    # given more often (this helper's default q8h) exposure, so these locks carry no schedule
    r = heparin(per_ml, dose=qty(2, "mL"), text="haemodialysis catheter lock, each lumen", timing=None)
    assert exposure(r) is expected


def test_step4_haemodialysis_catheter_lock_5000_u_per_ml_times_2_ml():
    assert exposure(heparin(5000, dose=qty(2, "mL"), text="HD catheter lock", timing=None)) is False
    assert exposure(heparin(5000, dose=qty(2, "mL"), text="HD catheter lock", timing=every(1, "d"))) is False
    # the same product without lock route or text is 10,000 U of heparin: exposure (step 5)
    assert exposure(heparin(5000, dose=qty(2, "mL"), timing=None)) is True
    # review-v3 H9 (§19.4 silent on frequency, chosen conservatively): a "lock" every 8 h is exposure
    assert exposure(heparin(5000, dose=qty(2, "mL"), text="HD catheter lock")) is True


def test_step4_no_lock_with_a_rate():
    assert exposure(heparin(1000, rate=qty(1, "mL/h"), text="catheter lock")) is True


# ------------------------------------------------------------------ step 5 and text

@pytest.mark.parametrize("text", ["flush", "heparin lock", "flush line"])
def test_step5_text_never_makes_a_large_dose_a_flush(text):
    r = med_request("5224", dose=qty(5000, "[iU]"), timing=every(12, "h"), dosage_extra={"text": text})
    assert exposure(r) is True


# ------------------------------------------------------------------ HIT: flushes are heparin

def test_flush_orders_are_kept_for_hit_and_start_the_heparin_clock():
    r = heparin(100, dose=qty(300, "[iU]"))
    r["authoredOn"] = "2024-03-02T00:00:00Z"
    inputs = run(r)
    assert inputs.orders == () and [o.ingredient for o in inputs.heparin_flushes] == ["heparin"]
    assert inputs.heparin_started is not None and inputs.heparin_started.isoformat().startswith("2024-03-02")


# ------------------------------------------------------------------ ATC fallback (§19.4)

@pytest.mark.parametrize("code,counts", [
    ("B01AB02", False),   # antithrombin: not a heparin
    ("B01AB09", False),   # danaparoid: a non-heparin agent, allowed in HIT
    ("B01AB99", True),    # another heparin-group code the file does not map: exposure
    ("B01AD02", False),   # alteplase: thrombolytic, never exposure
    ("B01AC09", False),   # epoprostenol: a prostacyclin, never exposure
    ("B01AE99", True),
    ("B01AF99", True),
    ("B01AA99", True),
    ("B01AX01", False),   # only B01AX05 (fondaparinux) of B01AX
])
def test_atc_fallback_for_unmapped_codes(code, counts):
    orders = run(med_request(code, system=ATC)).orders
    assert [o.drug_class for o in orders] == ([UNMAPPED_ANTICOAGULANT] if counts else [])


def test_prostacyclins_never_count_as_antiplatelets():
    inputs = run(med_request("B01AC09", system=ATC), med_request("B01AC06", system=ATC))
    assert [o.ingredient for o in inputs.orders] == ["aspirin"]


@pytest.mark.parametrize("code,ingredient", [("B01AC16", "eptifibatide"), ("B01AC17", "tirofiban"),
                                             ("B01AC13", "abciximab"), ("B01AC25", "cangrelor")])
def test_gp_iib_iiia_and_cangrelor_are_antiplatelets(code, ingredient):
    [order] = run(med_request(code, system=ATC)).orders
    assert (order.ingredient, order.drug_class) == (ingredient, "antiplatelet")


@pytest.mark.parametrize("rate,flush", [(40, True), (1000, False)])
def test_administration_rate_in_its_dosage_decides_too(rate, flush):
    """A MedicationAdministration carries the rate in dosage.rateQuantity (step 1 applies)."""
    med = {"resourceType": "Medication", "id": "med", "code": cc(RXNORM, "5224"),
           "ingredient": [{"itemCodeableConcept": cc(RXNORM, "5224"),
                           "strength": {"numerator": qty(2500, "[iU]"), "denominator": qty(500, "mL")}}]}
    admin = {"resourceType": "MedicationAdministration", "id": "ma1", "status": "in-progress",
             "subject": {"reference": "Patient/p1"}, "contained": [med], "medicationReference": {"reference": "#med"},
             "effectivePeriod": {"start": "2024-03-09T08:00:00Z"}, "dosage": {"rateQuantity": qty(rate, "[iU]/h")}}
    [given] = run(admin).administrations
    assert given.flush is flush
