"""Independent clinical review of the v2 logic (issue 11), from the rule text.

Each test names the rule it reads; each failed on the code as reviewed.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cds_service.logic.inputs import (CovidCondition, EncounterInfo, Measurement, MedicationOrder,
                                      PatientInputs)
from cds_service.logic.order_check import check_draft
from cds_service.logic.policy import Policy
from cds_service.logic.regimen import recommend_regimen
from cds_service.logic.safety import Exposure, duplicate_urgency
from cds_service.logic.scope import assess_scope
from order_helpers import DRAFT, ctx

P = Policy.default()
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


def draft(ingredient, drug_class, **kw):
    return MedicationOrder(ingredient, drug_class, route="subcutaneous", status="draft",
                           source=DRAFT, **kw)


def kinds(result):
    return [f.kind for f in result.findings]


# -- §11 renal replacement overrides a computed CrCl, also for the fondaparinux floor ---------
def test_rules_11_renal_replacement_blocks_fondaparinux_even_with_a_computed_crcl_over_30():
    # §11: renal replacement "takes row 3a (UFH) whatever the computed CrCl (a post-dialysis
    # creatinine overstates clearance)"; row 1 gives fondaparinux only "if CrCl is known and
    # >= 30", and fondaparinux is contraindicated at CrCl < 30 (label). A haemodialysis patient
    # whose post-dialysis creatinine computes to CrCl 45 has no such clearance.
    r = recommend_regimen(contraindications=("hit_history",), already_therapeutic=False,
                          crcl_ml_min=45.0, crcl_lt_30=False, bmi=25.0, weight_kg=75.0,
                          policy=P, renal_replacement=True)
    assert r.drug is None and r.dose_mg is None and r.basis == "hit_history"
    assert "hit_non_heparin_agent" in r.notes
    # without renal replacement the same patient gets fondaparinux
    r = recommend_regimen(contraindications=("hit_history",), already_therapeutic=False,
                          crcl_ml_min=45.0, crcl_lt_30=False, bmi=25.0, weight_kg=75.0,
                          policy=P, renal_replacement=False)
    assert r.drug == "fondaparinux"


def test_rules_18_4_fondaparinux_draft_on_renal_replacement_is_a_label_warning():
    # §18.4: a fondaparinux draft at CrCl < 30: warning (label contraindication); §11: renal
    # replacement overrides the computed CrCl.
    r = check_draft(draft("fondaparinux", "anticoagulant", dose_mg=2.5, doses_per_day=1),
                    ctx(crcl_ml_min=45.0, renal_replacement=True,
                        contraindications=("hit_history",)), P)
    f = r.finding("contraindicated")
    assert f is not None and f.urgency == "warning" and "fondaparinux_crcl_lt_30" in f.reasons
    # and the same draft without renal replacement is accepted
    r = check_draft(draft("fondaparinux", "anticoagulant", dose_mg=2.5, doses_per_day=1),
                    ctx(crcl_ml_min=45.0, renal_replacement=False,
                        contraindications=("hit_history",)), P)
    assert r.finding("contraindicated") is None


# -- §10.4 the deliberate bridge is one VKA with one parenteral agent -------------------------
def _exp(ingredient, drug_class, cls):
    return Exposure(ingredient, drug_class, "order", cls, f"MedicationRequest/{ingredient}")


def test_rules_10_4_bridge_info_only_for_a_vka_with_a_single_parenteral_agent():
    inr = Measurement(1.5, "", NOW)
    bridge = (_exp("warfarin", "vka", "therapeutic"), _exp("enoxaparin", "lmwh", "therapeutic"))
    assert duplicate_urgency(bridge, inr, P) == "info"
    # warfarin + therapeutic enoxaparin + a therapeutic heparin infusion is not "a VKA with a
    # parenteral anticoagulant": two therapeutic parenteral agents are a critical duplicate.
    triple = bridge + (_exp("heparin", "anticoagulant", "therapeutic"),)
    assert duplicate_urgency(triple, inr, P) == "critical"


# -- §1a a COVID-19 Condition linked to any current inpatient Encounter -----------------------
def test_rules_1a_covid_condition_linked_to_a_qualifying_encounter_other_than_the_first():
    # No encounterId in the context: "any of the patient's Encounters may" qualify, and a
    # Condition whose encounter is a current inpatient Encounter is current (onset 60 days ago
    # does not matter then).
    first = EncounterInfo("enc-a", "in-progress", "IMP", NOW - timedelta(days=2))
    second = EncounterInfo("enc-b", "in-progress", "IMP", NOW - timedelta(days=1))
    inputs = PatientInputs(now=NOW, age_years=60, encounters=(first, second),
                           covid_conditions=(CovidCondition("enc-b", NOW - timedelta(days=60)),))
    assert assess_scope(inputs, P).reasons == ()


# -- §11 v2 under 50 kg: 30 or 40 mg once daily is accepted, height or not ------------------
def test_rules_11_low_weight_dose_accepted_without_a_height():
    # "an order of 30 mg or 40 mg once daily is accepted at < 50 kg": with no height (BMI
    # unknown, regimen pending_weight 40 mg) a 30 mg draft at 45 kg is still accepted, not
    # "not determinable: height needed".
    r = check_draft(draft("enoxaparin", "lmwh", dose_mg=30, doses_per_day=1),
                    ctx(weight_kg=45.0, height_cm=None, bmi=None), P)
    assert kinds(r) == []


# -- §11 fondaparinux_moderate_mg is the dose at CrCl 30-<50, in the order check too -----------
def test_rules_11_order_check_uses_the_moderate_renal_fondaparinux_dose():
    p = P.with_overrides({"hit.fondaparinux_moderate_mg": 1.5})
    fonda = lambda mg: draft("fondaparinux", "anticoagulant", dose_mg=mg, doses_per_day=1)  # noqa: E731
    # the site's 1.5 mg at CrCl 40 is the regimen: no "increase to 2.5 mg"
    assert kinds(check_draft(fonda(1.5), ctx(crcl_ml_min=40.0), p)) == []
    # 2.5 mg at CrCl 40 is proposed down to the site's 1.5 mg
    r = check_draft(fonda(2.5), ctx(crcl_ml_min=40.0), p)
    assert r.finding("dose_change") is not None and r.finding("dose_change").proposed.dose_mg == 1.5
    # at CrCl 50 the ordinary 2.5 mg applies
    assert kinds(check_draft(fonda(2.5), ctx(crcl_ml_min=50.0), p)) == []


# -- §10.1/§11 hit_recent: a platelet bound that does not settle recovery is no count ---------
def test_rules_10_1_hit_recent_with_an_unsettled_platelet_bound_needs_a_count():
    # HIT onset 30 days ago; platelets reported as ">100": acute (< 150) or recovered (>= 150)
    # cannot be told, so it is hit_recent "with no platelet count" and row 1 gives no drug
    # (note hit_needs_platelets), not fondaparinux prophylaxis that under-treats acute HIT.
    from cds_service.logic.assessment import assess
    from cds_service.logic.inputs import HitRecord
    inputs = PatientInputs(now=NOW, age_years=60, sex="male", weight=Measurement(80, "kg", NOW),
                           height=Measurement(178, "cm", NOW),
                           creatinine=Measurement(1.0, "mg/dL", NOW),
                           platelets=Measurement(100, "10*9/L", NOW, comparator=">"),
                           hemoglobin=Measurement(12, "g/dL", NOW),
                           hit_records=(HitRecord(NOW - timedelta(days=30)),))
    a = assess(inputs, P)
    assert a.safety.contraindications == ("hit_recent",)
    assert a.regimen.drug is None and "hit_needs_platelets" in a.regimen.notes
    # a settled count (>= 150: recovered) gives fondaparinux
    a = assess(PatientInputs(**{**inputs.__dict__, "platelets": Measurement(180, "10*9/L", NOW)}), P)
    assert a.safety.contraindications == ("hit_recent",) and a.regimen.drug == "fondaparinux"


def test_rules_18_4_hit_recent_heparin_draft_with_an_unsettled_platelet_bound_asks_for_a_count():
    # §18.4: hit_recent "without platelets": the text names a platelet count and haematology.
    from cds_service.logic.assessment import assess
    from cds_service.logic.inputs import HitRecord
    from cds_service.logic.order_check import check_order
    inputs = PatientInputs(now=NOW, age_years=60, sex="male", weight=Measurement(80, "kg", NOW),
                           height=Measurement(178, "cm", NOW),
                           creatinine=Measurement(1.0, "mg/dL", NOW),
                           platelets=Measurement(100, "10*9/L", NOW, comparator=">"),
                           hit_records=(HitRecord(NOW - timedelta(days=30)),))
    r = check_order(draft("enoxaparin", "lmwh", dose_mg=40, doses_per_day=1), assess(inputs, P), P)
    assert r.finding("contraindicated").urgency == "critical" and "hit_needs_platelets" in r.notes


def test_rules_11_fondaparinux_draft_with_unknown_weight_says_a_weight_is_needed():
    # §11: fondaparinux needs a known weight >= 50 kg ("With weight unknown ... the note
    # fondaparinux_needs_weight"); the order check did not mention the unchecked floor.
    r = check_draft(draft("fondaparinux", "anticoagulant", dose_mg=2.5, doses_per_day=1),
                    ctx(weight_kg=None, bmi=None, contraindications=("hit_history",)), P)
    assert "fondaparinux_needs_weight" in r.notes
    r = check_draft(draft("fondaparinux", "anticoagulant", dose_mg=2.5, doses_per_day=1),
                    ctx(contraindications=("hit_history",)), P)
    assert "fondaparinux_needs_weight" not in r.notes
