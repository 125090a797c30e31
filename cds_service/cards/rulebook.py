"""The rule behind each card kind, as the service's own rule page shows it (GET /docs/rules,
cds_service/docs_page). Each card's `source.url` points at its kind's entry.

For each kind: the rules section, the rule (condensed from clinical-rules.md v2 §10, §11, §13,
§18; wording kept close to the rule text), the policy keys that decide it (the page shows this
site's values) and the evidence keys (vocabulary.EVIDENCE) it cites. Card vocabulary: it knows
nothing of units or FHIR.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    kind: str
    sections: str
    hooks: str
    rule: tuple[str, ...]
    policy_keys: tuple[str, ...]
    evidence: tuple[str, ...]

    def __post_init__(self):
        # A one-paragraph rule written `("text")` is a str, not a tuple: iterated, it rendered
        # one character per line on /docs/rules (§19.13). Normalise it to one paragraph.
        if isinstance(self.rule, str):
            object.__setattr__(self, "rule", (self.rule,))


_NEURAXIAL = ("Every card whose suggestion gives heparin or enoxaparin adds one check line: neuraxial "
              "catheter or puncture, follow the timing rules (boxed warning).")

RULES: tuple[Rule, ...] = (
    Rule("contraindicated", "§10.1, §13.1 (contraindicated), §18.1, §18.4", "patient-view, order-select, order-sign",
         ("An absolute stop for any pharmacological prophylaxis: active bleeding, platelets below the absolute "
          "minimum, or fibrinogen below its absolute minimum. An abnormal PT or aPTT alone is not a "
          "contraindication.",
          "With an anticoagulant active the card is critical and suggests deleting the concerned orders, unless "
          "another indication for anticoagulation is recorded (then: review with the treating team). With nothing "
          "active it is a warning: consider mechanical prophylaxis.",
          "Heparin-specific contraindications (recent HIT, HIT history, heparin allergy) with a heparin active: "
          "critical for recent HIT, warning otherwise; delete the heparin and, when the regimen gives it, create "
          "fondaparinux. In the order hooks a heparin draft with acute, recent or suspected HIT is critical with a "
          "suggestion deleting the draft."),
         ("safety.platelets_abs_min", "safety.fibrinogen_abs_min_g_l", "safety.hit_acute_days",
          "hit.fondaparinux_min_crcl", "hit.fondaparinux_min_weight_kg"),
         ("isth_interim_2020", "ash_hit_2018", "enoxaparin_label")),
    Rule("hit_acute", "§10.1 (hit_acute), §13.1", "patient-view, order-select, order-sign",
         ("HIT with a dated onset within the acute window and a latest platelet count below 150 ×10⁹/L "
          "(platelets not yet recovered). Stop all heparin, including flushes and locks (§19.4); a therapeutic-intensity "
          "non-heparin anticoagulant (argatroban, bivalirudin, fondaparinux at treatment dose, or a DOAC) is "
          "needed, with haematology. No prophylaxis is suggested.",
          "No card when no heparin is active and a non-heparin anticoagulant is already running."),
         ("safety.hit_acute_days", "window.labs_hours"),
         ("ash_hit_2018", "warkentin_2001")),
    Rule("hit_suspected", "§10.1 (hit_suspected), §18.1", "patient-view, order-select, order-sign",
         ("No HIT recorded, a heparin active or given for 5 days or more, and the platelet count fell by 50 % or "
          "more from the highest value since heparin started, or to below 100 from 150 ×10⁹/L or more, within the "
          "platelet trend window. Heparin-specific: assess for HIT with the 4Ts score."),
         ("window.platelet_trend_days",),
         ("ash_hit_2018",)),
    Rule("duplicate_anticoagulant", "§10.4, §18.1, §18.4", "patient-view, order-select, order-sign",
         ("Two or more active anticoagulant orders or home medicines (the same ingredient twice counts), or a "
          "drafted anticoagulant while another is active or drafted, whatever the dose class. Heparin flushes, "
          "pressure bags and catheter locks (§19.4) do not count; ECMO and CRRT circuit heparin does. The card asks to confirm that the other agent stops.",
          "Urgency: critical when two are therapeutic-class (and for a heparin drafted while argatroban, "
          "bivalirudin or therapeutic fondaparinux runs); info for a VKA with a parenteral anticoagulant while the "
          "latest INR is below 2 (the deliberate bridge); warning otherwise. No create suggestion on any card "
          "while a non-heparin anticoagulant is active."),
         ("window.labs_hours",),
         ("dose_classes_2023", "isth_2022")),
    Rule("heparin_avoidance", "§10.1, §11 row 1, §18.1, §18.4", "patient-view, order-select, order-sign",
         ("Recent HIT, HIT history or heparin allergy and no heparin active: avoid heparins. Fondaparinux 2.5 mg "
          "SC daily when CrCl and weight are known and at or above their floors (label contraindication below 50 kg "
          "and at CrCl below 30 mL/min); otherwise a non-heparin agent through a specialist.",
          "In the order hooks a heparin draft with HIT history (more than 100 days ago, or undated) is a warning: "
          "switch to fondaparinux when the regimen gives it, else delete the draft with specialist advice."),
         ("hit.fondaparinux_mg", "hit.fondaparinux_min_crcl", "hit.fondaparinux_min_weight_kg",
          "hit.fondaparinux_moderate_crcl_below", "hit.fondaparinux_moderate_mg"),
         ("ash_hit_2018", "fondaparinux_label")),
    Rule("deescalate", "§13.1 (deescalate, review_therapeutic), §18.1", "patient-view",
         ("Critically ill on a therapeutic-dose heparin or LMWH started this encounter, with no other indication "
          "for anticoagulation, no ECMO and no renal replacement circuit: consider switching to the prophylactic "
          "regimen unless VTE or another indication is confirmed.",
          "Also for a therapeutic-dose heparin with an escalation caution (platelets below 50, haemoglobin below 8, "
          "recent bleeding, recent intracranial haemorrhage, severe liver disease, dual antiplatelet therapy, a "
          "bleeding disorder): these are the NIH contraindications to therapeutic dosing.",
          _NEURAXIAL),
         ("safety.platelets_caution_min", "safety.hemoglobin_caution_min_g_dl", "safety.recent_bleeding_days",
          "safety.recent_ich_days"),
         ("attacc_critical_2021", "ash_2022_critical", "nih_2024")),
    Rule("therapeutic_candidate", "§13.1 (therapeutic_candidate), §18.1", "patient-view",
         ("Not critically ill, on low-flow oxygen, D-dimer above the upper limit of normal, no escalation caution "
          "(platelet count and haemoglobin checked in the labs window), not pregnant, no heparin-specific "
          "contraindication, no renal replacement: therapeutic-dose LMWH for 14 days or until discharge is an "
          "option, with the prophylactic regimen as the alternative (one or the other).",
          "Enoxaparin 1 mg/kg actual body weight per dose, rounded to 10 mg, twice daily at CrCl 30 mL/min or more, "
          "once daily at 15 to below 30; the local protocol (UFH infusion) when weight or CrCl is unknown, CrCl is "
          "below 15, creatinine is rising or the dose would exceed 150 mg. Anti-Xa with the therapeutic targets at "
          "BMI 40 or more or weight above 120 kg. Therapeutic DOACs are not recommended.",
          "Do not add an antiplatelet for COVID-19 [ISTH 2023]. " + _NEURAXIAL),
         ("escalation.enabled", "escalation.d_dimer_multiple", "escalation.require_low_flow",
          "therapeutic.enoxaparin_mg_per_kg", "antixa.target_therapeutic_q12h", "antixa.target_therapeutic_q24h"),
         ("ash_2022_acute", "attacc_noncritical_2021", "isth_2023", "hep_covid_2021")),
    Rule("prophylaxis_suggestion", "§8, §11, §13.1 (prophylaxis), §18.1", "patient-view",
         ("Prophylaxis pathway, nothing active, the 2020 coagulopathy signal met (SIC positive, or D-dimer above "
          "six times its upper limit), not pregnant: consider the prophylactic regimen. The signal is prognostic "
          "context and the card's urgency; it never changes the recommendation.",
          "Regimen: enoxaparin 40 mg SC daily; 60 mg at BMI 30 or more and 80 mg at BMI 40 or more; 30 mg at CrCl "
          "below 30 mL/min; UFH 5,000 units SC twice daily below CrCl 15 or on renal replacement. Anti-Xa "
          "monitoring when indicated. " + _NEURAXIAL),
         ("d_dimer.marked_multiple", "sic.positive_total", "dosing.standard_mg", "dosing.bmi_tier1",
          "dosing.bmi_tier1_mg", "dosing.bmi_tier2", "dosing.bmi_tier2_mg", "renal.crcl_cutoff",
          "renal.enoxaparin_mg", "renal.severe_crcl_cutoff", "renal.ufh_units", "antixa.target_prophylactic"),
         ("isth_interim_2020", "tang_2020", "piagnerelli_2020")),
    Rule("standard_prophylaxis", "§11, §13.1 (prophylaxis), §18.1", "patient-view",
         ("Prophylaxis pathway, nothing active (no anticoagulant order or home medicine), no signal: every admitted "
          "COVID-19 patient should get prophylaxis unless contraindicated. In pregnancy the card says to follow "
          "the obstetric thromboprophylaxis protocol and offers no order. " + _NEURAXIAL,),
         ("dosing.standard_mg", "dosing.pending_weight_mg", "renal.crcl_cutoff", "renal.enoxaparin_mg"),
         ("isth_interim_2020", "ash_2021")),
    Rule("dose_review", "§11 (order check urgency), §18.1", "patient-view",
         ("Prophylaxis pathway with a heparin active at a dose the order check would change (BMI tier, renal "
          "dose). BMI 30 to below 40 with the standard dose: info; BMI 40 or more: warning. Obesity equivalents "
          "(80 mg daily or 40 mg twice daily at BMI 40 or more) and 30 or 40 mg daily below 50 kg are accepted. "
          "No suggestion: patient-view has no draft to update."),
         ("dosing.bmi_tier1", "dosing.bmi_tier2", "cards.bmi_tier1_indicator", "cards.bmi_tier2_indicator",
          "orders.bmi_tier2_equivalents", "orders.low_weight_accepted_mg"),
         ("piagnerelli_2020", "enoxaparin_label")),
    Rule("dose_correction", "§11, §18.4", "order-select, order-sign",
         ("A drafted heparin whose dose or frequency differs from the regimen: an update of the draft to the "
          "regimen (same order, dose and timing changed). BMI-tier urgency from the policy; obesity equivalents and "
          "low-weight doses are accepted; at CrCl below 30 mL/min a therapeutic dose is given once daily. Count "
          "units (one syringe, pill or dose of a single-dose product) read as the product's strength."),
         ("dosing.bmi_tier1", "dosing.bmi_tier2", "cards.bmi_tier1_indicator", "cards.bmi_tier2_indicator",
          "orders.bmi_tier2_equivalents", "orders.low_weight_accepted_mg", "renal.crcl_cutoff"),
         ("enoxaparin_label", "piagnerelli_2020")),
    Rule("product_switch", "§11 rows 1 and 3a, §18.4", "order-select, order-sign",
         ("A drafted heparin that should be another product: fondaparinux for a heparin-specific contraindication "
          "(when weight and CrCl allow it), UFH below CrCl 15 mL/min or on renal replacement. One suggestion: "
          "create the new product, then delete the draft."),
         ("hit.fondaparinux_min_crcl", "hit.fondaparinux_min_weight_kg", "renal.severe_crcl_cutoff",
          "renal.ufh_units", "renal.ufh_doses_per_day"),
         ("enoxaparin_label", "fondaparinux_label", "hep_covid_2021")),
    Rule("escalation_warning", "§13, §13.1, §18.4", "order-select, order-sign",
         ("An intermediate or therapeutic draft in a critically ill patient, or with an escalation caution: "
          "prophylactic dose only, unless VTE or another indication. Never for ECMO or another recorded "
          "indication for anticoagulation, nor for a therapeutic draft in a therapeutic candidate, nor for the "
          "regimen itself or an accepted obesity equivalent."),
         ("critical.modalities", "safety.platelets_caution_min", "safety.hemoglobin_caution_min_g_dl"),
         ("inspiration_2021", "attacc_critical_2021", "ash_2022_critical", "nih_2024")),
    Rule("anti_xa", "§12", "order-select, order-sign",
         ("LMWH drafted at the right dose with a monitoring reason (BMI 40 or more, weight above 120 kg or below "
          "50 kg, CrCl below 30, escalated or therapeutic dose): a peak anti-Xa level 4 h after a dose from the "
          "3rd dose on, LMWH-calibrated; a trough before the next dose in renal impairment."),
         ("antixa.trigger_bmi", "antixa.trigger_weight_high_kg", "antixa.trigger_weight_low_kg",
          "antixa.target_prophylactic", "antixa.peak_hours_post_dose", "antixa.steady_state_after_dose",
          "antixa.trough_max"),
         ("enoxaparin_label",)),
    Rule("not_determinable", "§0 (missing data), §16 cards.not_determinable", "order-select, order-sign",
         ("A draft whose dose cannot be checked because a deciding input (weight, CrCl) is missing or out of date: "
          "an info card naming what is missing, unless the policy turns it off. Nothing is guessed."),
         ("cards.not_determinable", "window.labs_hours", "window.weight_days"),
         ("isth_interim_2020",)),
    Rule("dose_above_maximum", "§19.2, §19.3 (v3)", "order-select, order-sign",
         ("A drafted anticoagulant above the labelled maximum: enoxaparin more than twice a day, above 1 mg/kg twice "
          "daily or 1.5 mg/kg once daily (weight-based maximum rounded up to the 10 mg step), or at CrCl below 30 "
          "mL/min above 30 mg twice daily or 1 mg/kg once daily; twice-daily therapeutic LMWH at CrCl below 15 or on "
          "renal replacement; fondaparinux above its weight band (5 / 7.5 / 10 mg); dalteparin above 200 IU/kg or "
          "18,000 IU a day; tinzaparin above 175 IU/kg; a DOAC above its maximum per dose or per day. Critical; the "
          "draft is updated to the labelled dose where there is one, else the text names the maximum."),
         ("orders.enoxaparin_max_mg_kg_q12h", "orders.enoxaparin_max_mg_kg_daily", "orders.doac_max",
          "hit.fondaparinux_treatment_bands", "renal.rrt_equivalent_crcl"),
         ("enoxaparin_label", "fondaparinux_label", "doac_labels")),
    Rule("order_caution", "§19.1, §19.3, §19.4 (v3)", "order-select, order-sign",
         ("A drafted anticoagulant with a caution that does not change the dose by one click (warning): a DOAC in "
          "pregnancy; a VKA or DOAC with severe liver disease; argatroban with bilirubin above 1.5 mg/dL or in "
          "critical illness (start at 0.5 µg/kg/min); a DOAC or VKA on ECMO, an LMWH or fondaparinux on ECMO; a "
          "strong CYP3A4/P-gp inhibitor (nirmatrelvir/ritonavir, ketoconazole, itraconazole, clarithromycin) with "
          "a DOAC; the DOAC renal label rules on actual-weight CrCl; dalteparin or tinzaparin at CrCl below 30; "
          "renal impairment with obesity; a fondaparinux dose between 2.5 mg and the weight band's dose."),
         ("safety.argatroban_bilirubin_caution_mg_dl", "hit.fondaparinux_treatment_bands"),
         ("doac_labels", "bates_2018", "argatroban_label", "witt_2018")),
)

# v3-exposure (clinical-rules §19.4)
RULES += (
    Rule("ecmo", "§19.4 (ECMO guard)", "patient-view",
         ("ECMO in progress: the circuit is anticoagulated by its own protocol, which the COVID-19 trials did "
          "not study. Patient-view shows no prophylaxis, standard-prophylaxis, therapeutic-candidate or "
          "de-escalation card and no create suggestion; when no anticoagulant is seen, one info card: on ECMO, "
          "anticoagulation by the ECMO protocol (shown at most once per repeat window). Circuit heparin (ECMO "
          "or CRRT) counts as anticoagulant exposure but never triggers a de-escalation or review card. With HIT "
          "on ECMO the text names bivalirudin or argatroban."),
         ("cards.info_repeat_hours", "critical.modalities"),
         ("elso_2021",)),
)

BY_KIND = {r.kind: r for r in RULES}
