"""`cds-service assess` end to end over the FHIR Bundles in tests/fixtures/assess/.

Each NN_name.json has a sibling NN_name.expected.json holding `now`, the hand arithmetic
(`_why`, from clinical-rules.md) and only the assessment keys asserted. The real CLI runs
(`cli.main`), so parsing, extraction and assessment are all exercised.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cds_service.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "assess"
CASES = sorted(p for p in FIXTURES.glob("*.json") if not p.name.endswith(".expected.json"))
SECTIONS = {"anthropometrics", "renal", "d_dimer", "sofa", "sic", "isth_dic", "seed_trigger", "safety",
            "regimen", "anti_xa", "critical_illness"}


def assess_json(capsys, *argv) -> dict:
    code = main(["assess", *map(str, argv)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def same(actual, expected) -> bool:
    """Booleans and nulls by identity (so 1 is not True), numbers to 1e-9, the rest by ==."""
    if isinstance(expected, bool) or expected is None:
        return actual is expected
    if isinstance(expected, (int, float)):
        return isinstance(actual, (int, float)) and not isinstance(actual, bool) \
            and actual == pytest.approx(expected, abs=1e-9)
    return actual == expected


def test_there_are_at_least_fifteen_cases_each_with_expectations():
    assert len(CASES) >= 15
    for case in CASES:
        assert case.with_suffix(".expected.json").exists(), case.name


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_fixture(case, capsys):
    spec = json.loads(case.with_suffix(".expected.json").read_text())
    args = [case, "--now", spec["now"]]
    if spec.get("policy"):
        args += ["--policy", FIXTURES / spec["policy"]]
    result = assess_json(capsys, *args)
    assert SECTIONS <= set(result)
    wrong = {f"{section}.{key}": (result[section].get(key, "<absent>"), value)
             for section, keys in spec["expect"].items() for key, value in keys.items()
             if not same(result[section].get(key, "<absent>"), value)}
    assert not wrong, f"(actual, expected) per key: {wrong}"


def test_every_contract_key_is_present(capsys):
    result = assess_json(capsys, CASES[0], "--now", "2024-03-10T12:00:00Z")
    contract = {
        "anthropometrics": ["weight_kg", "height_cm", "bmi", "ibw_kg", "adjbw_kg"],
        "scope": ["in_scope", "reasons"],
        "renal": ["creatinine_mg_dL", "crcl_ml_min", "crcl_weight_basis", "crcl_lt_30",
                  "crcl_actual_weight_ml_min", "creatinine_unstable", "renal_replacement"],
        "d_dimer": ["determinable", "basis", "multiple_of_uln", "gt_6x_uln", "dic_points"],
        "sofa": ["respiratory", "cardiovascular", "hepatic", "renal", "coagulation", "cns", "sofa4", "sofa4_complete"],
        "sic": ["platelet_points", "inr_points", "sofa_points", "total", "determinable", "positive"],
        "isth_dic": ["platelet_points", "d_dimer_points", "pt_points", "fibrinogen_points", "total", "determinable",
                     "overt"],
        "seed_trigger": ["triggered", "reasons"],
        "safety": ["contraindications", "escalation_cautions", "current_order_class", "already_therapeutic",
                   "other_anticoagulation_indication"],
        "regimen": ["drug", "dose_mg", "dose_units", "doses_per_day", "basis", "notes"],
        "recommendation": ["pathway", "not_therapeutic_because", "therapeutic"],
        "anti_xa": ["indicated", "reasons", "target_low", "target_high"],
        "critical_illness": ["critically_ill", "oxygen"],
    }
    missing = [f"{s}.{k}" for s, keys in contract.items() for k in keys if k not in result.get(s, {})]
    assert not missing


def test_now_decides_the_windows(capsys):
    # Fixture 16's labs are from 2024-03-10T06:00Z: 72 h later they are out of the window.
    case = FIXTURES / "16_ward_low_flow_d_dimer_gt_6x.json"
    assert assess_json(capsys, case, "--now", "2024-03-13T06:00:00Z")["d_dimer"]["determinable"] is True
    late = assess_json(capsys, case, "--now", "2024-03-13T06:00:01Z")
    assert late["d_dimer"]["determinable"] is False and late["renal"]["crcl_ml_min"] is None


def test_policy_file_overrides_a_threshold(capsys, tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"dosing": {"bmi_tier1": 29.9}}))
    case = FIXTURES / "02_bmi_just_below_30.json"     # BMI 29.965
    result = assess_json(capsys, case, "--now", "2024-03-10T12:00:00Z", "--policy", policy)
    assert result["regimen"]["basis"] == "bmi_ge_30" and result["regimen"]["dose_mg"] == 60


def test_cds_policy_environment_variable_is_the_default(capsys, tmp_path, monkeypatch):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"dosing.bmi_tier1": 29.9}))
    monkeypatch.setenv("CDS_POLICY", str(policy))
    result = assess_json(capsys, FIXTURES / "02_bmi_just_below_30.json", "--now", "2024-03-10T12:00:00Z")
    assert result["regimen"]["basis"] == "bmi_ge_30"


def bad(capsys, *argv) -> str:
    code = main(["assess", *map(str, argv)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_missing_file(capsys, tmp_path):
    assert "cannot read" in bad(capsys, tmp_path / "nope.json")


def test_not_json(capsys, tmp_path):
    path = tmp_path / "b.json"
    path.write_text("{not json")
    assert "not valid JSON" in bad(capsys, path)


def test_not_utf8(capsys, tmp_path):
    path = tmp_path / "b.json"
    path.write_bytes(b"\xff\xfe\x00{")
    assert "not valid JSON" in bad(capsys, path)


@pytest.mark.parametrize("body,fragment", [
    ({"resourceType": "Patient", "id": "p"}, "not a FHIR Bundle"),
    ([1, 2], "not a FHIR Bundle"),
    ({"resourceType": "Bundle", "type": "document", "entry": []}, "Bundle type 'document'"),
    ({"resourceType": "Bundle", "entry": []}, "Bundle type None"),
    ({"resourceType": "Bundle", "type": "collection", "entry": {"resource": {}}}, "entry must be a list"),
    ({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "a"}},
        {"resource": {"resourceType": "Patient", "id": "b"}}]}, "more than one Patient"),
])
def test_not_a_usable_bundle(capsys, tmp_path, body, fragment):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(body))
    assert fragment in bad(capsys, path, "--now", "2024-03-10T12:00:00Z")


@pytest.mark.parametrize("now", ["yesterday", "2024-13-01T00:00:00Z", "2024-03-10"])
def test_bad_now(capsys, now):
    assert "--now" in bad(capsys, CASES[0], "--now", now)


def test_bad_policy(capsys, tmp_path):
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"dosing.no_such_key": 1}))
    assert "unknown policy key" in bad(capsys, CASES[0], "--policy", policy)
    policy.write_text(json.dumps({"dosing.bmi_tier1": "thirty"}))
    assert "expects number" in bad(capsys, CASES[0], "--policy", policy)
    assert "cannot read policy file" in bad(capsys, CASES[0], "--policy", tmp_path / "none.json")


def test_empty_bundle_is_all_not_determinable(capsys, tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection"}))
    result = assess_json(capsys, path, "--now", "2024-03-10T12:00:00Z")
    assert result["anthropometrics"]["bmi"] is None and result["d_dimer"]["determinable"] is False
    assert result["regimen"]["basis"] == "pending_weight"


def _with_unknown_field(tmp_path) -> Path:
    """Fixture 16 with an unknown element on the D-dimer Observation: not valid R4B (extra
    fields are forbidden), but nothing the service reads is wrong."""
    bundle = json.loads((FIXTURES / "16_ward_low_flow_d_dimer_gt_6x.json").read_text())
    found = 0
    for entry in bundle["entry"]:
        res = entry["resource"]
        codes = {c.get("code") for c in res.get("code", {}).get("coding", [])}
        if res["resourceType"] == "Observation" and codes & {"48065-7", "48066-5", "91556-1", "7799-0"}:
            res["notAnR4BElement"] = True
            found += 1
    assert found, "fixture 16 has a D-dimer Observation"
    path = tmp_path / "unknown.json"
    path.write_text(json.dumps(bundle))
    return path


def test_strict_validates_used_resources_with_r4b(capsys, tmp_path):
    path = _with_unknown_field(tmp_path)
    lenient = assess_json(capsys, path, "--now", "2024-03-10T12:00:00Z")
    assert lenient["d_dimer"]["determinable"] is True and "d_dimer" not in lenient["rejected"]
    strict = assess_json(capsys, path, "--now", "2024-03-10T12:00:00Z", "--strict")
    assert strict["d_dimer"]["determinable"] is False
    assert "not valid FHIR R4B" in strict["rejected"]["d_dimer"]
    assert "notAnR4BElement" in strict["rejected"]["d_dimer"]


def test_strict_changes_nothing_for_valid_bundles(capsys):
    case = FIXTURES / "16_ward_low_flow_d_dimer_gt_6x.json"
    args = (case, "--now", "2024-03-10T12:00:00Z")
    assert assess_json(capsys, *args, "--strict") == assess_json(capsys, *args)


@pytest.mark.parametrize("encounter, in_scope", [(None, True), ("enc-1", True), ("enc-other", False)])
def test_encounter_option_plays_the_context_encounter_id(capsys, encounter, in_scope):
    # v2 §1a: with --encounter only that Encounter is judged; an id matching no Encounter is
    # not inpatient. Fixture 16 holds Encounter enc-1 (IMP, in progress).
    case = FIXTURES / "16_ward_low_flow_d_dimer_gt_6x.json"
    args = [case, "--now", "2024-03-10T12:00:00Z"] + (["--encounter", encounter] if encounter else [])
    scope = assess_json(capsys, *args)["scope"]
    assert scope == {"in_scope": in_scope, "reasons": [] if in_scope else ["not_inpatient"]}
