"""The order hooks' card family (anticoagulant-order-check, anticoagulant-order-sign; v3,
clinical-rules §19): `draft_cards` turns one checked draft (logic/order_check.py) into its cards.
The hooks (hooks/orders.py) choose the drafts and hand each here.

One card per finding (each §19 check is a card), the duplicate card among them, most severe first.
Silence means every check found nothing for the inputs that were known (§19.0):

| Finding | Kind, indicator | Suggestion |
|---|---|---|
| §10.1 stop (bleeding, platelets < 25, fibrinogen < 0.5) | contraindicated, critical | delete the draft, unless HIT, another (or a possible other) indication or ECMO: then "review with haematology today" |
| heparin draft in acute / suspected / recent HIT; HIT history or allergy by intensity (§19.6) | hit_acute critical; hit_suspected warning (critical at 4Ts >= 4); product_switch (create fondaparinux 2.5 mg, or the treatment band for a therapeutic draft, + delete) or heparin_avoidance | as stated |
| VKA in acute/suspected HIT; prophylactic non-heparin in HIT (§19.1) | hit_acute / hit_suspected | delete the VKA draft |
| pregnancy with a VKA / DOAC (§19.1) | contraindicated critical / order_caution warning | delete the VKA draft unless another indication |
| ceilings (§19.2) and the CrCl 15-<30 / < 15 rows (§19.3) | dose_above_maximum, critical | update to the labelled dose, delete, or none (text names the maximum) |
| renal (§19.3): prophylactic LMWH at CrCl 15-<30 -> 30 mg; < 15 or RRT -> UFH 5,000 U | dose_correction / product_switch, warning | update |
| weight or renal function unknown / changing (§19.2); a dose that cannot be read | not_determinable, warning | none |
| liver, argatroban start dose, ECMO, CYP3A4/P-gp inhibitors, DOAC renal rules, dalteparin at CrCl < 30, fondaparinux below its band | order_caution, warning | none |
| above prophylactic with no indication (§19.2) | escalation_warning, warning | update only for an intermediate heparin draft in the critically ill |
| another anticoagulant active or drafted (§10.4, §19.9; replacement and continuation are not duplicates) | duplicate_anticoagulant, §19.9 urgency | none |
| below the §11 regimen (BMI tiers; §19.11 equivalents accepted, never corrected down) | dose_correction, the BMI-tier urgency | update |

Anti-Xa advice is one line inside another card, never a card of its own (§19.7).
The sandbox applies only the first actionable action of a suggestion: creates and updates lead.

"""
from __future__ import annotations

import copy
import logging
from datetime import timedelta

from ..evaluation.pipeline import Evaluation
from ..fhir.codes import Codes
from ..fhir.context import Validator, loggable_reason
from ..fhir.orders import first_dosage
from ..logging_setup import log_event
from ..logic import safety as safety_mod
from ..logic.safety import HEPARINS
from . import templates as t
from .build import (action_create, action_delete, action_update, card, dosage, md, medication_request, num,
                    product, product_key, suggestion)
from .content import shown
from .patient_view import with_recommendation

log = logging.getLogger("cds_service.hooks.order_check")  # the name the log lines have always had

HIT_CRITICAL = ("hit_acute", "hit_recent", "hit_suspected")
HIT_CODES = HIT_CRITICAL + ("hit_history",)
INHIBITOR_NAMES = {"nirmatrelvir": "nirmatrelvir/ritonavir", "ritonavir": "ritonavir", "ketoconazole": "ketoconazole",
                   "itraconazole": "itraconazole", "clarithromycin": "clarithromycin"}
STOPS = ("active_bleeding", "platelets_lt_25", "fibrinogen_lt_0.5")
FONDAPARINUX_FLOORS = ("fondaparinux_crcl_lt_30", "fondaparinux_weight_lt_50")


# -- one card per draft -------------------------------------------------------------------------------
def draft_cards(ev: Evaluation, resource: dict, order, check, other_drafts: list,
                replaced: set[str] | None = None) -> list:
    """v3 (§19): one card per finding of the draft (each §19 check is a card of its own), the
    duplicate card (§10.4, §19.9) among them, most severe first. Silence means every check found
    nothing (§19.0). A HIT switch (a create) is never offered while another anticoagulant is
    active: the draft is deleted instead, and the duplicate card says why."""
    b = _DraftCards(ev, resource, order, check, other_drafts, replaced or set())
    out = []
    duplicate = b.duplicate()
    findings = [f for f in check.findings if f.kind != "already_anticoagulated"] \
        if check is not None and check.checked else []
    # §19.4/§19.2 (review-v3 M16): with ECMO/CRRT circuit heparin running, an LMWH draft gets the
    # duplicate card only: no one-click switch to SC UFH on top of the circuit heparin
    circuit = any(getattr(o, "circuit", False) for o, _ in getattr(ev.assessment.safety, "orders", ()))
    for f in findings:
        if f.kind == "undeterminable" and f.urgency is None and ev.policy["cards.not_determinable"] == "none":
            continue
        if circuit and duplicate is not None and f.kind == "switch_product" and f.action == "update" \
                and f.proposed is not None and f.proposed.ingredient == "heparin":
            continue
        if f.kind == "switch_product" and duplicate is not None \
                and set(f.reasons) & {"hit_history", "hit_recent", "heparin_allergy"}:
            out.append(b.avoid(f.reasons, "warning", "another anticoagulant is already active"))
            continue
        if f.kind == "switch_product" and ev.assessment.inputs.respiratory.ecmo \
                and set(f.reasons) & {"hit_history", "hit_recent", "heparin_allergy"}:
            # §19.4: on ECMO no one-click switch of (circuit) heparin to SC fondaparinux: delete the
            # draft, circuit anticoagulation with bivalirudin or argatroban by the ECMO protocol
            out.append(b.avoid(f.reasons, f.urgency or "warning", "ECMO in progress", ecmo=True))
            continue
        issued = b.render(f)
        if issued is not None:
            out.append(issued)
    if duplicate is not None and not any(c.kind == "duplicate_anticoagulant" for c in out):
        out.append(duplicate)
    unreadable = (getattr(ev.assessment.inputs, "rejected", None) or {}).get("conditions.unreadable_safety")
    if unreadable:   # §19.0 fails closed (review-v3 H10): a dropped safety record is said
        out.append(b.unreadable_safety(unreadable))
    # §19.1: an active VKA order in acute HIT is stopped (vitamin K) whatever is drafted; a heparin
    # draft's hit_acute card already names it and deletes it (contraindicated)
    vkas = b.active_vkas() if "hit_acute" in b.contraindications() else []
    if vkas and order.ingredient not in HEPARINS and order.drug_class != "vka":
        out.append(b.hit_acute_vka(vkas))
        others = [e for e in getattr(ev.assessment.safety, "anticoagulants_active", ())
                  if e.source != order.source]
        if all(e in vkas for e in others) and not [o for o in other_drafts if o.source != order.source]:
            # the VKA is being stopped: no 'overlap with the VKA' duplicate card beside it
            out = [c for c in out if c.kind != "duplicate_anticoagulant"]
    rank = {"critical": 0, "warning": 1, "info": 2}
    out.sort(key=lambda c: rank.get(c.card.get("indicator"), 3))   # stable: finding order within
    return out


class _DraftCards:
    def __init__(self, ev, resource, order, check, other_drafts, replaced=frozenset()):
        self.replaced = set(replaced)
        self.shown: object = None
        self.ev, self.a, self.p = ev, ev.assessment, ev.policy
        self.t = t.for_policy(ev.policy)
        self.resource, self.order, self.check = resource, order, check
        self.other_drafts = other_drafts
        self.current = t.order_text(order)
        self.name = t.DRUG.get(order.ingredient, order.ingredient)
        self.draft_ref = f"MedicationRequest/{resource['id']}" if isinstance(resource.get("id"), str) \
            and resource["id"] else None

    def render(self, f):
        self.shown = f
        if f.kind == "contraindicated":
            return self.contraindicated(f)
        if f.kind == "switch_product" and f.action != "update":
            return self.switch(f)
        if f.kind == "undeterminable":
            return self.undeterminable(f)
        if f.kind == "above_prophylactic":
            return self.escalation(f)
        if f.kind == "dose_change":
            return self.dose_change(f)
        return self.v3(f)

    def finish(self, kind, indicator, summary, why, action, evidence, *, suggestions=(), selection="any",
               gives_heparin=False, recommendation=None):
        # §19.7 (review-v3 M12): no anti-Xa line on a card that deletes or replaces the LMWH
        deletes = any(a.get("type") == "delete" for s in suggestions for a in s.get("actions", ()))
        extra = [] if deletes or kind in ("heparin_avoidance", "hit_suspected") else self.anti_xa_lines(kind)
        if gives_heparin or any(a.get("type") == "create" for s in suggestions for a in s.get("actions", ())):
            extra.append(t.NEURAXIAL)   # §19.13: any anticoagulant a suggestion gives
        issued = card(kind, indicator, summary, t.detail(why, action, self.missing_line(), extra, evidence),
                      suggestions=suggestions, selection=selection, evidence=evidence.keys)
        return with_recommendation(issued, recommendation)

    def missing_line(self):
        return None

    def anti_xa_lines(self, kind) -> list[str]:
        """§19.7: in order hooks the anti-Xa advice is one line inside another card, never a card
        of its own, and none with a §19.3 switch card."""
        ax = self.check.anti_xa if self.check is not None and self.check.checked else None
        if ax is None or ax.indicated is not True or kind in ("product_switch", "dose_above_maximum", "hit_acute",
                                                                   "contraindicated", "duplicate_anticoagulant"):
            return []
        target = (f"{num(ax.target_low, 2)}-{num(ax.target_high, 2)} IU/mL" if ax.target_low is not None
                  else "none validated: discuss with haematology")
        if ax.sampling is not None and ax.sampling.trough:
            target += f"; trough < {num(self.p['antixa.trough_max'], 1)} before the next dose"
        return [t.V3_ACTION["anti_xa_line"].format(hours=num(self.p["antixa.peak_hours_post_dose"], 1),
                                                   nth=_ordinal(self.p["antixa.steady_state_after_dose"]),
                                                   target=target)]

    def renal_phrase(self) -> str:
        """§19.3: never a CrCl as the reason on renal replacement."""
        r = self.a.renal
        if r.renal_replacement is True:
            return t.rrt_phrase(self.a.inputs)
        return self.crcl()

    def at_renal(self, actual_weight: bool = False) -> str:
        """The renal phrase after a dose: "at CrCl 12 mL/min", "on haemodialysis (last session D)"
        (the DOAC rules' CrCl is on actual weight: `actual_weight`)."""
        phrase = self.crcl_actual() if actual_weight else self.renal_phrase()
        if phrase.startswith("On "):
            return "on " + phrase[3:]
        if self.a.renal.renal_replacement is True:   # "End-stage kidney disease (renal replacement)"
            return "with " + phrase[0].lower() + phrase[1:]
        return "at " + phrase

    def renal_why(self) -> str:
        """The renal facts of a why line: on renal replacement the modality only (§19.3: never the
        post-dialysis CrCl or creatinine; review-v3 M2), else CrCl and the creatinine as reported."""
        if self.a.renal.renal_replacement is True:
            return self.renal_phrase()
        return f"{self.crcl()}, creatinine {t.reported(self.a.inputs.creatinine, 2)}"

    def unreadable_safety(self, reason: str):
        what = reason.split(" record", 1)[0]
        summary = f"A {what} record could not be read: review it before {self.current}"
        why = f"**Why:** {md(reason[:200])}; it was left out of this check."
        action = f"**Action:** review the {what} record in the chart before signing (HIT: no heparin until reviewed)."
        return self.finish("not_determinable", "warning", summary, why, action, self.t.evidence_for("not_determinable"),
                           recommendation=("order", "unreadable_safety", self.order.ingredient))

    def contraindications(self) -> tuple:
        return tuple(getattr(self.a.safety, "contraindications", ()) or ())

    def active_vkas(self) -> list:
        return [e for e in getattr(self.a.safety, "anticoagulants_active", ())
                if e.drug_class == "vka" and e.kind == "order" and isinstance(e.source, str)
                and e.source.startswith("MedicationRequest/")]

    def hit_acute_vka(self, vkas):
        """§19.1: an active VKA order with hit_acute: critical, stop warfarin, give vitamin K
        [Cuker 2018: venous limb gangrene]. Text only: an order hook may delete only draftOrders
        entries (CDS Hooks notes §12), so the active VKA order is named, not deleted."""
        i = self.a.inputs
        rec = self.hit_record()
        onset = f"onset {t.when(rec.onset)}" if rec else "dated onset"
        names = t.names(sorted({t.DRUG.get(e.ingredient, e.ingredient) for e in vkas}))
        summary = f"Acute HIT and {names} active: stop {names}; give vitamin K"
        why = (f"**Why:** HIT {onset}; platelets {t.reported(i.platelets, 0)}: a VKA in acute HIT risks venous "
               "limb gangrene.")
        action = (f"**Action:** stop {md(names)} and give vitamin K; therapeutic non-heparin anticoagulant with "
                  "haematology; restart a VKA only once platelets are ≥ 150 ×10⁹/L, overlapping ≥ 5 days.")
        return self.finish("hit_acute", "critical", summary, why, action, self.t.evidence_for("hit_acute"),
                           recommendation=("order", "hit_acute", "vka"))

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

    # -- contraindications (§18.4, §19.1, §19.6) ------------------------------------------------------
    def contraindicated(self, f):
        reasons = tuple(f.reasons)
        urgency = getattr(f, "urgency", None) or "critical"
        i = self.a.inputs
        hit = next((c for c in HIT_CRITICAL if c in reasons), None)
        delete = self.delete_draft(f"Remove the draft {self.current}") if f.action == "delete" else []
        bleeding = any(c in reasons for c in STOPS)
        if hit and self.order.ingredient in HEPARINS:
            rec = self.hit_record()
            onset = f"onset {t.when(rec.onset)}" if rec else "dated onset"
            ecmo = f" {t.V3_ACTION['ecmo_hit'][:1].upper()}{t.V3_ACTION['ecmo_hit'][1:]}" if self.a.inputs.respiratory.ecmo else ""
            if hit == "hit_acute":
                verb = "stop" if bleeding else "do not give"
                kind, summary = "hit_acute", f"Acute HIT: {verb} {self.name}; therapeutic non-heparin agent"
                why = f"**Why:** HIT {onset}; platelets {t.reported(i.platelets, 0)}, not recovered."
                vkas = self.active_vkas()   # §19.1: an active VKA stops too (vitamin K)
                vka_names = t.names(sorted({t.DRUG.get(e.ingredient, e.ingredient) for e in vkas}))
                vka_line = f" Stop {md(vka_names)} and give vitamin K (venous limb gangrene)." if vkas else ""
                if bleeding:
                    summary = f"Acute HIT with {self.reason_text([c for c in reasons if c in STOPS])}: stop all heparin"
                    action = ("**Action:** stop all heparin, including flushes and locks; urgent haematology; no "
                              "anticoagulant while bleeding." + vka_line)
                else:
                    action = ("**Action:** therapeutic-intensity non-heparin anticoagulation (argatroban, bivalirudin, "
                              "treatment-dose fondaparinux or a DOAC) with haematology; stop every heparin, including "
                              "flushes." + vka_line + ecmo)
                if vkas:   # the active VKA is not a draftOrders entry: named, not deleted (CDS Hooks notes §12)
                    summary = f"Acute HIT: {verb} {self.name}; stop {vka_names}, give vitamin K"
            elif hit == "hit_recent":
                days = num(self.p["safety.hit_acute_days"], 0)
                kind, summary = "contraindicated", f"HIT within {days} days: do not give {self.name}"
                why = f"**Why:** HIT {onset}, platelets {t.reported(i.platelets, 0)}."
                if i.platelets is None:
                    action = "**Action:** obtain a platelet count and haematology advice before any anticoagulant."
                elif f.value("intensity") == "therapeutic":
                    action = "**Action:** no heparin; " + t.V3_ACTION["hit_treatment_delete"]
                else:
                    action = "**Action:** no heparin; a non-heparin anticoagulant with haematology advice."
            else:
                four = f.value("four_ts")
                kind = "hit_suspected"
                summary = f"Platelet fall on heparin: assess 4Ts before more {self.name}"
                why = (f"**Why:** platelets {t.reported(i.platelets, 0)} after at least "
                       f"{num(self.p['safety.hit_suspected_heparin_days'], 0)} days of heparin"
                       + (f"; 4Ts {four}." if four is not None else "."))
                action = ("**Action:** if 4Ts ≥ 4: stop all heparin, including flushes; therapeutic-intensity "
                          "non-heparin anticoagulant unless bleeding risk is high; HIT immunoassay; haematology." + ecmo)
            return self.finish(kind, urgency, summary, why, action, self.t.evidence_for("hit_acute" if hit == "hit_acute" else "hit_suspected" if hit == "hit_suspected" else "heparin_specific"),
                               suggestions=delete, recommendation=("order", hit, self.order.ingredient))
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
            if f.action == "delete":
                action = "**Action:** " + t.V3_ACTION["stop_delete"]
            else:
                action = "**Action:** " + t.V3_ACTION["stop_review"].format(
                    stop=self.capital(self.reason_text(stops)))
                if getattr(self.a.safety, "possible_other_indication", False):
                    action += " " + self.capital(t.V3_ACTION["possible_other"])
            return self.finish("contraindicated", "critical", summary, why, action,
                               self.t.evidence_for("contraindicated"), suggestions=delete,
                               recommendation=("order", *stops))
        floors = [c for c in reasons if c in FONDAPARINUX_FLOORS]
        if floors:
            summary = f"Fondaparinux contraindicated ({self.reason_text(floors)})"
            why = f"**Why:** {self.weight()}, {self.crcl()}."
            action = "**Action:** consider not signing; a non-heparin alternative with haematology advice."
            return self.finish("contraindicated", urgency, summary, why, action,
                               self.t.evidence_for("fondaparinux_label"), recommendation=("order", *floors))
        # hit_history / heparin_allergy (§18.4, §19.6): warning; the logic offered no fondaparinux
        # (switch_product otherwise): delete the draft with the specialist text
        specific = [c for c in reasons if c in ("hit_history", "heparin_allergy", "hit_recent")]
        because = f"fondaparinux not possible ({self.weight()}, {self.crcl()})"
        if f.value("intensity") == "therapeutic":
            because = "a treatment dose is drafted: " + t.V3_ACTION["hit_treatment_delete"].rstrip(".")
        return self.avoid(specific, urgency, because)

    def avoid(self, specific, urgency, because: str, ecmo: bool = False):
        """Heparin-specific contraindication, no switch offered: delete the draft only."""
        label = "Recent HIT" if "hit_recent" in specific else "HIT history" if "hit_history" in specific \
            else "Heparin allergy"
        summary = f"{label}: avoid {self.name}; non-heparin agent with specialist advice"
        rec = self.hit_record()
        when = ("onset " + t.when(rec.onset) if rec
                else f"undated or over {num(self.p['safety.hit_acute_days'], 0)} days")
        why = f"**Why:** {label} ({when}); {because}."
        action = "**Action:** remove the draft; a non-heparin anticoagulant with haematology advice."
        if ecmo:
            action = ("**Action:** remove the draft; on ECMO: bivalirudin or argatroban by the ECMO protocol, with "
                      "haematology (no SC agent for the circuit).")
        w = self.a.anthropometrics.weight_kg
        if w is not None and w < self.p["hit.fondaparinux_min_weight_kg"]:
            action += " " + self.capital(t.V3_ACTION["hit_mechanical"])   # §19.6 remote HIT < 50 kg
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
        # §19.9: a replaced order (priorPrescription, or stopped in the same order set) is a dose change
        active = [e for e in active if e.source is None or e.source not in self.replaced]
        # §19.9: continuation of a home medicine (same ingredient, same or lower daily dose)
        self.reconcile = None
        kept = []
        for e in active:
            if e.kind == "statement" and e.ingredient == self.order.ingredient:
                home = next((m for m in self.a.inputs.statements if m.source == e.source), None)
                home_day = _daily(home)
                mine = _daily(self.order)
                if home_day is None:
                    self.reconcile = e
                    continue
                if mine is not None and mine <= home_day + 1e-9:
                    continue
            kept.append(e)
        active = kept
        drafted = [o for o in self.other_drafts if o.source != own]
        if not active and not drafted:
            if self.reconcile is not None:
                home = t.DRUG.get(self.reconcile.ingredient, self.reconcile.ingredient)
                return self.finish("duplicate_anticoagulant", "info", f"Home {home} dose unknown: reconcile",
                                   f"**Why:** {md(home)} (home medicine) is recorded without a readable dose.",
                                   f"**Action:** reconcile the home {md(home)} dose with {md(self.current)}.",
                                   self.t.evidence_for("duplicate_anticoagulant"),
                                   recommendation=("order", "reconcile", self.order.ingredient))
            return None
        draft_class = (self.check.intensity or self.check.draft_class) if self.check is not None else None
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
            ingredients = {e.ingredient for e in items}
            if urgency == "info" and "argatroban" in ingredients:
                # §19.9: argatroban raises the INR: no "INR < 2 = bridge" while it runs
                urgency = "critical" if sum(1 for e in items if e.order_class == "therapeutic") >= 2 else "warning"
            if urgency == "info" and set(self.contraindications()) & {"hit_acute", "hit_recent", "hit_suspected"}:
                # review-v3 M7: no §10.4 'VKA bridge' in HIT (the heparin must stop now): at least a warning
                urgency = "warning"
        names = [self.exposure_text(e) for e in active] + [t.order_text(o) + " (draft)" for o in drafted]
        summary = f"{self.capital(self.current)} drafted while {t.names(names)} is active"
        if drafted and not active:
            summary = f"Two anticoagulants drafted: {self.current} and {t.names([t.order_text(o) for o in drafted])}"
        why = f"**Why:** {md(t.names(names))} already {'is' if len(names) == 1 else 'are'} active or drafted."
        if "argatroban" in {e.ingredient for e in active} | {o.ingredient for o in drafted} | {self.order.ingredient} \
                and ("warfarin" in {e.ingredient for e in active} | {o.ingredient for o in drafted} | {self.order.ingredient}):
            action = ("**Action:** overlap per the argatroban label (stop argatroban when INR > 4 on combined "
                      "therapy); confirm the plan with haematology.")
        elif urgency == "info":
            action = (f"**Action:** a VKA bridge while INR is below {num(self.p['safety.bridge_inr_below'], 1)}: "
                      "confirm the parenteral agent stops when INR is in range.")
        else:
            action = "**Action:** confirm that the other agent stops; combined anticoagulants add bleeding risk."
            circuit = [e for e in active if e.ingredient == "heparin" and self.a.inputs.respiratory.ecmo]
            if circuit and self.order.ingredient != "heparin":
                # review-v3 C9 (§19.4): on ECMO the heparin running is the circuit's: it must not stop
                action = (f"**Action:** do not add {md(self.name)} to the ECMO heparin; keep the circuit "
                          "anticoagulation by the ECMO protocol.")
        # §19.9: a home DOAC/VKA with a therapeutic parenteral draft; a DOAC given in the last 24 h
        intensity = self.check.intensity if self.check is not None else None
        parenteral = self.order.ingredient in safety_mod.PARENTERAL or self.order.drug_class == "dti"
        home = [e for e in active if e.kind == "statement" and e.drug_class in ("doac", "vka")]
        if intensity == "therapeutic" and parenteral:
            since = self.ev.now - timedelta(hours=24)
            given = [x for x in self.a.inputs.administrations
                     if x.drug_class == "doac" and x.time is not None and x.time >= since]
            if given:
                urgency = "critical"
                action = (f"**Action:** {md(t.DRUG.get(given[-1].ingredient, given[-1].ingredient))} was given "
                          f"{t.when(given[-1].time)}: start {md(self.current)} only when the next dose would be due.")
            elif home:
                h = home[0]
                name = t.DRUG.get(h.ingredient, h.ingredient)
                when = "when INR < 2" if h.drug_class == "vka" else f"when the next {name} dose would be due"
                action = (f"**Action:** confirm the last {md(name)} dose (the home list may be stale); start "
                          f"{md(self.current)} {when}.")
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
            label = ("Recent HIT" if "hit_recent" in f.reasons else "HIT history") \
                if "heparin_allergy" not in f.reasons else "Heparin allergy"
            summary = f"{label}: replace {self.current} with {proposed}"
            why = f"**Why:** {label} recorded; fondaparinux allowed ({self.weight()}, {self.crcl()})."
            evidence = self.t.evidence_for("heparin_specific")
        else:
            summary = f"{self.renal_phrase()}: replace {self.current} with {proposed}"
            if a.renal.renal_replacement is True:
                why = f"**Why:** {self.renal_phrase()}: LMWH accumulates; UFH."
            else:
                why = f"**Why:** {self.crcl()}, creatinine {t.reported(a.inputs.creatinine, 2)}: UFH."
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
        intensity = f.value("intensity") or (self.check.intensity if self.check is not None else None)
        if hit and intensity == "intermediate":
            action += " " + self.capital(t.V3_ACTION["hit_intermediate"])
        elif hit and f.value("treatment"):
            action = f"**Action:** treatment-dose {proposed} (weight band) instead of the draft, with haematology."
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
        if any(r.endswith("_unreadable") for r in f.reasons):
            # §18.2/§19.0: a dose that cannot be read is said, never passed as fine
            summary = f"{self.capital(t.DRUG.get(self.order.ingredient, self.order.ingredient))}: dose not readable; not checked"
            why = f"**Why:** the draft's {missing} could not be read (unit or value not understood)."
            action = "**Action:** re-enter the dose in mg or units, with a frequency, then re-check the order."
        return self.finish("not_determinable", f.urgency or "info", summary, why, action,
                           self.t.evidence_for("not_determinable"))

    # -- escalation ----------------------------------------------------------------------------------
    def escalation(self, f):
        """§19.2 above-prophylactic with no indication (warning). One-click update only for an
        intermediate heparin draft in the critically ill (the finding's action)."""
        a = self.a
        intensity = f.value("intensity") or "above-prophylactic"
        critical = "critically_ill" in f.reasons
        cautions = [c for c in f.reasons if c in self.t.caution]
        caution_text = t.names([self.t.caution[c].format(
            platelets=t.reported(a.inputs.platelets, 0), hemoglobin=t.reported(a.inputs.hemoglobin, 1),
            fibrinogen=t.reported(a.inputs.fibrinogen, 2)) for c in cautions])
        if critical:
            criteria = ", ".join(md(c.replace("vasoactive:", "").replace("_", " ")) for c in a.critical_illness.criteria) \
                or "organ support"
            summary = f"{self.capital(intensity)}-dose {self.name} while critically ill: prophylactic dose unless VTE"
            why = f"**Why:** critically ill ({criteria}); draft {md(self.current)} is {intensity} intensity"
            action = "**Action:** " + self.capital(t.V3_ACTION["above_critical"])
            evidence = t.V3_EVIDENCE["above_critical"]
        else:
            summary = f"{self.capital(intensity)}-dose {self.name} and no indication recorded"
            why = f"**Why:** draft {md(self.current)} is {intensity} intensity; no VTE, AF, valve or thrombus recorded"
            action = "**Action:** above-prophylactic dose and no indication recorded: " + t.V3_ACTION["above_ward"]
            if self.order.drug_class in ("vka", "dti") or self.order.ingredient in ("warfarin", "argatroban",
                                                                                   "bivalirudin"):
                # review-v3 C4: a VKA or direct thrombin inhibitor has no prophylactic dose
                action = ("**Action:** above-prophylactic anticoagulant and no indication recorded: record the "
                          "indication (VTE, AF, valve, ACS, arterial thrombus, HIT) or use a prophylactic agent.")
            evidence = t.V3_EVIDENCE["above_ward"]
        why += f"; {caution_text}." if caution_text else "."
        if f.value("possible_other_indication"):
            action += " " + self.capital(t.V3_ACTION["possible_other"])
        suggestions = []
        target = f.proposed if f.action == "update" else None
        if target is not None:
            proposed = t.dose_text(target.ingredient, target.dose_mg, target.dose_units, target.doses_per_day)
            updated = updated_draft(self.ev.codes, self.resource, self.order, target)
            if updated is not None:
                suggestions.append(suggestion(f"Change to prophylactic {proposed}",
                                              action_update(f"Change the draft to {proposed}", updated)))
        return self.finish("escalation_warning", "warning", summary, why, action, evidence,
                           suggestions=suggestions, gives_heparin=bool(suggestions),
                           recommendation=("order", "escalation", self.order.ingredient, intensity))

    # -- v3 findings (§19.1-§19.3) ---------------------------------------------------------------------
    def v3_action(self, f) -> str:
        A, r0 = t.V3_ACTION, (f.reasons[0] if f.reasons else "")
        name = self.name
        if f.kind == "hit_vka":
            return self.capital(A["hit_vka"])
        if f.kind == "hit_prophylactic_intensity":
            return self.capital(A["hit_prophylactic_acute" if r0 == "hit_acute" else "hit_prophylactic_suspected"])
        if f.kind in ("pregnancy_vka", "pregnancy_doac", "liver", "argatroban_start"):
            return self.capital(A[f.kind])
        if f.kind == "ecmo_oral":
            if set(self.contraindications()) & set(HIT_CODES):   # §19.4: never 'usually a UFH infusion' in HIT
                return self.capital(A["ecmo_hit"])
            return self.capital(A["ecmo_oral" if r0 == "oral" else "ecmo_lmwh"])
        if f.kind == "interaction":
            inhibitor = t.names([INHIBITOR_NAMES.get(x, x) for x in f.reasons])
            key = "interaction_halve" if f.value("halve") else "interaction_avoid"
            return self.capital(A[key].format(inhibitor=inhibitor, drug=name))
        if f.kind == "weight_unknown":
            return "Weight needed to check this dose (no weight in the last " \
                   f"{num(self.p['window.weight_days'], 0)} days): " + A["weight_unknown"]
        if f.kind == "renal_unknown":
            state = "changing" if r0 == "renal_changing" else "unknown"
            return self.capital(A["renal_unknown"].format(
                state=state, creatinine="last creatinine " + t.reported(self.a.inputs.creatinine, 2)))
        if f.kind == "fondaparinux_band":
            return self.capital(A["fondaparinux_band"].format(band=num(f.value("band_mg"), 1)))
        if f.kind == "switch_product":
            return (f"{self.renal_phrase()}: UFH {num(self.p['renal.ufh_units'], 0)} U SC instead of LMWH "
                    "(HEP-COVID excluded CrCl < 15).")
        if f.kind == "renal_dose":
            if r0 == "crcl_lt_15":
                return f"{self.renal_phrase()}: " + (A["renal_ufh_protocol"] if f.action == "delete"
                                                     else f"UFH {num(self.p['renal.ufh_units'], 0)} U SC instead of LMWH.")
            if r0 == "crcl_lt_30" and "renal_obesity" in f.reasons:
                return self.capital(A["renal_obesity"])
            if r0 == "crcl_lt_30":
                return f"{self.renal_phrase()}: {num(self.p['renal.enoxaparin_mg'], 0)} mg once daily."
            if r0 == "apixaban_dose_criteria":
                return "At least two of age ≥ 80, weight ≤ 60 kg, creatinine ≥ 1.5 mg/dL: check the indication-specific label dose."
            return self.capital(A.get(r0, "check the renal dose."))
        if f.kind == "dose_above_maximum":
            if r0 == "doac_max":
                return self.capital(A["doac_max"].format(per_dose=num(f.value("per_dose"), 1),
                                                         per_day=num(f.value("per_day"), 1)))
            if r0 in ("dalteparin_max", "tinzaparin_max"):
                return self.capital(A["lmwh_iu_max"].format(max_iu=f"{f.value('max_iu'):,.0f}"))
            if r0 == "crcl_lt_15":
                return f"{self.renal_phrase()}: twice-daily LMWH is not studied. " + A["renal_ufh_protocol"]
            if f.proposed is not None:
                p = f.proposed
                return "Above the labelled maximum: " + t.dose_text(p.ingredient, p.dose_mg, p.dose_units,
                                                                     p.doses_per_day) + "."
            return "Above the labelled maximum."
        return ""

    V3_CARD = {  # finding kind -> (card kind, evidence key)
        "hit_vka": ("hit_acute", "hit"), "hit_prophylactic_intensity": ("hit_acute", "hit"),
        "pregnancy_vka": ("contraindicated", "pregnancy"), "pregnancy_doac": ("order_caution", "pregnancy"),
        "dose_above_maximum": ("dose_above_maximum", "enoxaparin"), "renal_dose": ("dose_correction", "enoxaparin"),
        "weight_unknown": ("not_determinable", "unknown"), "renal_unknown": ("not_determinable", "unknown"),
        "fondaparinux_band": ("order_caution", "fondaparinux"), "liver": ("order_caution", "doac"),
        "argatroban_start": ("order_caution", "argatroban"), "ecmo_oral": ("order_caution", "ecmo"),
        "interaction": ("order_caution", "doac"),
        "switch_product": ("product_switch", "renal_severe"),
    }

    def v3(self, f):
        kind, ev_key = self.V3_CARD.get(f.kind, ("order_caution", "doac"))
        r0 = f.reasons[0] if f.reasons else ""
        name = self.order.ingredient
        if f.kind == "hit_vka" or f.kind == "hit_prophylactic_intensity":
            kind = "hit_acute" if "hit_acute" in f.reasons else "hit_suspected"
        if f.kind == "dose_above_maximum":
            ev_key = {"fondaparinux": "fondaparinux", "dalteparin": "lmwh_iu", "tinzaparin": "lmwh_iu"}.get(
                name, "doac" if r0 == "doac_max" else "renal_severe" if r0 == "crcl_lt_15" else "enoxaparin")
        if f.kind == "renal_dose":
            if r0 == "crcl_lt_15" and f.action == "switch" and f.proposed is not None:
                return self.switch(f)
            if r0 == "crcl_lt_15":
                ev_key = "renal_severe"
            elif r0 in ("lmwh_iu_crcl_lt_30",):
                kind, ev_key = "order_caution", "lmwh_iu"
            elif name not in ("enoxaparin",) or "renal_obesity" in f.reasons:
                kind, ev_key = "order_caution", "doac" if name not in ("enoxaparin",) else "enoxaparin"
        line = self.v3_action(f)
        summary = self.v3_summary(f)
        why = self.v3_why(f)
        suggestions = []
        if f.action == "delete":
            suggestions = self.delete_draft(f"Remove the draft {self.current}")
        elif f.action == "update" and f.proposed is not None:
            target = f.proposed
            kind = "product_switch" if target.ingredient != name else kind
            proposed = t.dose_text(target.ingredient, target.dose_mg, target.dose_units, target.doses_per_day)
            updated = updated_draft(self.ev.codes, self.resource, self.order, target)
            if updated is not None:
                suggestions.append(suggestion(f"Change to {proposed}",
                                              action_update(f"Change the draft to {proposed}", updated),
                                              recommended=True))
        return self.finish(kind, f.urgency or "warning", summary, why, "**Action:** " + line,
                           t.V3_EVIDENCE[ev_key], suggestions=suggestions,
                           gives_heparin=bool(suggestions) and f.action == "update" and name in HEPARINS,
                           recommendation=("order", f.kind, name, *f.reasons))

    def v3_summary(self, f) -> str:
        cur, r0 = self.capital(self.current), (f.reasons[0] if f.reasons else "")
        if f.kind == "hit_vka":
            label = "Acute HIT" if "hit_acute" in f.reasons else "Suspected HIT"
            return f"{label}: do not start {self.name} now"
        if f.kind == "hit_prophylactic_intensity":
            if r0 == "hit_acute":
                return f"Acute HIT: {self.current} is not enough; therapeutic non-heparin agent"
            return f"Possible HIT: {self.current} is prophylactic intensity; check 4Ts"
        if f.kind == "pregnancy_vka":
            return f"{self.capital(self.name)} in pregnancy: LMWH is the agent of choice"
        if f.kind == "pregnancy_doac":
            return f"{self.capital(self.name)} in pregnancy: not recommended; LMWH"
        if f.kind == "dose_above_maximum":
            if f.proposed is not None and f.action == "update":
                p = f.proposed
                short = t.dose_text(p.ingredient, p.dose_mg, p.dose_units, p.doses_per_day)
                if p.ingredient == self.order.ingredient:
                    short = short.removeprefix(t.DRUG.get(p.ingredient, p.ingredient) + " ")
                if r0 == "crcl_lt_30":
                    return f"{cur} at {self.crcl()}: consider {short}"
                return f"{cur} above the maximum at {self.weight_short()}: consider {short}"
            if r0 == "crcl_lt_15":
                phrase = self.renal_phrase()   # review-v3 C1: only the first letter lowered ('On CRRT' -> 'on CRRT')
                phrase = phrase[:1].lower() + phrase[1:] if phrase.startswith("On ") else phrase
                return f"{cur}: twice-daily LMWH, {phrase}"
            return f"{cur} above the labelled maximum"
        if f.kind == "renal_dose":
            if r0 == "crcl_lt_30" and f.proposed is not None:
                return f"{cur} at {self.crcl()}: consider enoxaparin {num(self.p['renal.enoxaparin_mg'], 0)} mg SC daily"
            if r0 == "crcl_lt_15":
                return f"{cur}: {self.renal_phrase()}; UFH per protocol"
            if r0 == "crcl_lt_30":   # the enoxaparin table uses the policy-weight CrCl of the why line
                return f"{cur} {self.at_renal()}: check the renal dose"
            return f"{cur} {self.at_renal(actual_weight=True)}: check the renal dose"
        if f.kind == "switch_product":
            p = f.proposed
            short = t.dose_text(p.ingredient, p.dose_mg, p.dose_units, p.doses_per_day) if p else "UFH"
            return f"{self.renal_phrase()}: change {self.current} to {short}"
        if f.kind == "weight_unknown":
            return f"Weigh the patient today: {self.current} cannot be checked"
        if f.kind == "renal_unknown":
            state = "changing" if r0 == "renal_changing" else "unknown"
            return f"Renal function {state}: check before {self.current}"
        if f.kind == "fondaparinux_band":
            return f"{cur}: not a labelled regimen at {self.weight_short()}"
        if f.kind == "liver":
            return f"{cur} with severe liver disease markers: check the agent"
        if f.kind == "argatroban_start":
            return f"{cur}: start at 0.5 µg/kg/min ({'bilirubin raised' if r0 == 'bilirubin_high' else 'critically ill'})"
        if f.kind == "ecmo_oral":
            return f"On ECMO: {self.current} drafted; anticoagulation by the ECMO protocol"
        if f.kind == "interaction":
            inhibitor = t.names([INHIBITOR_NAMES.get(x, x) for x in f.reasons])
            return f"{cur} with {inhibitor}: {'halve the dose' if f.value('halve') else 'avoid or follow the label'}"
        return f"{cur}: check before signing"

    def v3_why(self, f) -> str:
        i, r0 = self.a.inputs, (f.reasons[0] if f.reasons else "")
        if f.kind in ("hit_vka", "hit_prophylactic_intensity"):
            rec = self.hit_record()
            onset = f"onset {t.when(rec.onset)}" if rec else "platelet fall on heparin"
            return f"**Why:** HIT ({onset}); platelets {t.reported(i.platelets, 0)}."
        if f.kind in ("pregnancy_vka", "pregnancy_doac"):
            return "**Why:** pregnancy recorded."
        if f.kind in ("dose_above_maximum", "fondaparinux_band", "weight_unknown"):
            return f"**Why:** draft {md(self.current)}; {self.weight()}; {self.renal_phrase()}."
        if f.kind == "switch_product":
            return f"**Why:** {self.renal_why()}: LMWH accumulates."
        if f.kind in ("renal_dose", "renal_unknown"):
            if r0 in ("rivaroxaban_crcl_lt_50", "dabigatran_renal", "edoxaban_crcl_15_50", "edoxaban_crcl_lt_15",
                      "edoxaban_crcl_gt_95"):
                return f"**Why:** {self.crcl_actual()} (Cockcroft-Gault on actual weight, as the label); draft {md(self.current)}."
            return f"**Why:** {self.renal_why()}; draft {md(self.current)}."
        if f.kind == "liver":
            return f"**Why:** INR {t.reported(i.inr, 1)}, bilirubin {t.reported(i.bilirubin, 1)}."
        if f.kind == "argatroban_start":
            return f"**Why:** bilirubin {t.reported(i.bilirubin, 1)}; critically ill: {'yes' if self.a.critical_illness.critically_ill else 'no'}."
        if f.kind == "ecmo_oral":
            return "**Why:** ECMO in progress."
        if f.kind == "interaction":
            return "**Why:** a strong CYP3A4/P-gp inhibitor is active (nirmatrelvir/ritonavir is expected in COVID-19)."
        return f"**Why:** draft {md(self.current)}."

    def weight_short(self) -> str:
        w = self.a.anthropometrics.weight_kg
        return f"{num(w, 1)} kg" if w is not None else "unknown weight"

    def crcl_actual(self) -> str:
        r = self.a.renal
        if r.renal_replacement is True:
            return self.renal_phrase()
        v = r.crcl_actual_weight_ml_min
        return f"CrCl {num(v, 1)} mL/min" if v is not None else "CrCl unknown"

    # -- dose ----------------------------------------------------------------------------------------
    def dose_change(self, f):
        a = self.a
        target = f.proposed
        proposed = t.dose_text(target.ingredient, target.dose_mg, target.dose_units, target.doses_per_day)
        short = proposed.removeprefix(t.DRUG.get(self.order.ingredient, self.order.ingredient) + " ")
        context = self.context(f.reasons)
        summary = f"{self.capital(self.current)}{context}: consider {short}"
        if "renal_frequency" in f.reasons:
            why = (f"**Why:** {self.renal_why()}: the label gives a "
                   "therapeutic dose once daily below 30 mL/min.")
        else:
            parts = [f"BMI {shown('bmi', a.anthropometrics.bmi, 1, self.p)}" if a.anthropometrics.bmi is not None else None,
                     self.weight(), self.renal_why()]
            why = "**Why:** " + "; ".join(x for x in parts if x) + "."
        basis = self.t.basis.get(a.regimen.basis, "") if target.ingredient == a.regimen.drug else ""
        action = f"**Dose:** {proposed}" + (f" ({basis})." if basis else ".")
        suggestions = []
        updated = updated_draft(self.ev.codes, self.resource, self.order, target) if f.action == "update" else None
        if f.action != "update":   # §19.11: a lower daily dose at BMI >= 40 is never one click
            action += " No one-click change: a higher obesity regimen may be intended; confirm the intent."
        if updated is not None:
            suggestions.append(suggestion(f"Change to {proposed}", action_update(f"Change the draft to {proposed}", updated),
                                          recommended=True))
        # §19.7: in order hooks the anti-Xa advice is a line of this card (finish), not an order
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
        if "crcl" in found and a.renal.renal_replacement is True:
            phrase = self.renal_phrase()
            return f" ({phrase[:1].lower()}{phrase[1:]})"
        if "crcl" in found and a.renal.crcl_ml_min is not None:
            return f" at CrCl {shown('crcl', a.renal.crcl_ml_min, 1, self.p)} mL/min"
        if "bmi" in found and a.anthropometrics.bmi is not None:
            return f" at BMI {shown('bmi', a.anthropometrics.bmi, 1, self.p)}"
        return ""

def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _daily(order) -> float | None:
    if order is None or order.doses_per_day is None:
        return None
    dose = order.dose_mg if order.dose_mg is not None else order.dose_units
    return None if dose is None else dose * order.doses_per_day


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
    if proposed.ingredient != order.ingredient or _strength_changes(codes, resource, order, proposed) \
            or not _codeable_ok(codes, updated):
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
