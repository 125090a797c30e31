"""The patient-view card catalogue (coagulopathy-risk): at most one card, chosen from the v2 assessment by the first
row of clinical-rules §18.1 that applies.

| Situation | Kind | Indicator | Suggestions |
|---|---|---|---|
| out of scope (§1a) | none | | |
| pathway `contraindicated`, an anticoagulant active | contraindicated | critical | one suggestion deleting the concerned orders; none with another indication for anticoagulation |
| pathway `contraindicated`, none active | contraindicated | warning | none |
| `hit_acute`, a heparin active or no non-heparin anticoagulant running | hit_acute | critical | one suggestion deleting every active heparin order, when any |
| `hit_suspected` | hit_suspected | warning | none |
| heparin-specific contraindication, a heparin active | contraindicated | critical for `hit_recent`, else warning | delete the heparin and, when §11 row 1 gives it, create fondaparinux (one suggestion) |
| duplicate anticoagulation (§10.4) | duplicate_anticoagulant | §10.4 urgency | none |
| heparin-specific contraindication, nothing active | heparin_avoidance | warning | create fondaparinux when row 1 gives it |
| `deescalate` or `review_therapeutic` | deescalate | warning | create the prophylactic regimen and delete the therapeutic order, in one suggestion |
| `therapeutic_candidate`, no anticoagulant | therapeutic_candidate | warning | create therapeutic (+ anti-Xa when indicated); create the prophylactic regimen; at-most-one |
| `therapeutic_candidate`, a prophylactic or intermediate heparin active | therapeutic_candidate | info | create therapeutic and delete the order, in one suggestion |
| `prophylaxis`, nothing active, signal met, not pregnant | prophylaxis_suggestion | warning | create the regimen; anti-Xa when indicated |
| `prophylaxis`, nothing active, no signal or pregnant | standard_prophylaxis | info | create the regimen; none in pregnancy |
| `prophylaxis`, a heparin active at a dose the order check would change | dose_review | the order check's urgency | none |
| otherwise | none | | |

No create suggestion on any card while a non-heparin anticoagulant is active. Deletes name an
active order by its id (`MedicationRequest/<id>`); MedicationStatements (home medicines) are named
in the text, never deleted. The detail follows §18.2 (templates.py); the full assessment stays in
the audit row and in `assess`.
"""
from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from ..logic.order_check import check_order, context_from_assessment
from ..logic.regimen import recommend_regimen
from ..logic.safety import HEPARINS
from ..evaluation.pipeline import Evaluation
from . import templates as t
from .build import (action_create, action_delete, card, md, medication_request, num, suggestion)
from .content import anti_xa_suggestion, shown

HEPARIN_SPECIFIC_ROW = ("hit_recent", "hit_history", "heparin_allergy")
STOPS = ("active_bleeding", "platelets_lt_25", "fibrinogen_lt_0.5")


# -- the catalogue ----------------------------------------------------------------------------------
def build_cards(ev: Evaluation) -> list:
    """The card of the first row of SITUATIONS that applies (none when its card is None)."""
    b = _Builder(ev)
    for _situation, applies, write in SITUATIONS:
        if applies(b):
            card = write(b)
            if card is not NEXT:
                return [] if card is None else [card]
    return []


class _Builder:
    def __init__(self, ev: Evaluation):
        self.ev, self.a, self.p = ev, ev.assessment, ev.policy
        self.t = t.for_policy(ev.policy)
        s = self.a.safety
        self.active = list(s.anticoagulants_active)                      # Exposure (orders + statements)
        self.orders = {o.source: (o, c) for o, c in s.orders if o.source}  # MedicationRequests, classed
        self.heparins = [e for e in self.active if e.ingredient in HEPARINS]
        self.non_heparin = [e for e in self.active if e.ingredient not in HEPARINS]
        self.ci = tuple(s.contraindications)
        # §19.4: heparin flush/lock orders: never exposure, but heparin for HIT
        self.flushes = [o for o in getattr(ev.assessment.inputs, "heparin_flushes", ())
                        if isinstance(o.source, str) and o.source.startswith("MedicationRequest/")]
        self.ecmo = bool(ev.assessment.inputs.respiratory.ecmo)
        self.possible_other = bool(getattr(s, "possible_other_indication", False))
        self.pathway = self.a.recommendation.pathway
        # §19.1 (overrides the v2 §13.1 order): in acute HIT, platelets < 25 alone is the disease,
        # not a stop: the hit_acute card (therapeutic non-heparin agent). Bleeding or fibrinogen stop.
        self.acute = self.pathway == "hit_acute" or (
            self.pathway == "contraindicated" and "hit_acute" in self.ci
            and [c for c in self.ci if c in STOPS] == ["platelets_lt_25"])
        self.specific = [c for c in self.ci if c in HEPARIN_SPECIFIC_ROW]
        self.unreadable = (getattr(self.a.inputs, "rejected", None) or {}).get("conditions.unreadable_safety")

    # -- the rows of SITUATIONS that need more than one line ----------------------------------------
    def unreadable_safety(self):
        what = self.unreadable.split(" record", 1)[0]
        return self._finish("not_determinable", "warning", f"A {what} record could not be read: review it",
                            f"**Why:** {md(self.unreadable[:200])}; it was left out of this assessment.",
                            "**Action:** review the record in the chart before any anticoagulant decision.",
                            self.t.evidence_for("not_determinable"), recommendation=("unreadable_safety",))

    def severe_renal_or_next(self):
        severe = self.severe_renal_review()     # v3 §19.3 (v3-orders)
        return NEXT if severe is None else severe

    def ecmo_active(self):
        return self.dose_review() if self.pathway == "prophylaxis" else None

    def candidate_on_one(self):
        on = [e for e in self.heparins if e.kind == "order" and e.order_class in ("prophylactic", "intermediate")]
        return self.candidate_on(on[0]) if on and len(self.active) == 1 else None

    def prophylaxis_none(self):
        return self.prophylaxis(self.a.seed_trigger.triggered is True and not self.a.pregnant)

    # -- shared pieces ---------------------------------------------------------------------------
    def _finish(self, kind: str, indicator: str, summary: str, why: str | None, dose: str | None,
                evidence: t.Evidence, *, suggestions=(), selection="any", check: str | None = None,
                extra=(), recommendation: tuple | None = None):
        if self.non_heparin or self.ecmo:   # §18.1; §19.4: no create on ECMO
            suggestions = _without_creates(suggestions)
        # §19.13: the neuraxial line on every card whose suggestion gives any anticoagulant
        gives_heparin = any(a.get("type") == "create" and _is_anticoagulant_request(a.get("resource"))
                            for s in suggestions for a in s["actions"])
        extra = list(extra) + ([t.NEURAXIAL] if gives_heparin else [])
        extra = self.v3_lines(kind, why, dose) + extra
        issued = card(kind, indicator, summary, t.detail(why, dose, check or self.missing_line(), extra, evidence),
                      suggestions=suggestions, selection=selection, evidence=evidence.keys)
        return with_recommendation(issued, recommendation)

    def v3_lines(self, kind: str, why: str | None, dose: str | None) -> list[str]:
        """§19.8, §19.10, §19.12 check lines, each only when it applies."""
        a, i, out = self.a, self.a.inputs, []
        if self.possible_other and kind in ("contraindicated", "deescalate", "therapeutic_candidate",
                                            "duplicate_anticoagulant", "dose_review"):
            out.append(t.POSSIBLE_OTHER_INDICATION)
        if "confirm_home_anticoagulant_status" in a.recommendation.notes:
            out.append("Confirm home anticoagulant status.")
        if getattr(i, "age_uncertain", False):
            out.append(t.age_uncertain_line(i.birth_date))
        elif getattr(i, "birth_date_partial", False) and "CrCl" in f"{why or ''} {dose or ''}":
            out.append(t.age_approximate_line(i.birth_date))
        return out

    def exposure_text(self, e) -> str:
        if e.kind == "order" and e.source in self.orders:
            return t.order_text(self.orders[e.source][0])
        name = t.DRUG.get(e.ingredient, e.ingredient)
        return f"{name} (home medicine)" if e.kind == "statement" else name

    def reason_text(self, codes) -> str:
        return t.names([self.t.reason.get(c, c.replace("_", " ")) for c in codes])

    def regimen_dose(self, reg=None) -> str:
        reg = reg or self.a.regimen
        return t.dose_text(reg.drug, reg.dose_mg, reg.dose_units, reg.doses_per_day)

    def prophylactic_regimen(self):
        """§11 regimen ignoring the active therapeutic order (for de-escalation)."""
        a, p = self.a, self.p
        ctx = context_from_assessment(a, p)
        kwargs: dict[str, Any] = dict(contraindications=(), already_therapeutic=False,
                                      crcl_ml_min=ctx.crcl_ml_min, crcl_lt_30=ctx.crcl_lt_30, bmi=ctx.bmi,
                                      weight_kg=ctx.weight_kg, policy=p, crcl_bound=ctx.crcl_bound)
        if hasattr(ctx, "renal_replacement"):
            kwargs["renal_replacement"] = ctx.renal_replacement
        return recommend_regimen(**kwargs)

    def create(self, drug, dose_mg, dose_units, per_day, note: str) -> dict:
        call = self.ev.call
        resource = medication_request(self.ev.codes, drug=drug, dose_mg=dose_mg, dose_units=dose_units,
                                      doses_per_day=per_day, patient_id=call.patient_id,
                                      encounter_id=call.encounter_id, authored_on=self.ev.now, note=note)
        text = t.dose_text(drug, dose_mg, dose_units, per_day)
        return action_create(f"Draft order: {text}", resource)

    def create_regimen(self, reg, why: str) -> dict:
        return self.create(reg.drug, reg.dose_mg, reg.dose_units, reg.doses_per_day,
                           f"VTE prophylaxis suggested by the coagulopathy-risk service ({why}).")

    def deletes(self, exposures) -> list[dict]:
        out = []
        for e in exposures:
            if e.kind == "order" and isinstance(e.source, str) and e.source.startswith("MedicationRequest/"):
                out.append(action_delete(f"Stop {self.exposure_text(e)}", e.source))
        return out

    def missing_line(self) -> str | None:
        """At most one line of missing checks: safety labs first, then weight/renal."""
        i = self.a.inputs
        lacking = [name for name, m in (("platelet count", i.platelets), ("haemoglobin", i.hemoglobin))
                   if m is None]
        if self.a.renal.crcl_ml_min is None and self.a.regimen.drug is not None:
            lacking.append("creatinine clearance")
        weight = i.weight is None
        if not lacking and not weight:
            return None
        # §19.13 'the window named is the one the rule used' (review-v3 C6): labs 72 h, weight 30 days
        hours = num(self.p["window.labs_hours"], 0)
        parts = [f"no {t.names(lacking)} in the last {hours} h"] if lacking else []
        if weight:
            parts.append(f"no weight in the last {num(self.p['window.weight_days'], 0)} days")
        return f"**Check:** {'; '.join(parts)}."

    def labs_why(self) -> str:
        i = self.a.inputs
        return f"platelets {t.reported(i.platelets, 0)}"

    def d_dimer_why(self) -> str:
        dd, i = self.a.d_dimer, self.a.inputs
        if i.d_dimer is None:
            return "D-dimer not available"
        multiple = f"{shown('d_dimer', dd.multiple_of_uln, 3, self.p)}× " if dd.multiple_of_uln is not None else "above "
        uln = f", {multiple}ULN {num(dd.uln_mg_l, 2)} mg/L" if dd.uln_mg_l else ""
        return f"D-dimer {t.reported(i.d_dimer.value, 2, dated=False)}{uln} ({t.when(i.d_dimer.value.time)})"

    def body_dose(self, reg=None) -> str:
        """"BMI 30.4 (88 kg), CrCl 78.1 mL/min: 60 mg daily (BMI 30 or more)"."""
        a = self.a
        reg = reg or a.regimen
        parts = []
        if a.anthropometrics.bmi is not None:
            parts.append(f"BMI {shown('bmi', a.anthropometrics.bmi, 1, self.p)}")
        if a.inputs.weight is not None:
            parts.append(f"weight {t.reported(a.inputs.weight, 1, dated=False)}")
        if a.renal.renal_replacement is True:   # §19.3: the modality, never a post-dialysis CrCl (review-v3 M2)
            parts.append(self.renal_phrase())
        elif a.renal.crcl_ml_min is not None:
            parts.append(f"CrCl {shown('crcl', a.renal.crcl_ml_min, 1, self.p)} mL/min, creatinine {t.reported(a.inputs.creatinine, 2)}")
        basis = self.t.basis.get(reg.basis, "")
        lead = "; ".join(parts) or "no weight or renal function recorded"
        return f"**Dose:** {lead}: {self.regimen_dose(reg)}" + (f", {basis}." if basis else ".")

    # -- rows ------------------------------------------------------------------------------------
    def contraindicated(self):
        a = self.a
        codes = [c for c in self.ci if c in STOPS]
        why = f"**Why:** {self.stop_evidence(codes)}"
        if self.active:
            active = t.names([self.exposure_text(e) for e in self.active])
            summary = self.t.summary["contraindicated_active"].format(reason=self.reason_text(codes), active=active)
            suggestions = []
            other = a.safety.other_anticoagulation_indication
            if other:
                dose = "**Action:** another indication for anticoagulation is recorded: review with the treating team."
            elif self.possible_other:   # §19.12: the card stays, without the one-click delete
                dose = "**Action:** consider stopping the anticoagulant; consider mechanical prophylaxis."
            else:
                dose = "**Action:** consider stopping the anticoagulant; consider mechanical prophylaxis."
                deletes = self.deletes(self.active)
                if deletes:
                    suggestions = [suggestion("Stop " + t.names([self.exposure_text(e) for e in self.active
                                                                   if e.kind == "order"]), *deletes)]
            if "hit_acute" in self.ci:   # §19.6: in acute HIT the heparin stops, it is not 'consider'
                dose = dose.replace("consider stopping the anticoagulant", "stop the anticoagulant")
                dose += " Acute HIT too: stop all heparin, urgent haematology, no anticoagulant while this lasts."
            return self._finish("contraindicated", "critical", summary, why, dose,
                                self.t.evidence_for("contraindicated"), suggestions=suggestions,
                                recommendation=("contraindicated", *codes))
        summary = self.t.summary["contraindicated_none"].format(reason=self.reason_text(codes))
        dose = "**Action:** no pharmacological prophylaxis; intermittent pneumatic compression."
        if "hit_acute" in self.ci:
            dose += " Acute HIT too: urgent haematology, no anticoagulant while this lasts."
        return self._finish("contraindicated", "warning", summary, why, dose,
                            self.t.evidence_for("contraindicated"), recommendation=("contraindicated", *codes))

    def stop_evidence(self, codes) -> str:
        return t.stop_reasons(self.a.inputs, codes)

    def ecmo_card(self):
        """§19.4: on ECMO with no anticoagulant seen, one info card (the §18.3 repeat rule applies)."""
        summary = "On ECMO: anticoagulation by the ECMO protocol"
        why = ("**Why:** ECMO in progress and no anticoagulant order seen; the COVID-19 dose "
               "recommendations do not apply to ECMO circuits.")
        dose = "**Action:** follow the ECMO anticoagulation protocol (usually a UFH infusion)."
        if any(c.startswith("hit") for c in self.ci):   # §19.4: with HIT, never a UFH infusion
            dose = "**Action:** on ECMO with HIT: bivalirudin or argatroban by the ECMO protocol."
        return self._finish("ecmo", "info", summary, why, dose, self.t.evidence_for("ecmo"),
                            recommendation=("ecmo",))

    def hit_record(self):
        recs = [r for r in self.a.inputs.hit_records if r.onset is not None]
        return max(recs, key=lambda r: r.onset) if recs else None

    def hit_acute(self):
        i = self.a.inputs
        rec = self.hit_record()
        onset_text = t.when(rec.onset, time=False) if rec else "recent"
        platelets = t.reported(i.platelets, 0, dated=False) if i.platelets else "unknown"
        # §19.1: an active VKA order in acute HIT is stopped with the heparin (venous limb gangrene)
        vkas = [e for e in self.active if e.drug_class == "vka" and e.kind == "order"]
        if vkas:
            summary = (f"Acute HIT (onset {onset_text}, platelets {platelets}): stop all heparin and warfarin; "
                       "give vitamin K")
        else:
            summary = self.t.summary["hit_acute"].format(onset=onset_text, platelets=platelets)
        why = (f"**Why:** HIT with onset {t.when(rec.onset) if rec else 'recent'} and platelets "
               f"{t.reported(i.platelets, 0)}: not recovered.")
        agents = ("bivalirudin or argatroban by the ECMO protocol" if self.ecmo else
                  "argatroban, bivalirudin, treatment-dose fondaparinux or a DOAC")
        dose = ("**Action:** stop all heparin, including flushes and locks; "
                + ("stop warfarin and give vitamin K (venous limb gangrene); " if vkas else "")
                + f"start a therapeutic-intensity non-heparin anticoagulant ({agents}) with haematology. "
                "No prophylactic dose.")
        deletes = self.deletes(self.heparins) + [
            action_delete("Stop heparin flush/lock", o.source) for o in self.flushes] + self.deletes(vkas)
        label = "Stop every heparin and warfarin" if vkas and self.deletes(vkas) else "Stop every heparin"
        suggestions = [suggestion(label, *deletes)] if deletes else []
        return self._finish("hit_acute", "critical", summary, why, dose, self.t.evidence_for("hit_acute"),
                            suggestions=suggestions, recommendation=("hit_acute",))

    def hit_acute_vka(self):
        """§19.1 (v3): an active VKA order in acute HIT: critical, stop warfarin, give vitamin K
        [Cuker 2018: venous limb gangrene]. One suggestion deleting the VKA order."""
        i = self.a.inputs
        vkas = [e for e in self.active if e.drug_class == "vka" and e.kind == "order"]
        rec = self.hit_record()
        onset = t.when(rec.onset, time=False) if rec else "recent"
        summary = f"Acute HIT (onset {onset}) and warfarin active: stop warfarin; give vitamin K"
        why = (f"**Why:** HIT with onset {t.when(rec.onset) if rec else 'recent'}, platelets "
               f"{t.reported(i.platelets, 0)}: warfarin in acute HIT risks venous limb gangrene.")
        dose = ("**Action:** stop warfarin and give vitamin K; a therapeutic non-heparin anticoagulant with "
                "haematology; restart warfarin only once platelets are ≥ 150 ×10⁹/L, overlapping ≥ 5 days.")
        deletes = self.deletes(vkas)
        suggestions = [suggestion("Stop warfarin", *deletes)] if deletes else []
        return self._finish("hit_acute", "critical", summary, why, dose, self.t.evidence_for("hit_acute"),
                            suggestions=suggestions, recommendation=("hit_acute", "vka"))

    def hit_suspected(self):
        i = self.a.inputs
        trend = [m for m in i.platelet_trend if i.heparin_started is None or m.time is None
                 or m.time >= i.heparin_started] or list(i.platelet_trend)
        highest = max(trend, key=lambda m: m.value) if trend else None
        latest = i.platelets
        fall = (round(100 * (highest.value - latest.value) / highest.value)
                if highest and latest and highest.value > 0 else None)
        summary = self.t.summary["hit_suspected"].format(fall=fall if fall is not None
                                                  else f"≥ {num(100 * self.p['safety.hit_suspected_fall_fraction'], 0)}")
        why = (f"**Why:** platelets {t.reported(latest, 0)}, highest since heparin started "
               f"{t.reported(highest, 0)}; heparin since {t.when(i.heparin_started) or 'at least ' + num(self.p['safety.hit_suspected_heparin_days'], 0) + ' days'}.")
        score = getattr(i, "four_ts", None)
        four = int(score.value) if score is not None and score.value is not None else None
        if four is not None and four >= 4:
            # §19.6 (review-v3 M8), as the order hooks read it: 4Ts >= 4 -> critical, stop all heparin
            # including flushes; therapeutic-intensity non-heparin agent; immunoassay; haematology
            why = why[:-1] + f"; 4Ts {four}."
            dose = ("**Action:** stop all heparin, including flushes; therapeutic-intensity non-heparin "
                    "anticoagulant unless bleeding risk is high; HIT immunoassay; haematology.")
            deletes = self.deletes(self.heparins) + [
                action_delete("Stop heparin flush/lock", o.source) for o in self.flushes]
            return self._finish("hit_suspected", "critical", f"Platelets fell {fall if fall is not None else '≥ 50'} % "
                                f"on heparin, 4Ts {four}: stop all heparin", why, dose,
                                self.t.evidence_for("hit_suspected"),
                                suggestions=[suggestion("Stop every heparin", *deletes)] if deletes else [],
                                recommendation=("hit_suspected", "4ts_high"))
        dose = ("**Action:** assess the 4Ts score; if 4 or more: stop all heparin, including flushes; "
                "therapeutic-intensity non-heparin anticoagulant unless bleeding risk is high; HIT immunoassay; "
                "haematology.")
        return self._finish("hit_suspected", "warning", summary, why, dose, self.t.evidence_for("hit_suspected"),
                            recommendation=("hit_suspected",))

    def hit_label(self, specific) -> str:
        """"HIT (onset 14 Nov)" for recent HIT, "HIT history" for older or undated HIT."""
        if "hit_recent" in specific:
            rec = self.hit_record()
            return f"HIT (onset {t.when(rec.onset, time=False)})" if rec is not None else "Recent HIT"
        if "hit_history" in specific:
            return "HIT history"
        return "Heparin allergy"

    def heparin_specific_active(self, specific):
        reg = self.a.regimen
        heparins = t.names([self.exposure_text(e) for e in self.heparins])
        summary = self.t.summary["heparin_specific_active"].format(hit=self.hit_label(specific), active=heparins)
        indicator = "critical" if "hit_recent" in specific else "warning"
        why = f"**Why:** {self.specific_why(specific)}"
        actions = []
        # §19.6 (v3-orders): by the intensity of the active heparin, as the order check reads a draft:
        # prophylactic/intermediate -> fondaparinux 2.5 mg (row 1); therapeutic -> the treatment band
        # when CrCl >= 30, no renal replacement and weight known; otherwise stop, no create.
        # (v3-exposure) no create while a non-heparin anticoagulant is active or on ECMO (§18.1, §19.4);
        # the label and the Action line describe exactly the actions carried.
        rank = {"prophylactic": 1, "intermediate": 2, "therapeutic": 3}
        checks = [check_order(self.orders[e.source][0], self.a, self.p) for e in self.heparins
                  if e.kind == "order" and e.source in self.orders]
        top = max(checks, key=lambda c: rank.get(c.intensity or "", 0), default=None)
        intensity = top.intensity if top is not None else None
        switch = top.finding("switch_product") if top is not None else None
        may_create = not self.non_heparin and not self.ecmo
        if self.ecmo:
            # §19.4: the heparin on ECMO is the circuit's anticoagulant: never a one-click stop or an SC
            # replacement; bivalirudin or argatroban by the ECMO protocol (review H6)
            dose = ("**Action:** on ECMO: replace the heparin with bivalirudin or argatroban by the ECMO protocol, "
                    "with haematology; do not stop it without a replacement.")
        elif may_create and switch is not None and switch.proposed is not None \
                and switch.proposed.ingredient == "fondaparinux":
            p_ = switch.proposed
            actions.append(self.create("fondaparinux", p_.dose_mg, None, p_.doses_per_day,
                                       "Replaces a heparin (HIT or allergy) (coagulopathy-risk service)."))
            text = t.dose_text("fondaparinux", p_.dose_mg, None, p_.doses_per_day)
            dose = f"**Action:** stop the heparin; consider {md(text)} ({self.body_facts()})."
            if intensity == "therapeutic":
                dose = (f"**Action:** stop the heparin; treatment-dose {md(text)} (weight band) with haematology "
                        f"({self.body_facts()}).")
            elif intensity == "intermediate":
                dose += " " + t.V3_ACTION["hit_intermediate"][:1].upper() + t.V3_ACTION["hit_intermediate"][1:]
        elif self.non_heparin:
            others = t.names([self.exposure_text(e) for e in self.non_heparin])
            dose = f"**Action:** stop the heparin; {md(others)} is also active: review anticoagulation with haematology."
        elif intensity == "therapeutic":
            dose = "**Action:** stop the heparin; " + t.V3_ACTION["hit_treatment_delete"]
        elif may_create and reg.drug == "fondaparinux" and top is None:
            actions.append(self.create_regimen(reg, "HIT or allergy"))
            dose = f"**Action:** stop the heparin; consider {self.regimen_dose()} ({self.body_facts()})."
        else:
            dose = "**Action:** stop the heparin; a non-heparin agent with haematology advice."
        actions += [] if self.ecmo else self.deletes(self.heparins)
        creates = any(a.get("type") == "create" for a in actions)
        label = "Replace with fondaparinux" if creates else "Stop the heparin"
        suggestions = [suggestion(label, *actions)] if actions else []
        return self._finish("contraindicated", indicator, summary, why, dose,
                            self.t.evidence_for("heparin_specific"), suggestions=suggestions,
                            recommendation=("heparin_specific", *specific))

    def specific_why(self, specific) -> str:
        i = self.a.inputs
        if "heparin_allergy" in specific and not any(c.startswith("hit") for c in specific):
            return "heparin, LMWH or pork-product hypersensitivity recorded."
        rec = self.hit_record()
        days = num(self.p["safety.hit_acute_days"], 0)
        if "hit_recent" in specific:
            onset = f"onset {t.when(rec.onset)}" if rec else "recent onset"
            return f"HIT {onset}, within {days} days; platelets {t.reported(i.platelets, 0)}."
        if rec is not None:
            return f"HIT recorded, onset {t.when(rec.onset, time=False)} (more than {days} days ago)."
        return "HIT recorded, undated (treated as history)."

    def body_facts(self) -> str:
        a = self.a
        crcl = f"CrCl {shown('crcl', a.renal.crcl_ml_min, 1, self.p)} mL/min" if a.renal.crcl_ml_min is not None else "CrCl unknown"
        weight = f"weight {t.reported(a.inputs.weight, 1, dated=False)}" if a.inputs.weight else "weight unknown"
        return f"{crcl}, {weight}"

    def duplicate(self):
        s = self.a.safety
        items = [self.exposure_text(e) for e in self.active]
        summary = self.t.summary["duplicate"].format(first=items[0], second=t.names(items[1:]))
        why = f"**Why:** active together: {md(t.names(items))}."
        if s.duplicate == "info":
            dose = (f"**Action:** a VKA bridge while INR is below {num(self.p['safety.bridge_inr_below'], 1)}: "
                    "confirm the parenteral agent stops when INR is in range.")
        else:
            dose = "**Action:** confirm that the other agent stops; combined anticoagulants add bleeding risk."
        return self._finish("duplicate_anticoagulant", s.duplicate, summary, why, dose,
                            self.t.evidence_for("duplicate_anticoagulant"),
                            recommendation=("duplicate", *sorted(e.ingredient for e in self.active)))

    def heparin_avoidance(self, specific):
        reg = self.a.regimen
        hit = self.hit_label(specific)
        why = f"**Why:** {self.specific_why(specific)}"
        suggestions = []
        if reg.drug == "fondaparinux":
            summary = self.t.summary["avoidance"].format(hit=hit, dose=self.regimen_dose())
            dose = f"**Dose:** {self.body_facts()}: {self.regimen_dose()} (label floors: 50 kg, CrCl 30 mL/min)."
            suggestions = [suggestion(f"Order {self.regimen_dose()}",
                                      self.create_regimen(reg, "HIT or allergy"))]
        elif "hit_needs_platelets" in reg.notes:
            summary = self.t.summary["avoidance_platelets"].format(hit=hit)
            dose = "**Action:** obtain a platelet count and haematology advice before any anticoagulant."
        else:
            summary = self.t.summary["avoidance_specialist"].format(hit=hit)
            dose = f"**Dose:** {self.body_facts()}: fondaparinux not possible; a non-heparin agent via haematology."
        # §19.4 names flushes as heparin for HIT; for a HIT history the rules are silent on them:
        # say so, without a one-click delete (this service's choice)
        extra = (["Heparin flush or lock active: use saline flushes and non-heparin locks."]
                 if self.flushes else [])
        return self._finish("heparin_avoidance", "warning", summary, why, dose,
                            self.t.evidence_for("heparin_specific"), suggestions=suggestions, extra=extra,
                            recommendation=("heparin_avoidance", reg.drug, reg.dose_mg, reg.doses_per_day))

    def therapeutic_exposures(self):
        return [e for e in self.heparins if e.kind == "order" and e.order_class == "therapeutic"]

    def deescalate(self):
        a = self.a
        rec = a.recommendation
        targets = self.therapeutic_exposures() or self.heparins
        drug = t.names([t.DRUG.get(e.ingredient, e.ingredient) for e in targets])
        reg = self.prophylactic_regimen()
        if rec.pathway == "deescalate":
            summary = self.t.summary["deescalate"].format(drug=drug)
            criteria = ", ".join(md(t.CRITERIA_TEXT.get(c, c.replace("vasoactive:", "").replace("_", " ")))
                                 for c in a.critical_illness.criteria) or "organ support"
            why = f"**Why:** critically ill ({criteria}) on {md(t.names([self.exposure_text(e) for e in targets]))}; no other indication recorded."
            evidence = self.t.evidence_for("deescalate")
        else:
            caution = self.caution_text()
            summary = self.t.summary["review_therapeutic"].format(drug=drug, caution=caution)
            why = f"**Why:** {md(t.names([self.exposure_text(e) for e in targets]))} with {self.caution_text(dated=True)}."
            evidence = self.t.evidence_for("review_therapeutic")
        actions = []
        if reg.drug:
            actions.append(self.create_regimen(reg, "de-escalation to prophylaxis"))
        actions += self.deletes(targets)
        suggestions = [suggestion(f"Switch to {self.regimen_dose(reg)}", *actions)] \
            if actions and not self.possible_other else []   # §19.12: no one-click de-escalation
        dose = self.body_dose(reg) + " Unless VTE or another indication is confirmed. " + t.DEESCALATE_TIMING
        return self._finish("deescalate", "warning", summary, why, dose, evidence, suggestions=suggestions,
                            recommendation=(rec.pathway, reg.drug, reg.dose_mg or reg.dose_units, reg.doses_per_day))

    def caution_text(self, dated: bool = False) -> str:
        i = self.a.inputs
        values = {"platelets": t.reported(i.platelets, 0, dated=dated),
                  "hemoglobin": t.reported(i.hemoglobin, 1, dated=dated),
                  "fibrinogen": t.reported(i.fibrinogen, 2, dated=dated)}
        return t.names([self.t.caution.get(c, c.replace("_", " ")).format(**values)
                        for c in self.a.safety.escalation_cautions])

    def candidate_why(self) -> str:
        a = self.a
        return (f"**Why:** not critically ill, on low-flow oxygen; {self.d_dimer_why()}; "
                f"platelets {t.reported(a.inputs.platelets, 0)}, Hb "
                f"{t.reported(a.inputs.hemoglobin, 1)}; no bleeding caution.")

    def multiple(self) -> str:
        m = self.a.d_dimer.multiple_of_uln
        return shown('d_dimer', m, 3, self.p) if m is not None else "> 1"

    def therapeutic_actions(self) -> tuple[list[dict], str | None]:
        rec = self.a.recommendation
        dose = rec.therapeutic
        if dose is None:
            return [], None
        text = t.dose_text(dose.drug, dose.dose_mg, None, dose.doses_per_day)
        actions = [self.create(dose.drug, dose.dose_mg, None, dose.doses_per_day,
                               "Therapeutic-dose LMWH for COVID-19 (14 days or until discharge), suggested by "
                               "the coagulopathy-risk service.")]
        if rec.therapeutic_anti_xa:
            low, high = rec.therapeutic_anti_xa
            actions.append(self.anti_xa_action(low, high))
        return actions, text

    def anti_xa_action(self, low: float, high: float) -> dict:
        from .build import anti_xa_request
        call = self.ev.call
        hours = num(self.p["antixa.peak_hours_post_dose"], 1)
        sampling = f"Peak level {hours} h after a subcutaneous dose, from the 3rd dose on"
        note = f"Anti-Xa for therapeutic enoxaparin: target {num(low, 2)}-{num(high, 2)} IU/mL; LMWH-calibrated assay."
        resource = anti_xa_request(self.ev.codes, patient_id=call.patient_id, encounter_id=call.encounter_id,
                                   authored_on=self.ev.now, sampling=sampling, note=note)
        return action_create(f"Draft order: anti-Xa level, target {num(low, 2)}-{num(high, 2)} IU/mL", resource)

    def candidate_none(self):
        a, rec = self.a, self.a.recommendation
        actions, text = self.therapeutic_actions()
        reg = a.regimen
        suggestions = []
        if text:
            summary = self.t.summary["candidate_none"].format(multiple=self.multiple(), dose=text)
            suggestions.append(suggestion(f"Order therapeutic {text}", *actions))   # §19.13: no isRecommended
            dose = (f"**Dose:** 1 mg/kg actual weight ({t.reported(a.inputs.weight, 1, dated=False)}), CrCl "
                    f"{shown('crcl', a.renal.crcl_ml_min, 1, self.p)} mL/min: {text}, 14 days or until discharge; or prophylactic "
                    f"{self.regimen_dose()}.")
        else:
            summary = self.t.summary["candidate_protocol"].format(multiple=self.multiple())
            dose = f"**Dose:** {self.protocol_reason()}; or prophylactic {self.regimen_dose()}."
        if reg.drug:
            suggestions.append(suggestion(f"Order prophylactic {self.regimen_dose()}",
                                          self.create_regimen(reg, "prophylactic alternative")))
        therapeutic = rec.therapeutic
        return self._finish("therapeutic_candidate", "warning", summary, self.candidate_why(), dose,
                            self.t.evidence_for("therapeutic_candidate"), suggestions=suggestions,
                            selection="at-most-one", extra=[t.NO_ANTIPLATELET],
                            recommendation=("therapeutic_candidate", therapeutic.drug if therapeutic else None,
                                            therapeutic.dose_mg if therapeutic else None,
                                            therapeutic.doses_per_day if therapeutic else None))

    def candidate_on(self, exposure):
        rec = self.a.recommendation
        actions, text = self.therapeutic_actions()
        active = self.exposure_text(exposure)
        summary = self.t.summary["candidate_on"].format(active=active, multiple=self.multiple())
        suggestions = []
        if text:
            actions = actions[:1] + self.deletes([exposure]) + actions[1:]
            if not self.possible_other:   # §19.12: no one-click escalation update
                suggestions = [suggestion(f"Switch to therapeutic {text}", *actions)]
            dose = f"**Dose:** 1 mg/kg actual weight, CrCl {shown('crcl', self.a.renal.crcl_ml_min, 1, self.p)} mL/min: {text}."
        else:
            dose = "**Dose:** therapeutic dose by the local protocol (UFH infusion)."
        therapeutic = rec.therapeutic
        return self._finish("therapeutic_candidate", "info", summary, self.candidate_why(), dose,
                            self.t.evidence_for("therapeutic_candidate"), suggestions=suggestions,
                            extra=[t.NO_ANTIPLATELET],
                            recommendation=("therapeutic_candidate_on", therapeutic.drug if therapeutic else None,
                                            therapeutic.dose_mg if therapeutic else None,
                                            therapeutic.doses_per_day if therapeutic else None))

    def signal_text(self) -> str:
        a = self.a
        parts = []
        if "sic_positive" in a.seed_trigger.reasons:
            parts.append(f"SIC {a.sic.total}" if a.sic.total is not None else "SIC positive")
        if "d_dimer_gt_6x_uln" in a.seed_trigger.reasons:
            parts.append(f"D-dimer {self.multiple()}× ULN")
        return ", ".join(parts)

    def prophylaxis(self, signal: bool):
        a, reg = self.a, self.a.regimen
        critical = a.critical_illness.critically_ill is True
        evidence = self.t.evidence_for("prophylaxis_critical" if critical else "prophylaxis")
        rec_tuple = ("prophylaxis", reg.drug, reg.dose_mg or reg.dose_units, reg.doses_per_day)
        if a.pregnant:
            summary = self.t.summary["standard_pregnant"]
            why = "**Why:** pregnant, no anticoagulant ordered; the trials excluded pregnancy."
            dose = (f"**Dose:** obstetric protocol, weight-banded on booking weight (non-pregnant default: "
                    f"{self.regimen_dose()}).") if reg.drug else "**Dose:** obstetric protocol."
            return self._finish("standard_prophylaxis", "info", summary, why, dose, self.t.evidence_for("pregnancy"),
                                recommendation=rec_tuple + ("pregnant",))
        extra = self.low_platelet_lines()
        suggestions = []
        if reg.drug:
            suggestions.append(suggestion(f"Order {self.regimen_dose()}", self.create_regimen(reg, self.t.basis.get(reg.basis, reg.basis))))
            if a.anti_xa.indicated is True:
                suggestions.append(anti_xa_suggestion(self.ev, a.anti_xa))
        dose_line = self.body_dose() if reg.drug else "**Dose:** no regimen can be given (see the assessment)."
        if reg.basis == "pending_weight":
            dose_line = self.no_weight_dose()
        reason = self.dose_reason()
        if signal:
            summary = self.t.summary["prophylaxis_signal"].format(reason=reason, dose=self.regimen_dose())
            why = (f"**Why:** no anticoagulant ordered; {self.signal_why()} (prognostic signal, Tang 2020: "
                   "prophylactic dose, never higher for the signal alone).")
            return self._finish("prophylaxis_suggestion", "warning", summary, why, dose_line, evidence,
                                suggestions=suggestions, recommendation=rec_tuple, extra=extra)
        summary = self.t.summary["standard"].format(reason=reason, dose=self.regimen_dose()) if reg.drug else \
            "No VTE prophylaxis ordered: consider prophylaxis (dose needs weight and renal function)"
        why = "**Why:** admitted with COVID-19, no anticoagulant ordered, no contraindication recorded."
        return self._finish("standard_prophylaxis", "info", summary, why, dose_line, evidence,
                            suggestions=suggestions, recommendation=rec_tuple, extra=extra)

    # -- §19.13 text helpers --------------------------------------------------------------------
    def dose_reason(self) -> str:
        """What sets the dose, for the summary: "BMI 44.1", "CrCl 22.3 mL/min", "on renal replacement",
        "no weight in 30 days"."""
        a, reg = self.a, self.a.regimen
        if reg.basis in ("crcl_lt_15", "crcl_lt_30"):
            if a.renal.renal_replacement is True:   # §19.3 names the modality (review-v3 C2)
                mode = getattr(a.inputs, "renal_replacement_mode", None)
                return {"haemodialysis": "on haemodialysis", "crrt": "on CRRT",
                        "peritoneal": "on peritoneal dialysis", "eskd": "end-stage kidney disease",
                        "dialysis": "on dialysis"}.get(mode, "on renal replacement")
            if a.renal.crcl_ml_min is not None:
                return f"CrCl {shown('crcl', a.renal.crcl_ml_min, 1, self.p)} mL/min"
        if reg.basis == "pending_weight":
            if a.inputs.weight is None:
                return f"no weight in {num(self.p['window.weight_days'], 0)} days"
            return "no height recorded"
        if a.anthropometrics.bmi is not None:
            return f"BMI {shown('bmi', a.anthropometrics.bmi, 1, self.p)}"
        return "standard dose"

    def no_weight_dose(self) -> str:
        a = self.a
        if a.inputs.weight is None:
            return (f"**Dose:** Weigh the patient today (no weight in the last {num(self.p['window.weight_days'], 0)} "
                    f"days); then the dose follows BMI and renal function. Until then {self.regimen_dose()}.")
        return f"**Dose:** Measure the height today; then the dose follows BMI. Until then {self.regimen_dose()}."

    def low_platelet_lines(self) -> list[str]:
        """§19.13: platelets < 50 on a prophylaxis card."""
        if "platelets_lt_50" not in self.a.safety.escalation_cautions:
            return []
        return [f"Platelets {t.reported(self.a.inputs.platelets, 0)}: prophylactic dose only; repeat the count "
                "[NIH 2024]."]

    def protocol_reason(self) -> str:
        """Why the candidate card gives no fixed therapeutic dose (§13.1, §19.13)."""
        a, p = self.a, self.p
        if a.inputs.weight is None:
            return (f"Weigh the patient today (no weight in the last {num(p['window.weight_days'], 0)} days); then "
                    "the therapeutic dose is 1 mg/kg")
        per_dose = p["therapeutic.enoxaparin_mg_per_kg"] * a.anthropometrics.weight_kg \
            if a.anthropometrics.weight_kg is not None else None
        if per_dose is not None and round(per_dose, 6) > p["therapeutic.max_dose_mg"]:
            return f"therapeutic dose {t.LOCAL_CAP}"
        return "renal function does not allow a fixed therapeutic dose: the local protocol (UFH)"

    def signal_why(self) -> str:
        a = self.a
        parts = []
        if "sic_positive" in a.seed_trigger.reasons:
            parts.append(f"SIC {a.sic.total if a.sic.total is not None else 'positive'}: platelets "
                         f"{t.reported(a.inputs.platelets, 0)}, INR {t.reported(a.inputs.inr, 1)}")
        if "d_dimer_gt_6x_uln" in a.seed_trigger.reasons:
            parts.append(self.d_dimer_why())
        return "; ".join(parts)

    def dose_review(self):
        """An active heparin at a dose the order check would change (same rules as the draft check)."""
        a = self.a
        for e in self.heparins:
            if e.kind != "order" or e.source not in self.orders:
                continue
            order = self.orders[e.source][0]
            check = check_order(order, a, self.p)
            finding = check.finding("dose_change") or check.finding("renal_dose")
            if finding is None or finding.proposed is None or finding.action not in (None, "update"):
                continue
            target = finding.proposed
            proposed = t.dose_text(target.ingredient, target.dose_mg, target.dose_units, target.doses_per_day)
            short = proposed.removeprefix(t.DRUG.get(target.ingredient, target.ingredient) + " ")
            context = self.review_context(finding.reasons)
            summary = self.t.summary["dose_review"].format(active=t.order_text(order), context=context, dose=short)
            summary = summary[0].upper() + summary[1:]
            indicator = getattr(finding, "urgency", None) or "warning"
            why = f"**Why:** {md(t.order_text(order))} is active; the recommended dose differs ({context})."
            dose = self.body_dose(_as_regimen(target, a.regimen))
            return self._finish("dose_review", indicator, summary, why, dose, self.t.evidence_for("dose_review"),
                                recommendation=("dose_review", target.ingredient, target.dose_mg or target.dose_units,
                                                target.doses_per_day))
        return None

    def severe_renal_review(self):
        """§19.3 (v3): an ACTIVE LMWH of intermediate or therapeutic intensity at CrCl < 15 or on
        renal replacement: `dose_review` with the order check's urgency and text (critical twice
        daily, warning once daily). No suggestion: the treating team decides the UFH plan."""
        a = self.a
        for e in self.heparins:
            if e.kind != "order" or e.source not in self.orders:
                continue
            order = self.orders[e.source][0]
            if order.ingredient not in ("enoxaparin", "dalteparin", "tinzaparin"):
                continue
            check = check_order(order, a, self.p)
            f = next((f for f in check.findings if f.kind in ("dose_above_maximum", "renal_dose")
                      and f.reasons and f.reasons[0] == "crcl_lt_15" and f.action == "delete"), None)
            switch = next((f for f in check.findings if f.kind == "switch_product" and f.reasons
                           and f.reasons[0] == "crcl_lt_15" and f.proposed is not None), None)
            if f is None and switch is not None:
                # §19.3 row 'CrCl < 15 or renal replacement | prophylactic intent | warning; update to
                # UFH': the order check would change this order, so patient-view says so (§18.1
                # dose_review, warning, no suggestion; review H5)
                renal = self.renal_phrase()
                ufh = t.dose_text(switch.proposed.ingredient, switch.proposed.dose_mg, switch.proposed.dose_units,
                                  switch.proposed.doses_per_day)
                summary = f"{t.order_text(order)} active; {renal}: consider {ufh}"
                summary = summary[0].upper() + summary[1:]
                why = f"**Why:** {md(t.order_text(order))} is active; {renal}: LMWH accumulates."
                dose = f"**Action:** consider {md(ufh)} instead of the LMWH (renal replacement or CrCl < 15)."
                return self._finish("dose_review", switch.urgency or "warning", summary, why, dose,
                                    t.V3_EVIDENCE["renal_severe"],
                                    recommendation=("dose_review", "crcl_lt_15", order.ingredient,
                                                    order.dose_mg, order.doses_per_day))
            if f is None:
                continue
            renal = self.renal_phrase()
            twice = f.kind == "dose_above_maximum"
            summary = (f"{t.order_text(order)} active; {renal}: "
                       + ("twice-daily LMWH not studied" if twice else "review LMWH"))
            summary = summary[0].upper() + summary[1:]
            why = f"**Why:** {md(t.order_text(order))} is active; {renal}: LMWH accumulates."
            dose = "**Action:** " + t.V3_ACTION["renal_ufh_protocol"]
            return self._finish("dose_review", f.urgency or "warning", summary, why, dose,
                                t.V3_EVIDENCE["renal_severe"],
                                recommendation=("dose_review", "crcl_lt_15", order.ingredient,
                                                order.dose_mg, order.doses_per_day))
        return None

    def renal_phrase(self) -> str:
        """§19.3: "On renal replacement (last session D)", never a post-dialysis CrCl."""
        r = self.a.renal
        if r.renal_replacement is True:
            phrase = t.rrt_phrase(self.a.inputs)
            return phrase[:1].lower() + phrase[1:]
        return f"CrCl {shown('crcl', r.crcl_ml_min, 1, self.p)} mL/min" if r.crcl_ml_min is not None else "CrCl unknown"

    def review_context(self, reasons) -> str:
        a = self.a
        if any(r.startswith("crcl") or r == "renal_frequency" for r in reasons) and a.renal.crcl_ml_min is not None:
            return f"CrCl {shown('crcl', a.renal.crcl_ml_min, 1, self.p)} mL/min"
        if a.anthropometrics.bmi is not None:
            return f"BMI {shown('bmi', a.anthropometrics.bmi, 1, self.p)}"
        return "weight and renal function"


# -- the catalogue as data ----------------------------------------------------------------------------
NEXT = object()   # a card function's "this row does not apply after all": the next row is tried

# (situation, applies, card): §18.1 in order, the first row that applies gives the card (the
# module docstring's table). A card of None: no card at all.
SITUATIONS = (
    ("contraindicated", lambda b: b.pathway == "contraindicated" and not b.acute, _Builder.contraindicated),
    ("hit_acute", lambda b: b.acute and bool(b.heparins or b.flushes or not b.non_heparin), _Builder.hit_acute),
    ("hit_acute_vka",                                   # v3 §19.1 (v3-orders)
     lambda b: b.acute and any(e.drug_class == "vka" and e.kind == "order" for e in b.active),
     _Builder.hit_acute_vka),
    ("hit_suspected", lambda b: "hit_suspected" in b.ci, _Builder.hit_suspected),
    # §19.0 fails closed (review-v3 H10): before any dose or candidate card
    ("unreadable_safety", lambda b: bool(b.unreadable), _Builder.unreadable_safety),
    ("heparin_specific_active", lambda b: bool(b.specific and b.heparins),
     lambda b: b.heparin_specific_active(b.specific)),
    ("duplicate_anticoagulant", lambda b: bool(b.a.safety.duplicate), _Builder.duplicate),
    ("heparin_avoidance", lambda b: bool(b.specific and not b.active), lambda b: b.heparin_avoidance(b.specific)),
    ("severe_renal_review", lambda b: True, _Builder.severe_renal_or_next),
    # §19.4 ECMO guard: no prophylaxis, standard, candidate or deescalate card
    ("ecmo", lambda b: b.ecmo and not b.active, _Builder.ecmo_card),
    ("ecmo_active", lambda b: b.ecmo, _Builder.ecmo_active),
    ("deescalate", lambda b: b.pathway in ("deescalate", "review_therapeutic"), _Builder.deescalate),
    ("therapeutic_candidate_none", lambda b: b.pathway == "therapeutic_candidate" and not b.active,
     _Builder.candidate_none),
    ("therapeutic_candidate_on", lambda b: b.pathway == "therapeutic_candidate", _Builder.candidate_on_one),
    ("prophylaxis", lambda b: b.pathway == "prophylaxis" and not b.active, _Builder.prophylaxis_none),
    ("dose_review", lambda b: b.pathway == "prophylaxis", _Builder.dose_review),
)


# -- helpers ----------------------------------------------------------------------------------------
def _as_regimen(target, regimen):
    try:
        return replace(regimen, drug=target.ingredient, dose_mg=target.dose_mg, dose_units=target.dose_units,
                       doses_per_day=target.doses_per_day)
    except (TypeError, ValueError):
        return regimen


def _is_anticoagulant_request(resource) -> bool:
    """A created MedicationRequest: every drug this service suggests is an anticoagulant."""
    return isinstance(resource, dict) and resource.get("resourceType") == "MedicationRequest"


def _without_creates(suggestions) -> list[dict]:
    out = []
    for s in suggestions:
        actions = [a for a in s["actions"] if a.get("type") != "create"]
        if actions:
            out.append({**s, "actions": actions})
    return out


def with_recommendation(issued, recommendation: tuple | None):
    """IssuedCard.recommendation (the card lifecycle's fingerprint, §18.3), when the storage
    layer has the field."""
    if recommendation is None or "recommendation" not in {f.name for f in fields(issued)}:
        return issued
    return replace(issued, recommendation=tuple(recommendation))
