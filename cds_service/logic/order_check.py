"""Check of one DRAFT anticoagulant order against the assessment (order-select / order-sign).

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
from .inputs import MedicationOrder
from . import numeric as nm
from .policy import Policy, rounded
from .regimen import Regimen, crcl_below, recommend_regimen
from .safety import (HEPARIN_SPECIFIC as _HEPARIN_SPECIFIC, HEPARINS, LMWH, OrderClass, classify_order,
                     hit_platelets_known)

CHECKED = frozenset({"enoxaparin", "dalteparin", "tinzaparin", "heparin", "fondaparinux"})
IU_DOSED = frozenset({"heparin", "dalteparin", "tinzaparin"})
HEPARIN_SPECIFIC = frozenset(_HEPARIN_SPECIFIC)
# v2 §18.4: these with a heparin draft are critical; hit_history / heparin_allergy a warning.
HIT_CRITICAL = ("hit_acute", "hit_recent", "hit_suspected")
# §11: "UFH 5,000 U SC two or three times daily" (the values renal.ufh_doses_per_day allows).
UFH_PROPHYLACTIC_DOSES_PER_DAY = (2, 3)
FINDING_KINDS = ("contraindicated", "switch_product", "undeterminable", "dose_change",
                 "escalation_in_critically_ill", "escalation_with_caution",
                 "already_anticoagulated")
Kind = Literal["contraindicated", "switch_product", "undeterminable", "dose_change",
               "escalation_in_critically_ill", "escalation_with_caution", "already_anticoagulated"]


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


@dataclass(frozen=True)
class Proposed:
    """The order the service proposes instead of the draft (per administration)."""

    ingredient: str
    dose_mg: float | None
    dose_units: float | None
    doses_per_day: int
    route: str = "subcutaneous"

    def to_json(self) -> dict:
        return {"ingredient": self.ingredient, "dose_mg": self.dose_mg,
                "dose_units": self.dose_units, "doses_per_day": self.doses_per_day,
                "route": self.route}


@dataclass(frozen=True)
class Finding:
    kind: Kind
    reasons: tuple[str, ...] = ()
    proposed: Proposed | None = None
    missing: tuple[str, ...] = ()
    # v2: the card indicator the rules give this finding ("info" | "warning" | "critical");
    # None leaves it to the card builder.
    urgency: str | None = None

    def to_json(self) -> dict:
        return {"kind": self.kind, "reasons": list(self.reasons),
                "proposed": self.proposed.to_json() if self.proposed else None,
                "missing": list(self.missing), "urgency": self.urgency}


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
                "notes": list(self.notes), "evidence_note": self.evidence_note}


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


def _accepted_equivalent(draft: MedicationOrder, ctx: OrderContext, regimen: Regimen,
                         p: Policy) -> bool:
    """§11 v2: an obesity equivalent at BMI >= 40, or a low-weight dose under 50 kg."""
    if draft.ingredient != "enoxaparin":
        return False
    if regimen.basis == "bmi_ge_40" and any(
            _matches(draft, Proposed("enoxaparin", mg, None, int(n)), p)
            for mg, n in p["orders.bmi_tier2_equivalents"]):
        return True
    return _weight_low(ctx, p) and _same(draft.doses_per_day, 1, p) and any(
        _same(draft.dose_mg, mg, p) for mg in p["orders.low_weight_accepted_mg"])


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


def _contraindication(draft: MedicationOrder, ctx: OrderContext, p: Policy,
                      notes: set[str]) -> Finding | None:
    name = draft.ingredient
    low = crcl_below(ctx.crcl_ml_min, ctx.crcl_bound, p["hit.fondaparinux_min_crcl"], p)
    if ctx.renal_replacement is True:
        low = True   # §11: renal replacement overrides a computed CrCl (fondaparinux label floor)
    ci = ctx.contraindications
    if name == "fondaparinux":
        cls = classify_order(draft, ctx.weight_kg, ctx.crcl_lt_30, p)
        # heparin-specific codes do not stop fondaparinux; acute HIT stops a prophylaxis-only plan
        ci = tuple(c for c in ci if c not in HEPARIN_SPECIFIC
                   and not (c == "hit_acute" and cls == "therapeutic"))
        label = ()
        if low is True:
            label += ("fondaparinux_crcl_lt_30",)
        elif low is None:
            notes.add("confirm_renal_function")
        if ctx.weight_kg is None:
            notes.add("fondaparinux_needs_weight")   # §11: the 50 kg floor cannot be checked
        elif nm.cmp_lt(ctx.weight_kg, p["hit.fondaparinux_min_weight_kg"], p):
            label += ("fondaparinux_weight_lt_50",)
        if ci or label:
            notes.add("mechanical_prophylaxis")
            # label floors alone: warning (§18.4); with a §10.1 stop: critical
            return Finding("contraindicated", ci + label, urgency="critical" if ci else "warning")
        return None
    if name in HEPARINS and ctx.non_heparin_running:
        # §10.1: argatroban, bivalirudin or therapeutic fondaparinux running: no heparin
        return Finding("contraindicated", tuple(ci) + ("non_heparin_anticoagulant_running",),
                       urgency="critical")
    if not ci:
        return None
    if any(c not in HEPARIN_SPECIFIC for c in ci) or any(c in HIT_CRITICAL for c in ci):
        notes.add("mechanical_prophylaxis")
        if "hit_recent" in ci and not ctx.platelets_known:
            notes.add("hit_needs_platelets")
        return Finding("contraindicated", ci, urgency="critical")
    # only hit_history and/or heparin_allergy: warning; switch when §11 row 1 gives fondaparinux
    row1 = _row1(ctx, ci, p)
    notes.update(n for n in row1.notes if n in (
        "fondaparinux_needs_weight", "fondaparinux_low_weight", "fondaparinux_moderate_renal",
        "confirm_renal_function"))
    if row1.drug == "fondaparinux":
        regimen = _regimen(ctx, p)
        cls = classify_order(draft, ctx.weight_kg, ctx.crcl_lt_30, p)
        if cls is not None and _intent(draft, cls, regimen, p, ctx) == "prophylactic":
            return Finding("switch_product", ci,
                           Proposed("fondaparinux", row1.dose_mg, None, 1), urgency="warning")
        notes.add("hit_avoid_heparin")
    elif low is False:
        notes.add("hit_avoid_heparin")     # CrCl is fine: the reason is weight (or unknown weight)
    else:
        notes.add("hit_non_heparin_agent")
    notes.add("mechanical_prophylaxis")
    return Finding("contraindicated", ci, urgency="warning")


def check_draft(draft: MedicationOrder, ctx: OrderContext, policy: Policy) -> OrderCheck:
    p = policy
    name = draft.ingredient
    if name not in CHECKED:
        return OrderCheck(draft, checked=False)
    notes: set[str] = set()

    def result(*findings: Finding, cls=None, intent=None, anti_xa=None, note=None) -> OrderCheck:
        return OrderCheck(draft, True, cls, intent, tuple(f for f in findings if f), anti_xa,
                          tuple(sorted(notes)), note)

    stop = _contraindication(draft, ctx, p, notes)
    if stop:
        return result(stop)

    infusion = name == "heparin" and (draft.continuous or draft.route == "intravenous")
    missing = () if infusion else tuple(
        n for n, v in (("dose", _dose(draft)), ("frequency", draft.doses_per_day)) if v is None)
    if missing:
        return result(Finding("undeterminable", tuple(f"{m}_unreadable" for m in missing),
                              missing=missing))
    cls = classify_order(draft, ctx.weight_kg, ctx.crcl_lt_30, p)
    if cls is None:
        return result(Finding("undeterminable", ("weight_unknown",), missing=("weight",)))

    regimen = _regimen(ctx, p)
    notes.update(n for n in regimen.notes if n in ("confirm_renal_function", "crcl_lt_15"))
    intent = _intent(draft, cls, regimen, p, ctx)
    severe = crcl_below(ctx.crcl_ml_min, ctx.crcl_bound, p["renal.severe_crcl_cutoff"], p) is True \
        or ctx.renal_replacement is True
    others = [o for o, c in ctx.current_orders if c == "therapeutic"
              and (o.source is None or o.source != draft.source)]
    duplicate = Finding("already_anticoagulated", ("current_therapeutic_dose",)) if others else None

    findings: list[Finding] = []
    resulting = draft
    evidence = None
    if intent == "prophylactic":
        if duplicate:  # §11 row 3: nothing is added on top of therapeutic anticoagulation
            return result(duplicate, cls=cls, intent=intent)
        if name in LMWH and severe:
            return result(Finding("switch_product", ("crcl_lt_15",), _ufh(p), urgency="warning"),
                          cls=cls, intent=intent)
        target, reasons = _prophylactic_target(draft, ctx, regimen, p, notes)
        # §11 v2: 30/40 mg once daily under 50 kg is accepted whatever the BMI (no height needed)
        accepted = _accepted_equivalent(draft, ctx, regimen, p)
        if not accepted and (target is None or (name == "enoxaparin" and regimen.basis == "pending_weight"
                                                and not _matches(draft, target, p))):
            return result(Finding("undeterminable", ("bmi_unknown",),
                                  missing=_missing_for_bmi(ctx)), cls=cls, intent=intent)
        # never suggest a higher dose under 50 kg (§11 v2)
        increase = _weight_low(ctx, p) and target is not None and target.ingredient == name and \
            (_dose(draft) or 0) < ((target.dose_units if name in IU_DOSED else target.dose_mg) or 0)
        if target is not None and not accepted and not increase and not _matches(draft, target, p):
            urgency = {"bmi_ge_30": p["cards.bmi_tier1_indicator"],
                       "bmi_ge_40": p["cards.bmi_tier2_indicator"]}.get(reasons[0], "warning") \
                if reasons else "warning"
            findings.append(Finding("dose_change", reasons, target, urgency=urgency))
            resulting = replace(draft, dose_mg=target.dose_mg, dose_units=target.dose_units,
                                doses_per_day=target.doses_per_day, route=target.route,
                                continuous=False)
        if name == "enoxaparin" and regimen.basis == "pending_weight":
            notes.add("pending_weight")
    else:
        if ctx.ecmo or ctx.other_indication or (
                ctx.pathway == "therapeutic_candidate" and cls == "therapeutic"):
            # §13.1/§18.4: no escalation warning on ECMO (its own protocol), with another
            # indication for anticoagulation, or for a therapeutic draft that is the recommendation
            notes.add("ecmo" if ctx.ecmo else "other_anticoagulation_indication"
                      if ctx.other_indication else "therapeutic_candidate")
        else:
            if ctx.critically_ill is True:
                evidence = "critically_ill_prophylactic_only"
                findings.append(Finding("escalation_in_critically_ill", (cls,)))
            elif ctx.critically_ill is None:
                notes.add("severity_unknown")
            if ctx.cautions:
                findings.append(Finding("escalation_with_caution", tuple(ctx.cautions)))
        if name == "enoxaparin" and cls == "therapeutic" and ctx.crcl_lt_30 is True \
                and nm.cmp_ge(draft.doses_per_day, 2, p):
            target = Proposed("enoxaparin", draft.dose_mg, None, 1, draft.route or "subcutaneous")
            findings.append(Finding("dose_change", ("renal_frequency",), target))
            resulting = replace(draft, doses_per_day=1)
        if severe:
            notes.add("crcl_lt_15")
    anti_xa = _lmwh_anti_xa(resulting, ctx, regimen, p) if name in LMWH else None
    findings.sort(key=lambda f: FINDING_KINDS.index(f.kind))
    return result(*findings, duplicate, cls=cls, intent=intent, anti_xa=anti_xa, note=evidence)


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
        platelets_known=hit_platelets_known(a.inputs.platelets, p))


def check_order(draft: MedicationOrder, assessment: Any, policy: Policy) -> OrderCheck:
    """Check one draft order against an Assessment (see `assessment.assess`)."""
    return check_draft(draft, context_from_assessment(assessment, policy), policy)


__all__ = ["CHECKED", "Finding", "OrderCheck", "OrderContext", "Proposed",
           "check_draft", "check_order", "context_from_assessment"]
