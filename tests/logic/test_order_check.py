"""Check of one draft anticoagulant order (order-select / order-sign)."""
import pytest

from cds_service.logic.inputs import MedicationOrder
from cds_service.logic.order_check import Proposed, check_draft
from cds_service.logic.policy import Policy
from order_helpers import DRAFT, ctx, enox

P = Policy.default()


def iu(name, dose, per_day, drug_class="lmwh", **kw):
    kw.setdefault("route", "subcutaneous")
    return MedicationOrder(name, drug_class, dose_units=dose, doses_per_day=per_day,
                           status="draft", source=DRAFT, **kw)


def fonda(dose, per_day):
    return MedicationOrder("fondaparinux", "anticoagulant", dose_mg=dose, doses_per_day=per_day,
                           route="subcutaneous", status="draft", source=DRAFT)


def kinds(result):
    return [f.kind for f in result.findings]


# -- prophylactic drafts compared with the regimen ------------------------------------------

@pytest.mark.parametrize("draft, context, proposed, reasons", [
    # 40 mg at BMI 42 (100 kg, 154 cm) -> 80 mg daily
    (enox(40, 1), ctx(weight_kg=100.0, height_cm=154.0, bmi=42.17), (80, None, 1), ("bmi_ge_40",)),
    (enox(40, 1), ctx(bmi=30.0, weight_kg=92.0), (60, None, 1), ("bmi_ge_30",)),
    (enox(60, 1), ctx(bmi=29.9, weight_kg=91.6), (40, None, 1), ("standard",)),
    # 40 mg at CrCl 22 -> 30 mg daily; the renal row overrides the BMI tier
    (enox(40, 1), ctx(crcl_ml_min=22.0, crcl_lt_30=True), (30, None, 1), ("crcl_lt_30",)),
    # §19.3 changes these two (v2 corrected both): see test_v3_renal_obesity_and_80_mg_at_75_kg
    # (v1 changed 40 mg q12h at BMI 45 to 80 mg daily; v2 §11 accepts it as the obesity
    # equivalent: see test_order_check_v2.py)
    # UFH: 5,000 U two or three times daily is right; once daily is not
    (iu("heparin", 5000, 1, "anticoagulant"), ctx(), (None, 5000, 2), ("ufh_prophylactic_dose",)),
    (iu("heparin", 2500, 3, "anticoagulant"), ctx(), (None, 5000, 3), ("ufh_prophylactic_dose",)),
    # dalteparin / tinzaparin against their own prophylactic doses, never converted
    (iu("dalteparin", 2500, 1), ctx(), (None, 5000, 1), ("dalteparin_prophylactic_dose",)),
    (iu("tinzaparin", 3500, 1), ctx(), (None, 4500, 1), ("tinzaparin_prophylactic_dose",)),
    (fonda(1.5, 1), ctx(), (2.5, None, 1), ("fondaparinux_prophylactic_dose",)),
])
def test_dose_change(draft, context, proposed, reasons):
    result = check_draft(draft, context, P)
    assert kinds(result) == ["dose_change"]
    finding = result.findings[0]
    assert (finding.proposed.dose_mg, finding.proposed.dose_units,
            finding.proposed.doses_per_day) == proposed
    assert finding.proposed.ingredient == draft.ingredient
    assert finding.reasons == reasons
    assert result.intent == "prophylactic"


@pytest.mark.parametrize("draft, context", [
    (enox(40, 1), ctx()),
    (enox(80, 1), ctx(weight_kg=110.0, bmi=40.0)),      # 0.73 mg/kg/day but it IS the regimen
    (enox(60, 1), ctx(weight_kg=95.0, bmi=31.0)),
    (enox(30, 1), ctx(crcl_ml_min=29.9, crcl_lt_30=True)),
    (enox(40, 1), ctx(weight_kg=55.0, bmi=20.0, critically_ill=True)),  # 0.73: no escalation card
    (iu("heparin", 5000, 2, "anticoagulant"), ctx()),
    (iu("heparin", 5000, 3, "anticoagulant"), ctx(critically_ill=True)),
    (iu("dalteparin", 5000, 1), ctx()),
    (iu("tinzaparin", 4500, 1), ctx()),
    (fonda(2.5, 1), ctx()),
])
def test_right_dose_gives_no_finding(draft, context):
    result = check_draft(draft, context, P)
    assert result.findings == ()
    assert result.intent == "prophylactic"


def test_dose_right_and_nothing_else_is_ok():
    result = check_draft(enox(40, 1), ctx(), P)
    assert result.ok and result.anti_xa.indicated is False and result.notes == ()


def test_v3_renal_obesity_and_80_mg_at_75_kg():
    # §19.3: 80 mg daily at BMI 45 / 130 kg and CrCl 29.9 is prophylactic intent with obesity:
    # warning, no update (anti-Xa-guided dose or UFH 7,500 U q8h)
    result = check_draft(enox(80, 1), ctx(crcl_ml_min=29.9, crcl_lt_30=True, bmi=45.0, weight_kg=130.0), P)
    assert [(f.kind, f.reasons, f.proposed) for f in result.findings] == \
        [("renal_dose", ("crcl_lt_30", "renal_obesity"), None)]
    # §19.0: 80 mg daily at 75 kg / BMI 24.5 is 1.07 mg/kg/day, intermediate: above-prophylactic
    # without an indication, no one-click update on the ward
    result = check_draft(enox(80, 1), ctx(), P)
    assert [(f.kind, f.proposed) for f in result.findings] == [("above_prophylactic", None)]


def test_policy_preferring_heparin_still_corrects_enoxaparin_within_the_product():
    p = P.with_overrides({"renal.preferred_agent": "heparin", "renal.ufh_doses_per_day": 3})
    result = check_draft(enox(40, 1), ctx(crcl_ml_min=22.0, crcl_lt_30=True), p)
    assert result.findings[0].proposed == Proposed("enoxaparin", 30, None, 1)   # §19.3 table
    # and a 5,000 U once-daily heparin draft is corrected to three times daily
    result = check_draft(iu("heparin", 5000, 1, "anticoagulant"), ctx(), p)
    assert result.findings[0].proposed == Proposed("heparin", None, 5000, 3)


def test_renal_rule_not_overriding_bmi():
    p = P.with_overrides({"renal.overrides_bmi_rule": False})
    result = check_draft(enox(40, 1), ctx(crcl_ml_min=22.0, crcl_lt_30=True, bmi=42.0,
                                          weight_kg=120.0), p)
    assert result.findings[0].proposed == Proposed("enoxaparin", 80, None, 1)
    assert result.findings[0].reasons == ("bmi_ge_40",)


def test_dalteparin_in_obesity_keeps_its_dose_and_says_why():
    result = check_draft(iu("dalteparin", 5000, 1), ctx(weight_kg=130.0, bmi=45.0), P)
    assert result.findings == ()
    assert result.notes == ("enoxaparin_rule_not_applied",)
    assert result.anti_xa.indicated is True
    assert result.anti_xa.reasons == ("bmi_ge_40", "weight_gt_120kg")
    assert (result.anti_xa.target_low, result.anti_xa.target_high) == (0.2, 0.5)


# -- product switches ---------------------------------------------------------------------

@pytest.mark.parametrize("crcl, switched", [(30.0, True), (29.9, False), (None, False)])
def test_hit_switches_to_fondaparinux_only_at_crcl_30_or_more(crcl, switched):
    context = ctx(contraindications=("hit_history",), crcl_ml_min=crcl,
                  crcl_lt_30=None if crcl is None else crcl < 30)
    result = check_draft(enox(40, 1), context, P)
    if switched:
        assert kinds(result) == ["switch_product"]
        assert result.findings[0].proposed == Proposed("fondaparinux", 2.5, None, 1)
        assert result.findings[0].reasons == ("hit_history",)
        assert result.anti_xa is None
    else:
        # §19.3: at CrCl < 30 the renal card stays beside the HIT card, without a heparin update
        assert kinds(result)[0] == "contraindicated"
        assert all(f.action is None for f in result.findings[1:])
        assert result.findings[0].reasons == ("hit_history",)
        assert "hit_non_heparin_agent" in result.notes
        assert ("confirm_renal_function" in result.notes) is (crcl is None)


def test_hit_with_a_therapeutic_heparin_draft_is_not_switched_to_prophylaxis():
    # §19.6 changes v2's delete-only: treatment-dose fondaparinux by weight band (75 kg: 7.5 mg)
    treatment = Proposed("fondaparinux", 7.5, None, 1)
    result = check_draft(enox(75, 2), ctx(contraindications=("hit_history",)), P)
    assert [(f.kind, f.proposed, f.action) for f in result.findings] == [("switch_product", treatment, "switch")]
    result = check_draft(iu("heparin", None, None, "anticoagulant", route="intravenous",
                            continuous=True), ctx(contraindications=("hit_history",)), P)
    assert [(f.kind, f.proposed) for f in result.findings] == [("switch_product", treatment)]
    # CrCl < 30: no fondaparinux; delete with the treatment text
    result = check_draft(enox(75, 2), ctx(contraindications=("hit_history",), crcl_ml_min=25.0,
                                          crcl_lt_30=True), P)
    # the renal ceiling is said too (critical, no heparin update beside the HIT card)
    assert [(f.kind, f.action) for f in result.findings] == [("dose_above_maximum", None),
                                                             ("contraindicated", "delete")]
    assert "hit_treatment_non_heparin" in result.notes


@pytest.mark.parametrize("crcl, expected", [
    (14.9, ("switch_product", Proposed("heparin", None, 5000, 2))),
    (15.0, ("dose_change", Proposed("enoxaparin", 30, None, 1))),
])
def test_severe_renal_failure_switches_lmwh_to_ufh(crcl, expected):
    result = check_draft(enox(40, 1), ctx(crcl_ml_min=crcl, crcl_lt_30=True), P)
    assert (result.findings[0].kind, result.findings[0].proposed) == expected


def test_severe_renal_failure_ufh_frequency_from_policy_and_bound():
    p = P.with_overrides({"renal.ufh_doses_per_day": 3})
    # §19.3 changes v2 for dalteparin: the table is for enoxaparin; dalteparin at CrCl < 30 gets the
    # warning "anti-Xa-guided or UFH" (no switch)
    result = check_draft(iu("dalteparin", 5000, 1), ctx(crcl_ml_min=10.0, crcl_lt_30=True), p)
    assert [(f.kind, f.reasons, f.proposed) for f in result.findings] == [("renal_dose", ("lmwh_iu_crcl_lt_30",), None)]
    result = check_draft(enox(40, 1), ctx(crcl_ml_min=10.0, crcl_lt_30=True), p)
    assert result.findings[0].proposed == Proposed("heparin", None, 5000, 3)
    # CrCl known only as "< 12" (creatinine "> x") is below 15 too
    result = check_draft(enox(30, 1), ctx(crcl_ml_min=None, crcl_lt_30=True,
                                          crcl_bound=("<", 12.0)), P)
    assert kinds(result) == ["switch_product"]


# -- contraindications ----------------------------------------------------------------------

def test_contraindicated():
    context = ctx(contraindications=("active_bleeding", "platelets_lt_25"))
    for draft in (enox(40, 1), iu("heparin", 5000, 2, "anticoagulant"), fonda(2.5, 1)):
        result = check_draft(draft, context, P)
        assert kinds(result) == ["contraindicated"]
        assert result.findings[0].reasons == ("active_bleeding", "platelets_lt_25")
        assert result.findings[0].proposed is None
        assert "mechanical_prophylaxis" in result.notes


@pytest.mark.parametrize("contra, crcl, lt30, kind_reasons", [
    (("hit_history",), 45.0, False, None),                       # fondaparinux is the HIT agent
    (("heparin_allergy",), 45.0, False, None),
    (("hit_history", "heparin_allergy"), 45.0, False, None),
    ((), 29.9, True, ("contraindicated", ("fondaparinux_crcl_lt_30",))),
    ((), 30.0, False, None),
    (("hit_history", "active_bleeding"), 45.0, False, ("contraindicated", ("active_bleeding",))),
])
def test_fondaparinux_draft(contra, crcl, lt30, kind_reasons):
    result = check_draft(fonda(2.5, 1), ctx(contraindications=contra, crcl_ml_min=crcl,
                                            crcl_lt_30=lt30), P)
    if kind_reasons is None:
        assert result.findings == () and result.anti_xa is None
    else:
        assert (result.findings[0].kind, result.findings[0].reasons) == kind_reasons


def test_fondaparinux_draft_with_unknown_crcl_asks_for_renal_function():
    result = check_draft(fonda(2.5, 1), ctx(crcl_ml_min=None, crcl_lt_30=None), P)
    assert result.findings == () and "confirm_renal_function" in result.notes


# -- escalated drafts: warnings, never a silent correction ---------------------------------

def test_therapeutic_q12h_at_crcl_below_30_goes_once_daily():
    # 70 mg q12h at 70 kg = 1 mg/kg q12h; CrCl 22
    context = ctx(weight_kg=70.0, bmi=24.0, crcl_ml_min=22.0, crcl_lt_30=True)
    result = check_draft(enox(70, 2), context, P)
    assert result.draft_class == "therapeutic" and result.intent == "escalated"
    # §19.3 changes v2's warning: any twice-daily dose above 30 mg at CrCl 15-<30 is critical,
    # updated to 1 mg/kg once daily for a therapeutic-intensity draft
    assert [(f.kind, f.urgency) for f in result.findings] == [("dose_above_maximum", "critical"),
                                                              ("above_prophylactic", "warning")]
    assert result.findings[0].proposed == Proposed("enoxaparin", 70, None, 1)
    # §19.7: therapeutic LMWH gets no routine anti-Xa
    assert result.anti_xa.indicated is False


def test_therapeutic_in_critically_ill_is_a_warning_not_a_correction():
    context = ctx(weight_kg=80.0, critically_ill=True, critical_criteria=("IMV",))
    result = check_draft(enox(80, 2), context, P)
    assert kinds(result) == ["above_prophylactic"]
    assert result.findings[0].reasons == ("critically_ill",)
    assert result.findings[0].proposed is None          # §19.2: therapeutic, no one-click update
    assert result.evidence_note == "critically_ill_prophylactic_only"
    assert result.anti_xa.indicated is False            # §19.7


def test_critically_ill_with_renal_failure_gets_both():
    context = ctx(weight_kg=70.0, crcl_ml_min=20.0, crcl_lt_30=True, critically_ill=True,
                  cautions=("platelets_lt_50",))
    result = check_draft(enox(70, 2), context, P)
    # §19.3: the renal ceiling is critical and comes first; §19.2's warning is a card of its own
    assert kinds(result) == ["dose_above_maximum", "above_prophylactic"]
    assert result.finding("above_prophylactic").reasons == ("critically_ill", "platelets_lt_50")


@pytest.mark.parametrize("draft, cls", [
    (enox(40, 2), "intermediate"),                                  # 0.53 mg/kg q12h at 75 kg
    (enox(75, 1), "intermediate"),                                  # 1 mg/kg once daily
    (enox(120, 1), "therapeutic"),                                  # 1.6 mg/kg once daily
    (iu("heparin", 7500, 3, "anticoagulant"), "intermediate"),
    (iu("heparin", None, None, "anticoagulant", route="intravenous", continuous=True), "therapeutic"),
    (iu("dalteparin", 7500, 1), "intermediate"),
    (fonda(7.5, 1), "therapeutic"),
])
def test_escalated_drafts_in_the_critically_ill(draft, cls):
    result = check_draft(draft, ctx(critically_ill=True), P)
    assert result.intent == "escalated" and result.draft_class == cls
    assert kinds(result) == ["above_prophylactic"]


def test_escalated_draft_on_the_ward():
    # §19.2 changes v2 (no card): above-prophylactic with no indication is a warning on the ward
    # too, without a one-click update; a therapeutic candidate's therapeutic draft is exempt
    result = check_draft(enox(75, 2), ctx(), P)
    assert [(f.kind, f.reasons, f.action) for f in result.findings] == \
        [("above_prophylactic", ("not_critically_ill",), None)]
    assert result.anti_xa.indicated is False          # §19.7: therapeutic LMWH, no anti-Xa
    assert check_draft(enox(75, 2), ctx(pathway="therapeutic_candidate"), P).findings == ()
    assert check_draft(enox(75, 2), ctx(other_indication=True), P).findings == ()
    assert check_draft(enox(75, 2), ctx(in_scope=False), P).findings == ()
    assert check_draft(enox(75, 2), ctx(cautions=("hemoglobin_lt_8",)), P).findings[0].reasons == \
        ("not_critically_ill", "hemoglobin_lt_8")
    assert "severity_unknown" in check_draft(enox(75, 2), ctx(critically_ill=None), P).notes
    # 1 mg/kg once daily at CrCl 12: §19.3 warning, delete (UFH per protocol)
    result = check_draft(enox(75, 1), ctx(crcl_ml_min=12.0, crcl_lt_30=True), P)
    assert [(f.kind, f.urgency, f.action) for f in result.findings] == [("renal_dose", "warning", "delete")]


# -- what cannot be read -------------------------------------------------------------------

@pytest.mark.parametrize("draft, context, missing", [
    (enox(None, 1), ctx(), ("dose",)),
    (enox(40, None), ctx(), ("frequency",)),
    (enox(None, None), ctx(), ("dose", "frequency")),
    (iu("heparin", None, 2, "anticoagulant"), ctx(), ("dose",)),
    # BMI unknown: only the pending-weight dose can be judged
    (enox(60, 1), ctx(height_cm=None, bmi=None), ("height",)),
])
def test_undeterminable(draft, context, missing):
    result = check_draft(draft, context, P)
    assert kinds(result) == ["undeterminable"]
    assert result.findings[0].missing == missing


def test_no_weight_60_mg_daily_is_intermediate_not_undeterminable():
    # §10.3 weight unknown: <= 80 mg once daily is intermediate; §19.0/§19.2 change v2's silent
    # "undeterminable" (review-v3 H7): the escalation warning applies
    result = check_draft(enox(60, 1), ctx(weight_kg=None, height_cm=None, bmi=None, crcl_ml_min=None,
                                          crcl_lt_30=None), P)
    assert result.intensity == "intermediate"
    assert "above_prophylactic" in kinds(result)


def test_pending_weight_dose_is_accepted_with_a_note():
    result = check_draft(enox(40, 1), ctx(weight_kg=None, height_cm=None, bmi=None,
                                          crcl_ml_min=None, crcl_lt_30=None), P)
    assert result.findings == ()
    assert result.notes == ("confirm_renal_function", "pending_weight")
    assert result.anti_xa.indicated is None


def test_iv_heparin_needs_no_dose():
    result = check_draft(iu("heparin", None, None, "anticoagulant", route="intravenous"), ctx(), P)
    # §19.2: a UFH infusion with no indication on the ward is an above-prophylactic warning
    assert result.draft_class == "therapeutic" and kinds(result) == ["above_prophylactic"]


def test_dalteparin_above_prophylaxis_with_no_weight_asks_for_a_weight():
    # §19.2 (v2 "undeterminable"): weight unknown is said as a warning
    result = check_draft(iu("dalteparin", 7500, 1), ctx(weight_kg=None, bmi=None), P)
    assert [(f.kind, f.urgency, f.missing) for f in result.findings] == [("weight_unknown", "warning", ("weight",))]


# -- duplicates and scope --------------------------------------------------------------------

def test_already_anticoagulated():
    warfarin = MedicationOrder("warfarin", "vka", source="MedicationRequest/w1")
    result = check_draft(enox(40, 1), ctx(current_orders=((warfarin, "therapeutic"),)), P)
    assert kinds(result) == ["already_anticoagulated"]
    # a prophylaxis draft on top of it is not dose-tuned: the duplicate is the message
    result = check_draft(enox(40, 1), ctx(weight_kg=100.0, bmi=42.0,
                                          current_orders=((warfarin, "therapeutic"),)), P)
    assert kinds(result) == ["already_anticoagulated"]
    # an escalated draft keeps its warnings as well
    result = check_draft(enox(75, 2), ctx(critically_ill=True,
                                          current_orders=((warfarin, "therapeutic"),)), P)
    assert kinds(result) == ["above_prophylactic", "already_anticoagulated"]
    # the same resource re-signed is not a duplicate of itself
    active = MedicationOrder("enoxaparin", "lmwh", dose_mg=75, doses_per_day=2, source=DRAFT)
    result = check_draft(enox(75, 2), ctx(current_orders=((active, "therapeutic"),)), P)
    assert kinds(result) == ["above_prophylactic"]      # §19.2; never a duplicate of itself
    prophylactic = MedicationOrder("enoxaparin", "lmwh", dose_mg=40, doses_per_day=1,
                                   source="MedicationRequest/e1")
    assert check_draft(enox(40, 1), ctx(current_orders=((prophylactic, "prophylactic"),)),
                       P).findings == ()


def test_every_anticoagulant_is_checked_and_antiplatelets_are_not():
    # §19.1 changes v2 (DOACs unchecked): a DOAC draft with active bleeding is a critical stop
    apixaban = MedicationOrder("apixaban", "doac", dose_mg=5, doses_per_day=2, status="draft")
    result = check_draft(apixaban, ctx(contraindications=("active_bleeding",)), P)
    assert result.checked is True
    assert [(f.kind, f.urgency, f.action) for f in result.findings][0] == ("contraindicated", "critical", "delete")
    aspirin = MedicationOrder("aspirin", "antiplatelet", dose_mg=75, doses_per_day=1, status="draft")
    assert check_draft(aspirin, ctx(), P).checked is False


def test_to_json_shape():
    result = check_draft(enox(40, 1), ctx(weight_kg=100.0, bmi=42.0), P).to_json()
    assert result["findings"] == [{"kind": "dose_change", "reasons": ["bmi_ge_40"],
                                   "proposed": {"ingredient": "enoxaparin", "dose_mg": 80,
                                                "dose_units": None, "doses_per_day": 1,
                                                "route": "subcutaneous"},
                                   "missing": [], "urgency": "warning", "action": "update"}]
    assert result["anti_xa"]["reasons"] == ["bmi_ge_40", "escalated_dose"]
    assert (result["source"], result["intent"], result["draft_class"]) == \
        (DRAFT, "prophylactic", "prophylactic")


def test_added_policy_keys_are_honoured():
    p = P.with_overrides({"renal.severe_crcl_cutoff": 10.0, "orders.dalteparin_prophylactic_iu": 2500})
    result = check_draft(enox(40, 1), ctx(crcl_ml_min=12.0, crcl_lt_30=True), p)
    assert result.findings[0].kind == "dose_change"          # 12 is no longer "severe"
    result = check_draft(iu("dalteparin", 2000, 1), ctx(), p)
    assert result.findings[0].proposed == Proposed("dalteparin", None, 2500, 1)
    # 5,000 IU is now above the site's prophylactic dose: intermediate, a warning in the ICU
    result = check_draft(iu("dalteparin", 5000, 1), ctx(critically_ill=True), p)
    assert (result.draft_class, [f.kind for f in result.findings]) == \
        ("intermediate", ["above_prophylactic"])
