"""Our own code systems and the fixed card furniture: source, card kinds, override reasons,
evidence links. Defined here once; cards, the audit trail and the feedback report use them.

- Card kind (`CARD_KIND_SYSTEM`): what a card is about. It is the card's `source.topic`, and
  the audit trail keeps it with the card uuid so feedback can be reported per kind.
- Override reason (`OVERRIDE_REASON_SYSTEM`): the reasons a clinician can pick when
  dismissing a card. Each card kind offers the subset that makes sense for it.
"""
from __future__ import annotations

ORGANISATION_URL = "https://cds.example.org/"
SOURCE_LABEL = "COVID-19 coagulopathy CDS"

CARD_KIND_SYSTEM = "https://cds.example.org/CodeSystem/card-kind"
OVERRIDE_REASON_SYSTEM = "https://cds.example.org/CodeSystem/override-reason"

# code -> display
CARD_KINDS = {
    "prophylaxis_suggestion": "Coagulopathy signal: prophylactic LMWH suggested",
    "standard_prophylaxis": "No anticoagulant ordered: standard prophylaxis suggested",
    "contraindicated": "Pharmacological prophylaxis contraindicated",
    "not_determinable": "Advice not determinable: inputs missing or out of date",
    "dose_correction": "Draft anticoagulant dose differs from the recommended dose",
    "product_switch": "Draft anticoagulant should be a different product",
    "escalation_warning": "Above-prophylactic dose drafted in a critically ill patient",
    "anti_xa": "Anti-Xa monitoring indicated",
    "duplicate_anticoagulant": "Draft anticoagulant while a therapeutic anticoagulant is active",
}

OVERRIDE_REASONS = {
    "clinical-judgement": "Clinical judgement: not appropriate for this patient",
    "bleeding-risk": "Bleeding risk judged too high",
    "already-addressed": "Already addressed (ordered, held or under review)",
    "data-inaccurate": "Patient data shown is inaccurate or out of date",
    "specialist-advice": "Following haematology or specialist advice",
    "contraindication-not-current": "Contraindication no longer applies",
    "therapeutic-indication": "Therapeutic anticoagulation for another indication (e.g. VTE, AF)",
    "patient-declined": "Patient declined",
    "comfort-care": "Comfort or end-of-life care",
}

# Which reasons each kind offers, most likely first.
KIND_OVERRIDE_REASONS = {
    "prophylaxis_suggestion": ("already-addressed", "bleeding-risk", "therapeutic-indication",
                               "data-inaccurate", "specialist-advice", "patient-declined",
                               "comfort-care", "clinical-judgement"),
    "standard_prophylaxis": ("already-addressed", "bleeding-risk", "therapeutic-indication",
                             "data-inaccurate", "patient-declined", "comfort-care", "clinical-judgement"),
    "contraindicated": ("contraindication-not-current", "data-inaccurate", "specialist-advice",
                        "therapeutic-indication", "clinical-judgement"),
    "not_determinable": ("already-addressed", "data-inaccurate", "clinical-judgement"),
    "dose_correction": ("therapeutic-indication", "specialist-advice", "data-inaccurate",
                        "bleeding-risk", "clinical-judgement"),
    "product_switch": ("contraindication-not-current", "specialist-advice", "data-inaccurate",
                       "clinical-judgement"),
    "escalation_warning": ("therapeutic-indication", "specialist-advice", "data-inaccurate",
                           "clinical-judgement"),
    "anti_xa": ("already-addressed", "specialist-advice", "clinical-judgement"),
    "duplicate_anticoagulant": ("already-addressed", "therapeutic-indication", "specialist-advice",
                                "data-inaccurate", "clinical-judgement"),
}

# Evidence links: key -> (label, absolute URL). DOIs of the sources in clinical-rules.md §17.
EVIDENCE = {
    "tang_2020": ("Tang 2020: heparin and mortality in COVID-19 coagulopathy (J Thromb Haemost)",
                  "https://doi.org/10.1111/jth.14817"),
    "iba_sic_2017": ("Iba 2017: sepsis-induced coagulopathy score (BMJ Open)",
                     "https://doi.org/10.1136/bmjopen-2017-017046"),
    "isth_interim_2020": ("ISTH interim guidance 2020 (J Thromb Haemost)",
                          "https://doi.org/10.1111/jth.14810"),
    "attacc_critical_2021": ("REMAP-CAP/ACTIV-4a/ATTACC 2021: critically ill (N Engl J Med)",
                             "https://doi.org/10.1056/NEJMoa2103417"),
    "attacc_noncritical_2021": ("REMAP-CAP/ACTIV-4a/ATTACC 2021: non-critically ill (N Engl J Med)",
                                "https://doi.org/10.1056/NEJMoa2105911"),
    "inspiration_2021": ("INSPIRATION 2021: intermediate vs standard dose in ICU (JAMA)",
                         "https://doi.org/10.1001/jama.2021.4152"),
    "hep_covid_2021": ("HEP-COVID 2021: therapeutic vs standard heparin (JAMA Intern Med)",
                       "https://doi.org/10.1001/jamainternmed.2021.6203"),
    "ash_2021": ("ASH 2021 guideline: anticoagulation in COVID-19 (Blood Adv)",
                 "https://doi.org/10.1182/bloodadvances.2020003763"),
    "isth_2022": ("ISTH 2022 guideline: antithrombotic treatment in COVID-19 (J Thromb Haemost)",
                  "https://doi.org/10.1111/jth.15808"),
    "dose_classes_2023": ("Trial-pooled heparin dose classes (Clin Transl Sci 2023)",
                          "https://pmc.ncbi.nlm.nih.gov/articles/PMC10499427/"),
}

# Short citations for the detail's "Sources" list (the links carry the URLs).
CITATIONS = {
    "tang_2020": "Tang N et al. J Thromb Haemost 2020;18:1094-1099",
    "iba_sic_2017": "Iba T et al. BMJ Open 2017;7:e017046",
    "isth_dic_2001": "Taylor FB Jr et al. Thromb Haemost 2001;86:1327-1330 (ISTH overt DIC)",
    "isth_interim_2020": "Thachil J et al. J Thromb Haemost 2020;18:1023-1026",
    "piagnerelli_2020": "Piagnerelli M et al. Crit Care Med 2020 (letter: BMI-adjusted enoxaparin, anti-Xa)",
    "enoxaparin_label": "Enoxaparin prescribing information (renal dosing, HIT, hypersensitivity)",
    "attacc_critical_2021": "REMAP-CAP, ACTIV-4a, ATTACC Investigators. N Engl J Med 2021;385:777-789",
    "attacc_noncritical_2021": "ATTACC, ACTIV-4a, REMAP-CAP Investigators. N Engl J Med 2021;385:790-802",
    "inspiration_2021": "INSPIRATION Investigators (Sadeghipour P et al.). JAMA 2021;325:1620-1630",
    "hep_covid_2021": "Spyropoulos AC et al. JAMA Intern Med 2021;181:1612-1620",
    "ash_2021": "Cuker A et al. Blood Adv 2021;5:872-888 (ASH; updates 2021-2022)",
    "isth_2022": "Schulman S et al. J Thromb Haemost 2022;20:2214-2225 (ISTH)",
    "nih_2022": "NIH COVID-19 Treatment Guidelines, antithrombotic therapy (2022)",
    "chest_2022": "Moores LK et al. Chest 2022;162:213-225 (CHEST)",
    "dose_classes_2023": "Clin Transl Sci 2023, PMC10499427, Table 1 (dose classes)",
    "anti_xa_lab": "Laboratory guidance on LMWH anti-Xa sampling (peak 4 h post dose)",
}


def topic(kind: str) -> dict[str, str]:
    return {"system": CARD_KIND_SYSTEM, "code": kind, "display": CARD_KINDS[kind]}


def override_reasons(kind: str) -> list[dict[str, str]]:
    return [{"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": OVERRIDE_REASONS[code]}
            for code in KIND_OVERRIDE_REASONS[kind]]


def links(*keys: str) -> list[dict[str, str]]:
    return [{"label": EVIDENCE[k][0], "url": EVIDENCE[k][1], "type": "absolute"} for k in keys]
