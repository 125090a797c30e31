"""Circuit heparin. v2 (§10.4): "ordered for the circuit" was not anticoagulant exposure.
§19.4 changes this: circuit heparin is systemic exposure [ELSO 2021], marked `circuit` (contract
v3: UFH while an ECMO or CRRT Procedure is in progress, or an order that says it is for the
circuit) so that it never triggers escalation, deescalate or review_therapeutic."""
from __future__ import annotations

import pytest

from cds_service.fhir.extract import extract_inputs
from fhir_factory import NOW, PID, RXNORM, SCT, cc, med_request, policy, procedure, qty

CRRT, ECMO = "714749008", "233573008"


def run(*resources):
    return extract_inputs(list(resources), now=NOW, policy=policy())


def infusion(text=None, rate=1000):
    r = med_request("5224", route="47625008", timing=None)
    r["dosageInstruction"][0]["doseAndRate"] = [{"rateQuantity": qty(rate, "[iU]/h")}]
    if text:
        r["dosageInstruction"][0]["text"] = text
    return r


@pytest.mark.parametrize("circuit", [CRRT, ECMO])
def test_rules_10_4_systemic_heparin_infusion_during_crrt_or_ecmo_is_still_an_anticoagulant(circuit):
    # Not "ordered for the circuit": a therapeutic heparin infusion (e.g. for a PE) in a patient
    # on CRRT or ECMO is anticoagulation; dropping it made the service suggest prophylaxis on top.
    orders = run(infusion(), procedure(circuit)).orders
    assert [o.ingredient for o in orders] == ["heparin"] and orders[0].continuous
    assert orders[0].circuit is True   # contract v3: any UFH during ECMO/CRRT


@pytest.mark.parametrize("text", ["Heparin into the CRRT circuit, pre-filter", "ECMO circuit heparin",
                                  "prefilter heparin 500 units/h", "CVVHDF filter anticoagulation"])
@pytest.mark.parametrize("circuit", [CRRT, ECMO])
def test_rules_19_4_heparin_ordered_for_the_circuit_is_exposure_marked_circuit(text, circuit):
    [order] = run(infusion(text, 500), procedure(circuit)).orders
    assert order.circuit is True
    # no circuit in progress: the text alone still marks it (contract v3 "or the order says so")
    [order] = run(infusion(text, 500)).orders
    assert order.circuit is True


def test_rules_10_1_circuit_heparin_given_is_heparin_exposure_for_hit_suspected():
    # §10.1 hit_suspected: "a heparin (any dose) active or given for >= 5 days": circuit heparin
    # is heparin (HIT on CRRT and ECMO is well known), even though it is not anticoagulant
    # exposure for §10.4.
    admin = {"resourceType": "MedicationAdministration", "id": "ma1", "status": "in-progress",
             "subject": {"reference": f"Patient/{PID}"}, "medicationCodeableConcept": cc(RXNORM, "5224"),
             "effectivePeriod": {"start": "2024-03-03T08:00:00Z"},
             "dosage": {"rateQuantity": qty(500, "[iU]/h"), "text": "CRRT circuit, pre-filter"}}
    inputs = run(admin, infusion("CRRT circuit, pre-filter", 500),
                 procedure(CRRT, start="2024-03-03T07:00:00Z"))
    assert [o.circuit for o in inputs.orders] == [True]   # §19.4: exposure now
    assert inputs.heparin_started is not None and inputs.heparin_started.isoformat().startswith("2024-03-03")
    assert [a.ingredient for a in inputs.administrations] == ["heparin"]
