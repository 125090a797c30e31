"""The v3 order-check safety layer for one draft (clinical-rules §19.1-§19.3, §19.6, §19.11).

Pure: plain values in (`OrderContext`), findings out. `logic/order_check.py` calls `safety_findings`
first for every anticoagulant draft (heparins, dalteparin, tinzaparin, fondaparinux, DOACs, VKAs,
argatroban, bivalirudin); cards/orders.py turns each finding into a card.

Findings (kind, urgency, action), in the order the hook shows them:
- `contraindicated` (§19.1 row 1; critical): active bleeding, platelets < 25, fibrinogen < 0.5 for any
  draft. Delete the draft only with no hit_acute/hit_suspected, no other indication (firm or
  possible) and no ECMO; otherwise no action and "review with haematology today". In hit_acute or
  hit_suspected, platelets < 25 is not a stop for argatroban, bivalirudin, fondaparinux or a DOAC.
- `hit_vka` (critical, delete): a VKA draft in acute or suspected HIT [Cuker 2018].
- `hit_prophylactic_intensity`: a prophylactic-intensity non-heparin draft in hit_acute (critical)
  or hit_suspected (warning).
- `pregnancy_vka` (critical; delete unless another indication), `pregnancy_doac` (warning)
  [warfarin label; Bates 2018].
- `dose_above_maximum` (critical; §19.2 ceilings and §19.3 CrCl 15-<30 / < 15 rows): update
  (`proposed`) or delete, or none (DOACs, dalteparin, tinzaparin: the text names the maximum).
- `renal_dose` (warning; §19.3): prophylactic LMWH at CrCl 15-<30 above 30 mg a day (update to 30 mg;
  none with obesity), at CrCl < 15 / renal replacement (switch to UFH), intermediate/therapeutic
  once daily at CrCl < 15 (delete); dalteparin/tinzaparin at CrCl < 30; DOAC renal rules.
- `weight_unknown`, `renal_unknown` (warning, no action; §19.2).
- `fondaparinux_band` (warning): a fondaparinux dose between 2.5 mg and the weight band's dose.
- `liver` (warning): VKA or DOAC draft with severe liver disease (§19.1, §19.5).
- `argatroban_start` (warning): argatroban with bilirubin > 1.5 mg/dL or critically ill.
- `ecmo_oral` (warning): a DOAC or VKA draft on ECMO.
- `interaction` (warning): a strong CYP3A4/P-gp inhibitor with a DOAC draft (§19.3, §8a).
"""
from __future__ import annotations

import math
from typing import Any

from . import numeric as nm
from .findings import Finding, Proposed
from .inputs import MedicationOrder
from .intensity import DOACS, DTIS, VKAS, Intensity, RenalState
from .policy import Policy, rounded

STOPS = ("active_bleeding", "platelets_lt_25", "fibrinogen_lt_0.5")
LMWH = frozenset({"enoxaparin", "dalteparin", "tinzaparin"})
NON_HEPARIN_HIT_AGENTS = frozenset({"argatroban", "bivalirudin", "fondaparinux"}) | DOACS


def round_to_step(value: float, step: float) -> float:
    """Nearest step, 5 rounds up (§13.1: 64 kg -> 60 mg; 65 kg -> 70 mg)."""
    return math.floor(value / step + 0.5 + 1e-9) * step


def round_up_to_step(value: float, step: float) -> float:
    """The weight-based maximum rounded UP to the next product step (§19.2)."""
    return math.ceil(value / step - 1e-9) * step


def fondaparinux_band_mg(weight_kg: float, p: Policy) -> float | None:
    """Treatment dose for this weight (`hit.fondaparinux_treatment_bands`): < 50 kg 5 mg, 50-100 kg
    inclusive 7.5 mg, > 100 kg 10 mg."""
    for band in p["hit.fondaparinux_treatment_bands"]:
        if "below_kg" in band and nm.cmp_lt(weight_kg, band["below_kg"], p):
            return band["mg"]
        if "max_kg_inclusive" in band and nm.cmp_le(weight_kg, band["max_kg_inclusive"], p):
            return band["mg"]   # bands are read in order: the "below" band comes first
        if "above_kg" in band and nm.cmp_gt(weight_kg, band["above_kg"], p):
            return band["mg"]
    return None


def safety_findings(draft: MedicationOrder, ctx: Any, p: Policy, *, intensity: Intensity | None,
                    renal: RenalState, prophylactic_intent: bool,
                    regimen_match: bool) -> list:
    """The §19 findings for `draft` (see the module docstring). `ctx` is an OrderContext."""
    out: list[Finding] = []
    name, drug_class = draft.ingredient, draft.drug_class
    ci = set(ctx.contraindications)
    hit_live = bool(ci & {"hit_acute", "hit_suspected"})
    heparin = name in LMWH or name == "heparin"
    doac, vka, dti = name in DOACS or drug_class == "doac", name in VKAS or drug_class == "vka", \
        name in DTIS or drug_class == "dti"
    no_delete = hit_live or ctx.other_indication or ctx.possible_other_indication or ctx.ecmo

    # -- §19.1 stops -------------------------------------------------------------------------------
    stops = [c for c in STOPS if c in ci]
    if hit_live and name in NON_HEPARIN_HIT_AGENTS and "platelets_lt_25" in stops:
        stops.remove("platelets_lt_25")   # the thrombocytopenia is the disease [Cuker 2018]
    if stops and (not heparin or "hit_acute" in ci):
        # heparin drafts: the v2 stop in order_check.py; in acute HIT the HIT card deletes the
        # heparin and this card says the stop (no delete of its own)
        out.append(Finding("contraindicated", tuple(stops), urgency="critical",
                           action=None if no_delete or heparin else "delete",
                           values=(("review", no_delete),)))
    # -- HIT and VKAs / prophylactic non-heparin drafts ---------------------------------------------
    if vka and hit_live:
        out.append(Finding("hit_vka", tuple(c for c in ("hit_acute", "hit_suspected") if c in ci),
                           urgency="critical", action="delete"))
    elif not heparin and intensity == "prophylactic" and "hit_acute" in ci and not stops:
        out.append(Finding("hit_prophylactic_intensity", ("hit_acute",), urgency="critical"))
    elif not heparin and intensity == "prophylactic" and "hit_suspected" in ci:
        out.append(Finding("hit_prophylactic_intensity", ("hit_suspected",), urgency="warning"))
    # -- pregnancy ---------------------------------------------------------------------------------
    if ctx.pregnant and vka:
        out.append(Finding("pregnancy_vka", ("pregnancy",), urgency="critical",
                           action=None if ctx.other_indication else "delete"))
    elif ctx.pregnant and doac:
        out.append(Finding("pregnancy_doac", ("pregnancy",), urgency="warning"))
    # -- dose: malformed input ---------------------------------------------------------------------
    out.extend(_dose_findings(draft, ctx, p, intensity=intensity, renal=renal,
                              prophylactic_intent=prophylactic_intent, regimen_match=regimen_match))
    # -- liver, argatroban, ECMO, interactions -----------------------------------------------------
    if (vka or doac) and "severe_liver_disease" in ctx.cautions:
        out.append(Finding("liver", ("severe_liver_disease",), urgency="warning"))
    if name == "argatroban":
        high = ctx.bilirubin_mg_dl is not None and nm.cmp_gt(
            ctx.bilirubin_mg_dl, p["safety.argatroban_bilirubin_caution_mg_dl"], p)
        if high or ctx.critically_ill is True:
            out.append(Finding("argatroban_start", ("bilirubin_high",) if high else ("critically_ill",),
                               urgency="warning"))
    if (vka or doac) and ctx.ecmo:
        out.append(Finding("ecmo_oral", ("oral",), urgency="warning"))
    elif (name in LMWH or name == "fondaparinux") and ctx.ecmo:
        out.append(Finding("ecmo_oral", ("lmwh",), urgency="warning"))   # §19.4
    if doac and ctx.inhibitors:
        halve = name == "apixaban" and draft.dose_mg is not None and draft.doses_per_day is not None \
            and not (nm.cmp_le(draft.dose_mg, 2.5, p) and nm.cmp_le(draft.doses_per_day, 2, p))
        if name != "apixaban" or halve:
            out.append(Finding("interaction", tuple(ctx.inhibitors), urgency="warning",
                               values=(("halve", name == "apixaban"),)))
    return out


# Dalteparin single-dose prefilled syringes (dalteparin label; the treatment weight bands use 12,500,
# 15,000 and 18,000 IU); 18,000 is also orders.dalteparin_max_iu_day.
UFH_SC_STEP_UNITS = 5000   # SC UFH doses are rounded to 5,000 U steps (review-v3 M14)
DALTEPARIN_SYRINGES_IU = (2500, 5000, 7500, 10000, 12500, 15000, 18000)


def _treatment_context(ctx) -> bool:
    """A treatment dose is plausibly meant: another indication recorded, or the therapeutic-candidate
    pathway (§19.2)."""
    return bool(getattr(ctx, "other_indication", False)) or getattr(ctx, "pathway", None) == "therapeutic_candidate"


def _dose_findings(draft, ctx, p, *, intensity, renal, prophylactic_intent, regimen_match) -> list:
    out = _dose_findings_raw(draft, ctx, p, intensity=intensity, renal=renal,
                             prophylactic_intent=prophylactic_intent, regimen_match=regimen_match)
    heparin = draft.ingredient in LMWH or draft.ingredient == "heparin"
    if heparin and (set(ctx.contraindications) & {"hit_acute", "hit_suspected", "hit_recent", "hit_history",
                                                  "heparin_allergy"} or ctx.non_heparin_running):
        # the HIT card replaces the heparin: no one-click heparin update or switch beside it. A
        # `dose_change`/`switch_product` is nothing but its proposal, so it goes (the HIT or
        # non-heparin card deletes the draft); other findings keep their text without the proposal.
        from dataclasses import replace as _replace
        out = [_replace(f, proposed=None, action=None) if f.action in ("update", "switch") else f for f in out
               if not (f.kind in ("dose_change", "switch_product") and f.action in ("update", "switch"))]
    return out


def _dose_findings_raw(draft, ctx, p, *, intensity, renal, prophylactic_intent, regimen_match) -> list:
    name = draft.ingredient
    mg, units, n = draft.dose_mg, draft.dose_units, draft.doses_per_day
    w = ctx.weight_kg
    out = []
    below15 = renal.below(p["renal.severe_crcl_cutoff"], p)
    below30 = renal.below(p["renal.crcl_cutoff"], p)
    obese = (ctx.bmi is not None and nm.cmp_ge(ctx.bmi, p["antixa.trigger_bmi"], p)) or \
        (w is not None and nm.cmp_gt(w, p["antixa.trigger_weight_high_kg"], p))
    if name == "heparin" and units is not None and w is not None and not draft.continuous \
            and draft.route != "intravenous":
        # review-v3 M14: SC UFH above 250 U/kg per dose (rounded up to 5,000 U) is above any SC regimen
        ceiling = round_up_to_step(p["orders.ufh_sc_max_units_kg_dose"] * w, UFH_SC_STEP_UNITS)
        if nm.cmp_gt(units, ceiling, p):
            out.append(Finding("dose_above_maximum", ("ufh_sc_max",), urgency="critical",
                               values=(("max_units", ceiling),)))
    if n is None and mg is not None:
        # review-v3 M15: frequency unreadable, but one dose already above any labelled regimen's
        # single dose (enoxaparin 1.5 mg/kg once daily; the DOAC per-dose maximum) is said as such;
        # the 'frequency not readable' card still follows
        if name == "enoxaparin" and w is not None and nm.cmp_gt(
                mg, round_up_to_step(p["orders.enoxaparin_max_mg_kg_daily"] * w, p["therapeutic.round_to_mg"]), p):
            out.append(Finding("dose_above_maximum", ("enoxaparin_max", "frequency_unreadable"), urgency="critical"))
        cap = p["orders.doac_max"].get(name) if name in DOACS else None
        if cap is not None and nm.cmp_gt(mg, cap["per_dose"], p):
            out.append(Finding("dose_above_maximum", ("doac_max", "frequency_unreadable"), urgency="critical",
                               values=(("per_dose", cap["per_dose"]), ("per_day", cap["per_day"]))))
    if name == "enoxaparin" and mg is not None and n is not None:
        step = p["therapeutic.round_to_mg"]
        per_kg = p["therapeutic.enoxaparin_mg_per_kg"]
        daily = mg * n
        if below15 is True:
            if prophylactic_intent:
                out.append(Finding("switch_product", ("crcl_lt_15",), Proposed("heparin", None, p["renal.ufh_units"],
                                                                               p["renal.ufh_doses_per_day"]),
                                   urgency="warning", action="update"))
            elif nm.cmp_ge(n, 2, p):
                out.append(Finding("dose_above_maximum", ("crcl_lt_15", "twice_daily"), urgency="critical",
                                   action="delete"))
            else:
                out.append(Finding("renal_dose", ("crcl_lt_15", "once_daily"), urgency="warning",
                                   action="delete"))
            return out
        if below30 is True and (p["renal.overrides_bmi_rule"] or not prophylactic_intent):
            over_bid = nm.cmp_ge(n, 2, p) and nm.cmp_gt(mg, p["renal.enoxaparin_mg"], p)
            over_daily = w is not None and nm.cmp_le(n, 1, p) and \
                nm.cmp_gt(daily, round_up_to_step(per_kg * w, step), p)
            if over_bid and prophylactic_intent and obese and not nm.cmp_gt(n, 2, p):
                # review-v3 M6: §19.3 row 2 has no obesity exception, but row 1 and §11 renal_obesity
                # say a fixed 30 mg can be far below 0.5 mg/kg at BMI >= 40: the card stays
                # (critical, row 2), the one-click 30 mg daily does not
                out.append(Finding("renal_dose", ("crcl_lt_30", "renal_obesity"), urgency="critical"))
            elif over_bid or over_daily or nm.cmp_gt(n, 2, p):
                if intensity == "therapeutic" and w is not None:
                    target = Proposed("enoxaparin", round_to_step(per_kg * w, step), None, 1)
                else:
                    target = Proposed("enoxaparin", p["renal.enoxaparin_mg"], None, 1)
                out.append(Finding("dose_above_maximum", ("crcl_lt_30",), target, urgency="critical",
                                   action="update"))
            elif prophylactic_intent and nm.cmp_gt(daily, p["renal.enoxaparin_mg"], p):
                if obese:
                    out.append(Finding("renal_dose", ("crcl_lt_30", "renal_obesity"), urgency="warning"))
                else:
                    out.append(Finding("dose_change", ("crcl_lt_30",),
                                       Proposed("enoxaparin", p["renal.enoxaparin_mg"], None, 1),
                                       urgency="warning", action="update"))
            return out
        # CrCl >= 30 or unknown: the ceilings (§19.2) need a weight
        if w is not None:
            too_often = nm.cmp_gt(n, p["orders.enoxaparin_max_doses_per_day"], p)
            over = (nm.cmp_ge(n, 2, p) and nm.cmp_gt(
                mg, round_up_to_step(p["orders.enoxaparin_max_mg_kg_q12h"] * w, step), p)) or \
                (nm.cmp_lt(n, 2, p) and nm.cmp_gt(
                    daily, round_up_to_step(p["orders.enoxaparin_max_mg_kg_daily"] * w, step), p))
            if too_often or over:
                target = Proposed("enoxaparin", round_to_step(per_kg * w, step), None, 2)
                # never a one-click INCREASE of the daily dose (20 mg four times daily at 64 kg is
                # 80 mg a day; 1 mg/kg twice daily would be 120): then the text names the maximum
                raises = nm.cmp_gt(target.dose_mg * 2, daily, p)
                # review-v3 M4 (a rule-level deviation from §19.2's literal 'update to 1 mg/kg twice
                # daily'): a prophylactic strength (<= 40 mg) given too often, with no indication and
                # no therapeutic-candidate pathway, is a frequency slip: no one-click treatment dose
                raises = raises or (nm.cmp_le(mg, p["dosing.standard_mg"], p) and not _treatment_context(ctx))
                out.append(Finding("dose_above_maximum", ("more_than_2_a_day",) if too_often else ("enoxaparin_max",),
                                   None if raises else target, urgency="critical",
                                   action=None if raises else "update"))
                return out
        elif nm.cmp_gt(n, p["orders.enoxaparin_max_doses_per_day"], p):
            out.append(Finding("dose_above_maximum", ("more_than_2_a_day",), urgency="critical"))
            out.append(Finding("weight_unknown", ("weight",), urgency="warning", missing=("weight",)))
            return out
        elif not prophylactic_intent and (
                (nm.cmp_ge(n, 2, p) and nm.cmp_gt(mg, p["orders.no_weight_intermediate_q12h_mg"], p))
                or (nm.cmp_lt(n, 2, p) and nm.cmp_gt(daily, p["orders.no_weight_intermediate_daily_mg"], p))
                or nm.cmp_gt(n, 2, p)):
            out.append(Finding("weight_unknown", ("weight",), urgency="warning", missing=("weight",)))
    if name in ("dalteparin", "tinzaparin") and units is not None and n is not None:
        daily = units * n
        if w is not None:
            per_kg_max = p[f"orders.{name}_max_iu_kg_daily"]
            over = nm.cmp_gt(daily, per_kg_max * w, p)
            if name == "dalteparin":
                # §19.2: 'above' = above the weight-based maximum rounded up to the next product step
                # (review-v3 M5: 15,000 IU at 70 kg is the label's syringe for 200 IU/kg)
                ceiling = next((x for x in DALTEPARIN_SYRINGES_IU if x >= per_kg_max * w - 1e-6),
                               p["orders.dalteparin_max_iu_day"])
                ceiling = min(ceiling, p["orders.dalteparin_max_iu_day"])
                over = nm.cmp_gt(daily, ceiling, p) or nm.cmp_gt(daily, p["orders.dalteparin_max_iu_day"], p)
            if over:
                out.append(Finding("dose_above_maximum", (f"{name}_max",), urgency="critical",
                                   values=(("max_iu", per_kg_max * w),)))
        elif intensity != "prophylactic":
            out.append(Finding("weight_unknown", ("weight",), urgency="warning", missing=("weight",)))
        if below30 is True:
            # §19.3: the renal table is for enoxaparin; dalteparin/tinzaparin get the warning only
            out.append(Finding("renal_dose", ("lmwh_iu_crcl_lt_30",), urgency="warning"))
    if name == "fondaparinux" and mg is not None and n is not None:
        if w is not None:
            band = fondaparinux_band_mg(w, p)
            if band is not None and (nm.cmp_gt(mg, band, p) or nm.cmp_gt(n, 1, p)):
                # no one-click to another contraindicated dose at CrCl < 30 or unknown (label)
                renal_ok = below30 is False
                # review-v3 M4: 2.5 mg (the prophylactic strength) more than once a day with no
                # indication is a frequency slip, not a request for the treatment band: no one click
                if nm.cmp_le(mg, p["hit.fondaparinux_mg"], p) and not _treatment_context(ctx):
                    renal_ok = False
                out.append(Finding("dose_above_maximum", ("fondaparinux_band",),
                                   Proposed("fondaparinux", band, None, 1) if renal_ok else None,
                                   urgency="critical", action="update" if renal_ok else None))
            elif band is not None and nm.cmp_gt(mg, p["hit.fondaparinux_mg"], p) and nm.cmp_lt(mg, band, p):
                out.append(Finding("fondaparinux_band", ("not_labelled",), urgency="warning",
                                   values=(("band_mg", band),)))
        elif nm.cmp_gt(mg * n, p["hit.fondaparinux_mg"], p):
            out.append(Finding("weight_unknown", ("weight",), urgency="warning", missing=("weight",)))
    if name in DOACS and mg is not None and n is not None:
        cap = p["orders.doac_max"].get(name)
        daily = mg * n
        if cap is not None:
            per_dose = cap["per_dose"]
            if name == "dabigatran" and nm.cmp_gt(n, 1, p):
                per_dose = min(per_dose, 150)   # 220 mg per dose only once daily (§19.16)
            if nm.cmp_gt(mg, per_dose, p) or nm.cmp_gt(daily, cap["per_day"], p):
                out.append(Finding("dose_above_maximum", ("doac_max",), urgency="critical",
                                   values=(("per_dose", per_dose), ("per_day", cap["per_day"]))))
                return out
        out.extend(_doac_renal(draft, ctx, p, renal))
    # unknown or changing renal function (§19.2)
    # a DOAC's label rules need CrCl on actual weight (§19.3); a creatinine known only as a bound
    # ("> 8 mg/dL") leaves it unknown although RenalState holds a bound: said, never passed
    doac_blind = name in DOACS and not renal.rrt and ctx.crcl_actual_ml_min is None
    if renal.unknown or renal.changing or doac_blind:
        lmwh_high = name in LMWH and intensity in ("intermediate", "therapeutic")
        fonda_high = name == "fondaparinux" and mg is not None and n is not None and \
            nm.cmp_gt(mg * n, p["hit.fondaparinux_mg"], p)
        if lmwh_high or fonda_high or name in DOACS:
            out.append(Finding("renal_unknown", ("renal_changing" if renal.changing else "renal_unknown",),
                               urgency="warning", missing=() if renal.changing else ("creatinine",)))
    return out


def _doac_renal(draft, ctx, p, renal: RenalState) -> list:
    """§19.3 DOAC rules on actual-body-weight Cockcroft-Gault (warning, no update)."""
    name, mg, n = draft.ingredient, draft.dose_mg, draft.doses_per_day
    crcl = p["renal.rrt_equivalent_crcl"] if renal.rrt else ctx.crcl_actual_ml_min
    if crcl is None:
        return []
    daily = mg * n
    lt = lambda x: nm.cmp_lt(crcl, x, p)  # noqa: E731
    hit = None
    if name == "rivaroxaban" and (lt(15) or (lt(50) and nm.cmp_gt(daily, 15, p))):
        # (CrCl < 15 or renal replacement: avoid, rivaroxaban label; §19.3 names only the 15 mg rule)
        hit = "rivaroxaban_crcl_lt_50"
    elif name == "dabigatran" and (lt(15) or (lt(30) and nm.cmp_gt(mg, 75, p))):
        hit = "dabigatran_renal"
    elif name == "edoxaban" and (lt(15) or nm.cmp_gt(crcl, 95, p)):
        hit = "edoxaban_crcl_lt_15" if lt(15) else "edoxaban_crcl_gt_95"
    elif name == "edoxaban" and nm.cmp_le(crcl, 50, p) and rounded(mg, p) >= 60:
        hit = "edoxaban_crcl_15_50"
    if name == "apixaban" and mg is not None and nm.cmp_ge(mg, 5, p) and nm.cmp_ge(n, 2, p):
        criteria = sum([ctx.age_years is not None and ctx.age_years >= 80,
                        ctx.weight_kg is not None and nm.cmp_le(ctx.weight_kg, 60, p),
                        ctx.creatinine_mg_dl is not None and nm.cmp_ge(ctx.creatinine_mg_dl, 1.5, p)])
        if criteria >= 2:
            hit = "apixaban_dose_criteria"
    if hit is None:
        return []
    return [Finding("renal_dose", (hit,), urgency="warning", values=(("crcl_actual", crcl),))]


__all__ = ["fondaparinux_band_mg", "round_to_step", "round_up_to_step", "safety_findings"]
