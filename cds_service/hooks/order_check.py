"""anticoagulant-order-check (order-select) and anticoagulant-order-sign (order-sign).

Which drafts: order-select checks the MedicationRequests named in `selections`; order-sign
checks every MedicationRequest in `draftOrders` (fhir-data-requirements §9). Each is
normalised like an active order (status not filtered; drafts never count as current
orders). A draft whose medication is not mapped (no drug picked yet) or is not one of the
checked products is ignored; with none left the answer is `{"cards": []}` and no FHIR data is
read at all.

One card per draft, from `logic.order_check` (first finding that applies):

| Finding | Card | Suggestions |
|---|---|---|
| contraindicated | `critical` contraindicated | none (a stop without replacement is not a valid suggestion) |
| switch_product (HIT -> fondaparinux; CrCl < 15 -> UFH) | `warning` product_switch | one: create the new product (new id) FIRST, then delete the draft |
| undeterminable | `info` not_determinable naming what is missing (or none: `cards.not_determinable`) | none |
| escalation in a critically ill patient, or with a bleeding caution | `warning` escalation_warning with the evidence | update of the draft to the prophylactic regimen when it is the same product |
| dose_change | `warning` dose_correction | update of the whole draft (same id, dose/timing changed) + anti-Xa ServiceRequest when indicated ("any") |
| already anticoagulated only | `warning` duplicate_anticoagulant | none |
| anti-Xa indicated only | `info` anti_xa | anti-Xa ServiceRequest |
| dose right | none | |

The sandbox applies only the first actionable action of a suggestion, so every suggestion
leads with its create or update (CDS Hooks notes §12).
"""
from __future__ import annotations

import copy
from typing import Any

from ..fhir.bundle import bundle_resources
from ..fhir.codes import Codes
from ..fhir.context import Validator
from ..fhir.orders import first_dosage, normalise_order
from ..logic.order_check import CHECKED, Proposed, check_order
from . import content as c
from .cards import (action_create, action_delete, action_update, card, dosage, medication_request,
                    product, product_key, suggestion)
from .common import PREFETCH, REQUIRED_KEYS, USAGE, Evaluation, codes_for, evaluate, respond
from .registry import HookCall, Service

_CONTEXT_REASONS = {"bmi_ge_40": "bmi", "bmi_ge_30": "bmi", "standard": "bmi",
                    "crcl_lt_30": "crcl", "renal_frequency": "crcl", "crcl_lt_15": "crcl"}


def handle(call: HookCall) -> dict:
    codes = codes_for(call)
    drafts = select_drafts(call, codes)
    if not drafts:
        return respond(call, [])
    ev = evaluate(call)
    if not ev.in_scope():
        return respond(call, [], ev)
    cards, checks = [], []
    for resource, order in drafts:
        check = check_order(order, ev.assessment, ev.policy)
        checks.append(check.to_json())
        cards.extend(draft_cards(ev, resource, order, check))
    ev.extra_audit["order_checks"] = checks
    return respond(call, cards, ev)


def select_drafts(call: HookCall, codes: Codes) -> list[tuple[dict, Any]]:
    """(draft resource, MedicationOrder) for each checked draft MedicationRequest."""
    bundle = call.context["draftOrders"]
    resources = list(bundle_resources(bundle))
    medications = {f"Medication/{r['id']}": r for r in resources
                   if r["resourceType"] == "Medication" and isinstance(r.get("id"), str)}
    wanted = set(call.context.get("selections") or ()) if call.service.hook == "order-select" else None
    out = []
    for resource in resources:
        if resource["resourceType"] != "MedicationRequest":
            continue
        if wanted is not None and f"MedicationRequest/{resource.get('id')}" not in wanted:
            continue
        order = normalise_order(resource, codes, medications)
        if order is not None and order.ingredient in CHECKED:
            out.append((resource, order))
    return out


# -- cards -------------------------------------------------------------------------------------------
def draft_cards(ev: Evaluation, resource: dict, order, check) -> list:
    if not check.checked:
        return []
    if check.finding("contraindicated"):
        return [_contraindicated(ev, order, check)]
    if (f := check.finding("switch_product")):
        return [_switch(ev, resource, order, check, f)]
    if (f := check.finding("undeterminable")):
        if ev.policy["cards.not_determinable"] == "no_card":
            return []
        return [_undeterminable(ev, order, check, f)]
    escalation = check.finding("escalation_in_critically_ill") or check.finding("escalation_with_caution")
    if escalation:
        return [_escalation(ev, resource, order, check, escalation)]
    if (f := check.finding("dose_change")):
        return [_dose_change(ev, resource, order, check, f)]
    if check.finding("already_anticoagulated"):
        return [_duplicate(ev, order, check)]
    if check.anti_xa is not None and check.anti_xa.indicated is True:
        return [_anti_xa_only(ev, order, check)]
    return []


def _context(ev: Evaluation, reasons) -> str:
    a = ev.assessment
    kinds = {_CONTEXT_REASONS.get(r) for r in reasons}
    if "crcl" in kinds and a.renal.crcl_ml_min is not None:
        return f" at CrCl {c.shown('crcl', a.renal.crcl_ml_min, 1, ev.policy)} mL/min"
    if "bmi" in kinds and a.anthropometrics.bmi is not None:
        return f" at BMI {c.shown('bmi', a.anthropometrics.bmi, 1, ev.policy)}"
    return ""


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _common_blocks(ev: Evaluation, check, proposed=None) -> list[str | None]:
    """Dose rationale (the regimen line only when it is what the card proposes), scores,
    inputs, notes."""
    a, p = ev.assessment, ev.policy
    reg = a.regimen
    same = proposed is not None and (reg.drug, reg.dose_mg, reg.dose_units, reg.doses_per_day) == (
        proposed.ingredient, proposed.dose_mg, proposed.dose_units, proposed.doses_per_day)
    return [
        c.dose_rationale(a, p, suggested=same),
        "**Scores**\n\n" + c.scores(a, p),
        "**Inputs**\n\n" + c.inputs_table(a),
        _check_notes(check, p),
    ]


def _check_notes(check, p) -> str | None:
    lines = c.note_lines(check.notes, p)
    return "**Notes:**\n" + "\n".join(lines) if lines else None


def _proposed_text(proposed) -> str:
    return c.dose_text(proposed.ingredient, proposed.dose_mg, proposed.dose_units, proposed.doses_per_day)


def _dose_change(ev: Evaluation, resource: dict, order, check, finding):
    a, p = ev.assessment, ev.policy
    current = c.order_text(order)
    proposed = _proposed_text(finding.proposed)
    short = proposed.removeprefix(c.DRUG_NAMES.get(order.ingredient, order.ingredient) + " ")
    where = _context(ev, finding.reasons)
    summary = (f"{_capital(current)}{where}: consider {short}", f"{_capital(current)}: consider {short}")
    if "renal_frequency" in finding.reasons:
        why = (f"at CrCl below {c.num(ev.policy['renal.crcl_cutoff'], 0)} mL/min the enoxaparin label "
               "gives a therapeutic dose once daily, not every 12 h")
    elif finding.proposed.ingredient == "enoxaparin":
        why = "of weight, BMI and renal function (below)"
    else:
        why = f"that is the standard prophylactic dose of {c.DRUG_NAMES.get(order.ingredient, order.ingredient)}"
    suggestions = []
    updated = updated_draft(ev.codes, resource, order, finding.proposed)
    if updated is not None:
        suggestions.append(suggestion(f"Change to {proposed}",
                                      action_update(f"Change the draft to {proposed}", updated),
                                      recommended=True))
    if check.anti_xa is not None and check.anti_xa.indicated is True:
        suggestions.append(c.anti_xa_suggestion(ev, check.anti_xa))
    blocks = [f"The draft order **{c.md(current)}** differs from the suggested dose: consider "
              f"**{proposed}**, because {why}.",
              c.anti_xa_plan(check.anti_xa, p),
              *_common_blocks(ev, check, finding.proposed),
              c.sources("piagnerelli_2020", "enoxaparin_label", "isth_interim_2020", "anti_xa_lab"),
              c.DISCLAIMER]
    return card("dose_correction", finding.urgency or "warning", summary, c.detail(*blocks), suggestions=suggestions,
                selection="any", evidence=["isth_interim_2020", "isth_2022"])


def _switch(ev: Evaluation, resource: dict, order, check, finding):
    a, p, call = ev.assessment, ev.policy, ev.call
    current = c.order_text(order)
    proposed = _proposed_text(finding.proposed)
    if "hit_history" in finding.reasons:
        why, short = "a history of heparin-induced thrombocytopenia contraindicates heparins", "HIT history"
        cite = ["isth_interim_2020", "ash_2021"]
    else:
        why = (f"CrCl {c.shown('crcl', a.renal.crcl_ml_min, 1, p)} mL/min is below {c.num(p['renal.severe_crcl_cutoff'], 0)}: "
               "UFH is preferred (HEP-COVID excluded these patients)")
        short = f"CrCl {c.shown('crcl', a.renal.crcl_ml_min, 1, p)} mL/min"
        cite = ["hep_covid_2021", "isth_interim_2020"]
    summary = (f"{short}: replace {current} with {proposed}", f"{short}: consider {proposed} instead")
    suggestions = []
    draft_id = resource.get("id")
    if isinstance(draft_id, str) and draft_id:
        new = medication_request(
            ev.codes, drug=finding.proposed.ingredient, dose_mg=finding.proposed.dose_mg,
            dose_units=finding.proposed.dose_units, doses_per_day=finding.proposed.doses_per_day,
            patient_id=call.patient_id, encounter_id=call.encounter_id, authored_on=ev.now,
            note=f"Replaces draft {current} ({short}).")
        for key in ("subject", "encounter", "requester"):   # keep the draft's own references
            if isinstance(resource.get(key), dict):
                new[key] = copy.deepcopy(resource[key])
        suggestions.append(suggestion(
            f"Replace with {proposed}",
            action_create(f"Draft order: {proposed}", new),
            action_delete(f"Remove the draft {current}", f"MedicationRequest/{draft_id}"),
            recommended=True))
    blocks = [f"The draft order **{c.md(current)}** should be a different product: {why}. "
              f"Consider **{proposed}**.",
              *_common_blocks(ev, check, finding.proposed),
              c.sources("enoxaparin_label", "hep_covid_2021", "isth_interim_2020"),
              c.DISCLAIMER]
    # A heparin drafted for a patient with HIT is a contraindicated order: critical, like the
    # contraindication card; a renal product switch is a dosing matter: warning.
    # v2 (§18.4): the order check's urgency (HIT history or allergy: warning; CrCl < 15: warning)
    indicator = finding.urgency or ("critical" if "hit_history" in finding.reasons else "warning")
    return card("product_switch", indicator, summary, c.detail(*blocks), suggestions=suggestions,
                selection="at-most-one", evidence=cite)


def _contraindicated(ev: Evaluation, order, check):
    a, p = ev.assessment, ev.policy
    finding = check.finding("contraindicated")
    current = c.order_text(order)
    short = c.join(c.labels(c.CONTRAINDICATION_SHORT, finding.reasons, p))
    summary = (f"{_capital(current)} contraindicated ({short}): consider mechanical prophylaxis",
               f"{_capital(current)} contraindicated ({short})",
               f"{_capital(order.ingredient)} draft contraindicated")
    reasons = [f"- {c.contraindication_reason(a, code, p)}" for code in finding.reasons]
    blocks = ["**The draft order " + c.md(current) + " is contraindicated:**\n" + "\n".join(reasons),
              "**Alternative:** consider mechanical prophylaxis (intermittent pneumatic compression)."
              + "".join(" " + c.label(c.NOTE_TEXT, n, p) for n in (
                  "hit_non_heparin_agent", "hit_avoid_heparin", "hit_needs_platelets")
                  if n in check.notes),
              "Consider not signing this order.",
              "**Inputs**\n\n" + c.inputs_table(a),
              _check_notes(check, p),
              c.sources("isth_interim_2020", "enoxaparin_label", "hep_covid_2021"),
              c.DISCLAIMER]
    return card("contraindicated", finding.urgency or "critical", summary, c.detail(*blocks),
                evidence=["isth_interim_2020", "ash_2021"])


def _undeterminable(ev: Evaluation, order, check, finding):
    a, p = ev.assessment, ev.policy
    current = c.order_text(order)
    missing = c.missing_text(finding.missing, p)
    summary = (f"Cannot check {current}: {c.join([c.INPUT_LABELS.get(m, m) for m in finding.missing])} not available",
               f"Cannot check {current}: inputs missing")
    blocks = [f"The dose of **{c.md(current)}** cannot be checked. **Missing:** {missing}.",
              "\n".join(c.rejected_lines(a, finding.missing)) or None,
              *_common_blocks(ev, check)]
    return card("not_determinable", "info", summary, c.detail(*blocks), evidence=["isth_interim_2020"])


def _escalation(ev: Evaluation, resource: dict, order, check, finding):
    a, p = ev.assessment, ev.policy
    current = c.order_text(order)
    dose_class = check.draft_class or "above-prophylactic"
    reg = a.regimen
    if finding.kind == "escalation_in_critically_ill":
        summary = (f"{_capital(dose_class)}-dose {order.ingredient} in a critically ill patient: "
                   "evidence supports prophylactic dose only",
                   f"{_capital(dose_class)}-dose {order.ingredient} in critical illness: prophylactic dose only")
        lead = (f"The draft order **{c.md(current)}** is a {dose_class} dose in a critically ill patient.")
        evidence = c.evidence_text(a, p, "critically_ill_prophylactic_only")
        cite = ["attacc_critical_2021", "inspiration_2021", "isth_2022"]
    else:
        cautions = c.join(c.labels(c.CAUTION_TEXT, finding.reasons, p))
        summary = (f"{_capital(dose_class)}-dose {order.ingredient} with bleeding caution ({cautions})",
                   f"{_capital(dose_class)}-dose {order.ingredient} with a bleeding caution")
        lead = (f"The draft order **{c.md(current)}** is a {dose_class} dose, but {cautions} "
                "rule out doses above prophylaxis (trial exclusions, NIH 2022).")
        evidence = None
        cite = ["attacc_noncritical_2021", "isth_2022"]
    suggestions, target = [], None
    if reg.drug == order.ingredient and reg.drug is not None:
        target = Proposed(reg.drug, reg.dose_mg, reg.dose_units, reg.doses_per_day)
        proposed = _proposed_text(target)
        updated = updated_draft(ev.codes, resource, order, target)
        if updated is not None:
            suggestions.append(suggestion(f"Change to prophylactic {proposed}",
                                          action_update(f"Change the draft to {proposed}", updated)))
        lead += f" Unless there is another indication (e.g. VTE), consider **{proposed}**."
    else:
        lead += " Unless there is another indication (e.g. VTE), consider a prophylactic dose."
    renal = check.finding("dose_change")
    blocks = [lead, evidence,
              (f"If this dose is intended: at CrCl below {c.num(ev.policy['renal.crcl_cutoff'], 0)} "
               f"mL/min give it once daily "
               f"({_proposed_text(renal.proposed)}).") if renal else None,
              *_common_blocks(ev, check, target),
              c.sources("attacc_critical_2021", "inspiration_2021", "ash_2021", "isth_2022", "nih_2022"),
              c.DISCLAIMER]
    return card("escalation_warning", "warning", summary, c.detail(*blocks), suggestions=suggestions,
                selection="any", evidence=cite)


def _duplicate(ev: Evaluation, order, check):
    a = ev.assessment
    current = c.order_text(order)
    active = [c.order_text(o) for o, cls in a.safety.orders if cls == "therapeutic"]
    summary = (f"{_capital(current)} drafted while {active[0]} is active" if active else
               f"{_capital(current)} drafted while a therapeutic anticoagulant is active",
               f"{_capital(order.ingredient)} drafted while a therapeutic anticoagulant is active")
    blocks = [f"A therapeutic-dose anticoagulant is already active ({c.md(', '.join(active))}). "
              f"Consider whether **{c.md(current)}** is needed; combined anticoagulants raise bleeding risk.",
              "**Inputs**\n\n" + c.inputs_table(a), c.DISCLAIMER]
    return card("duplicate_anticoagulant", "warning", summary, c.detail(*blocks),
                evidence=["dose_classes_2023"])


def _anti_xa_only(ev: Evaluation, order, check):
    p = ev.policy
    current = c.order_text(order)
    reasons = c.join(c.labels(c.ANTI_XA_REASON_TEXT, check.anti_xa.reasons, p))
    summary = (f"{_capital(current)}: anti-Xa monitoring indicated ({reasons})",
               f"{_capital(current)}: anti-Xa monitoring indicated")
    blocks = [f"The dose of **{c.md(current)}** matches the suggested dose.", c.anti_xa_plan(check.anti_xa, p),
              *_common_blocks(ev, check, Proposed(order.ingredient, order.dose_mg, order.dose_units,
                                                  int(order.doses_per_day or 0))),
              c.sources("piagnerelli_2020", "anti_xa_lab")]
    return card("anti_xa", "info", summary, c.detail(*blocks),
                suggestions=[c.anti_xa_suggestion(ev, check.anti_xa)], evidence=["isth_2022"])


# -- the updated draft --------------------------------------------------------------------------------
def updated_draft(codes: Codes, resource: dict, order, proposed) -> dict | None:
    """The WHOLE draft with only dose and timing changed (and the product coding when the
    syringe strength changes): same id, status draft, same subject/encounter. None when the
    draft has no id to target or the result is not valid R4B."""
    if not isinstance(resource.get("id"), str) or not resource["id"]:
        return None
    updated = copy.deepcopy(resource)
    updated["status"] = "draft"
    new = dosage(codes, dose_mg=proposed.dose_mg, dose_units=proposed.dose_units,
                 doses_per_day=proposed.doses_per_day, route=proposed.route or "subcutaneous")
    target = first_dosage(updated)
    if target is None:
        updated["dosageInstruction"] = [new]
    else:
        target["text"] = new["text"]
        timing = target.get("timing") if isinstance(target.get("timing"), dict) else {}
        # A GTS code or fixed times would contradict the new repeat: drop them.
        timing = {k: v for k, v in timing.items() if k not in ("code", "repeat")}
        timing["repeat"] = new["timing"]["repeat"]
        target["timing"] = timing
        target["doseAndRate"] = new["doseAndRate"]
        if order.route != proposed.route:   # e.g. an IV infusion turned into SC prophylaxis
            target["route"] = new["route"]
        else:
            target.setdefault("route", new["route"])
    if _strength_changes(codes, resource, order, proposed) or not _codeable_ok(codes, updated):
        updated.pop("medicationReference", None)
        updated["medicationCodeableConcept"] = product(
            codes, product_key(proposed.ingredient, proposed.dose_mg, proposed.dose_units, codes))
    # A draft with malformed fields (e.g. intent as an object) stays malformed once updated:
    # never suggest a resource that is not valid FHIR; the card still says what to change.
    return None if Validator().problem(updated) else updated


def _scd_amount(codes: Codes, resource: dict) -> float | None:
    concept = resource.get("medicationCodeableConcept")
    for coding in (concept.get("coding") or []) if isinstance(concept, dict) else []:
        if not isinstance(coding, dict):
            continue
        for entry, spec in codes.data["scd_strengths"].items():
            if codes.resolve(entry) == (coding.get("system"), coding.get("code")):
                return float(spec["amount"])
    return None


def _strength_changes(codes: Codes, resource: dict, order, proposed) -> bool:
    """A single-dose product (its strength equals the drafted dose) that no longer fits."""
    if resource.get("medicationReference") is not None:
        return True
    amount = _scd_amount(codes, resource)
    old = order.dose_units if order.dose_mg is None else order.dose_mg
    new = proposed.dose_units if proposed.dose_mg is None else proposed.dose_mg
    return amount is not None and old is not None and amount == old and new != old


def _codeable_ok(codes: Codes, resource: dict) -> bool:
    """CDS Hooks notes §7: medicationCodeableConcept.text and an RxNorm coding[0]."""
    concept = resource.get("medicationCodeableConcept")
    if not isinstance(concept, dict) or not concept.get("text"):
        return False
    first = (concept.get("coding") or [None])[0]
    return isinstance(first, dict) and first.get("system") == codes.systems["RXNORM"] and bool(first.get("code"))


SELECT_SERVICE = Service(
    id="anticoagulant-order-check",
    hook="order-select",
    title="Anticoagulant dose check (order entry)",
    description=("Checks a drafted enoxaparin, dalteparin, tinzaparin, heparin or fondaparinux "
                 "order against weight, BMI, renal function and contraindications, and offers a "
                 "corrected draft and an anti-Xa order when indicated."),
    handler=handle,
    prefetch=PREFETCH,
    usage_requirements=USAGE,
    required_keys=REQUIRED_KEYS,
)

SIGN_SERVICE = Service(
    id="anticoagulant-order-sign",
    hook="order-sign",
    title="Anticoagulant dose check (before signing)",
    description=("Runs the anticoagulant dose, renal and contraindication checks on every draft "
                 "anticoagulant order before signing."),
    handler=handle,
    prefetch=PREFETCH,
    usage_requirements=USAGE,
    required_keys=REQUIRED_KEYS,
)
