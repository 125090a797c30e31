"""Issue 23: /docs/source-attributes(.json) answers the 13 ONC HTI-1 source attributes and the
FDA criterion-4 basis from the code and the policy. What the logic uses is read from the logic's
source, so these tests fail when the code changes what it uses."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cds_service import create_app
from cds_service.web.docs_page import attributes as sa
from cds_service.logic.policy import DEFAULTS, Policy

WORDING = {  # 45 CFR 170.315(b)(11)(iv)(A)(1)-(13)
    1: "Bibliographic citation of the intervention (clinical research or guideline)",
    2: "Developer of the intervention (translation from clinical research or guideline)",
    3: "Funding source of the intervention development technical implementation",
    4: "Release and, if applicable, revision dates of the intervention or reference source",
    5: "Use of race as expressed in the standards in § 170.213",
    6: "Use of ethnicity as expressed in the standards in § 170.213",
    7: "Use of language as expressed in the standards in § 170.213",
    8: "Use of sexual orientation as expressed in the standards in § 170.213",
    9: "Use of gender identity as expressed in the standards in § 170.213",
    10: "Use of sex as expressed in the standards in § 170.213",
    11: "Use of date of birth as expressed in the standards in § 170.213",
    12: "Use of social determinants of health data as expressed in the standards in § 170.213",
    13: "Use of health status assessments data as expressed in the standards in § 170.213",
}
# From the rules, not the code: sex (Devine IBW §2, Cockcroft-Gault x0.85 §3), date of birth
# (adult scope §1a, Cockcroft-Gault age §3), pregnancy status (a USCDI health status assessment:
# anti-Xa and D-dimer caveats §4, §12). Nothing reads race, ethnicity, language, sexual
# orientation, gender identity or social determinants.
USES = {"race": False, "ethnicity": False, "language": False, "sexual_orientation": False,
        "gender_identity": False, "sex": True, "date_of_birth": True,
        "social_determinants_of_health": False, "health_status_assessments": True}


@pytest.fixture
def served(tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"governance": {"developer": "St Elsewhere CDS team",
                                                 "funding": "Hospital operating budget"}}))
    app = create_app({"database": str(tmp_path / "db"), "policy": str(policy),
                      "public_base_url": "https://cds.hospital.test"})
    return app, app.test_client()


def _by_key(doc):
    return {a["key"]: a for a in doc["hti1_source_attributes"]}


def test_json_has_all_13_attributes_in_the_regulation_s_words(served):
    _, client = served
    resp = client.get("/docs/source-attributes.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    doc = resp.get_json()
    rows = doc["hti1_source_attributes"]
    assert [r["paragraph"] for r in rows] == [f"45 CFR 170.315(b)(11)(iv)(A)({n})" for n in range(1, 14)]
    assert [r["attribute"] for r in rows] == [WORDING[n] for n in range(1, 14)]


def test_what_the_logic_uses_matches_the_rules(served):
    _, client = served
    rows = _by_key(client.get("/docs/source-attributes.json").get_json())
    assert {k: rows[k]["uses"] for k in USES} == USES
    assert {"logic/anthropometrics.py", "logic/renal.py"} <= set(rows["sex"]["read_by"])
    assert {"logic/renal.py", "logic/scope.py"} <= set(rows["date_of_birth"]["read_by"])
    assert rows["health_status_assessments"]["inputs"] == ["pregnancy"]
    assert "Cockcroft-Gault" in rows["sex"]["how"] and "Not used" in rows["race"]["how"]


def test_developer_and_funding_come_from_the_policy(served):
    _, client = served
    rows = _by_key(client.get("/docs/source-attributes.json").get_json())
    assert rows["developer"]["value"] == "St Elsewhere CDS team"
    assert rows["funding_source"]["value"] == "Hospital operating budget"
    defaults = _by_key(sa.build(Policy.default()))
    assert defaults["developer"]["value"] == DEFAULTS["governance.developer"][0]


def test_citations_and_release_come_from_the_code(served):
    from cds_service.cards import vocabulary as vocab
    from cds_service.version import full_version
    _, client = served
    rows = _by_key(client.get("/docs/source-attributes.json").get_json())
    cited = {c["citation"] for c in rows["bibliographic_citation"]["value"]}
    assert cited == set(vocab.CITATIONS.values())
    tang = next(c for c in rows["bibliographic_citation"]["value"] if c["citation"].startswith("Tang N"))
    assert tang["url"] == "https://doi.org/10.1111/jth.14817" and "prophylaxis_suggestion" in tang["card_kinds"]
    release = rows["release_and_revision_dates"]["value"]
    assert release["service_version"] == full_version()
    assert {"citation": "Iba T et al. BMJ Open 2017;7:e017046", "years": [2017]} in release["reference_sources"]


def test_document_is_regenerated_not_stored(served):
    """The served JSON is what build() gives for this code and this policy, now."""
    app, client = served
    served_doc = client.get("/docs/source-attributes.json").get_json()
    with app.test_request_context(base_url="https://cds.hospital.test"):
        rebuilt = sa.build(app.extensions["cds"].policy, base_url="https://cds.hospital.test")
    assert json.loads(json.dumps(rebuilt)) == served_doc


def _logic_copy(tmp_path) -> Path:
    root = tmp_path / "logic"
    shutil.copytree(sa.LOGIC, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_a_logic_module_reading_race_flips_the_attribute(tmp_path):
    root = _logic_copy(tmp_path)
    (root / "equity.py").write_text("def adjust(inputs):\n    return inputs.race == 'x'\n")
    rows = _by_key(sa.build(Policy.default(), logic_root=root))
    assert rows["race"]["uses"] is True and rows["race"]["read_by"] == ["logic/equity.py"]
    assert {k: rows[k]["uses"] for k in USES if k != "race"} == {k: v for k, v in USES.items() if k != "race"}


def test_logic_that_stops_reading_pregnancy_no_longer_uses_health_status(tmp_path):
    root = _logic_copy(tmp_path)
    for path in root.glob("*.py"):
        if path.name != "inputs.py":
            path.write_text(path.read_text().replace(".pregnancy", ".pregnancy_unused"))
    rows = _by_key(sa.build(Policy.default(), logic_root=root))
    assert rows["health_status_assessments"]["uses"] is False


def test_fda_basis_has_inputs_with_windows_logic_validation_and_limitations(served):
    _, client = served
    basis = client.get("/docs/source-attributes.json").get_json()["fda_criterion_4_basis"]
    assert {o["who"].split(" (")[0] for o in basis["out_of_scope_use"]} == {
        "children and adolescents", "outpatients", "patients without COVID-19"}
    windows = {i["input"]: i["windows"] for i in basis["inputs"]}
    assert windows["platelets"] == {"window.labs_hours": 72} and windows["weight"] == {"window.weight_days": 30}
    assert set(basis["logic"]["by_pathway"]) == {"patient-view", "order-select", "order-sign"}
    kinds = {r["kind"] for rules in basis["logic"]["by_pathway"].values() for r in rules}
    assert "prophylaxis_suggestion" in kinds and "dose_correction" in kinds
    assert all(r["source"].startswith("https://cds.hospital.test/docs/rules#")
               for rules in basis["logic"]["by_pathway"].values() for r in rules)
    tests = basis["validation"]["tests"]
    assert tests["test_functions"] > 1000 and tests["band_edge_tests"] > 0
    assert basis["validation"]["reference_patients"]["patients"] == 35   # + 10 of issue 20 (§19)
    limits = basis["known_limitations"]
    assert limits["unverified_codes"]["count"] > 0 and "LOINC:32684-3" in limits["unverified_codes"]["codes"]
    assert {"policy_prefix": "ibw.", "source": "§2 Devine 1974 (unverified)"} in limits["rules_marked_unverified"]
    (cap,) = limits["local_policy"]
    assert cap["key"] == "therapeutic.max_dose_mg" and cap["value"] == 150 and "local policy" in cap["note"]


def test_every_input_has_a_window_entry_and_every_window_is_a_policy_key():
    assert set(sa.input_fields()) == set(sa.INPUT_WINDOWS)
    assert all(k in DEFAULTS for _, keys in sa.INPUT_WINDOWS.values() for k in keys)
    # an attribute-carrying input the logic reads is explained in words
    reads = sa.logic_reads()
    carried = {f for *_, fields in sa.ATTRIBUTES for f in fields}
    assert all(f in sa.HOW for f in carried if f in reads)


def test_html_page_and_the_rules_page_link_to_it(served):
    _, client = served
    resp = client.get("/docs/source-attributes")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    assert html.count("<tr id='") == 13 and "St Elsewhere CDS team" in html
    assert "<strong>No.</strong> Not used" in html and "150 mg per-dose therapeutic cap is local policy" in html
    assert "href='/docs/source-attributes'" in client.get("/docs/rules").get_data(as_text=True)
