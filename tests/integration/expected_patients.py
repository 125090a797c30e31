"""What every synthetic patient in conformance/patients/ should give, in ONE table.

Worked out by hand from ../shared/clinical-rules.md v2 (default policy); the arithmetic is in
conformance/patients/README.md ("Workings"). Read by
- tests/test_integration_kit.py: `cds-service assess` on each rendered Bundle (no server);
- tests/integration/test_end_to_end.py: every hook through the service against the real FHIR
  server, with prefetch and with self-fetch (the assessment is read from the audit row).

Assessment-level fields are checked now. The `card` field (clinical rules §18.1 catalogue: card
kind and indicator of the one patient-view card, None for no card) and ORDER_SELECT rows marked
`cards_v2` are checked only once the v2 cards are merged: see `cards_v2_merged()`.
"""
from __future__ import annotations

import importlib

ENC = "{pid}-enc"     # every patient's current Encounter id: the context's encounterId


def cards_v2_merged() -> bool:
    """True once the v2 card catalogue (issue 12, clinical rules §18) is in the service.

    The marker is `cds_service.hooks.CARDS_VERSION >= 2`; the cards engineer (or the lead, when
    merging) adds `CARDS_VERSION = 2` to cds_service/hooks/__init__.py. To force the card checks
    on or off meanwhile, set the environment variable CDS_TEST_CARDS_V2=1 or 0.
    """
    import os

    forced = os.environ.get("CDS_TEST_CARDS_V2")
    if forced in ("0", "1"):
        return forced == "1"
    hooks = importlib.import_module("cds_service.hooks")
    return getattr(hooks, "CARDS_VERSION", 1) >= 2


def _p(in_scope=True, reasons=(), pathway="prophylaxis", ntb=(), regimen=("enoxaparin", 40, None, 1, "standard"),
       notes=None, therapeutic=None, contraindications=(), cautions=(), anti_xa=False, numbers=None, extra=None,
       card=None):
    """One patient's expectations.

    regimen: (drug, dose_mg, dose_units, doses_per_day, basis); notes: note codes that must be
    present in regimen.notes (or recommendation.notes) (None: not checked); therapeutic: (drug, dose_mg, doses_per_day) or None;
    numbers: {"bmi", "crcl", "ddimer_x"} to 0.05; extra: {"section.key": value}; card: (kind,
    indicator) of the patient-view card per §18.1, None for no card.
    """
    return {"in_scope": in_scope, "scope_reasons": list(reasons), "pathway": pathway,
            "not_therapeutic_because": list(ntb), "regimen": regimen, "notes": notes,
            "therapeutic": therapeutic, "contraindications": list(contraindications),
            "escalation_cautions": list(cautions), "anti_xa": anti_xa, "numbers": numbers or {},
            "extra": extra or {}, "card": card}


NOT_CRITICAL_NOT_LOW_FLOW = ("critically_ill", "no_low_flow_oxygen")
NO_RRT_NO_OTHER = {"safety.other_anticoagulation_indication": False, "renal.renal_replacement": False}

EXPECTED: dict[str, dict] = {
    # ---- the eleven v1 patients, now with an inpatient Encounter and a linked COVID-19 Condition
    "cov-sic-imv": _p(ntb=NOT_CRITICAL_NOT_LOW_FLOW, numbers={"bmi": 25.9, "crcl": 67.5, "ddimer_x": 4.8},
                      extra={**NO_RRT_NO_OTHER, "renal.crcl_actual_weight_ml_min": 75.6},
                      card=("prophylaxis_suggestion", "warning")),
    "cov-ddimer-ward": _p(pathway="therapeutic_candidate", therapeutic=("enoxaparin", 70, 2),
                          numbers={"bmi": 25.7, "crcl": 78.9, "ddimer_x": 7.2}, extra=NO_RRT_NO_OTHER,
                          card=("therapeutic_candidate", "warning")),
    "cov-bmi-40": _p(ntb=("no_low_flow_oxygen",), regimen=("enoxaparin", 80, None, 1, "bmi_ge_40"), anti_xa=True,
                     numbers={"bmi": 44.1, "crcl": 136.7, "ddimer_x": 7.0},
                     extra={"anti_xa.reasons": ["bmi_ge_40", "weight_gt_120kg", "escalated_dose"],
                            "renal.crcl_actual_weight_ml_min": 191.7},
                     card=("prophylaxis_suggestion", "warning")),
    "cov-renal-umol": _p(ntb=("no_low_flow_oxygen",), regimen=("enoxaparin", 30, None, 1, "crcl_lt_30"), anti_xa=True,
                         numbers={"bmi": 22.7, "crcl": 16.7, "ddimer_x": 8.4},
                         extra={"anti_xa.reasons": ["crcl_lt_30"], "renal.crcl_actual_weight_ml_min": 18.5,
                                "renal.renal_replacement": False},
                         card=("prophylaxis_suggestion", "warning")),
    "cov-plt-lt25": _p(pathway="contraindicated", regimen=(None, None, None, None, "contraindicated"),
                       contraindications=("platelets_lt_25",), cautions=("platelets_lt_50",),
                       numbers={"crcl": 49.9, "ddimer_x": 18.0}, card=("contraindicated", "warning")),
    "cov-hit-history": _p(ntb=("heparin_specific_contraindication",),
                          regimen=("fondaparinux", 2.5, None, 1, "hit_history"),
                          contraindications=("hit_history",), numbers={"crcl": 66.0, "ddimer_x": 4.0},
                          card=("heparin_avoidance", "warning")),
    "cov-active-bleed": _p(pathway="contraindicated", regimen=(None, None, None, None, "contraindicated"),
                           contraindications=("active_bleeding",), cautions=("hemoglobin_lt_8",),
                           numbers={"crcl": 84.4, "ddimer_x": 5.6}, card=("contraindicated", "warning")),
    "cov-on-therapeutic": _p(pathway="keep_therapeutic", regimen=(None, None, None, None, "already_therapeutic"),
                             # §19.7: no routine anti-Xa for therapeutic LMWH (v2: current_therapeutic_dose)
                             anti_xa=False, numbers={"crcl": 109.0, "ddimer_x": 5.0},
                             extra={"safety.current_order_class": "therapeutic", "safety.already_therapeutic": True},
                             card=None),
    "cov-ddu-norange": _p(pathway="therapeutic_candidate", therapeutic=("enoxaparin", 70, 2),
                          numbers={"bmi": 24.8, "crcl": 64.2, "ddimer_x": 7.2},
                          card=("therapeutic_candidate", "warning")),
    "cov-no-weight": _p(pathway="therapeutic_candidate", regimen=("enoxaparin", 40, None, 1, "pending_weight"),
                        notes=["therapeutic_needs_protocol"], therapeutic=None, anti_xa=None,
                        numbers={"ddimer_x": 6.8}, extra={"anthropometrics.bmi": None, "renal.crcl_ml_min": None},
                        card=("therapeutic_candidate", "warning")),
    "cov-healthy-control": _p(ntb=("no_low_flow_oxygen", "d_dimer_not_above_uln"),
                              numbers={"bmi": 22.7, "crcl": 102.6, "ddimer_x": 0.6},
                              card=("standard_prophylaxis", "info")),
    # ---- out of scope: the assessment is made, no hook shows a card
    "cov-child": _p(in_scope=False, reasons=("age_lt_18",), pathway="therapeutic_candidate",
                    therapeutic=("enoxaparin", 70, 2), numbers={"bmi": 22.0, "crcl": 145.2, "ddimer_x": 2.0},
                    card=None),
    "cov-outpatient": _p(in_scope=False, reasons=("not_inpatient",), ntb=("no_low_flow_oxygen", "d_dimer_not_above_uln"),
                         numbers={"bmi": 23.7, "crcl": 95.1, "ddimer_x": 0.8}, card=None),
    "cov-non-covid": _p(in_scope=False, reasons=("no_covid_evidence",), pathway="therapeutic_candidate",
                        therapeutic=("enoxaparin", 80, 2), numbers={"bmi": 26.1, "crcl": 68.5, "ddimer_x": 1.8},
                        card=None),
    # ---- new v2 situations
    "cov-hit-acute": _p(pathway="hit_acute", regimen=(None, None, None, None, "hit_acute"),
                        contraindications=("hit_acute",), numbers={"crcl": 76.2, "ddimer_x": 5.2},
                        extra={"safety.current_order_class": "prophylactic", "safety.already_therapeutic": False},
                        card=("hit_acute", "critical")),
    "cov-hit-remote-lowweight": _p(ntb=("heparin_specific_contraindication",),
                                   regimen=(None, None, None, None, "hit_history"), notes=["fondaparinux_low_weight"],
                                   contraindications=("hit_history",),
                                   numbers={"bmi": 18.7, "crcl": 48.6, "ddimer_x": 2.4},
                                   card=("heparin_avoidance", "warning")),
    "cov-plt-fall": _p(ntb=("heparin_specific_contraindication",),
                       regimen=(None, None, None, None, "hit_suspected"),   # §19.6 row 0b (v2: fondaparinux)
                       contraindications=("hit_suspected",), numbers={"bmi": 26.5, "crcl": 75.2, "ddimer_x": 4.4},
                       extra={"safety.current_order_class": "prophylactic"},
                       card=("hit_suspected", "warning")),
    "cov-haemodialysis": _p(ntb=("renal_replacement",), regimen=("heparin", None, 5000, 2, "crcl_lt_15"),
                            notes=["crcl_lt_15", "crcl_unreliable"], numbers={"crcl": 32.9, "ddimer_x": 3.2},
                            extra={"renal.renal_replacement": True, "renal.creatinine_unstable": True,
                                   "renal.crcl_lt_30": False},
                            card=("standard_prophylaxis", "info")),
    "cov-crcl-lt15": _p(ntb=("no_low_flow_oxygen",), regimen=("heparin", None, 5000, 2, "crcl_lt_15"),
                        notes=["crcl_lt_15"], numbers={"crcl": 10.1, "ddimer_x": 4.0},
                        extra={"renal.renal_replacement": False, "renal.creatinine_unstable": False,
                               "renal.crcl_lt_30": True, "renal.crcl_actual_weight_ml_min": 12.0},
                        card=("standard_prophylaxis", "info")),
    "cov-ward-therapeutic": _p(pathway="therapeutic_candidate", therapeutic=("enoxaparin", 90, 2),
                               numbers={"bmi": 28.4, "crcl": 104.8, "ddimer_x": 2.5}, extra=NO_RRT_NO_OTHER,
                               card=("therapeutic_candidate", "warning")),
    "cov-icu-therapeutic": _p(pathway="deescalate", regimen=(None, None, None, None, "already_therapeutic"),
                              anti_xa=False, numbers={"bmi": 27.4, "crcl": 85.9, "ddimer_x": 5.8},   # §19.7
                              extra={**NO_RRT_NO_OTHER, "safety.current_order_class": "therapeutic",
                                     "critical_illness.critically_ill": True, "critical_illness.oxygen": "IMV"},
                              card=("deescalate", "warning")),
    "cov-icu-therapeutic-af": _p(pathway="keep_therapeutic", regimen=(None, None, None, None, "already_therapeutic"),
                                 anti_xa=False, numbers={"crcl": 54.0, "ddimer_x": 5.8},   # §19.7
                                 extra={"safety.other_anticoagulation_indication": True,
                                        "safety.current_order_class": "therapeutic"},
                                 card=None),
    "cov-argatroban": _p(pathway="keep_therapeutic", regimen=(None, None, None, None, "already_therapeutic"),
                         numbers={"crcl": 99.9, "ddimer_x": 8.0},
                         extra={"safety.current_order_class": "therapeutic", "safety.already_therapeutic": True},
                         card=None),
    # §19.10 changes this: a home DOAC statement adds on_anticoagulant
    "cov-home-doac": _p(ntb=("no_low_flow_oxygen", "on_anticoagulant"), numbers={"bmi": 25.0, "crcl": 60.6, "ddimer_x": 1.8},
                        extra={"safety.current_order_class": None, "safety.already_therapeutic": False},
                        card=None),
    "cov-pregnant": _p(ntb=("pregnancy",), numbers={"bmi": 28.7, "crcl": 140.2, "ddimer_x": 4.2},
                       card=("standard_prophylaxis", "info")),
    # ---- v3 (clinical rules §19, issue 20): exposure as it is given, scope edges
    "cov-flush-infusion": _p(pathway="keep_therapeutic", regimen=(None, None, None, None, "already_therapeutic"),
                             numbers={"bmi": 25.7, "crcl": 78.9, "ddimer_x": 7.2},
                             extra={"safety.current_order_class": "therapeutic"}, card=None),
    "cov-pressure-bag": _p(ntb=NOT_CRITICAL_NOT_LOW_FLOW, numbers={"bmi": 25.9, "crcl": 67.5, "ddimer_x": 4.8},
                           extra={"safety.current_order_class": None, "safety.anticoagulants_active": []},
                           card=("prophylaxis_suggestion", "warning")),
    "cov-ecmo-no-heparin": _p(ntb=NOT_CRITICAL_NOT_LOW_FLOW, numbers={"bmi": 25.9, "crcl": 67.5, "ddimer_x": 4.8},
                              extra={"inputs.respiratory_support.ecmo": True}, card=("ecmo", "info")),
    "cov-ecmo-heparin": _p(pathway="keep_therapeutic", regimen=(None, None, None, None, "already_therapeutic"),
                           numbers={"bmi": 25.9, "crcl": 67.5, "ddimer_x": 4.8},
                           extra={"safety.current_order_class": "therapeutic"}, card=None),
    "cov-crrt-prefilter": _p(pathway="keep_therapeutic", regimen=(None, None, None, None, "already_therapeutic"),
                             numbers={"bmi": 25.9, "crcl": 67.5, "ddimer_x": 4.8},
                             extra={"safety.current_order_class": "therapeutic", "renal.renal_replacement": True},
                             card=None),
    "cov-alteplase": _p(ntb=("no_low_flow_oxygen", "d_dimer_not_above_uln"),
                        numbers={"bmi": 22.7, "crcl": 102.6, "ddimer_x": 0.6},
                        extra={"safety.anticoagulants_active": []}, card=("standard_prophylaxis", "info")),
    "cov-partial-birth": _p(ntb=("age_uncertain",), numbers={"bmi": 25.7, "crcl": 130.1, "ddimer_x": 7.2},
                            extra={"inputs.age_years": 18}, card=("prophylaxis_suggestion", "warning")),
    "cov-hx-pe": _p(pathway="deescalate", regimen=(None, None, None, None, "already_therapeutic"), anti_xa=False,  # §19.7
                    numbers={"bmi": 27.4, "crcl": 85.9, "ddimer_x": 5.8},
                    extra={"safety.possible_other_indication": True,
                           "safety.other_anticoagulation_indication": False},
                    card=("deescalate", "warning")),
    "cov-apixaban-continued": _p(pathway="keep_therapeutic", regimen=(None, None, None, None, "already_therapeutic"),
                                 numbers={"bmi": 25.0, "crcl": 60.6, "ddimer_x": 1.8},
                                 extra={"safety.current_order_class": "therapeutic"}, card=None),
    "cov-bmi-55": _p(ntb=("no_low_flow_oxygen",), regimen=("enoxaparin", 80, None, 1, "bmi_ge_40"), anti_xa=True,
                     numbers={"bmi": 55.0, "crcl": 146.5, "ddimer_x": 7.0},
                     extra={"safety.current_order_class": "prophylactic"}, card=None),
}

# Patient-view cards that can only be right once the other v3 branch lands (CONTRACT-v3.md):
# the test is xfail(strict=True) with this reason, so after the merge it turns XPASS.
CARD_NEEDS: dict[str, str] = {}

# order-select on the patient with a draft from conformance/patients/draft-orders/ (§18.4).
# when: "now" = must hold as soon as v2 data and logic are merged (issue 11), "cards_v2" = the
# v2 order-hook cards (issue 12). indicator: the most severe card, None = no card at all.
# update: (mg, doses/day) the draft is updated to; suggests: ingredients a create or update must name;
# never: ingredients that must not appear in any create/update; delete_draft: a suggestion deletes
# the draft; kinds: card kinds that must be among the cards (audit); summary_without: words no
# card summary may contain; at_most: no card above this indicator.
D40, D60Q12, D90Q12 = "enoxaparin-40mg-daily.json", "enoxaparin-60mg-q12h.json", "enoxaparin-90mg-q12h.json"
ORDER_SELECT: list[tuple[str, str, dict]] = [
    ("cov-bmi-40", D40, {"when": "now", "indicator": "warning", "update": (80, 1)}),
    ("cov-renal-umol", D40, {"when": "now", "indicator": "warning", "update": (30, 1)}),
    # §19.3 changes the urgency: twice daily above 30 mg at CrCl 15-<30 is critical (update 1 mg/kg daily)
    ("cov-renal-umol", D60Q12, {"when": "now", "indicator": "critical", "update": (60, 1)}),
    ("cov-healthy-control", D40, {"when": "now", "indicator": None}),
    ("cov-child", D40, {"when": "now", "indicator": None}),
    ("cov-outpatient", D40, {"when": "now", "indicator": None}),
    ("cov-non-covid", D40, {"when": "now", "indicator": None}),
    ("cov-crcl-lt15", D40, {"when": "now", "indicator": "warning", "suggests": {"heparin"},
                            "never": {"enoxaparin"}}),
    ("cov-hit-history", D60Q12, {"when": "now", "summary_without": ("CrCl", "renal", "kidney")}),
    ("cov-hit-history", D40, {"when": "cards_v2", "indicator": "warning", "suggests": {"fondaparinux"},
                              "delete_draft": True, "never": {"enoxaparin", "heparin"}}),
    ("cov-hit-history", D60Q12, {"when": "cards_v2", "indicator": "warning", "suggests": {"fondaparinux"},
                                 "delete_draft": True, "never": {"enoxaparin", "heparin"}}),
    ("cov-hit-acute", D40, {"when": "cards_v2", "indicator": "critical", "delete_draft": True,
                            "never": {"fondaparinux", "enoxaparin", "heparin"}, "kinds": {"duplicate_anticoagulant"}}),
    ("cov-hit-remote-lowweight", D40, {"when": "cards_v2", "indicator": "warning", "delete_draft": True,
                                       "never": {"fondaparinux", "enoxaparin", "heparin"}}),
    # §19.6: a heparin draft in hit_suspected is a warning (critical once 4Ts >= 4)
    ("cov-plt-fall", D40, {"when": "cards_v2", "indicator": "warning", "delete_draft": True,
                           "never": {"fondaparinux", "enoxaparin", "heparin"}, "kinds": {"duplicate_anticoagulant"}}),
    ("cov-argatroban", D40, {"when": "cards_v2", "indicator": "critical", "delete_draft": True,
                             "never": {"enoxaparin", "heparin"}}),
    ("cov-home-doac", D40, {"when": "cards_v2", "indicator": "warning", "kinds": {"duplicate_anticoagulant"},
                            "never": {"enoxaparin", "heparin"}}),
    # The recommended therapeutic dose: no escalation warning (§18.4) and no change to the draft.
    # An info card about anti-Xa is accepted: §12 indicates anti-Xa for any therapeutic LMWH order
    # (current_therapeutic_dose) while §13.1 adds it to the recommended dose only at BMI >= 40 or
    # > 120 kg; the rules disagree, so only "nothing above info" is asserted.
    ("cov-ward-therapeutic", D90Q12, {"when": "cards_v2", "at_most": "info", "never": {"enoxaparin", "heparin"}}),
]


def _get(assessment: dict, dotted: str):
    value = assessment
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return "<absent>"
        value = value[part]
    return value


def _same(actual, expected, tolerance: float = 0.0) -> bool:
    """Booleans and nulls by identity (so 1 is not True), numbers within `tolerance`, lists of
    codes as sets (clinical rules §15: the lists are sets), the rest by ==."""
    if isinstance(expected, bool) or expected is None:
        return actual is expected
    if isinstance(expected, (int, float)):
        return isinstance(actual, (int, float)) and not isinstance(actual, bool) \
            and abs(actual - expected) <= tolerance + 1e-9
    if isinstance(expected, list):
        return isinstance(actual, list) and sorted(map(str, actual)) == sorted(map(str, expected))
    return actual == expected


def mismatches(pid: str, assessment: dict) -> dict[str, tuple]:
    """{field: (actual, expected)} for every assessment-level expectation of `pid` that fails."""
    e = EXPECTED[pid]
    want: dict[str, object] = {
        "scope.in_scope": e["in_scope"],
        "scope.reasons": e["scope_reasons"],
        "recommendation.pathway": e["pathway"],
        "recommendation.not_therapeutic_because": e["not_therapeutic_because"],
        "safety.contraindications": e["contraindications"],
        "safety.escalation_cautions": e["escalation_cautions"],
        "anti_xa.indicated": e["anti_xa"],
        **e["extra"],
    }
    for key, value in zip(("drug", "dose_mg", "dose_units", "doses_per_day", "basis"), e["regimen"]):
        want[f"regimen.{key}"] = value
    therapeutic = e["therapeutic"]
    if therapeutic is None:
        want["recommendation.therapeutic"] = None
    else:
        for key, value in zip(("drug", "dose_mg", "doses_per_day"), therapeutic):
            want[f"recommendation.therapeutic.{key}"] = value
    # 0.06: figures are written to 1 dp (clinical rules §0 display rounding), the JSON may hold more.
    wrong = {k: (_get(assessment, k), v) for k, v in want.items() if not _same(_get(assessment, k), v, 0.06)}
    if e["notes"] is not None:
        # The rules name the notes (§11, §13.1) but not where `therapeutic_needs_protocol` lives:
        # it is accepted in regimen.notes or in recommendation.notes.
        notes = [n for key in ("regimen.notes", "recommendation.notes")
                 if isinstance(_get(assessment, key), list) for n in _get(assessment, key)]
        if not isinstance(_get(assessment, "regimen.notes"), list) or not set(e["notes"]) <= set(notes):
            wrong["regimen.notes ⊇"] = (notes, e["notes"])
    paths = {"bmi": "anthropometrics.bmi", "crcl": "renal.crcl_ml_min", "ddimer_x": "d_dimer.multiple_of_uln"}
    for key, value in e["numbers"].items():
        actual = _get(assessment, paths[key])
        if not _same(actual, value, tolerance=0.1):
            wrong[paths[key]] = (actual, value)
    return wrong
