"""Check of one DRAFT anticoagulant order against the assessment (order-select / order-sign).

v3 (clinical-rules §19; overrides the v2 rules below where they differ): every anticoagulant draft
is checked. `check_draft` computes the §19.0 intensity (`logic/intensity.py`) and renal state
(renal replacement counts as CrCl `renal.rrt_equivalent_crcl`), runs the §19.1-§19.3 safety layer
(`logic/order_safety.py`: stops, HIT and VKAs, pregnancy, ceilings, renal table, unknown inputs,
liver, argatroban, ECMO, DOAC renal rules, interactions), the §19.6 HIT intensities (heparin draft
with a heparin-specific contraindication: fondaparinux 2.5 mg for prophylactic/intermediate,
the treatment band for therapeutic), and §19.2's above-prophylactic-without-indication warning
(`above_prophylactic`; one-click update only for an intermediate heparin draft in the critically
ill). "Matches the regimen" (`OrderCheck.matches_regimen`) is true only for the §11 regimen or an
accepted §19.11 equivalent. The v2 prophylactic path (dose correction to the §11 regimen) runs only
when the safety layer found nothing, and only in COVID-19 scope.

v2 description (kept for the rules it still applies):
Check of one DRAFT anticoagulant order against the assessment (order-select / order-sign).

Checked products: enoxaparin, dalteparin, tinzaparin, heparin (UFH), fondaparinux. Any other
ingredient gives `checked = False` and no findings. Rules, in order (sources as in
clinical-rules.md §10-§13; every number a policy key):
1. Contraindicated (`contraindicated`, reasons = §10.1 codes). For a fondaparinux draft the
   heparin-specific codes (hit_history, heparin_allergy) do not count, but CrCl below
   hit.fondaparinux_min_crcl, or renal replacement whatever the computed CrCl (§11), does
   (`fondaparinux_crcl_lt_30`; fondaparinux label, unverified).
   HIT as the only contraindication and a prophylactic heparin/LMWH draft: `switch_product`
   to fondaparinux hit.fondaparinux_mg once daily when CrCl is known and >= the minimum;
   otherwise (CrCl low/unknown, or a draft not classed prophylactic) `contraindicated`.
2. Unreadable (`undeterminable`, `missing` names what is needed): dose or frequency unknown
   (not needed for IV/continuous UFH); dalteparin/tinzaparin above the prophylactic dose with
   no weight; a prophylactic enoxaparin draft other than the pending-weight dose while BMI is
   unknown (`missing` then names "weight" and/or "height").
3. Intent. A draft is read as prophylaxis when it equals the recommended regimen, or its
   §10.3 class is prophylactic, or it is one of the fixed prophylactic doses once daily
   (enoxaparin standard/BMI-tier/renal/pending mg; dalteparin 5,000 IU; tinzaparin 4,500 IU;
   fondaparinux 2.5 mg); otherwise it is an escalated (intermediate/therapeutic) order.
   - Prophylaxis: an LMWH at CrCl < renal.severe_crcl_cutoff -> `switch_product` to UFH
     renal.ufh_units x renal.ufh_doses_per_day SC (HEP-COVID exclusion; Cleveland Clinic 2020).
     Otherwise compare with the product's own target and propose `dose_change` if it differs:
     enoxaparin -> the §11 regimen (at CrCl < 30 always renal.enoxaparin_mg once daily, even
     when the regimen prefers heparin: no product conversion); UFH -> renal.ufh_units two or
     three times daily; dalteparin/tinzaparin -> 5,000 / 4,500 IU once daily (the BMI and
     renal rules are enoxaparin rules: note `enoxaparin_rule_not_applied`); fondaparinux ->
     hit.fondaparinux_mg once daily (hit.fondaparinux_moderate_mg at CrCl below
     hit.fondaparinux_moderate_crcl_below, as §11 row 1).
   - Escalated: never corrected toward prophylaxis (it may be intended, e.g. for VTE).
     `escalation_in_critically_ill` when critically ill (evidence note
     critically_ill_prophylactic_only); `escalation_with_caution` when a §10.2 caution is
     present; therapeutic enoxaparin >= 2 doses/day at CrCl < 30 -> `dose_change` to the same
     mg once daily (reason `renal_frequency`; enoxaparin label).
4. `already_anticoagulated` when another active order is already therapeutic (for a
   prophylaxis draft it is then the only finding: §11 adds nothing to therapeutic dosing).
5. `anti_xa` (§12) for an LMWH draft as it would stand after the proposal (None otherwise);
   a draft equal to the recommended regimen gets the regimen's own anti-Xa answer.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from .anti_xa import AntiXa, assess_anti_xa
from .findings import Finding, Kind, Proposed  # noqa: F401 (here and for callers of this module)
from .inputs import MedicationOrder
from . import numeric as nm
from .intensity import DOACS, DTIS, VKAS, draft_intensity, renal_state
from .policy import Policy, bmi_tier2_equivalents, rounded
from .regimen import Regimen, crcl_below, recommend_regimen
from .safety import (HEPARIN_SPECIFIC as _HEPARIN_SPECIFIC, HEPARINS, LMWH, OrderClass, classify_order,
                     hit_platelets_known)

# The v3 order check (§19) is in place: the §19.15 matrix test runs (tests/integration/test_order_matrix.py).
V3 = True
STOP_CODES = ("active_bleeding", "platelets_lt_25", "fibrinogen_lt_0.5")
CHECKED = frozenset({"enoxaparin", "dalteparin", "tinzaparin", "heparin", "fondaparinux"})
IU_DOSED = frozenset({"heparin", "dalteparin", "tinzaparin"})
HEPARIN_SPECIFIC = frozenset(_HEPARIN_SPECIFIC)
# v2 §18.4: these with a heparin draft are critical; hit_history / heparin_allergy a warning.
HIT_CRITICAL = ("hit_acute", "hit_recent", "hit_suspected")
# §11: "UFH 5,000 U SC two or three times daily" (the values renal.ufh_doses_per_day allows).
UFH_PROPHYLACTIC_DOSES_PER_DAY = (2, 3)
# v3 (§19): every anticoagulant draft is checked; these are the products without a dose rule
# of §11 (their findings come from logic/order_safety.py only).
V3_ONLY = DOACS | VKAS | DTIS
# v3 finding kinds (logic/order_safety.py), critical ones first.
V3_KINDS = ("hit_vka", "hit_prophylactic_intensity", "pregnancy_vka", "dose_above_maximum",
            "renal_dose", "weight_unknown", "renal_unknown", "pregnancy_doac", "fondaparinux_band",
            "liver", "argatroban_start", "ecmo_oral", "interaction", "above_prophylactic")
FINDING_KINDS = ("contraindicated", "switch_product", "undeterminable", "dose_change",
                 "escalation_in_critically_ill", "escalation_with_caution",
                 "already_anticoagulated") + V3_KINDS
@dataclass(frozen=True)
class OrderContext:
    """What the check needs from the assessment, as plain values."""

    weight_kg: float | None
    height_cm: float | None
    bmi: float | None
    crcl_ml_min: float | None
    crcl_lt_30: bool | None
    crcl_bound: tuple[str, float] | None = None   # Renal.crcl_bound: CrCl known only as a bound
    contraindications: tuple[str, ...] = ()
    cautions: tuple[str, ...] = ()
    critically_ill: bool | None = None
    critical_criteria: tuple[str, ...] = ()
    pregnant: bool = False
    current_orders: tuple[tuple[MedicationOrder, OrderClass | None], ...] = ()
    # v2
    renal_replacement: bool | None = None
    ecmo: bool = False
    other_indication: bool = False
    pathway: str | None = None
    non_heparin_running: tuple[str, ...] = ()
    platelets_known: bool = True
    # v3 (§19)
    possible_other_indication: bool = False
    bilirubin_mg_dl: float | None = None
    creatinine_unstable: bool | None = None
    creatinine_rising: bool = False
    crcl_actual_ml_min: float | None = None      # DOAC label rules (§19.3): actual body weight
    inhibitors: tuple[str, ...] = ()             # strong CYP3A4/P-gp inhibitors active (§8a)
    in_scope: bool = True                        # COVID-19 scope (§1a): the guidance parts only
    four_ts: int | None = None                   # latest 4Ts score after the platelet fall (§19.6)
    statements: tuple[MedicationOrder, ...] = ()  # home medicines (continuation, §19.9)
    age_years: int | None = None                 # apixaban dose-reduction criteria (§19.3)
    rrt_mode: str | None = None                  # "crrt", "haemodialysis", ... (§19.2 circuit exemption)
    creatinine_mg_dl: float | None = None


@dataclass(frozen=True)
class OrderCheck:
    draft: MedicationOrder
    checked: bool
    draft_class: OrderClass | None = None
    intent: Literal["prophylactic", "escalated"] | None = None
    findings: tuple[Finding, ...] = ()
    anti_xa: AntiXa | None = None
    notes: tuple[str, ...] = ()
    evidence_note: str | None = None
    intensity: str | None = None       # v3 §19.0
    matches_regimen: bool = False      # v3 §19.1: equals the §11 regimen or an accepted equivalent

    @property
    def ok(self) -> bool:
        """Nothing to show: no finding and no anti-Xa to order."""
        return not self.findings and not (self.anti_xa and self.anti_xa.indicated)

    def finding(self, kind: str) -> Finding | None:
        return next((f for f in self.findings if f.kind == kind), None)

    def to_json(self) -> dict:
        return {"source": self.draft.source, "ingredient": self.draft.ingredient,
                "checked": self.checked, "draft_class": self.draft_class, "intent": self.intent,
                "findings": [f.to_json() for f in self.findings],
                "anti_xa": self.anti_xa.to_json() if self.anti_xa else None,
                "notes": list(self.notes), "evidence_note": self.evidence_note,
                "intensity": self.intensity, "matches_regimen": self.matches_regimen}


def _same(a: float | None, b: float | None, p: Policy) -> bool:
    return a is not None and b is not None and rounded(a, p) == rounded(b, p)


def _dose(order: MedicationOrder) -> float | None:
    return order.dose_units if order.ingredient in IU_DOSED else order.dose_mg


def _matches(order: MedicationOrder, target: Proposed, p: Policy) -> bool:
    return (order.ingredient == target.ingredient
            and _same(_dose(order), target.dose_units if target.ingredient in IU_DOSED
                      else target.dose_mg, p)
            and _same(order.doses_per_day, target.doses_per_day, p))


def _regimen(ctx: OrderContext, p: Policy) -> Regimen:
    # The prophylactic regimen the patient would get, ignoring "already therapeutic": the
    # draft may be that very order being re-signed; duplication is a finding of its own.
    return recommend_regimen(contraindications=(), already_therapeutic=False,
                             crcl_ml_min=ctx.crcl_ml_min, crcl_lt_30=ctx.crcl_lt_30,
                             bmi=ctx.bmi, weight_kg=ctx.weight_kg, policy=p,
                             crcl_bound=ctx.crcl_bound, renal_replacement=ctx.renal_replacement)


def _row1(ctx: OrderContext, codes: tuple[str, ...], p: Policy) -> Regimen:
    """§11 row 1 for these heparin-specific codes: fondaparinux, or null with its notes."""
    return recommend_regimen(contraindications=codes, already_therapeutic=False,
                             crcl_ml_min=ctx.crcl_ml_min, crcl_lt_30=ctx.crcl_lt_30,
                             bmi=ctx.bmi, weight_kg=ctx.weight_kg, policy=p,
                             crcl_bound=ctx.crcl_bound, renal_replacement=ctx.renal_replacement,
                             platelets_known=ctx.platelets_known)


def _weight_low(ctx: OrderContext, p: Policy) -> bool:
    return ctx.weight_kg is not None and nm.cmp_lt(ctx.weight_kg, p["antixa.trigger_weight_low_kg"], p)


def _obesity_equivalent(draft: MedicationOrder, ctx: OrderContext, p: Policy) -> bool:
    """§19.11: an accepted equivalent at BMI >= 40 (`orders.bmi_tier2_equivalents`; entries with
    `min_bmi` / `min_weight_kg` only above those), or 0.5 mg/kg twice daily when the site accepts
    it (`dosing.accept_0_5_mg_kg_bid`, capped per dose), at normal renal function or not (the
    renal table speaks separately)."""
    bmi, w = ctx.bmi, ctx.weight_kg
    if bmi is None or not nm.cmp_ge(bmi, p["dosing.bmi_tier2"], p):
        return False
    for e in bmi_tier2_equivalents(p):
        if e["drug"] != draft.ingredient:
            continue
        if "min_bmi" in e and not nm.cmp_ge(bmi, e["min_bmi"], p):
            continue
        if "min_weight_kg" in e and (w is None or not nm.cmp_gt(w, e["min_weight_kg"], p)):
            continue
        amount = e.get("mg", e.get("units"))
        if _same(_dose(draft), amount, p) and _same(draft.doses_per_day, e["per_day"], p):
            return True
    if draft.ingredient == "enoxaparin" and p["dosing.accept_0_5_mg_kg_bid"] and w is not None \
            and draft.dose_mg is not None and _same(draft.doses_per_day, 2, p):
        target = min(0.5 * w, p["dosing.accept_0_5_mg_kg_bid_cap_mg"])
        step = p["therapeutic.round_to_mg"]
        from .order_safety import round_to_step
        return _same(draft.dose_mg, min(round_to_step(target, step),
                                        p["dosing.accept_0_5_mg_kg_bid_cap_mg"]), p)
    return False


UFH_HIGH_WEIGHT_KG = 100   # §19.0 "7,500 U q8h at weight > 100 kg" (as logic/intensity.py reads it)


def _accepted_equivalent(draft: MedicationOrder, ctx: OrderContext, regimen: Regimen,
                         p: Policy) -> bool:
    """§11 v2 / §19.11: an obesity equivalent at BMI >= 40, or a low-weight dose under 50 kg
    (the low-weight acceptance holds only at CrCl >= 30, §19.3)."""
    if draft.ingredient not in ("enoxaparin", "heparin"):
        return False
    if _obesity_equivalent(draft, ctx, p):
        return True
    # §19.0: prophylactic UFH is '7,500 U q8h at weight > 100 kg or BMI >= 40' (Wang 2014, §19.11);
    # §19.11's list is headed 'at BMI >= 40' only, §19.0's wording is the safer one (review-v3 M17)
    if draft.ingredient == "heparin" and ctx.weight_kg is not None \
            and nm.cmp_gt(ctx.weight_kg, UFH_HIGH_WEIGHT_KG, p) and _same(draft.dose_units, 7500, p) \
            and _same(draft.doses_per_day, 3, p):
        return True
    renal_low = ctx.crcl_lt_30 is True or ctx.renal_replacement is True
    return draft.ingredient == "enoxaparin" and not renal_low and _weight_low(ctx, p) \
        and _same(draft.doses_per_day, 1, p) and any(
            _same(draft.dose_mg, mg, p) for mg in p["orders.low_weight_accepted_mg"])


def _regimen_at_normal_renal(ctx: OrderContext, p: Policy) -> Regimen:
    """The §11 regimen as if renal function were normal: "prophylactic intent" in §19.3."""
    return recommend_regimen(contraindications=(), already_therapeutic=False, crcl_ml_min=None,
                             crcl_lt_30=False, bmi=ctx.bmi, weight_kg=ctx.weight_kg, policy=p,
                             crcl_bound=None, renal_replacement=False)


def _fixed_prophylactic(ingredient: str, p: Policy) -> list[Proposed]:
    """The once-daily fixed prophylactic doses of §11 for this product."""
    if ingredient == "enoxaparin":
        per_day = p["dosing.doses_per_day"]
        mgs = [p["dosing.standard_mg"], p["dosing.bmi_tier1_mg"], p["dosing.bmi_tier2_mg"],
               p["dosing.pending_weight_mg"]]
        return [Proposed("enoxaparin", mg, None, per_day) for mg in mgs] + \
            [Proposed("enoxaparin", p["renal.enoxaparin_mg"], None, 1)]
    if ingredient in ("dalteparin", "tinzaparin"):
        return [Proposed(ingredient, None, p[f"orders.{ingredient}_prophylactic_iu"], 1)]
    if ingredient == "fondaparinux":
        return [Proposed("fondaparinux", p["hit.fondaparinux_mg"], None, 1)]
    return []


def _regimen_order(regimen: Regimen) -> Proposed | None:
    if regimen.drug is None:
        return None
    return Proposed(regimen.drug, regimen.dose_mg, regimen.dose_units, regimen.doses_per_day)


def _missing_for_bmi(ctx: OrderContext) -> tuple[str, ...]:
    return tuple(n for n, v in (("weight", ctx.weight_kg), ("height", ctx.height_cm)) if v is None) \
        or ("bmi",)


def _ufh(p: Policy, per_day: int | None = None) -> Proposed:
    return Proposed("heparin", None, p["renal.ufh_units"], per_day or p["renal.ufh_doses_per_day"])


def _prophylactic_target(draft: MedicationOrder, ctx: OrderContext, regimen: Regimen,
                         p: Policy, notes: set[str]) -> tuple[Proposed | None, tuple[str, ...]]:
    """(target, reasons) for a prophylaxis draft of the same product; target None = no data."""
    name = draft.ingredient
    if name == "enoxaparin":
        if ctx.crcl_lt_30 is True and (p["renal.overrides_bmi_rule"]
                                       or regimen.basis == "crcl_lt_30"):
            if regimen.drug == "heparin":
                notes.add("renal_preferred_heparin")
            return Proposed("enoxaparin", p["renal.enoxaparin_mg"], None, 1), ("crcl_lt_30",)
        return _regimen_order(regimen), (regimen.basis,)
    if name == "heparin":
        per_day = draft.doses_per_day
        for e in bmi_tier2_equivalents(p):
            # §19.0/§19.11: UFH 7,500 U q8h at BMI >= 40 and weight > 100 kg
            if e["drug"] == "heparin" and ctx.bmi is not None and nm.cmp_ge(ctx.bmi, p["dosing.bmi_tier2"], p) \
                    and ctx.weight_kg is not None and nm.cmp_gt(ctx.weight_kg, e.get("min_weight_kg", 0), p) \
                    and "units" in e:
                return Proposed("heparin", None, e["units"], int(e["per_day"])), ("bmi_ge_40",)
        ok_per_day = next((n for n in UFH_PROPHYLACTIC_DOSES_PER_DAY
                           if _same(per_day, n, p)), None)
        return _ufh(p, ok_per_day), ("ufh_prophylactic_dose",)
    if name == "fondaparinux":
        # §11 row 1: hit.fondaparinux_moderate_mg at CrCl < hit.fondaparinux_moderate_crcl_below
        moderate = crcl_below(ctx.crcl_ml_min, ctx.crcl_bound,
                              p["hit.fondaparinux_moderate_crcl_below"], p) is True
        mg = p["hit.fondaparinux_moderate_mg"] if moderate else p["hit.fondaparinux_mg"]
        return Proposed("fondaparinux", mg, None, 1), ("fondaparinux_prophylactic_dose",)
    if regimen.basis in ("bmi_ge_30", "bmi_ge_40", "crcl_lt_30") and name in LMWH:
        notes.add("enoxaparin_rule_not_applied")
    return _fixed_prophylactic(name, p)[0], (f"{name}_prophylactic_dose",)


def _intent(draft: MedicationOrder, cls: OrderClass, regimen: Regimen, p: Policy,
            ctx: OrderContext) -> Literal["prophylactic", "escalated"]:
    target = _regimen_order(regimen)
    if cls == "prophylactic" or (target is not None and _matches(draft, target, p)):
        return "prophylactic"
    if _accepted_equivalent(draft, ctx, regimen, p):
        return "prophylactic"
    if any(_matches(draft, fixed, p) for fixed in _fixed_prophylactic(draft.ingredient, p)):
        return "prophylactic"
    return "escalated"


def _lmwh_anti_xa(order: MedicationOrder, ctx: OrderContext, regimen: Regimen,
                  p: Policy) -> AntiXa:
    target = _regimen_order(regimen)
    if target is not None and _matches(order, target, p):
        # The recommended regimen itself: same answer as the patient-view assessment gives
        # for it (its mg/kg class is not a "current dose" reason).
        return assess_anti_xa(
            recommended_drug=regimen.drug, recommended_basis=regimen.basis, lmwh_orders=(),
            bmi=ctx.bmi, weight_kg=ctx.weight_kg, crcl_lt_30=ctx.crcl_lt_30,
            pregnant=ctx.pregnant, policy=p)
    cls = classify_order(order, ctx.weight_kg, ctx.crcl_lt_30, p)
    return assess_anti_xa(
        recommended_drug=None, recommended_basis=None,
        lmwh_orders=[(order, cls)], bmi=ctx.bmi, weight_kg=ctx.weight_kg,
        crcl_lt_30=ctx.crcl_lt_30, pregnant=ctx.pregnant, policy=p)


def _contraindication(draft: MedicationOrder, ctx: OrderContext, p: Policy, notes: set[str],
                      intensity: str | None) -> Finding | None:
    """Heparin and fondaparinux stops that are not §19.1 table rows (those are in
    logic/order_safety.py): HIT and heparin-specific codes with a heparin draft (§18.4, §19.6), a
    heparin while a non-heparin agent runs (§10.1), the fondaparinux label floors (§11)."""
    name = draft.ingredient
    low = crcl_below(ctx.crcl_ml_min, ctx.crcl_bound, p["hit.fondaparinux_min_crcl"], p)
    if ctx.renal_replacement is True:
        low = True   # §11: renal replacement overrides a computed CrCl (fondaparinux label floor)
    ci = ctx.contraindications
    if name == "fondaparinux":
        label = ()
        if low is True:
            label += ("fondaparinux_crcl_lt_30",)
        elif low is None:
            notes.add("confirm_renal_function")
        if ctx.weight_kg is None:
            notes.add("fondaparinux_needs_weight")   # §11: the 50 kg floor cannot be checked
        elif nm.cmp_lt(ctx.weight_kg, p["hit.fondaparinux_min_weight_kg"], p) and intensity == "prophylactic":
            # §19.2: the < 50 kg contraindication is for prophylaxis; 5 mg treatment is labelled
            label += ("fondaparinux_weight_lt_50",)
        if label:
            notes.add("mechanical_prophylaxis")
            return Finding("contraindicated", label, urgency="warning")
        return None
    if name in HEPARINS and ctx.non_heparin_running:
        # §10.1: argatroban, bivalirudin or therapeutic fondaparinux running: no heparin
        return Finding("contraindicated", tuple(ci) + ("non_heparin_anticoagulant_running",),
                       urgency="critical", action="delete")
    if not ci:
        return None
    no_delete = ctx.other_indication or ctx.possible_other_indication or ctx.ecmo
    if "hit_acute" in ci:
        return Finding("contraindicated", ci, urgency="critical", action="delete")
    if "hit_suspected" in ci:
        # §19.6: a warning (with a low 4Ts heparin continues); critical once 4Ts >= 4
        high = ctx.four_ts is not None and ctx.four_ts >= 4
        return Finding("contraindicated", ci, urgency="critical" if high else "warning", action="delete",
                       values=(("four_ts", ctx.four_ts),))
    stops = [c for c in ci if c not in HEPARIN_SPECIFIC]
    if stops:
        notes.add("mechanical_prophylaxis")
        return Finding("contraindicated", ci, urgency="critical", action=None if no_delete else "delete",
                       values=(("review", no_delete),))
    # §19.6: hit_recent / hit_history / heparin_allergy, by the intensity of the heparin draft
    urgency = "critical" if "hit_recent" in ci else "warning"
    if "hit_recent" in ci and not ctx.platelets_known:
        notes.add("hit_needs_platelets")
        return Finding("contraindicated", ci, urgency=urgency, action="delete")
    row1 = _row1(ctx, ci, p)
    notes.update(n for n in row1.notes if n in (
        "fondaparinux_needs_weight", "fondaparinux_low_weight", "fondaparinux_moderate_renal",
        "confirm_renal_function"))
    values = (("intensity", intensity),)
    remote_low_weight = ctx.weight_kg is not None and nm.cmp_lt(
        ctx.weight_kg, p["hit.fondaparinux_min_weight_kg"], p)
    if intensity == "therapeutic":
        renal_ok = low is False and ctx.renal_replacement is not True
        band = None
        if renal_ok and ctx.weight_kg is not None:
            from .order_safety import fondaparinux_band_mg
            band = fondaparinux_band_mg(ctx.weight_kg, p)
        if band is not None:
            return Finding("switch_product", ci, Proposed("fondaparinux", band, None, 1), urgency=urgency,
                           action="switch", values=values + (("treatment", True),))
        notes.add("hit_treatment_non_heparin")
        return Finding("contraindicated", ci, urgency=urgency, action="delete", values=values)
    if row1.drug == "fondaparinux" and intensity in ("prophylactic", "intermediate"):
        return Finding("switch_product", ci, Proposed("fondaparinux", row1.dose_mg, None, 1),
                       urgency=urgency, action="switch", values=values)
    if low is False:
        notes.add("hit_avoid_heparin")     # CrCl is fine: the reason is weight (or unknown weight)
    else:
        notes.add("hit_non_heparin_agent")
    if remote_low_weight:
        notes.add("hit_mechanical_until_plan")   # §19.6: remote HIT under 50 kg
    notes.add("mechanical_prophylaxis")
    return Finding("contraindicated", ci, urgency=urgency, action="delete", values=values)


def _above_prophylactic(draft: MedicationOrder, ctx: OrderContext, p: Policy, intensity: str | None,
                        matches: bool, regimen: Regimen, notes: set[str]) -> Finding | None:
    """§19.2 above-prophylactic with no indication (warning). The one-click update only for an
    intermediate-intensity heparin draft in a critically ill patient."""
    name = draft.ingredient
    if intensity not in ("intermediate", "therapeutic") or matches or not ctx.in_scope:
        return None
    if name in DOACS and intensity != "therapeutic":
        return None
    # §19.1's table applies the rule to "all" drafts (§19.2's text names heparins, fondaparinux and
    # DOACs): a VKA, argatroban or bivalirudin draft with no indication recorded is warned too.
    if ctx.pathway == "therapeutic_candidate" and intensity == "therapeutic" and name in HEPARINS:
        # the recommendation is therapeutic heparin (LMWH); therapeutic DOACs are not recommended
        notes.add("therapeutic_candidate")
        return None
    if ctx.other_indication:
        notes.add("other_anticoagulation_indication")
        return None
    if name not in HEPARINS and set(ctx.contraindications) & {"hit_acute", "hit_recent", "hit_suspected"}:
        # §19.1/§19.2: HIT within hit.acute_days (or suspected) is the indication for a therapeutic
        # non-heparin agent; never 'use the prophylactic dose' (review H4)
        notes.add("hit_indication")
        return None
    if ctx.ecmo and name not in DOACS:
        notes.add("ecmo")       # circuit heparin; an LMWH/fondaparinux draft gets the ECMO card
        return None
    if name == "heparin" and (draft.continuous or draft.route == "intravenous") and ctx.rrt_mode == "crrt":
        notes.add("circuit")        # §19.2: CRRT circuit heparin is not a COVID-19 intensity question
        return None
    if any(_daily(sm) is not None and _daily(draft) is not None and sm.ingredient == name
           and _daily(draft) <= _daily(sm) + 1e-9 for sm in ctx.statements):
        notes.add("continuation")   # §19.9: a home medicine continued at the same or a lower dose
        return None
    proposed, action = None, None
    if intensity == "intermediate" and name in HEPARINS and ctx.critically_ill is True \
            and not ctx.possible_other_indication and regimen.drug in HEPARINS and not ctx.non_heparin_running:
        proposed, action = _regimen_order(regimen), "update"
    if ctx.critically_ill is None:
        notes.add("severity_unknown")
    reasons = ("critically_ill",) if ctx.critically_ill is True else ("not_critically_ill",)
    return Finding("above_prophylactic", reasons + tuple(ctx.cautions), proposed, urgency="warning",
                   action=action, values=(("intensity", intensity),
                                          ("possible_other_indication", ctx.possible_other_indication)))


def _anti_xa_by_intensity(order: MedicationOrder, ctx: OrderContext, intensity: str | None,
                          p: Policy) -> AntiXa | None:
    """§19.7: the target follows the intent (prophylactic intensity -> prophylactic target)."""
    if order.ingredient not in LMWH or intensity is None:
        return None
    return assess_anti_xa(recommended_drug=None, recommended_basis=None,
                          lmwh_orders=[(order, intensity)], bmi=ctx.bmi, weight_kg=ctx.weight_kg,
                          crcl_lt_30=ctx.crcl_lt_30, pregnant=ctx.pregnant, policy=p,
                          renal_replacement=ctx.renal_replacement)


def _sort(findings) -> list[Finding]:
    urg = {"critical": 0, "warning": 1, "info": 2, None: 3}
    return sorted(findings, key=lambda f: (urg.get(f.urgency, 3), FINDING_KINDS.index(f.kind)
                                           if f.kind in FINDING_KINDS else 99))


def check_draft(draft: MedicationOrder, ctx: OrderContext, policy: Policy) -> OrderCheck:
    p = policy
    name = draft.ingredient
    v3_only = name in V3_ONLY or draft.drug_class in ("doac", "vka", "dti")
    if name not in CHECKED and not v3_only:
        return OrderCheck(draft, checked=False)
    notes: set[str] = set()
    from .order_safety import safety_findings

    regimen = _regimen(ctx, p)
    normal = _regimen_order(_regimen_at_normal_renal(ctx, p))
    accepted = _accepted_equivalent(draft, ctx, regimen, p)
    target = _regimen_order(regimen)
    matches = accepted or (target is not None and _matches(draft, target, p))
    obesity = _obesity_equivalent(draft, ctx, p)
    intent_normal = normal is not None and _matches(draft, normal, p)
    if ctx.bmi is None and ctx.weight_kg is not None and name == "enoxaparin" \
            and _same(draft.doses_per_day, 1, p) and any(
            _same(draft.dose_mg, mg, p) for mg in (p["dosing.bmi_tier1_mg"], p["dosing.bmi_tier2_mg"])):
        # a BMI-tier dose while only the height is missing: prophylactic intent, BMI needed. With the
        # weight unknown too, §10.3's no-weight table decides (60-80 mg daily is intermediate), so
        # the renal-unknown and escalation cards speak (review H7: it was silent).
        intent_normal = True
    intensity = draft_intensity(draft, weight_kg=ctx.weight_kg, bmi=ctx.bmi, crcl_lt_30=ctx.crcl_lt_30,
                                policy=p, accepted=matches or obesity or intent_normal)
    prophylactic_intent = intensity == "prophylactic"
    renal = renal_state(crcl_ml_min=ctx.crcl_ml_min, renal_replacement=ctx.renal_replacement,
                        creatinine_unstable=ctx.creatinine_unstable,
                        creatinine_rising=ctx.creatinine_rising, policy=p, crcl_bound=ctx.crcl_bound)
    v3 = safety_findings(draft, ctx, p, intensity=intensity, renal=renal,
                         prophylactic_intent=prophylactic_intent, regimen_match=matches)
    cls = classify_order(draft, ctx.weight_kg, ctx.crcl_lt_30, p)
    intent = None if intensity is None else ("prophylactic" if prophylactic_intent else "escalated")

    def result(*findings: Finding, anti_xa=None, note=None) -> OrderCheck:
        return OrderCheck(draft, True, cls, intent, tuple(_sort(f for f in findings if f)), anti_xa,
                          tuple(sorted(notes)), note, intensity, matches)

    if v3_only:
        missing = tuple(n for n, v in (("dose", draft.dose_mg), ("frequency", draft.doses_per_day))
                        if v is None) if name in DOACS else ()
        extra = [Finding("undeterminable", tuple(f"{m}_unreadable" for m in missing), missing=missing,
                         urgency="warning")] if missing else []
        exempt = any(f.kind in ("contraindicated", "hit_vka") for f in v3) or bool(
            set(ctx.contraindications) & {"hit_acute", "hit_suspected"})
        esc = None if exempt else _above_prophylactic(draft, ctx, p, intensity, matches, regimen, notes)
        return result(*v3, *extra, esc)

    stop = _contraindication(draft, ctx, p, notes, intensity)
    infusion = name == "heparin" and (draft.continuous or draft.route == "intravenous")
    missing = () if infusion else tuple(
        n for n, v in (("dose", _dose(draft)), ("frequency", draft.doses_per_day)) if v is None)
    if missing:
        # §19.0 fails closed: a dose that cannot be read is said (warning), never passed
        return result(stop, *v3, Finding("undeterminable", tuple(f"{m}_unreadable" for m in missing),
                                         missing=missing, urgency="warning"))
    if any(f.kind == "contraindicated" for f in v3):
        notes.add("mechanical_prophylaxis")
    # §19.2 exemptions the card set itself decides: a stop, a HIT card for this draft, or a
    # §19.3 switch/delete card at CrCl < 15 (UFH follows)
    hard_stop = stop is not None and (stop.kind == "switch_product" or bool(
        set(stop.reasons) & (set(STOP_CODES) | set(HEPARIN_SPECIFIC) | {"hit_acute", "non_heparin_anticoagulant_running"})))
    exempt = hard_stop or any(f.kind == "contraindicated" for f in v3) or bool(
        set(ctx.contraindications) & {"hit_acute", "hit_suspected"}) or any(
        f.reasons[:1] == ("crcl_lt_15",) for f in v3)
    if v3 or stop is not None:
        switch = any(f.action == "switch" for f in v3) or (stop is not None and stop.kind == "switch_product")
        anti_xa = None if switch else _anti_xa_by_intensity(draft, ctx, intensity, p)
        esc = None if exempt or prophylactic_intent else _above_prophylactic(
            draft, ctx, p, intensity, matches, regimen, notes)
        return result(stop, *v3, esc, anti_xa=anti_xa)
    if cls is None and intensity is None:
        return result(Finding("undeterminable", ("weight_unknown",), missing=("weight",), urgency="warning"))

    notes.update(n for n in regimen.notes if n in ("confirm_renal_function", "crcl_lt_15"))
    others = [o for o, c in ctx.current_orders if c == "therapeutic"
              and (o.source is None or o.source != draft.source)]
    duplicate = Finding("already_anticoagulated", ("current_therapeutic_dose",)) if others else None

    findings: list[Finding] = []
    resulting = draft
    if prophylactic_intent:
        if duplicate:  # §11 row 3: nothing is added on top of therapeutic anticoagulation
            return result(duplicate)
        if not ctx.in_scope:
            # §19.0: the §11 regimen as an update target is COVID-19 guidance (in scope only)
            return result()
        ptarget, reasons = _prophylactic_target(draft, ctx, regimen, p, notes)
        if not matches and not obesity and (ptarget is None or (name == "enoxaparin" and regimen.basis == "pending_weight"
                                                               and not _matches(draft, ptarget, p))):
            return result(Finding("undeterminable", ("bmi_unknown",), missing=_missing_for_bmi(ctx)))
        # never suggest a higher dose under 50 kg (§11 v2), never correct an obesity regimen down (§19.11)
        increase = _weight_low(ctx, p) and ptarget is not None and ptarget.ingredient == name and \
            (_dose(draft) or 0) < ((ptarget.dose_units if name in IU_DOSED else ptarget.dose_mg) or 0)
        if ptarget is not None and not matches and not obesity and not increase \
                and not _matches(draft, ptarget, p):
            urgency = {"bmi_ge_30": p["cards.bmi_tier1_indicator"],
                       "bmi_ge_40": p["cards.bmi_tier2_indicator"],
                       "bmi_ge_50": p["cards.bmi_tier2_indicator"]}.get(reasons[0], "warning") \
                if reasons else "warning"
            # §19.11 'never corrects an accepted higher obesity regimen down': at BMI >= 40 a target
            # with a LOWER daily dose is said, never one click (review-v3 M3: 60 mg q12h at BMI 49.9
            # is 0.39 mg/kg, "prophylactic" by §10.3, and was cut to 80 mg daily)
            lowers = ctx.bmi is not None and nm.cmp_ge(ctx.bmi, p["dosing.bmi_tier2"], p) \
                and _daily(draft) is not None and _daily(ptarget) is not None \
                and nm.cmp_lt(_daily(ptarget), _daily(draft), p)
            findings.append(Finding("dose_change", reasons, ptarget, urgency=urgency,
                                    action=None if lowers else "update"))
            resulting = replace(draft, dose_mg=ptarget.dose_mg, dose_units=ptarget.dose_units,
                                doses_per_day=ptarget.doses_per_day, route=ptarget.route,
                                continuous=False)
        if name == "enoxaparin" and regimen.basis == "pending_weight":
            notes.add("pending_weight")
        if name in LMWH and target is not None and _matches(resulting, target, p):
            anti_xa = _lmwh_anti_xa(resulting, ctx, regimen, p)     # the regimen's own answer
        else:
            anti_xa = _anti_xa_by_intensity(resulting, ctx, "prophylactic", p)
        return result(*findings, anti_xa=anti_xa)
    esc = _above_prophylactic(draft, ctx, p, intensity, matches, regimen, notes)
    anti_xa = _anti_xa_by_intensity(draft, ctx, intensity, p)
    evidence = "critically_ill_prophylactic_only" if esc is not None and ctx.critically_ill is True else None
    return result(esc, duplicate, anti_xa=anti_xa, note=evidence)

def context_from_assessment(assessment: Any, policy: Policy | None = None) -> OrderContext:
    """The OrderContext of an `assessment.Assessment` (`policy`: the one it was assessed with)."""
    a = assessment
    p = policy if policy is not None else Policy.default()
    return OrderContext(
        weight_kg=a.anthropometrics.weight_kg, height_cm=a.anthropometrics.height_cm,
        bmi=a.anthropometrics.bmi, crcl_ml_min=a.renal.crcl_ml_min,
        crcl_lt_30=a.renal.crcl_lt_30, crcl_bound=a.renal.crcl_bound,
        contraindications=a.safety.contraindications,
        cautions=a.safety.escalation_cautions, critically_ill=a.critical_illness.critically_ill,
        critical_criteria=a.critical_illness.criteria, pregnant=a.pregnant,
        current_orders=a.safety.orders, renal_replacement=a.renal.renal_replacement,
        ecmo=a.inputs.respiratory.ecmo,
        other_indication=a.safety.other_anticoagulation_indication,
        pathway=a.recommendation.pathway, non_heparin_running=a.safety.non_heparin_running,
        # as the assessment's §11 row 1: a count that settles HIT recovery (§10.1)
        platelets_known=hit_platelets_known(a.inputs.platelets, p),
        # v3 (§19)
        possible_other_indication=bool(getattr(a.safety, "possible_other_indication", False)),
        bilirubin_mg_dl=a.inputs.bilirubin.value if a.inputs.bilirubin is not None else None,
        creatinine_unstable=a.renal.creatinine_unstable, creatinine_rising=a.renal.creatinine_rising,
        crcl_actual_ml_min=a.renal.crcl_actual_weight_ml_min,
        inhibitors=tuple(getattr(a.inputs, "interacting_drugs", ())),
        in_scope=a.scope.in_scope,
        four_ts=_four_ts(a.inputs, p), age_years=a.inputs.age_years, statements=a.inputs.statements,
        creatinine_mg_dl=a.renal.creatinine_mg_dL,
        rrt_mode=getattr(a.inputs, "renal_replacement_mode", None))


def _daily(order: MedicationOrder) -> float | None:
    dose = _dose(order)
    return None if dose is None or order.doses_per_day is None else dose * order.doses_per_day


def _four_ts(inputs: Any, p: Policy) -> int | None:
    """§19.6: the latest recorded 4Ts score dated after the first platelet fall (the trend window)."""
    score = getattr(inputs, "four_ts", None)
    if score is None or score.value is None:
        return None
    return int(score.value)


def check_order(draft: MedicationOrder, assessment: Any, policy: Policy) -> OrderCheck:
    """Check one draft order against an Assessment (see `assessment.assess`)."""
    return check_draft(draft, context_from_assessment(assessment, policy), policy)


__all__ = ["CHECKED", "Finding", "OrderCheck", "OrderContext", "Proposed",
           "check_draft", "check_order", "context_from_assessment"]
