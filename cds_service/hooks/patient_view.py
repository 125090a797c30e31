"""coagulopathy-risk (patient-view): scores, prophylaxis dose and anti-Xa plan on chart open.

At most one card per call, chosen from the assessment (first row that applies):

| Situation | Card |
|---|---|
| out of scope (clinical rules §1a: assessment.scope) | none |
| a contraindication (§10.1) | `critical` contraindicated: why, the alternative (mechanical prophylaxis; fondaparinux for HIT at CrCl >= 30, as a create suggestion when no anticoagulant is ordered), any active order it concerns. None when HIT is the only one and a non-heparin anticoagulant is already ordered |
| already therapeutic (§10.3) | none (the indication, e.g. VTE, is not visible to us) |
| seed trigger met, no anticoagulant ordered | `warning` prophylaxis suggestion: create MedicationRequest (+ anti-Xa ServiceRequest when indicated) |
| seed trigger met, an ordered heparin differs from the recommended dose | `warning` prophylaxis suggestion naming the order and the dose to consider (no create: it would duplicate the order) |
| no anticoagulant ordered at all, trigger not met or not determinable | `info` standard prophylaxis: every admitted COVID-19 patient should get prophylaxis (§8), so this is the one reminder worth showing without a signal |
| trigger not determinable, an anticoagulant ordered | `info` not determinable naming the missing inputs, or none (`cards.not_determinable`) |
| otherwise | none |
"""
from __future__ import annotations

from ..logic.order_check import HEPARIN_SPECIFIC, check_order
from ..logic.safety import HEPARINS
from . import content as c
from .cards import action_create, card, medication_request, suggestion
from .common import PREFETCH, REQUIRED_KEYS, USAGE, Evaluation, evaluate, respond
from .registry import HookCall, Service

SIGNAL_INPUTS = ("sic", "d_dimer")   # missing_by_output entries the seed trigger depends on


def handle(call: HookCall) -> dict:
    ev = evaluate(call)
    cards = build_cards(ev) if ev.in_scope() else []
    return respond(call, cards, ev)


def build_cards(ev: Evaluation) -> list:
    a = ev.assessment
    anticoagulants = [o for o, _ in a.safety.orders]
    if a.safety.contraindications:
        return _contraindicated(ev, anticoagulants)
    if a.safety.already_therapeutic:
        return []
    if a.seed_trigger.triggered:
        if not anticoagulants:
            return [_prophylaxis(ev, triggered=True)]
        differing = _differing_orders(ev)
        return [_prophylaxis(ev, triggered=True, current=differing)] if differing else []
    if not anticoagulants:
        return [_prophylaxis(ev, triggered=False)]
    if a.seed_trigger.triggered is None and ev.policy["cards.not_determinable"] == "info_card":
        return [_not_determinable(ev)]
    return []


# -- helpers --------------------------------------------------------------------------------------
def _signal_missing(a) -> list[str]:
    names: list[str] = []
    for output in SIGNAL_INPUTS:
        names.extend(a.missing_by_output.get(output, ()))
    return list(dict.fromkeys(names))


def _differing_orders(ev: Evaluation) -> list[tuple[object, object]]:
    """Active heparin orders whose dose the check would change: (order, finding)."""
    out = []
    for order, _ in ev.assessment.safety.orders:
        if order.ingredient not in HEPARINS and order.ingredient != "fondaparinux":
            continue
        check = check_order(order, ev.assessment, ev.policy)
        finding = check.finding("dose_change") or check.finding("switch_product")
        if finding and finding.proposed:
            out.append((order, finding))
    return out


def _suggestions(ev: Evaluation, create_drug: bool) -> list[dict]:
    """The create MedicationRequest (regimen) and, when indicated, the anti-Xa ServiceRequest.
    They are independent (selectionBehavior "any"): the level is useful whichever product is
    ordered."""
    a, call = ev.assessment, ev.call
    reg = a.regimen
    out = []
    if create_drug and reg.drug:
        dose = c.dose_text(reg.drug, reg.dose_mg, reg.dose_units, reg.doses_per_day)
        resource = medication_request(
            ev.codes, drug=reg.drug, dose_mg=reg.dose_mg, dose_units=reg.dose_units,
            doses_per_day=reg.doses_per_day, patient_id=call.patient_id,
            encounter_id=call.encounter_id, authored_on=ev.now,
            note=f"VTE prophylaxis suggested by the coagulopathy-risk service ({c.label(c.BASIS_WORDS, reg.basis, ev.policy)}).")
        out.append(suggestion(f"Order {dose}", action_create(f"Draft order: {dose}", resource)))
    if a.anti_xa.indicated is True:
        out.append(c.anti_xa_suggestion(ev, a.anti_xa))
    return out


def _notes(a, policy, skip: tuple[str, ...] = ()) -> str | None:
    codes = [n for n in dict.fromkeys(list(a.regimen.notes) + list(a.notes)) if n not in skip]
    lines = c.note_lines(codes, policy)
    return "**Notes:**\n" + "\n".join(lines) if lines else None


def _missing_block(a, policy, names: list[str], heading: str) -> str | None:
    if not names:
        return None
    lines = [f"**{heading}:** {c.missing_text(names, policy)}."] + c.rejected_lines(a, names)
    return "\n".join(lines)


# -- cards -------------------------------------------------------------------------------------------
def _prophylaxis(ev: Evaluation, *, triggered: bool, current: list | None = None):
    a, p = ev.assessment, ev.policy
    reg = a.regimen
    dose = c.dose_text(reg.drug, reg.dose_mg, reg.dose_units, reg.doses_per_day)
    signal = c.signal_text(a, p)
    if current:
        order, finding = current[0]
        target = finding.proposed
        proposed = c.dose_text(target.ingredient, target.dose_mg, target.dose_units, target.doses_per_day)
        summary = f"{signal}: {c.order_text(order)} is ordered; consider {proposed}"
        lead = (f"Coagulopathy signal ({signal}). The active order {c.md(c.order_text(order))} differs from "
                f"the suggested dose: consider changing it to **{proposed}**.")
    elif triggered:
        summary = f"{signal}: consider {dose}"
        lead = (f"Coagulopathy signal ({signal}): in Tang 2020, heparin was linked to lower mortality only "
                f"in patients with SIC or D-dimer above 6× ULN (observational, 2020). Consider "
                f"prophylactic **{dose}**. The signal never justifies a dose above prophylaxis.")
    else:
        summary = f"No anticoagulant ordered: consider VTE prophylaxis with {dose}"
        lead = (f"No anticoagulant is ordered. Every admitted COVID-19 patient should receive VTE "
                f"prophylaxis unless contraindicated (ISTH interim guidance 2020): consider **{dose}**.")
    safety_missing = list(a.missing_by_output.get("safety", ()))
    signal_missing = [] if triggered else _signal_missing(a)
    cautions = a.safety.escalation_cautions
    blocks = [
        lead,
        c.dose_rationale(a, p),
        c.anti_xa_plan(a.anti_xa, p),
        c.evidence_text(a, p),
        f"**Bleeding cautions:** {c.join(c.labels(c.CAUTION_TEXT, cautions, p))}." if cautions else None,
        _missing_block(a, p, safety_missing, "Check before the first dose (not available)"),
        _missing_block(a, p, signal_missing, "Coagulopathy signal not determinable, missing"),
        "**Scores**\n\n" + c.scores(a, p),
        "**Inputs**\n\n" + c.inputs_table(a),
        _notes(a, p),
        c.sources("tang_2020", "iba_sic_2017", "isth_dic_2001", "isth_interim_2020", "piagnerelli_2020",
                  "enoxaparin_label", "attacc_critical_2021", "attacc_noncritical_2021", "inspiration_2021",
                  "nih_2022", "anti_xa_lab"),
        c.DISCLAIMER,
    ]
    kind = "prophylaxis_suggestion" if triggered else "standard_prophylaxis"
    evidence = ["tang_2020", "isth_interim_2020", "attacc_critical_2021", "attacc_noncritical_2021"] \
        if triggered else ["isth_interim_2020", "attacc_critical_2021", "attacc_noncritical_2021"]
    if a.anti_xa.indicated is True:
        evidence.append("isth_2022")
    return card(kind, "warning" if triggered else "info", summary, c.detail(*blocks),
                suggestions=_suggestions(ev, create_drug=not current), selection="any",
                evidence=evidence)


def _contraindicated(ev: Evaluation, anticoagulants: list):
    a, p, call = ev.assessment, ev.policy, ev.call
    ci = a.safety.contraindications
    heparin_only = set(ci) <= HEPARIN_SPECIFIC
    concerned = [o for o in anticoagulants if o.ingredient in HEPARINS or not heparin_only]
    others = [o for o in anticoagulants if o not in concerned]
    if heparin_only and others and not concerned:
        return []   # HIT/allergy already handled with a non-heparin anticoagulant
    reasons = [c.contraindication_reason(a, code, p) for code in ci]
    reg = a.regimen
    what = "Heparins" if heparin_only else "Pharmacological VTE prophylaxis"
    short = c.join(c.labels(c.CONTRAINDICATION_SHORT, ci, p))
    if concerned:
        summary = f"{what} contraindicated ({short}) but {c.order_text(concerned[0])} is ordered"
    elif reg.drug:
        summary = f"{what} contraindicated ({short}): consider {c.dose_text(reg.drug, reg.dose_mg, None, reg.doses_per_day)}"
    else:
        summary = f"{what} contraindicated ({short}): consider mechanical prophylaxis"
    lines = [f"**{what} {'are' if heparin_only else 'is'} contraindicated:**"] + [f"- {r}" for r in reasons]
    if concerned:
        lines.append("")
        lines.append("**Active order(s) concerned, consider stopping or reviewing:** "
                     + ", ".join(c.md(c.order_text(o)) for o in concerned) + ".")
    alternative = ["**Alternative:** consider mechanical prophylaxis (intermittent pneumatic compression)."]
    if reg.drug == "fondaparinux":
        alternative.append(f"For HIT with {c.renal_text(a, p)[:-1]}: consider "
                           f"**{c.dose_text(reg.drug, reg.dose_mg, None, reg.doses_per_day)}** "
                           f"(at CrCl at least {c.num(p['hit.fondaparinux_min_crcl'], 0)} mL/min).")
    elif heparin_only and reg.drug is None:
        # v2: name the renal reason only when the regimen says CrCl is why (not weight)
        alternative.append(c.label(c.NOTE_TEXT, "hit_non_heparin_agent"
                                   if "hit_non_heparin_agent" in reg.notes else "hit_avoid_heparin", p))
    signal = c.signal_text(a, p)
    blocks = [
        "\n".join(lines),
        " ".join(alternative),
        f"Coagulopathy signal present ({signal}); it does not outweigh the contraindication." if signal else None,
        "**Scores**\n\n" + c.scores(a, p),
        "**Inputs**\n\n" + c.inputs_table(a),
        _notes(a, p, skip=("mechanical_prophylaxis", "hit_non_heparin_agent")),  # said above
        c.sources("isth_interim_2020", "enoxaparin_label", "hep_covid_2021", "ash_2021"),
        c.DISCLAIMER,
    ]
    # Fondaparinux for HIT only when nothing is ordered yet (a create would otherwise duplicate).
    suggestions = _suggestions(ev, create_drug=True) if reg.drug == "fondaparinux" and not anticoagulants else []
    return [card("contraindicated", "critical", summary, c.detail(*blocks), suggestions=suggestions,
                 selection="any", evidence=["isth_interim_2020", "ash_2021"])]


def _not_determinable(ev: Evaluation):
    a, p = ev.assessment, ev.policy
    names = _signal_missing(a) or list(a.missing)
    missing = c.missing_text(names, p)
    summary = (f"Coagulopathy risk not determinable: no usable {c.join([c.INPUT_LABELS.get(n, n) for n in names])}",
               "Coagulopathy risk not determinable: key inputs missing or out of date")
    blocks = [
        f"The coagulopathy signal (SIC, or D-dimer above {c.num(p['d_dimer.marked_multiple'], 1)}× ULN) "
        "cannot be evaluated.",
        f"**Missing or out of date:** {missing}.",
        "\n".join(c.rejected_lines(a, names)) or None,
        "Consider checking D-dimer, platelet count and INR (and creatinine, weight) if clinically indicated.",
        "**Scores**\n\n" + c.scores(a, p),
        "**Inputs**\n\n" + c.inputs_table(a),
        c.sources("tang_2020", "iba_sic_2017"),
    ]
    return card("not_determinable", "info", summary, c.detail(*blocks), evidence=["tang_2020", "iba_sic_2017"])


SERVICE = Service(
    id="coagulopathy-risk",
    hook="patient-view",
    title="COVID-19 coagulopathy and heparin prophylaxis",
    description=("SIC, ISTH overt DIC and D-dimer (multiple of ULN) for hospitalised COVID-19 "
                 "patients, with weight- and renal-adjusted LMWH prophylaxis, contraindication "
                 "warnings and anti-Xa monitoring advice."),
    handler=handle,
    prefetch=PREFETCH,
    usage_requirements=USAGE,
    required_keys=REQUIRED_KEYS,
)
