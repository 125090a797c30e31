"""Source attributes (ONC HTI-1) and the FDA criterion-4 basis, generated from the code and the
policy (issue 23). Served at /docs/source-attributes (HTML) and /docs/source-attributes.json.

Nothing here is hand-copied from the rules:
- which patient attributes the logic uses is found by reading the source of cds_service/logic/
  (every attribute of the engine's inputs, `PatientInputs`, that a logic module reads); a change
  in what the logic reads changes the page (tests/test_source_attributes.py);
- citations come from cards/vocabulary.SOURCES and the rule book; developer and funding from the
  policy's `governance.*` keys; windows, scope and limits from the policy; unverified codes from
  the code data file; validation counts from the test tree when it is installed.

The 13 attributes are those of 45 CFR 170.315(b)(11)(iv)(A)(1)-(13) (evidence-based decision
support interventions); (5)-(13) refer to the data as expressed in USCDI (§ 170.213).
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import re
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[2]  # cds_service/
LOGIC = PACKAGE / "logic"
TESTS = PACKAGE.parent / "tests"
REGULATION = "45 CFR 170.315(b)(11)(iv)(A)"

# (paragraph, key, the attribute as the regulation words it, PatientInputs fields that carry it)
# The wording of (1)-(4) and (5)-(13) was checked against ONC-certified EHR implementations
# quoting the rule (OpenEMR); see the README section "Source attributes".
ATTRIBUTES: tuple[tuple[int, str, str, tuple[str, ...]], ...] = (
    (1, "bibliographic_citation", "Bibliographic citation of the intervention (clinical research or guideline)", ()),
    (2, "developer", "Developer of the intervention (translation from clinical research or guideline)", ()),
    (3, "funding_source", "Funding source of the intervention development technical implementation", ()),
    (4, "release_and_revision_dates",
     "Release and, if applicable, revision dates of the intervention or reference source", ()),
    (5, "race", "Use of race as expressed in the standards in § 170.213", ("race",)),
    (6, "ethnicity", "Use of ethnicity as expressed in the standards in § 170.213", ("ethnicity",)),
    (7, "language", "Use of language as expressed in the standards in § 170.213",
     ("language", "preferred_language")),
    (8, "sexual_orientation", "Use of sexual orientation as expressed in the standards in § 170.213",
     ("sexual_orientation",)),
    (9, "gender_identity", "Use of gender identity as expressed in the standards in § 170.213",
     ("gender_identity",)),
    (10, "sex", "Use of sex as expressed in the standards in § 170.213", ("sex",)),
    (11, "date_of_birth", "Use of date of birth as expressed in the standards in § 170.213",
     ("birth_date", "age_years")),
    (12, "social_determinants_of_health",
     "Use of social determinants of health data as expressed in the standards in § 170.213",
     ("social_determinants", "sdoh", "housing", "food_insecurity", "transportation")),
    # USCDI v3 "Health Status Assessments": health concerns, functional, disability and
    # mental/cognitive status, pregnancy status, smoking status (healthit.gov USCDI v3).
    (13, "health_status_assessments",
     "Use of health status assessments data as expressed in the standards in § 170.213",
     ("pregnancy", "functional_status", "disability_status", "cognitive_status", "smoking_status",
      "health_concerns")),
)

# How each input field that carries an attribute is used, for the page. A field the logic reads
# that has no line here is shown as "read by <modules>" and a test asks for a line.
HOW = {
    "sex": "Patient.gender (male/female; other or unknown is 'not known'): Devine ideal body weight "
           "(logic/anthropometrics.py) and the Cockcroft-Gault x0.85 factor for women (logic/renal.py). "
           "With sex unknown, IBW and CrCl are not determinable and the card says so.",
    "birth_date": "Patient.birthDate: a partial date is handled as the rules say (scope, logic/scope.py).",
    "age_years": "Age in completed years from Patient.birthDate: the adult scope (scope.min_age_years) and "
                 "the Cockcroft-Gault (140 - age) term (logic/renal.py).",
    "pregnancy": "Pregnancy status (Observation or Condition within window.pregnancy_status_days): "
                 "anti-Xa monitoring only when antixa.pregnancy_trigger is on, the D-dimer pregnancy caveat, "
                 "and the order check's pregnancy lines (logic/assessment.py, logic/anti_xa.py).",
}

# Each input of the engine and the policy window it is looked up in (None: the current record,
# no window). A PatientInputs field missing here fails tests/test_source_attributes.py.
INPUT_WINDOWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "now": ("request time (the hook call's arrival)", ()),
    "patient_id": ("context.patientId (never logged raw)", ()),
    "age_years": ("Patient.birthDate", ()),
    "sex": ("Patient.gender", ()),
    "birth_date": ("Patient.birthDate", ()),
    "weight": ("body weight", ("window.weight_days",)),
    "height": ("body height", ("window.height_days",)),
    "recorded_bmi": ("recorded BMI (used only when BMI cannot be computed)", ("window.weight_days",)),
    "d_dimer": ("D-dimer with unit basis and the lab's reference range", ("window.labs_hours",)),
    "platelets": ("platelet count", ("window.labs_hours",)),
    "inr": ("INR", ("window.labs_hours",)),
    "pt": ("prothrombin time", ("window.labs_hours",)),
    "fibrinogen": ("fibrinogen", ("window.labs_hours",)),
    "creatinine": ("serum creatinine", ("window.labs_hours",)),
    "bilirubin": ("bilirubin", ("window.labs_hours",)),
    "hemoglobin": ("haemoglobin", ("window.labs_hours",)),
    "anti_xa": ("anti-Xa level (display only)", ("window.anti_xa_hours",)),
    "pf_ratio": ("PaO2/FiO2 (recorded or paired)", ("window.blood_gas_hours", "bloodgas.fio2_pairing_minutes")),
    "pao2": ("PaO2 (display)", ("window.blood_gas_hours",)),
    "fio2": ("FiO2 (display)", ("window.blood_gas_hours",)),
    "map": ("mean arterial pressure", ("window.vitals_hours",)),
    "gcs": ("Glasgow coma scale", ("window.vitals_hours",)),
    "urine_output_24h": ("urine output over 24 h", ("window.urine_output_hours",)),
    "recorded_sofa": ("recorded SOFA sub-scores", ("window.sofa_score_hours",)),
    "vasoactives": ("vasoactive infusions", ("window.vasoactive_hours",)),
    "respiratory": ("respiratory support and oxygen", ("window.respiratory_support_hours",)),
    "covid19": ("COVID-19 condition or test", ("scope.covid_condition_days", "scope.covid_test_days")),
    "active_bleeding": ("active bleeding (Condition)", ()),
    "recent_bleeding": ("recent bleeding", ("safety.recent_bleeding_days",)),
    "bleeding_disorder": ("bleeding disorder (Condition)", ()),
    "hit_history": ("heparin-induced thrombocytopenia ever", ("safety.hit_lookback_days",)),
    "heparin_allergy": ("heparin allergy (AllergyIntolerance)", ()),
    "pregnancy": ("pregnancy status", ("window.pregnancy_status_days",)),
    "orders": ("active anticoagulant orders (MedicationRequest)", ()),
    "encounter_id": ("context.encounterId", ()),
    "encounters": ("current inpatient Encounter", ("scope.encounter_statuses", "scope.inpatient_classes")),
    "covid_conditions": ("COVID-19 Conditions", ("scope.covid_condition_days",)),
    "covid_positive_tests": ("positive SARS-CoV-2 tests", ("scope.covid_test_days",)),
    "hit_records": ("every HIT record with its onset", ("safety.hit_acute_days",)),
    "other_anticoagulation_indication": ("another indication for anticoagulation (VTE, AF, valve, thrombus)", ()),
    "recent_intracranial_haemorrhage": ("intracranial haemorrhage", ("safety.recent_ich_days",)),
    "renal_replacement": ("dialysis or CRRT in progress or recent, or ESKD", ()),
    "renal_replacement_mode": ("which renal replacement (haemodialysis, CRRT, peritoneal) for card text", ()),
    "four_ts": ("a recorded 4Ts score (site code), clears or raises suspected HIT",
                ("window.platelet_trend_days", "hit.four_ts_clear_hours")),
    "interacting_drugs": ("active strong CYP3A4/P-gp inhibitors (orders or home medicines)", ()),
    "statements": ("home or reported anticoagulants (MedicationStatement)", ()),
    "administrations": ("anticoagulant administrations", ("window.platelet_trend_days",)),
    "platelet_trend": ("platelet counts over time", ("window.platelet_trend_days",)),
    "creatinine_series": ("creatinine results over time", ("window.labs_hours",)),
    "heparin_started": ("first heparin exposure", ("window.platelet_trend_days",)),
    "rejected": ("inputs dropped and why (unknown unit, absurd value)", ()),
    # v3-exposure (clinical rules §19.4, §19.8, §19.12)
    "heparin_flushes": ("heparin flush and lock orders (heparin for HIT, never anticoagulant exposure)",
                        ("orders.flush_max_units_per_hour",)),
    "birth_date_partial": ("a partial birth date (YYYY or YYYY-MM)", ("scope.min_age_years",)),
    "age_uncertain": ("a partial birth date whose latest possible day is under 18", ("scope.min_age_years",)),
    "possible_other_indication": ("history of VTE or long-term anticoagulant (Z79.01, Z86.711, Z86.718)", ()),
}


def input_fields() -> list[str]:
    from ...logic.inputs import PatientInputs
    return [f.name for f in dataclasses.fields(PatientInputs)]


def logic_reads(root: Path | None = None) -> dict[str, list[str]]:
    """Input field -> the logic modules that read it (`<expr>.<field>`), from their source.

    The installed package's own source does not change while it runs: read once per process
    (another root, as the tests' edited copies, is read each time)."""
    if root is None or root == LOGIC:
        return copy.deepcopy(_installed_logic_reads())  # the caller may keep or change it
    return _logic_reads(root)


@lru_cache(maxsize=1)
def _installed_logic_reads() -> dict[str, list[str]]:
    return _logic_reads(LOGIC)


def _logic_reads(root: Path) -> dict[str, list[str]]:
    fields = set(input_fields()) | {f for *_, fs in ATTRIBUTES for f in fs}
    found: dict[str, set[str]] = {}
    for path in sorted(root.glob("*.py")):
        if path.name == "inputs.py":  # the declaration, not a use
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and node.attr in fields:
                found.setdefault(node.attr, set()).add(f"logic/{path.name}")
    return {k: sorted(v) for k, v in sorted(found.items())}


def _uses(fields: tuple[str, ...], reads: dict[str, list[str]]) -> dict[str, Any]:
    used = [f for f in fields if f in reads]
    if not used:
        return {"uses": False, "how": "Not used: no input of the clinical logic carries it."}
    how = " ".join(HOW.get(f, f"Read by {', '.join(reads[f])}.") for f in used)
    return {"uses": True, "inputs": used, "read_by": sorted({m for f in used for m in reads[f]}), "how": how}


def _years(text: str) -> list[int]:
    return sorted({int(y) for y in re.findall(r"\b(19[5-9]\d|20[0-4]\d)\b", text)})


@lru_cache(maxsize=1)
def _revision_date() -> str | None:
    """The commit date of the checkout this runs from (an installed wheel has none)."""
    if not (PACKAGE.parent / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(PACKAGE.parent), "log", "-1", "--format=%cs"],
                             capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _citations() -> list[dict[str, Any]]:
    from ...cards import rulebook
    from ...cards import vocabulary as vocab
    cited_by: dict[str, list[str]] = {}
    for rule in rulebook.RULES:
        for key in rule.evidence:
            cited_by.setdefault(key, []).append(rule.kind)
    rows = []
    for key, citation in vocab.CITATIONS.items():
        label, url = vocab.EVIDENCE.get(key, (None, None))
        rows.append({"key": key, "citation": citation, "label": label, "url": url,
                     "identifier_verified": vocab.VERIFIED.get(key, False), "years": _years(citation),
                     "card_kinds": cited_by.get(key, [])})
    return rows


@lru_cache(maxsize=1)  # one parse of the test tree per process, not one per page build
def _count_tests(root: Path = TESTS) -> dict[str, Any] | None:
    """Test functions in the test tree, by directory, and the band-edge tests among them
    (named for an edge, band, boundary or threshold). None when the tests are not installed."""
    if not root.is_dir():
        return None
    by_area: dict[str, int] = {}
    edges: dict[str, int] = {}
    total = 0
    edge_name = re.compile(r"edge|band|boundar|threshold|cutoff|cut_off", re.I)
    for path in sorted(root.rglob("test_*.py")):
        if "node_modules" in path.parts:
            continue
        area = path.parent.relative_to(root).as_posix() or "."
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                total += 1
                by_area[area] = by_area.get(area, 0) + 1
                if edge_name.search(node.name):
                    edges[area] = edges.get(area, 0) + 1
    return {"test_functions": total, "by_directory": dict(sorted(by_area.items())),
            "band_edge_tests": sum(edges.values()), "band_edge_by_directory": dict(sorted(edges.items()))}


def _reference_patients() -> dict[str, Any]:
    patients = PACKAGE / "data" / "patients"
    names = sorted(p.stem for p in patients.glob("*.json"))
    drafts = sorted(p.stem for p in (patients / "draft-orders").glob("*.json"))
    readme = patients / "README.md"
    expected = 0
    if readme.is_file():
        expected = sum(1 for line in readme.read_text(encoding="utf-8").splitlines()
                       if line.startswith("| `cov-"))
    return {"patients": len(names), "draft_order_sets": len(drafts),
            "expected_card_rows": expected, "documented_in": "cds_service/data/patients/README.md"}


def build(policy, *, base_url: str = "", logic_root: Path | None = None) -> dict[str, Any]:
    """The whole document for this service version and `policy`."""
    from ...fhir.codes import load_codes
    from ...cards import rulebook
    from ...cards import vocabulary as vocab
    from ...logic.policy import SOURCES as POLICY_SOURCES
    from ...logic.policy import source_of
    from ...version import full_version, package_version

    values = policy.values
    reads = logic_reads(logic_root)
    citations = _citations()
    attributes = []
    for number, key, wording, fields in ATTRIBUTES:
        row: dict[str, Any] = {"paragraph": f"{REGULATION}({number})", "key": key, "attribute": wording}
        if number == 1:
            row["value"] = [{"citation": c["citation"], "url": c["url"], "card_kinds": c["card_kinds"]}
                            for c in citations]
        elif number == 2:
            row["value"] = values["governance.developer"]
            row["from"] = "policy governance.developer"
        elif number == 3:
            row["value"] = values["governance.funding"]
            row["from"] = "policy governance.funding"
        elif number == 4:
            row["value"] = {"service_version": full_version(), "package_version": package_version(),
                            "revision_date": _revision_date(),
                            "reference_sources": [{"citation": c["citation"], "years": c["years"]}
                                                  for c in citations]}
        else:
            row.update(_uses(fields, reads))
        attributes.append(row)

    codes = load_codes(values.get("codes.extra_file"))
    unverified_codes = list(codes.data.get("unverified", []))
    unverified_rules = [{"policy_prefix": k, "source": v} for k, v in POLICY_SOURCES.items() if "unverified" in v]
    by_hook: dict[str, list[dict[str, Any]]] = {}
    for rule in rulebook.RULES:
        for hook in (h.strip() for h in rule.hooks.split(",")):
            by_hook.setdefault(hook, []).append({
                "kind": rule.kind, "display": vocab.CARD_KINDS.get(rule.kind, rule.kind),
                "sections": rule.sections, "rule": list(rule.rule),
                "policy": {k: values.get(k) for k in rule.policy_keys},
                "source": f"{base_url}{vocab.DOCS_PATH}#{rule.kind}"})
    min_age = values["scope.min_age_years"]
    out_of_scope = [
        {"who": f"children and adolescents (under {min_age:g} years)",
         "enforced": True, "policy": {"scope.min_age_years": min_age}},
        {"who": "outpatients (no current inpatient encounter)", "enforced": values["scope.require_inpatient"],
         "policy": {"scope.require_inpatient": values["scope.require_inpatient"],
                    "scope.inpatient_classes": values["scope.inpatient_classes"]}},
        {"who": "patients without COVID-19", "enforced": values["scope.require_covid"],
         "policy": {"scope.require_covid": values["scope.require_covid"],
                    "scope.covid_condition_days": values["scope.covid_condition_days"],
                    "scope.covid_test_days": values["scope.covid_test_days"]}},
    ]
    inputs = []
    for name in input_fields():
        what, keys = INPUT_WINDOWS.get(name, ("(not described)", ()))
        inputs.append({"input": name, "what": what, "windows": {k: values.get(k) for k in keys},
                       "read_by": reads.get(name, [])})
    cap = values.get("therapeutic.max_dose_mg")
    doc = {
        "resource": "source-attributes",
        "service_version": full_version(),
        "policy_source": str(policy.source),
        "intervention_type": "evidence-based decision support intervention (not predictive: fixed published "
                             "rules, no model trained on data)",
        "hti1_source_attributes": attributes,
        "fda_criterion_4_basis": {
            "intended_use": "Decision support on anticoagulation for hospitalised adults with COVID-19: "
                            "coagulopathy scores and a recommended prophylactic or therapeutic regimen at chart "
                            "opening (patient-view), and a check of every drafted anticoagulant order "
                            "(order-select, order-sign). It never prescribes; each card states its deciding inputs "
                            "and its source so the clinician can review the basis independently.",
            "intended_users": "Physicians, pharmacists and nurses ordering or reviewing anticoagulants in hospital, "
                              "inside their EHR (CDS Hooks).",
            "patient_population": f"Adults (>= {min_age:g} years) in a current inpatient encounter with COVID-19; "
                                  "the order check's safety layer (dose ceilings, renal, HIT, pregnancy, bleeding, "
                                  "duplicates) runs for every adult inpatient (clinical rules v3 §19.0, "
                                  "orders.safety_checks_ignore_covid_scope).",
            "out_of_scope_use": out_of_scope,
            "inputs": inputs,
            "logic": {"by_pathway": by_hook,
                      "card_kinds": {k: v for k, v in vocab.CARD_KINDS.items()}},
            "validation": {"tests": copy.deepcopy(_count_tests()), "reference_patients": _reference_patients()},
            "known_limitations": {
                "unverified_codes": {"count": len(unverified_codes), "codes": unverified_codes},
                "rules_marked_unverified": unverified_rules,
                "citations_not_verified": [c["key"] for c in citations
                                           if c["url"] and not c["identifier_verified"]],
                "local_policy": [{"key": "therapeutic.max_dose_mg", "value": cap,
                                  "note": f"The {cap:g} mg per-dose therapeutic cap is local policy, not label: "
                                          "above it the card points to the local UFH protocol (clinical-rules "
                                          "§19.13).", "source": source_of("therapeutic.max_dose_mg")}],
            },
        },
    }
    return doc
