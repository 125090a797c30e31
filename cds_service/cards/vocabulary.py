"""Our own code systems and the fixed card furniture: source, card kinds, override reasons,
evidence links. Defined here once; cards, the audit trail and the feedback report use them.

- Card kind (`CARD_KIND`, system `system_url(CARD_KIND, base)`): what a card is about. It is the card's `source.topic`, and
  the audit trail keeps it with the card uuid so feedback can be reported per kind.
- Override reason (`OVERRIDE_REASON`): the reasons a clinician can pick when
  dismissing a card. Each card kind offers the subset that makes sense for it.
"""
from __future__ import annotations

SOURCE_LABEL = "COVID-19 coagulopathy CDS: rule and evidence"
# The page the service itself serves for each card kind (cds_service/docs_page): the rule, its
# policy keys with this site's values, and its citations. A card's source.url is
# <public base URL> + DOCS_PATH + "#" + kind.
DOCS_PATH = "/docs/rules"

# Code systems of our own codings (card kind as source.topic, override reasons), minted under
# the service's public base (issue 23): <base>/fhir/CodeSystem/<name>, where the service serves
# each as a FHIR R4 CodeSystem (cds_service/cards/terminology.py). The base is the policy's
# `vocabulary.system_base` when a site sets one, else CDS_PUBLIC_BASE_URL (cards/build.py).
CODE_SYSTEM_PATH = "/fhir/CodeSystem"
CARD_KIND = "card-kind"
OVERRIDE_REASON = "override-reason"
# The URIs before issue 23 (a placeholder domain): rows written with them are read as the same
# codes (terminology.our_code).
LEGACY_SYSTEMS = {CARD_KIND: "https://cds.example.org/CodeSystem/card-kind",
                  OVERRIDE_REASON: "https://cds.example.org/CodeSystem/override-reason"}

# code -> display
CARD_KINDS = {
    # patient-view (clinical-rules §18.1)
    "contraindicated": "Anticoagulation contraindicated",
    "hit_acute": "Acute heparin-induced thrombocytopenia",
    "hit_suspected": "Platelet fall on heparin: assess for HIT",
    "duplicate_anticoagulant": "Two anticoagulants active or drafted",
    "heparin_avoidance": "Heparin-specific contraindication: avoid heparins",
    "deescalate": "Therapeutic anticoagulation to review: consider prophylactic dose",
    "therapeutic_candidate": "Therapeutic-dose heparin is an option",
    "prophylaxis_suggestion": "Coagulopathy signal: prophylactic LMWH suggested",
    "standard_prophylaxis": "No anticoagulant ordered: standard prophylaxis suggested",
    "dose_review": "Active heparin dose differs from the recommended dose",
    # order hooks (§18.4) and policy options
    "not_determinable": "Advice not determinable: inputs missing or out of date",
    "dose_correction": "Draft anticoagulant dose differs from the recommended dose",
    "product_switch": "Draft anticoagulant should be a different product",
    "escalation_warning": "Above-prophylactic dose drafted without an indication for it",
    "anti_xa": "Anti-Xa monitoring indicated",
    # v3 order check (clinical-rules §19.2, §19.3)
    "dose_above_maximum": "Draft anticoagulant dose above the labelled maximum",
    "order_caution": "Draft anticoagulant: a caution to check before signing",
    # v3 (clinical-rules §19.4)
    "ecmo": "On ECMO: anticoagulation by the ECMO protocol",
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

_SUGGEST = ("already-addressed", "bleeding-risk", "therapeutic-indication", "data-inaccurate",
            "specialist-advice", "patient-declined", "comfort-care", "clinical-judgement")
_STOP = ("contraindication-not-current", "data-inaccurate", "specialist-advice",
         "therapeutic-indication", "clinical-judgement")
_DOSE = ("therapeutic-indication", "specialist-advice", "data-inaccurate", "bleeding-risk",
         "clinical-judgement")

# Which reasons each kind offers, most likely first.
KIND_OVERRIDE_REASONS = {
    "contraindicated": _STOP,
    "hit_acute": ("specialist-advice", "already-addressed", "contraindication-not-current",
                  "data-inaccurate", "clinical-judgement"),
    "hit_suspected": ("already-addressed", "specialist-advice", "data-inaccurate", "clinical-judgement"),
    "duplicate_anticoagulant": ("already-addressed", "therapeutic-indication", "specialist-advice",
                                "data-inaccurate", "clinical-judgement"),
    "heparin_avoidance": ("already-addressed", "contraindication-not-current", "specialist-advice",
                          "data-inaccurate", "clinical-judgement"),
    "deescalate": ("therapeutic-indication", "specialist-advice", "data-inaccurate", "clinical-judgement"),
    "therapeutic_candidate": ("bleeding-risk", "already-addressed", "specialist-advice", "data-inaccurate",
                              "patient-declined", "clinical-judgement"),
    "prophylaxis_suggestion": _SUGGEST,
    "standard_prophylaxis": tuple(r for r in _SUGGEST if r != "specialist-advice"),
    "dose_review": _DOSE,
    "not_determinable": ("already-addressed", "data-inaccurate", "clinical-judgement"),
    "dose_correction": _DOSE,
    "product_switch": ("contraindication-not-current", "specialist-advice", "data-inaccurate",
                       "clinical-judgement"),
    "escalation_warning": ("therapeutic-indication", "specialist-advice", "data-inaccurate",
                           "clinical-judgement"),
    "anti_xa": ("already-addressed", "specialist-advice", "clinical-judgement"),
    "dose_above_maximum": ("therapeutic-indication", "specialist-advice", "data-inaccurate", "clinical-judgement"),
    "order_caution": ("already-addressed", "specialist-advice", "therapeutic-indication", "data-inaccurate",
                      "clinical-judgement"),
    "ecmo": ("already-addressed", "specialist-advice", "clinical-judgement"),
}

# Sources: key -> (label, absolute URL, short citation, verified). EVIDENCE (label, URL) and
# CITATIONS (short citation) below are derived from it; other modules read those two.
# `verified`: the identifier (DOI or page) was checked against a copy of the publisher's or
# PubMed's record; False: written from the rules or from memory, not yet checked. Where a DOI
# could not be checked but the publisher's page could, the page is linked instead.
SOURCES = {
    "tang_2020": ("Tang 2020: heparin and mortality in COVID-19 coagulopathy (J Thromb Haemost)",
                  "https://doi.org/10.1111/jth.14817", "Tang N et al. J Thromb Haemost 2020;18:1094-1099", False),
    "iba_sic_2017": ("Iba 2017: sepsis-induced coagulopathy score (BMJ Open)",
                     "https://doi.org/10.1136/bmjopen-2017-017046", "Iba T et al. BMJ Open 2017;7:e017046", True),
    "isth_interim_2020": ("ISTH interim guidance 2020 (J Thromb Haemost)",
                          "https://doi.org/10.1111/jth.14810", "Thachil J et al. J Thromb Haemost 2020;18:1023-1026",
                          True),
    "attacc_critical_2021": ("REMAP-CAP/ACTIV-4a/ATTACC 2021: critically ill (N Engl J Med)",
                             "https://doi.org/10.1056/NEJMoa2103417",
                             "REMAP-CAP, ACTIV-4a, ATTACC Investigators. N Engl J Med 2021;385:777-789", True),
    "attacc_noncritical_2021": ("ATTACC/ACTIV-4a/REMAP-CAP 2021: non-critically ill (N Engl J Med)",
                                "https://doi.org/10.1056/NEJMoa2105911",
                                "ATTACC, ACTIV-4a, REMAP-CAP Investigators. N Engl J Med 2021;385:790-802", True),
    "inspiration_2021": ("INSPIRATION 2021: intermediate vs standard dose in ICU (JAMA)",
                         "https://doi.org/10.1001/jama.2021.4152",
                         "INSPIRATION Investigators (Sadeghipour P et al.). JAMA 2021;325:1620-1630", True),
    "hep_covid_2021": ("HEP-COVID 2021: therapeutic vs standard heparin (JAMA Intern Med)",
                       "https://doi.org/10.1001/jamainternmed.2021.6203",
                       "Spyropoulos AC et al. JAMA Intern Med 2021;181:1612-1620", True),
    "ash_2021": ("ASH 2021 guideline: anticoagulation in COVID-19 (Blood Adv)",
                 "https://doi.org/10.1182/bloodadvances.2020003763", "Cuker A et al. Blood Adv 2021;5:872-888", True),
    "ash_2022_acute": ("ASH 2022 update: therapeutic heparin in acute (non-critical) COVID-19 illness (Blood Adv)",
                       "https://ashpublications.org/bloodadvances/article/6/17/4915/485124",
                       "Cuker A et al. Blood Adv 2022;6:4915-4923", True),
    "ash_2022_critical": ("ASH 2022 update: prophylactic over therapeutic dose in critical illness (Blood Adv)",
                          "https://ashpublications.org/bloodadvances/article/6/17/4975/485690",
                          "Cuker A et al. Blood Adv 2022;6:4975", True),
    "isth_2022": ("ISTH 2022 guideline: antithrombotic treatment in COVID-19 (J Thromb Haemost)",
                  "https://doi.org/10.1111/jth.15808", "Schulman S et al. J Thromb Haemost 2022;20:2214-2225", False),
    "isth_2023": ("ISTH 2023 update: antithrombotic treatment in COVID-19 (J Thromb Haemost)",
                  "https://doi.org/10.1016/j.jtha.2024.02.011", "Schulman S et al. J Thromb Haemost 2024 (2023 update)",
                  False),
    "chest_2022": ("CHEST 2022 guideline update: VTE prevention in COVID-19 (Chest)",
                   "https://doi.org/10.1016/j.chest.2022.02.006", "Moores LK et al. Chest 2022;162:213-225", False),
    "nih_2024": ("NIH COVID-19 Treatment Guidelines, antithrombotic therapy (final version, 2024)",
                 "https://www.ncbi.nlm.nih.gov/books/NBK570371/",
                 "NIH COVID-19 Treatment Guidelines, final version 29 Feb 2024", False),
    "ash_hit_2018": ("ASH 2018 guideline: heparin-induced thrombocytopenia (Blood Adv)",
                     "https://ashpublications.org/bloodadvances/article/2/22/3360/16129",
                     "Cuker A et al. Blood Adv 2018;2:3360-3392", True),
    "warkentin_2001": ("Warkentin & Kelton 2001: temporal aspects of HIT (N Engl J Med)",
                       "https://doi.org/10.1056/NEJM200104263441704",
                       "Warkentin TE, Kelton JG. N Engl J Med 2001;344:1286-1292", False),
    "enoxaparin_label": ("Enoxaparin prescribing information (DailyMed)",
                         "https://dailymed.nlm.nih.gov/dailymed/search.cfm?labeltype=all&query=enoxaparin",
                         "Enoxaparin prescribing information (renal dosing, HIT, neuraxial boxed warning)", False),
    "fondaparinux_label": ("Fondaparinux prescribing information (DailyMed)",
                           "https://dailymed.nlm.nih.gov/dailymed/search.cfm?labeltype=all&query=fondaparinux",
                           "Fondaparinux (Arixtra) prescribing information (weight and renal limits)", False),
    "piagnerelli_2020": ("Piagnerelli 2020: BMI-adjusted enoxaparin in ICU COVID-19 (Crit Care Med letter)",
                         "https://pubmed.ncbi.nlm.nih.gov/?term=Piagnerelli+enoxaparin+COVID-19+Crit+Care+Med",
                         "Piagnerelli M et al. Crit Care Med 2020 (letter)", False),
    "dose_classes_2023": ("Trial-pooled heparin dose classes (Clin Transl Sci 2023)",
                          "https://pmc.ncbi.nlm.nih.gov/articles/PMC10499427/",
                          "Clin Transl Sci 2023, PMC10499427, Table 1", False),
    # v3 order check (v3-orders; clinical-rules §19.1-§19.3, §19.6, §19.7, §19.11)
    "witt_2018": ("ASH 2018 guideline: optimal management of anticoagulation therapy (Blood Adv)",
                  "https://doi.org/10.1182/bloodadvances.2018024893", "Witt DM et al. Blood Adv 2018;2:3257-3291",
                  False),
    "bates_2018": ("ASH 2018 guideline: VTE in the context of pregnancy (Blood Adv)",
                   "https://doi.org/10.1182/bloodadvances.2018024802", "Bates SM et al. Blood Adv 2018;2:3317-3359",
                   False),
    "doac_labels": ("Apixaban, rivaroxaban, dabigatran, edoxaban prescribing information (DailyMed)",
                    "https://dailymed.nlm.nih.gov/dailymed/search.cfm?labeltype=all&query=apixaban",
                    "DOAC prescribing information (maximum doses, renal limits, interactions)", False),
    "warfarin_label": ("Warfarin prescribing information (DailyMed)",
                       "https://dailymed.nlm.nih.gov/dailymed/search.cfm?labeltype=all&query=warfarin",
                       "Warfarin prescribing information (pregnancy, HIT)", False),
    "argatroban_label": ("Argatroban prescribing information (DailyMed)",
                         "https://dailymed.nlm.nih.gov/dailymed/search.cfm?labeltype=all&query=argatroban",
                         "Argatroban prescribing information (hepatic impairment)", False),
    "lmwh_labels": ("Dalteparin and tinzaparin prescribing information (DailyMed)",
                    "https://dailymed.nlm.nih.gov/dailymed/search.cfm?labeltype=all&query=dalteparin",
                    "Dalteparin / tinzaparin prescribing information (maximum doses, renal impairment)", False),
    "wang_2014": ("Wang 2014: enoxaparin and UFH prophylaxis in obesity (Thromb Haemost)",
                  "https://doi.org/10.1160/TH13-07-0540", "Wang TF et al. Thromb Haemost 2014;111:88-93", False),
}

# v3-exposure citations (clinical-rules §19.4, §19.13). NIH is cited as "final (archived)".
SOURCES["nih_2024"] = ("NIH COVID-19 Treatment Guidelines, antithrombotic therapy (final, archived 2024)",
                       *SOURCES["nih_2024"][1:2],
                       "NIH COVID-19 Treatment Guidelines, final (archived) version 29 Feb 2024", False)
SOURCES.update({
    "elso_2021": ("ELSO 2021 adult and pediatric anticoagulation guidelines (ASAIO J)",
                  "https://doi.org/10.1097/MAT.0000000000001652",
                  "McMichael ABV et al. ASAIO J 2022;68:303-310", True),
    "rcog_37a": ("RCOG Green-top Guideline 37a: reducing the risk of VTE in pregnancy and the puerperium",
                 "https://www.rcog.org.uk/guidance/browse-all-guidance/green-top-guidelines/"
                 "reducing-the-risk-of-thrombosis-and-embolism-during-pregnancy-and-the-puerperium-green-top-guideline-no-37a/",
                 "RCOG Green-top Guideline No. 37a (2015)", False),
})

# Evidence links: key -> (label, absolute URL).
EVIDENCE = {k: (v[0], v[1]) for k, v in SOURCES.items()}
# Short citations: key -> text (the rule page; the assessment view's reference list).
CITATIONS = {k: v[2] for k, v in SOURCES.items()}
# Whether each identifier was checked against the publisher's or PubMed's record.
VERIFIED = {k: v[3] for k, v in SOURCES.items()}
CITATIONS.update({
    "isth_dic_2001": "Taylor FB Jr et al. Thromb Haemost 2001;86:1327-1330 (ISTH overt DIC)",
    "nih_2022": "NIH COVID-19 Treatment Guidelines, antithrombotic therapy (2022)",
    "anti_xa_lab": "Laboratory guidance on LMWH anti-Xa sampling (peak 4 h post dose)",
})


def source_url(kind: str, base_url: str) -> str:
    """The rule page of `kind`, absolute: "<base>/docs/rules#<kind>"."""
    return f"{base_url.rstrip('/')}{DOCS_PATH}#{kind}"


def system_url(name: str, base_url: str) -> str:
    """The URI (and URL) of our code system `name`: "<base>/fhir/CodeSystem/<name>"."""
    return f"{base_url.rstrip('/')}{CODE_SYSTEM_PATH}/{name}"


def _base(base_url: str | None) -> str:
    if base_url is None:  # callers without a base: the one cards use (policy, public URL or request)
        from .base_url import code_system_base
        return code_system_base()
    return base_url


def topic(kind: str, base_url: str | None = None) -> dict[str, str]:
    return {"system": system_url(CARD_KIND, _base(base_url)), "code": kind, "display": CARD_KINDS[kind]}


# Offered by a kind that has no row in KIND_OVERRIDE_REASONS (every card offers reasons, each
# with a display: CDS Hooks 3.0 cds-resp-4).
DEFAULT_OVERRIDE_REASONS = ("already-addressed", "specialist-advice", "data-inaccurate", "clinical-judgement")


def override_reasons(kind: str, base_url: str | None = None) -> list[dict[str, str]]:
    system = system_url(OVERRIDE_REASON, _base(base_url))
    return [{"system": system, "code": code, "display": OVERRIDE_REASONS[code]}
            for code in KIND_OVERRIDE_REASONS.get(kind, DEFAULT_OVERRIDE_REASONS)]


def links(*keys: str) -> list[dict[str, str]]:
    return [{"label": EVIDENCE[k][0], "url": EVIDENCE[k][1], "type": "absolute"} for k in dict.fromkeys(keys)]
