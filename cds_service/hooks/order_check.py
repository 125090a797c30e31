"""anticoagulant-order-check (order-select) and anticoagulant-order-sign (order-sign), v2
(clinical-rules §18.4, §10.4, §11).

Which drafts: order-select checks the MedicationRequests named in `selections`; order-sign every
MedicationRequest in `draftOrders` (fhir-data-requirements §9). A draft of any anticoagulant
(DOACs and VKAs too) is checked for duplicates; enoxaparin, dalteparin, tinzaparin, heparin and
fondaparinux drafts also for dose, product and contraindications (`logic.order_check`). Flushes
and locks are not anticoagulants (fhir/orders.py never maps them). With no draft left the answer
is `{"cards": []}` and no FHIR data is read. Order-hook cards are never snoozed (§18.3).

One card per draft, first that applies:

| Finding | Kind, indicator | Suggestion |
|---|---|---|
| `hit_acute` / `hit_recent` / `hit_suspected` and a heparin draft | hit_acute / contraindicated / hit_suspected, critical | delete the draft |
| a heparin draft while argatroban, bivalirudin or therapeutic fondaparinux runs | contraindicated, critical | none |
| active bleeding, platelets < 25, fibrinogen < 0.5 | contraindicated, critical | none |
| fondaparinux draft below 50 kg or at CrCl < 30 | contraindicated, warning | none |
| `hit_history` / heparin allergy, fondaparinux not possible | heparin_avoidance, warning | delete the draft |
| another anticoagulant active (orders and home medicines) or drafted (§10.4) | duplicate_anticoagulant, §10.4 urgency | none |
| product switch (HIT history -> fondaparinux; CrCl < 15 or RRT -> UFH) | product_switch, warning | create the product, then delete the draft |
| dose not checkable | not_determinable, info (or none: `cards.not_determinable`) | none |
| above-prophylactic dose, critically ill or with a caution (never with ECMO, another indication, or a therapeutic draft for a therapeutic candidate) | escalation_warning, warning | update the draft to the regimen |
| dose or frequency differs (BMI-tier urgency from the policy; equivalents and low-weight doses accepted) | dose_correction, the finding's urgency | update the draft; anti-Xa when indicated |
| anti-Xa indicated only | anti_xa, info | anti-Xa ServiceRequest |

The sandbox applies only the first actionable action of a suggestion: creates and updates lead.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import replace
from typing import Any

from ..fhir.bundle import bundle_resources
from ..fhir.codes import Codes
from ..fhir.context import Validator, loggable_reason
from ..logging_setup import log_event
from ..fhir.orders import first_dosage, normalise_order
from ..logic import safety as safety_mod
from ..logic.order_check import CHECKED, Finding, Proposed, check_order
from ..logic.safety import HEPARINS
from . import templates as t
from .cards import (action_create, action_delete, action_update, card, dosage, md, medication_request, num,
                    product, product_key, suggestion)
from .common import PREFETCH, REQUIRED_KEYS, USAGE, Evaluation, codes_for, evaluate, respond

log = logging.getLogger("cds_service.hooks.order_check")
from .content import anti_xa_suggestion, shown
from .registry import HookCall, Service

HIT_CRITICAL = ("hit_acute", "hit_recent", "hit_suspected")
STOPS = ("active_bleeding", "platelets_lt_25", "fibrinogen_lt_0.5")
FONDAPARINUX_FLOORS = ("fondaparinux_crcl_lt_30", "fondaparinux_weight_lt_50")


def handle(call: HookCall) -> dict:
    codes = codes_for(call)
    drafts = select_drafts(call, codes)
    if not drafts:
        return respond(call, [])
    ev = evaluate(call)
    if not ev.in_scope():
        return respond(call, [], ev)
    others = all_drafts(call, codes)
    cards, checks = [], []
    for resource, order in drafts:
        check = check_order(order, ev.assessment, ev.policy) if order.ingredient in CHECKED else None
        if check is not None:
            checks.append(check.to_json())
        cards.extend(draft_cards(ev, resource, order, check, [o for r, o in others if r is not resource]))
    ev.extra_audit["order_checks"] = checks
    return respond(call, cards, ev)


def _anticoagulant(order) -> bool:
    is_ac = getattr(safety_mod, "is_anticoagulant", None)
    if is_ac is not None:
        return bool(is_ac(order))
    return order.drug_class not in ("antiplatelet", "vasoactive")


def _drafts(call: HookCall, codes: Codes, only_selected: bool) -> list[tuple[dict, Any]]:
    bundle = call.context["draftOrders"]
    resources = list(bundle_resources(bundle))
    medications = {f"Medication/{r['id']}": r for r in resources
                   if r["resourceType"] == "Medication" and isinstance(r.get("id"), str)}
    wanted = set(call.context.get("selections") or ()) \
        if only_selected and call.service.hook == "order-select" else None
    out = []
    for resource in resources:
        if resource["resourceType"] != "MedicationRequest":
            continue
        if wanted is not None and f"MedicationRequest/{resource.get('id')}" not in wanted:
            continue
        order = normalise_order(resource, codes, medications)
        if order is not None and _anticoagulant(order):
            if order.source is None and isinstance(resource.get("id"), str):
                order = replace(order, source=f"MedicationRequest/{resource['id']}")
            out.append((resource, order))
    return out


def select_drafts(call: HookCall, codes: Codes) -> list[tuple[dict, Any]]:
    """(draft resource, MedicationOrder) for each checked draft: an anticoagulant of any class."""
    return _drafts(call, codes, only_selected=True)


def all_drafts(call: HookCall, codes: Codes) -> list[tuple[dict, Any]]:
    """Every anticoagulant draft of draftOrders (a duplicate may be drafted in the same order set)."""
    return _drafts(call, codes, only_selected=False)


# -- one card per draft -------------------------------------------------------------------------------
def draft_cards(ev: Evaluation, resource: dict, order, check, other_drafts: list) -> list:
    """The draft's card, first finding that applies; a contraindication card is followed by the
    duplicate card when another anticoagulant is active or drafted too (the prescriber must know
    both: the draft is contraindicated, and the other agent needs review)."""
    b = _DraftCards(ev, resource, order, check, other_drafts)
    first = b.choose()
    if first is None:
        return []
    out = [first]
    if first.kind == "duplicate_anticoagulant" and check is not None and check.checked \
            and (f := check.finding("switch_product")) is not None \
            and set(f.reasons) & {"hit_history", "hit_recent", "heparin_allergy"}:
        # HIT history or allergy must not hide behind the duplicate; no switch (a create) while
        # another anticoagulant is active: delete the draft, say why.
        out.insert(0, b.avoid(f.reasons, "warning", "another anticoagulant is already active"))
    if first.kind != "duplicate_anticoagulant" and check is not None and check.finding("contraindicated"):
        duplicate = b.duplicate()
        if duplicate is not None:
            out.append(duplicate)
    return out


class _DraftCards:
    def __init__(self, ev, resource, order, check, other_drafts):
        self.ev, self.a, self.p = ev, ev.assessment, ev.policy
        self.t = t.for_policy(ev.policy)
        self.resource, self.order, self.check = resource, order, check
        self.other_drafts = other_drafts
        self.current = t.order_text(order)
        self.name = t.DRUG.get(order.ingredient, order.ingredient)
        self.draft_ref = f"MedicationRequest/{resource['id']}" if isinstance(resource.get("id"), str) \
            and resource["id"] else None

    def choose(self):
        check = self.check
        found = check.finding("contraindicated") if check is not None else None
        if found is not None:
            return self.contraindicated(found)
        duplicate = self.duplicate()
        if duplicate is not None:
            return duplicate
        if check is None or not check.checked:
            return None
        if (f := check.finding("switch_product")):
            return self.switch(f)
        if (f := check.finding("undeterminable")):
            return None if self.p["cards.not_determinable"] == "none" else self.undeterminable(f)
        escalation = check.finding("escalation_in_critically_ill") or check.finding("escalation_with_caution")
        if escalation:
            return self.escalation(escalation)
        if (f := check.finding("dose_change")):
            return self.dose_change(f)
        if check.anti_xa is not None and check.anti_xa.indicated is True:
            return self.anti_xa_only()
        return None

    # -- pieces --------------------------------------------------------------------------------------
    def finish(self, kind, indicator, summary, why, action, evidence, *, suggestions=(), selection="any",
               gives_heparin=False, recommendation=None):
        extra = [t.NEURAXIAL] if gives_heparin else []
        issued = card(kind, indicator, summary, t.detail(why, action, self.missing_line(), extra, evidence),
                      suggestions=suggestions, selection=selection, evidence=evidence.keys)
        from .patient_view import _with_recommendation
        return _with_recommendation(issued, recommendation)

    def missing_line(self):
        return None

    def delete_draft(self, label: str):
        if self.draft_ref is None:
            return []
        return [suggestion(label, action_delete(f"Remove the draft {self.current}", self.draft_ref))]

    def capital(self, text: str) -> str:
        return text[:1].upper() + text[1:]

    def crcl(self) -> str:
        r = self.a.renal
        return f"CrCl {shown('crcl', r.crcl_ml_min, 1, self.p)} mL/min" if r.crcl_ml_min is not None else "CrCl unknown"

    def weight(self) -> str:
        w = self.a.inputs.weight
        return f"weight {t.reported(w, 1, dated=False)}" if w is not None else "weight unknown"

    def hit_record(self):
        recs = [r for r in getattr(self.a.inputs, "hit_records", ()) if r.onset is not None]
        return max(recs, key=lambda r: r.onset) if recs else None

    # -- contraindications (§18.4) -------------------------------------------------------------------
    def contraindicated(self, f):
        reasons = tuple(f.reasons)
        urgency = getattr(f, "urgency", None) or "critical"
        i = self.a.inputs
        hit = next((c for c in HIT_CRITICAL if c in reasons), None)
        if hit and self.order.ingredient in HEPARINS:
            rec = self.hit_record()
            onset = f"onset {t.when(rec.onset)}" if rec else "dated onset"
            if hit == "hit_acute":
                kind, summary = "hit_acute", f"Acute HIT: do not give {self.name}; therapeutic non-heparin agent"
                why = f"**Why:** HIT {onset}; platelets {t.reported(i.platelets, 0)}, not recovered."
                action = ("**Action:** therapeutic-intensity non-heparin anticoagulation (argatroban, bivalirudin, "
                          "treatment-dose fondaparinux or a DOAC) with haematology; stop every heparin.")
            elif hit == "hit_recent":
                days = num(self.p["safety.hit_acute_days"], 0)
                kind, summary = "contraindicated", f"HIT within {days} days: do not give {self.name}"
                why = f"**Why:** HIT {onset}, platelets {t.reported(i.platelets, 0)}."
                if i.platelets is None:
                    action = "**Action:** obtain a platelet count and haematology advice before any anticoagulant."
                else:
                    action = "**Action:** no heparin; a non-heparin anticoagulant with haematology advice."
            else:
                kind, summary = "hit_suspected", f"Platelet fall on heparin: do not give {self.name}; assess 4Ts"
                why = (f"**Why:** platelets {t.reported(i.platelets, 0)} after at least "
                       f"{num(self.p['safety.hit_suspected_heparin_days'], 0)} days of heparin.")
                action = "**Action:** a 4Ts assessment; if intermediate or high, HIT immunoassay and a non-heparin agent."
            return self.finish(kind, "critical", summary, why, action, self.t.evidence_for("hit_acute" if hit == "hit_acute" else "hit_suspected" if hit == "hit_suspected" else "heparin_specific"),
                               suggestions=self.delete_draft(f"Remove the draft {self.current}"),
                               recommendation=("order", hit, self.order.ingredient))
        if "non_heparin_anticoagulant_running" in reasons:
            running = t.names([t.DRUG.get(x, x) for x in self.a.safety.non_heparin_running]) or "a non-heparin anticoagulant"
            summary = f"{self.capital(self.name)} drafted while {running} runs: no heparin"
            why = f"**Why:** {md(running)} is active: it implies a heparin problem (e.g. HIT) even when none is coded."
            action = f"**Action:** do not sign {md(self.current)}; never stop {md(running)} for it."
            return self.finish("duplicate_anticoagulant", "critical", summary, why, action,
                               self.t.evidence_for("heparin_specific"),
                               suggestions=self.delete_draft(f"Remove the draft {self.current}"),
                               recommendation=("order", "non_heparin_running", self.order.ingredient))
        stops = [c for c in reasons if c in STOPS]
        if stops:
            summary = f"{self.capital(self.current)} contraindicated ({self.reason_text(stops)})"
            why = f"**Why:** {self.stop_why(stops)}"
            action = "**Action:** consider not signing this order; consider mechanical prophylaxis."
            return self.finish("contraindicated", "critical", summary, why, action,
                               self.t.evidence_for("contraindicated"), recommendation=("order", *stops))
        floors = [c for c in reasons if c in FONDAPARINUX_FLOORS]
        if floors:
            summary = f"Fondaparinux contraindicated ({self.reason_text(floors)})"
            why = f"**Why:** {self.weight()}, {self.crcl()}."
            action = "**Action:** consider not signing; a non-heparin alternative with haematology advice."
            return self.finish("contraindicated", urgency, summary, why, action,
                               self.t.evidence_for("fondaparinux_label"), recommendation=("order", *floors))
        if "hit_acute" in reasons:
            # A non-heparin draft in acute HIT (§10.1, §13.1): prophylaxis is not enough.
            rec = self.hit_record()
            onset = f"onset {t.when(rec.onset)}" if rec else "dated onset"
            summary = f"Acute HIT: {self.current} is not enough; therapeutic non-heparin agent"
            why = f"**Why:** HIT {onset}; platelets {t.reported(i.platelets, 0)}, not recovered."
            action = ("**Action:** therapeutic-intensity non-heparin anticoagulation (argatroban, bivalirudin, "
                      "treatment-dose fondaparinux or a DOAC) with haematology; stop every heparin.")
            return self.finish("hit_acute", "critical", summary, why, action, self.t.evidence_for("hit_acute"),
                               recommendation=("order", "hit_acute"))
        # hit_history / heparin_allergy (§18.4): warning; the switch to fondaparinux when §11 row 1
        # gives it (whatever the drafted dose), else delete the draft with the specialist text
        specific = [c for c in reasons if c in ("hit_history", "heparin_allergy", "hit_recent")]
        reg = self.a.regimen
        if reg.drug == "fondaparinux" and self.order.ingredient in HEPARINS:
            return self.switch(Finding("switch_product", tuple(specific),
                                       Proposed("fondaparinux", reg.dose_mg, None, reg.doses_per_day or 1),
                                       urgency="warning"))
        return self.avoid(specific, urgency, f"fondaparinux not possible ({self.weight()}, {self.crcl()})")

    def avoid(self, specific, urgency, because: str):
        """Heparin-specific contraindication, no switch offered: delete the draft only."""
        label = "HIT history" if "hit_history" in specific else "Heparin allergy"
        summary = f"{label}: avoid {self.name}; non-heparin agent with specialist advice"
        rec = self.hit_record()
        when = ("onset " + t.when(rec.onset) if rec
                else f"undated or over {num(self.p['safety.hit_acute_days'], 0)} days")
        why = f"**Why:** {label} ({when}); {because}."
        action = "**Action:** remove the draft; a non-heparin anticoagulant with haematology advice."
        return self.finish("heparin_avoidance", urgency if urgency != "critical" else "warning", summary, why, action,
                           self.t.evidence_for("heparin_specific"),
                           suggestions=self.delete_draft(f"Remove the draft {self.current}"),
                           recommendation=("order", *specific))

    def reason_text(self, codes) -> str:
        return t.names([self.t.reason.get(c, c.replace("_", " ")) for c in codes])

    def stop_why(self, codes) -> str:
        return t.stop_reasons(self.a.inputs, codes)

    # -- duplicates (§10.4) --------------------------------------------------------------------------
    def duplicate(self):
        s = self.a.safety
        own = self.order.source
        active = [e for e in getattr(s, "anticoagulants_active", ()) if e.source is None or e.source != own]
        drafted = [o for o in self.other_drafts if o.source != own]
        if not active and not drafted:
            return None
        draft_class = self.check.draft_class if self.check is not None else None
        exposure_cls = getattr(safety_mod, "Exposure", None)
        urgency = "warning"
        if exposure_cls is not None and hasattr(safety_mod, "duplicate_urgency"):
            items = list(active) + [exposure_cls(self.order.ingredient, self.order.drug_class, "order", draft_class,
                                                 own)]
            items += [exposure_cls(o.ingredient, o.drug_class, "order",
                                   safety_mod.classify_order(o, self.a.anthropometrics.weight_kg,
                                                             self.a.renal.crcl_lt_30, self.p), o.source)
                      for o in drafted]
            urgency = safety_mod.duplicate_urgency(items, self.a.inputs.inr, self.p) or "warning"
        names = [self.exposure_text(e) for e in active] + [t.order_text(o) + " (draft)" for o in drafted]
        summary = f"{self.capital(self.current)} drafted while {t.names(names)} is active"
        if drafted and not active:
            summary = f"Two anticoagulants drafted: {self.current} and {t.names([t.order_text(o) for o in drafted])}"
        why = f"**Why:** {md(t.names(names))} already {'is' if len(names) == 1 else 'are'} active or drafted."
        if urgency == "info":
            action = (f"**Action:** a VKA bridge while INR is below {num(self.p['safety.bridge_inr_below'], 1)}: "
                      "confirm the parenteral agent stops when INR is in range.")
        else:
            action = "**Action:** confirm that the other agent stops; combined anticoagulants add bleeding risk."
        return self.finish("duplicate_anticoagulant", urgency, summary, why, action,
                           self.t.evidence_for("duplicate_anticoagulant"),
                           recommendation=("order", "duplicate", self.order.ingredient,
                                           *sorted(e.ingredient for e in active)))

    def exposure_text(self, e) -> str:
        orders = {o.source: o for o, _ in self.a.safety.orders if o.source}
        if e.kind == "order" and e.source in orders:
            return t.order_text(orders[e.source])
        name = t.DRUG.get(e.ingredient, e.ingredient)
        return f"{name} (home medicine)" if e.kind == "statement" else name

    # -- product switch ------------------------------------------------------------------------------
    def switch(self, f):
        a, call = self.a, self.ev.call
        target = f.proposed
        proposed = t.dose_text(target.ingredient, target.dose_mg, target.dose_units, target.doses_per_day)
        hit = any(r in ("hit_history", "heparin_allergy", "hit_recent") for r in f.reasons)
        if hit:
            label = "HIT history" if "heparin_allergy" not in f.reasons else "Heparin allergy"
            summary = f"{label}: replace {self.current} with {proposed}"
            why = f"**Why:** {label} recorded; fondaparinux allowed ({self.weight()}, {self.crcl()})."
            evidence = self.t.evidence_for("heparin_specific")
        else:
            summary = f"{self.crcl()}: replace {self.current} with {proposed}"
            why = f"**Why:** {self.crcl()}, creatinine {t.reported(a.inputs.creatinine, 2)}, or renal replacement: UFH."
            evidence = self.t.evidence_for("product_switch_renal")
        suggestions = []
        if self.draft_ref is not None:
            new = medication_request(self.ev.codes, drug=target.ingredient, dose_mg=target.dose_mg,
                                     dose_units=target.dose_units, doses_per_day=target.doses_per_day,
                                     patient_id=call.patient_id, encounter_id=call.encounter_id,
                                     authored_on=self.ev.now, note=f"Replaces the draft {self.current}.")
            for key in ("subject", "encounter", "requester"):
                if isinstance(self.resource.get(key), dict):
                    new[key] = copy.deepcopy(self.resource[key])
            suggestions.append(suggestion(f"Replace with {proposed}", action_create(f"Draft order: {proposed}", new),
                                          action_delete(f"Remove the draft {self.current}", self.draft_ref),
                                          recommended=True))
        action = f"**Action:** {proposed} instead of the draft."
        draft_class = safety_mod.classify_order(self.order, self.a.anthropometrics.weight_kg,
                                                self.a.renal.crcl_lt_30, self.p)
        if draft_class in ("intermediate", "therapeutic"):
            action += " If a treatment dose is intended: a non-heparin agent with haematology advice."
        return self.finish("product_switch", getattr(f, "urgency", None) or "warning", summary, why, action, evidence,
                           suggestions=suggestions, selection="at-most-one",
                           gives_heparin=target.ingredient in HEPARINS,
                           recommendation=("order", "switch", target.ingredient, target.dose_mg or target.dose_units,
                                           target.doses_per_day))

    # -- not determinable ----------------------------------------------------------------------------
    def undeterminable(self, f):
        from .content import INPUT_LABELS
        missing = t.names([INPUT_LABELS.get(m, m.replace("_", " ")) for m in f.missing]) or "weight or height"
        summary = f"Cannot check {self.current}: no recent {missing}"
        why = f"**Why:** the dose depends on {missing}, none usable in its window."
        action = "**Action:** record it, then re-check the order."
        return self.finish("not_determinable", "info", summary, why, action, self.t.evidence_for("not_determinable"))

    # -- escalation ----------------------------------------------------------------------------------
    def escalation(self, f):
        a, reg = self.a, self.a.regimen
        dose_class = self.check.draft_class or "above-prophylactic"
        if f.kind == "escalation_in_critically_ill":
            criteria = ", ".join(md(c.replace("vasoactive:", "")) for c in a.critical_illness.criteria) or "organ support"
            summary = f"{self.capital(dose_class)}-dose {self.name} while critically ill: prophylactic dose only"
            why = f"**Why:** critically ill ({criteria}); draft {md(self.current)} is a {dose_class} dose."
        else:
            cautions = t.names([self.t.caution.get(c, c.replace('_', ' ')).format(
                platelets=t.reported(a.inputs.platelets, 0, dated=False),
                hemoglobin=t.reported(a.inputs.hemoglobin, 1, dated=False),
                fibrinogen=t.reported(a.inputs.fibrinogen, 2, dated=False)) for c in f.reasons])
            summary = f"{self.capital(dose_class)}-dose {self.name} with {cautions}: prophylactic dose"
            why = f"**Why:** {cautions}; draft {md(self.current)} is a {dose_class} dose."
        suggestions = []
        target = None
        if reg.drug == self.order.ingredient and reg.drug is not None:
            target = Proposed(reg.drug, reg.dose_mg, reg.dose_units, reg.doses_per_day)
            proposed = t.dose_text(reg.drug, reg.dose_mg, reg.dose_units, reg.doses_per_day)
            updated = updated_draft(self.ev.codes, self.resource, self.order, target)
            if updated is not None:
                suggestions.append(suggestion(f"Change to prophylactic {proposed}",
                                              action_update(f"Change the draft to {proposed}", updated)))
            action = f"**Action:** unless VTE or another indication: {proposed}."
        else:
            action = "**Action:** unless VTE or another indication: a prophylactic dose."
        renal = self.check.finding("dose_change")
        if renal is not None and renal.proposed is not None:
            action += f" If intended, give it once daily at CrCl below {num(self.p['renal.crcl_cutoff'], 0)}."
        return self.finish("escalation_warning", "warning", summary, why, action, self.t.evidence_for("escalation"),
                           suggestions=suggestions, gives_heparin=bool(suggestions),
                           recommendation=("order", "escalation", reg.drug, reg.dose_mg or reg.dose_units,
                                           reg.doses_per_day))

    # -- dose ----------------------------------------------------------------------------------------
    def dose_change(self, f):
        a = self.a
        target = f.proposed
        proposed = t.dose_text(target.ingredient, target.dose_mg, target.dose_units, target.doses_per_day)
        short = proposed.removeprefix(t.DRUG.get(self.order.ingredient, self.order.ingredient) + " ")
        context = self.context(f.reasons)
        summary = f"{self.capital(self.current)}{context}: consider {short}"
        if "renal_frequency" in f.reasons:
            why = (f"**Why:** {self.crcl()}, creatinine {t.reported(a.inputs.creatinine, 2)}: the label gives a "
                   "therapeutic dose once daily below 30 mL/min.")
        else:
            parts = [f"BMI {shown('bmi', a.anthropometrics.bmi, 1, self.p)}" if a.anthropometrics.bmi is not None else None,
                     self.weight(), f"{self.crcl()}, creatinine {t.reported(a.inputs.creatinine, 2)}"]
            why = "**Why:** " + "; ".join(x for x in parts if x) + "."
        basis = self.t.basis.get(a.regimen.basis, "") if target.ingredient == a.regimen.drug else ""
        action = f"**Dose:** {proposed}" + (f" ({basis})." if basis else ".")
        suggestions = []
        updated = updated_draft(self.ev.codes, self.resource, self.order, target)
        if updated is not None:
            suggestions.append(suggestion(f"Change to {proposed}", action_update(f"Change the draft to {proposed}", updated),
                                          recommended=True))
        if self.check.anti_xa is not None and self.check.anti_xa.indicated is True:
            suggestions.append(anti_xa_suggestion(self.ev, self.check.anti_xa))
        renal = any(r in ("crcl_lt_30", "renal_frequency", "crcl_lt_15") for r in f.reasons)
        evidence = self.t.evidence_for("renal_dose" if renal else "dose_review")
        return self.finish("dose_correction", getattr(f, "urgency", None) or "warning", summary, why, action, evidence,
                           suggestions=suggestions, gives_heparin=target.ingredient in HEPARINS and bool(suggestions),
                           recommendation=("order", "dose", target.ingredient, target.dose_mg or target.dose_units,
                                           target.doses_per_day))

    def context(self, reasons) -> str:
        a = self.a
        kinds = {"bmi_ge_40": "bmi", "bmi_ge_30": "bmi", "standard": "bmi", "crcl_lt_30": "crcl",
                 "renal_frequency": "crcl", "crcl_lt_15": "crcl"}
        found = {kinds.get(r) for r in reasons}
        if "crcl" in found and a.renal.crcl_ml_min is not None:
            return f" at CrCl {shown('crcl', a.renal.crcl_ml_min, 1, self.p)} mL/min"
        if "bmi" in found and a.anthropometrics.bmi is not None:
            return f" at BMI {shown('bmi', a.anthropometrics.bmi, 1, self.p)}"
        return ""

    def anti_xa_only(self):
        ax = self.check.anti_xa
        from .content import ANTI_XA_REASON_TEXT, labels
        reasons = t.names(labels(ANTI_XA_REASON_TEXT, ax.reasons, self.p))
        summary = f"{self.capital(self.current)}: anti-Xa monitoring indicated ({reasons})"
        why = f"**Why:** {reasons}; the dose itself matches the recommendation."
        target = (f"target {num(ax.target_low, 2)}-{num(ax.target_high, 2)} IU/mL"
                  if ax.target_low is not None else "no validated target: discuss with haematology")
        action = (f"**Check:** peak anti-Xa {num(self.p['antixa.peak_hours_post_dose'], 1)} h after a dose, from the "
                  f"{_ordinal(self.p['antixa.steady_state_after_dose'])} dose on; {target}.")
        return self.finish("anti_xa", "info", summary, why, action, self.t.evidence_for("anti_xa"),
                           suggestions=[anti_xa_suggestion(self.ev, ax)],
                           recommendation=("order", "anti_xa", self.order.ingredient))


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


# -- the updated draft --------------------------------------------------------------------------------
def updated_draft(codes: Codes, resource: dict, order, proposed) -> dict | None:
    """The WHOLE draft with only dose and timing changed (and the product coding when the
    syringe strength changes): same id, status draft, same subject/encounter. None when the
    draft has no id to target or the result is not valid R4B."""
    if not isinstance(resource.get("id"), str) or not resource["id"]:
        log_event(log, logging.INFO, "update suggestion dropped: the draft has no id to target")
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
    if Validator().problem(updated) is None:
        return updated
    # Issue 21: the Sandbox sends MedicationRequest.category as an object, so the updated order
    # failed validation and the suggestion was silently dropped. Rebuild it from the fields the
    # update needs plus each of the draft's other fields that is valid on its own.
    clean, left_out = _clean_copy(updated)
    problem = Validator().problem(clean)
    if problem is None:
        log_event(log, logging.INFO, "updated draft built without the draft's malformed fields",
                  fields=left_out[:20])
        return clean
    # A malformed field the update needs (intent or subject as an object) stays malformed: never
    # suggest a resource that is not valid FHIR; the card still says what to change. Said, not silent.
    log_event(log, logging.WARNING, "update suggestion dropped: the updated draft is not valid FHIR",
              reason=loggable_reason(problem), fields=left_out[:20])
    return None


# What an update must carry (the fields we change, and those a MedicationRequest cannot do
# without); anything else of the draft is kept only if it is valid on its own.
_UPDATE_CORE = ("resourceType", "id", "status", "intent", "subject", "encounter", "medicationCodeableConcept",
                "medicationReference", "dosageInstruction")


def _clean_copy(updated: dict) -> tuple[dict, list[str]]:
    core = {k: updated[k] for k in _UPDATE_CORE if k in updated}
    clean, left_out = dict(core), []
    for key, value in updated.items():
        if key in core:
            continue
        if Validator().problem({**core, key: value}) is None:
            clean[key] = value
        else:
            left_out.append(str(key)[:64])
    return clean, left_out


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
