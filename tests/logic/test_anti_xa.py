"""Anti-Xa monitoring: indication, reasons, targets and sampling (clinical-rules.md §12)."""
import pytest

from cds_service.logic.anti_xa import assess_anti_xa
from cds_service.logic.inputs import MedicationOrder
from cds_service.logic.policy import Policy

P = Policy.default()


def axa(policy=P, **kw):
    args = dict(recommended_drug="enoxaparin", recommended_basis="standard", lmwh_orders=(),
                bmi=25.0, weight_kg=75.0, crcl_lt_30=False, pregnant=False, policy=policy)
    args.update(kw)
    return assess_anti_xa(**args)


def enox(dose, per_day):
    return MedicationOrder("enoxaparin", "lmwh", dose_mg=dose, doses_per_day=per_day)


@pytest.mark.parametrize("kw, reasons", [
    (dict(), ()),
    (dict(bmi=40.0, recommended_basis="bmi_ge_40"), ("bmi_ge_40", "escalated_dose")),
    (dict(bmi=39.9, recommended_basis="bmi_ge_30"), ()),      # §19.7: escalated_dose at BMI 30-<40 removed
    (dict(bmi=115.6 / 1.70 ** 2, recommended_basis="crcl_lt_30", crcl_lt_30=True),
     ("bmi_ge_40", "crcl_lt_30")),
    (dict(weight_kg=120.0), ()),
    (dict(weight_kg=120.1), ("weight_gt_120kg",)),
    (dict(weight_kg=50.0), ()),
    (dict(weight_kg=49.9), ("weight_lt_50kg",)),
    (dict(crcl_lt_30=True, recommended_basis="crcl_lt_30"), ("crcl_lt_30",)),
    # v2 (§12): pregnancy is a reason only with antixa.pregnancy_trigger (default false)
    (dict(pregnant=True), ()),
    (dict(pregnant=True, policy=P.with_overrides({"antixa.pregnancy_trigger": True})),
     ("pregnancy",)),
    (dict(recommended_drug=None, recommended_basis="already_therapeutic",
          lmwh_orders=[(enox(60, 2), "intermediate")]), ()),     # §19.7: no longer a reason
    (dict(recommended_drug=None, recommended_basis="already_therapeutic",
          lmwh_orders=[(enox(80, 2), "therapeutic"), (enox(40, 1), "prophylactic")]),
     ()),                                                      # §19.7: no longer a reason
    (dict(bmi=45.0, weight_kg=130.0, recommended_basis="bmi_ge_40", pregnant=True,
          policy=P.with_overrides({"antixa.pregnancy_trigger": True})),
     ("bmi_ge_40", "weight_gt_120kg", "pregnancy", "escalated_dose")),
    (dict(bmi=45.0, weight_kg=130.0, recommended_basis="bmi_ge_40", pregnant=True),
     ("bmi_ge_40", "weight_gt_120kg", "escalated_dose")),
])
def test_reasons(kw, reasons):
    result = axa(**kw)
    assert result.reasons == reasons
    assert result.indicated is bool(reasons)


@pytest.mark.parametrize("kw", [
    dict(recommended_drug=None, recommended_basis="contraindicated", bmi=45.0),
    dict(recommended_drug="heparin", recommended_basis="crcl_lt_30", crcl_lt_30=True),
    dict(recommended_drug="fondaparinux", recommended_basis="hit_history", weight_kg=45.0),
    # a non-LMWH order does not bring LMWH into play
    dict(recommended_drug=None, recommended_basis="already_therapeutic",
         lmwh_orders=[(MedicationOrder("heparin", "anticoagulant", continuous=True), "therapeutic")]),
])
def test_not_indicated_without_lmwh(kw):
    result = axa(**kw)
    assert (result.indicated, result.reasons, result.target_low, result.sampling) == \
        (False, (), None, None)


@pytest.mark.parametrize("kw", [
    dict(bmi=None, recommended_basis="pending_weight"),
    dict(weight_kg=None, bmi=None, recommended_basis="pending_weight"),
    dict(crcl_lt_30=None),
    dict(recommended_drug=None, lmwh_orders=[(enox(None, 1), None)]),
])
def test_unknown_when_a_trigger_cannot_be_evaluated(kw):
    assert axa(**kw).indicated is None


def test_reason_still_found_with_other_inputs_missing():
    result = axa(bmi=None, weight_kg=49.0, crcl_lt_30=None, recommended_basis="pending_weight")
    assert (result.indicated, result.reasons) == (True, ("weight_lt_50kg",))


@pytest.mark.parametrize("kw, target", [
    # all other indicated cases (prophylactic, 30/60/80 mg)
    (dict(bmi=45.0, recommended_basis="bmi_ge_40"), (0.2, 0.5)),
    (dict(crcl_lt_30=True, recommended_basis="crcl_lt_30"), (0.2, 0.5)),
    # intermediate order and no LMWH recommended: antixa.target_intermediate (null)
    (dict(recommended_drug="heparin", recommended_basis="crcl_lt_30", crcl_lt_30=True,
          lmwh_orders=[(enox(60, 2), "intermediate")]), (None, None)),
    # intermediate order while enoxaparin is recommended: the prophylactic row
    (dict(lmwh_orders=[(enox(60, 2), "intermediate")], crcl_lt_30=True), (0.2, 0.5)),
])
def test_targets(kw, target):
    result = axa(**kw)
    assert result.indicated is True
    assert (result.target_low, result.target_high) == target


@pytest.mark.parametrize("order", [enox(80, 2), enox(120, 1),
                                   MedicationOrder("dalteparin", "lmwh", dose_units=10000, doses_per_day=1)])
def test_therapeutic_lmwh_gets_no_routine_anti_xa(order):
    # §19.7 (Witt 2018): in obesity and renal impairment too (v2 gave 0.5-1.0 / 1.0-2.0)
    result = axa(recommended_drug=None, recommended_basis="already_therapeutic",
                 lmwh_orders=[(order, "therapeutic")], bmi=45.0, weight_kg=130.0, crcl_lt_30=True)
    assert result.indicated is False


def test_renal_replacement_is_a_reason_while_an_lmwh_continues():
    result = axa(recommended_drug=None, lmwh_orders=[(enox(30, 1), "prophylactic")], renal_replacement=True)
    assert result.reasons == ("renal_replacement",) and (result.target_low, result.target_high) == (0.2, 0.5)


def test_target_overrides():
    p = P.with_overrides({"antixa.target_intermediate": [0.3, 0.5],
                          "antixa.target_prophylactic": [0.2, 0.4]})
    result = axa(p, recommended_drug=None, recommended_basis="contraindicated",
                 lmwh_orders=[(enox(60, 2), "intermediate")], crcl_lt_30=True)
    assert (result.target_low, result.target_high) == (0.3, 0.5)
    assert axa(p, bmi=41.0, recommended_basis="bmi_ge_40").target_high == 0.4


def test_sampling_plan():
    s = axa(bmi=41.0, recommended_basis="bmi_ge_40").sampling
    assert (s.peak_hours_post_dose, s.after_dose, s.trough, s.trough_max) == (4, 3, False, None)
    s = axa(crcl_lt_30=True, recommended_basis="crcl_lt_30").sampling
    assert (s.trough, s.trough_max) == (True, 0.5)
    p = P.with_overrides({"antixa.peak_hours_post_dose": 3, "antixa.steady_state_after_dose": 4,
                          "antixa.trough_max": 0.4})
    s = axa(p, crcl_lt_30=True, recommended_basis="crcl_lt_30").sampling
    assert (s.peak_hours_post_dose, s.after_dose, s.trough_max) == (3, 4, 0.4)


def test_trigger_overrides():
    p = P.with_overrides({"antixa.trigger_weight_high_kg": 150.0, "antixa.trigger_bmi": 50.0})
    assert axa(p, weight_kg=140.0, bmi=45.0, recommended_basis="standard").indicated is False
