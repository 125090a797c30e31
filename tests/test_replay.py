"""Issue 23: CDS_CAPTURE_DIR (pseudonymised request capture) and `cds-service replay`.

The end-to-end test runs two real service instances (granian) that differ in one policy key,
captures every example request on the first, and replays the capture against both: exactly the
requests the key touches differ, and only in what it changes."""
from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from cds_service.web.capture import Pseudonymiser
from cds_service.cli import main
from cds_service.config import ConfigError, load_config
from cds_service.cli.examples import SCENARIOS, build
from cds_service.cli.replay import diff, prepare, shift_dates
from served_instance import Instance

SERVICE = {"patient-view": "coagulopathy-risk", "order-select": "anticoagulant-order-check",
           "order-sign": "anticoagulant-order-sign"}
TOKEN = "ACCESS-TOKEN-never-on-disk-9d1"
KEY = "site-key-for-tests-0123456789"


@pytest.fixture(scope="module")
def two_instances(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    policy = tmp / "policy.json"
    policy.write_text(json.dumps({"cards": {"bmi_tier2_indicator": "critical"}}))  # the one key changed
    capture = tmp / "capture"
    started = []
    try:
        started.append(Instance(tmp, "a", {"CDS_CAPTURE_DIR": str(capture), "CDS_CAPTURE_KEY": KEY}))
        started.append(Instance(tmp, "b", {"CDS_POLICY": str(policy)}))
        a, b = started
        for name in SCENARIOS:
            body = build(name)
            body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                         "scope": "user/*.read", "subject": "Practitioner/dr-jones"}
            body["context"]["userId"] = "Practitioner/dr-jones"
            resp = requests.post(f"{a.base}/cds-services/{SERVICE[body['hook']]}", json=body, timeout=10)
            assert resp.status_code == 200, resp.text[:300]
        # the replays below go to `a` too, which keeps capturing: replay a snapshot
        snapshot = tmp / "capture-snapshot"
        shutil.copytree(capture, snapshot)
        yield a, b, snapshot, tmp
    finally:
        for instance in started:
            instance.stop()


def test_capture_is_pseudonymised_and_complete(two_instances):
    _, _, capture, _ = two_instances
    files = sorted(capture.glob("*.json"))
    assert len(files) == len(SCENARIOS)
    original = capture.parent / "capture"
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in original.glob("*.json"))  # owner only
    raw = "".join(p.read_text() for p in files)
    patient_ids = {build(n)["context"]["patientId"] for n in SCENARIOS}
    assert TOKEN not in raw and "access_token" not in raw and "dr-jones" not in raw
    assert not [pid for pid in patient_ids if pid in raw]
    record = json.loads(files[0].read_text())
    assert set(record) == {"service", "hook", "captured_at", "status", "request", "response"}
    assert record["request"]["context"]["patientId"].startswith("pseudo-")
    assert record["request"]["context"]["userId"].startswith("Practitioner/pseudo-")
    # the same patient gets the same pseudonym under the same site key
    pseudo = Pseudonymiser(KEY.encode())
    pids = {json.loads(p.read_text())["request"]["context"]["patientId"] for p in files}
    assert pids == {pseudo.pseudonym("Patient", pid) for pid in patient_ids}


def test_replay_against_two_versions_shows_exactly_the_expected_diffs(two_instances, capsys):
    a, b, capture, _ = two_instances
    code = main(["replay", "--capture-dir", str(capture), "--base", a.base, "--against", b.base, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["requests"] == len(SCENARIOS)
    changed = {r["file"]: r["differences"] for r in out["results"] if r["differences"]}
    # bmi-42 (order-select) and sign-bmi-42 (order-sign): BMI 42.2 is tier 2; nothing else changes
    assert sorted(changed.values()) == [["~ dose_correction: indicator warning -> critical"]] * 2
    services = {r["file"]: r["service"] for r in out["results"]}
    assert sorted(services[f] for f in changed) == ["anticoagulant-order-check", "anticoagulant-order-sign"]


def test_replay_against_itself_and_a_saved_answer_set(two_instances, capsys):
    a, b, capture, tmp = two_instances
    assert main(["replay", "--capture-dir", str(capture), "--base", a.base, "--against", a.base]) == 0
    assert f"{len(SCENARIOS)} requests replayed, 0 with differences" in capsys.readouterr().out
    saved = tmp / "answers-a"
    assert main(["replay", "--capture-dir", str(capture), "--base", a.base, "--save-answers", str(saved)]) == 0
    capsys.readouterr()
    assert main(["replay", "--capture-dir", str(capture), "--base", b.base, "--answers", str(saved)]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("DIFF")]
    assert len(lines) == 2 and all(line.endswith("~ dose_correction: indicator warning -> critical")
                                   for line in lines)


def test_the_capture_s_own_answers_match_a_replay_on_the_same_version(two_instances, tmp_path, capsys):
    """The capture file holds the answer given at capture time: it is a saved answer set too."""
    a, _, capture, _ = two_instances
    answers = tmp_path / "answers"
    answers.mkdir()
    for path in capture.glob("*.json"):
        record = json.loads(path.read_text())
        (answers / path.name).write_text(json.dumps({"status": record["status"], "response": record["response"]}))
    assert main(["replay", "--capture-dir", str(capture), "--base", a.base, "--answers", str(answers)]) == 0


def test_dates_shift_by_one_offset_and_hook_instances_are_fresh():
    body = build("sic-positive")
    record = {"service": "coagulopathy-risk", "captured_at": "2026-01-01T00:00:00+00:00", "request": body}
    moved = prepare(record, timedelta(days=10, hours=1))
    assert moved["hookInstance"] != body["hookInstance"]
    assert shift_dates("2026-01-01T08:00:00Z", timedelta(hours=30)) == "2026-01-02T14:00:00Z"
    assert shift_dates("2026-01-01T08:00:00.250+02:00", timedelta(days=1)) == "2026-01-02T08:00:00.250+02:00"
    assert shift_dates("1957-03-31", timedelta(days=10, hours=11)) == "1957-04-10"
    assert shift_dates("1957-03", timedelta(days=100)) == "1957-03"       # partial dates stay
    assert shift_dates("not-a-date", timedelta(days=1)) == "not-a-date"
    assert "fhirServer" not in moved and "fhirAuthorization" not in moved


def _card(kind, indicator="warning", summary="s", actions=()):
    return {"summary": summary, "indicator": indicator, "source": {"topic": {"code": kind}},
            "suggestions": [{"label": "x", "actions": list(actions)}] if actions else []}


def test_diff_names_each_kind_of_change():
    create = {"type": "create", "description": "d", "resource": {"resourceType": "MedicationRequest", "id": "1",
              "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 40, "unit": "mg"}}]}]}}
    create60 = json.loads(json.dumps(create))
    create60["resource"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 60
    create60["resource"]["id"] = "other-id"   # ids never count
    a = (200, {"cards": [_card("x", actions=[create]), _card("gone")]})
    b = (200, {"cards": [_card("x", indicator="critical", summary="t", actions=[create60]), _card("new", "info")]})
    lines = diff(a, b)
    assert lines[0] == "~ x: indicator warning -> critical"
    assert lines[1] == "~ x: summary 's' -> 't'"
    assert lines[2].startswith("~ x: suggestion actions changed")
    assert "- card removed: gone (warning)" in lines and "+ card added: new (info)" in lines
    assert diff((200, {"cards": []}), (412, None)) == ["status 200 -> 412"]
    same = json.loads(json.dumps(a))
    same[1]["cards"][0]["suggestions"][0]["actions"][0]["resource"]["id"] = "renamed"
    assert diff(a, same) == []


def test_capture_is_refused_in_production_unless_allowed(tmp_path, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="CDS_CAPTURE_DIR"):
        load_config({"env": "production", "capture_dir": str(tmp_path)})
    assert load_config({"env": "production", "capture_dir": str(tmp_path),
                        "capture_allow_production": True}).capture_dir == str(tmp_path)
    monkeypatch.delenv("CDS_CAPTURE_DIR", raising=False)
    assert load_config().capture_dir == ""                     # off by default
    monkeypatch.setenv("CDS_ENV", "production")
    monkeypatch.setenv("CDS_CAPTURE_DIR", str(tmp_path / "cap"))
    assert main(["serve", "--port", "0"]) == 2                  # stops before binding a port
    assert "refusing to start in production with CDS_CAPTURE_DIR" in capsys.readouterr().err


def test_capture_names_and_person_resources_are_removed():
    pseudo = Pseudonymiser(b"k" * 32)
    body = {"hook": "patient-view", "hookInstance": "h", "fhirServer": "https://ehr/fhir",
            "fhirAuthorization": {"access_token": "t"},
            "context": {"patientId": "123", "userId": "PractitionerRole/9", "encounterId": "e1",
                        "selections": ["MedicationRequest/m1"]},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "123", "name": [{"family": "Smith"}],
                                     "identifier": [{"value": "MRN-555"}], "telecom": [{"value": "555"}],
                                     "birthDate": "1950-01-01", "gender": "female"},
                         "meds": {"resourceType": "MedicationRequest", "id": "m1",
                                  "subject": {"reference": "Patient/123", "display": "Jane Smith"},
                                  "requester": {"reference": "https://ehr/fhir/Practitioner/9"}}}}
    out = pseudo.request(body)
    text = json.dumps(out)
    assert "Smith" not in text and "MRN-555" not in text and "555" not in text and '"t"' not in text
    patient = out["prefetch"]["patient"]
    assert patient["id"] == out["context"]["patientId"] == pseudo.pseudonym("Patient", "123")
    assert patient["birthDate"] == "1950-01-01" and patient["gender"] == "female"
    med = out["prefetch"]["meds"]
    assert med["subject"] == {"reference": f"Patient/{patient['id']}"}
    # Review #10 changes this: the EHR's host and path never stay in an absolute reference.
    assert med["requester"]["reference"] == f"https://fhir.invalid/Practitioner/{pseudo.pseudonym('Practitioner', '9')}"
    assert out["context"]["selections"] == [f"MedicationRequest/{med['id']}"]
    assert out["fhirServer"] == "https://fhir.invalid" and "fhirAuthorization" not in out


def test_the_generated_site_key_is_kept_and_shared(tmp_path):
    from types import SimpleNamespace

    from cds_service.web.capture import site_key
    cfg = SimpleNamespace(capture_key="")
    capture = tmp_path / "capture"
    capture.mkdir()
    first, second = site_key(cfg, capture), site_key(cfg, capture)   # two workers, or a restart
    assert first == second and len(first) == 64
    # Review #10 changes this: the key is kept beside the capture directory, never in it.
    assert list(capture.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if p.name != "capture"] == [".capture.capture-key"]
    assert ((tmp_path / ".capture.capture-key").stat().st_mode & 0o777) == 0o600
    assert site_key(SimpleNamespace(capture_key="x" * 20), capture) == b"x" * 20


def test_capture_leaves_no_id_or_name_in_links_narratives_extensions_notes_or_identifiers():
    """Review #10: the places a raw id or a name survived the first pseudonymiser."""
    pseudo = Pseudonymiser(b"k" * 32)
    body = {"hook": "patient-view", "hookInstance": "h", "fhirServer": "https://ehr.hosp.org/fhir",
            "context": {"patientId": "MRN123456", "userId": "Practitioner/dr77"},
            "prefetch": {
                "patient": {"resourceType": "Patient", "id": "MRN123456", "birthDate": "1950-01-01",
                            "text": {"status": "generated", "div": "<div>Jane Q Public, MRN 123456</div>"},
                            "name": [{"family": "Public", "given": ["Jane"]}],
                            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
                                           "valueString": "Smith"}]},
                "obs": {"resourceType": "Bundle", "type": "searchset",
                        "link": [{"relation": "self", "url": "https://ehr.hosp.org/fhir/Observation?patient=MRN123456"}],
                        "entry": [{"fullUrl": "https://ehr.hosp.org/fhir/Observation/o1",
                                   "resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                                                "code": {"coding": [{"system": "http://loinc.org", "code": "26515-7",
                                                                     "display": "Platelets"}]},
                                                "subject": {"reference": "Patient/MRN123456", "display": "Jane Q Public"},
                                                "note": [{"text": "Called daughter Mary Public on 555-0100"}],
                                                "performer": [{"identifier": {"system": "urn:npi", "value": "1234567890"},
                                                               "display": "Dr Who"}],
                                                "encounter": {"reference": "Encounter?identifier=urn:visit|V998877"}},
                                   "request": {"method": "GET", "url": "Patient/MRN123456/$everything"}}]},
                "med": {"resourceType": "MedicationRequest", "id": "m1", "status": "active",
                        "note": [{"text": "for the CRRT circuit, per Dr Jones"}]}}}
    out = pseudo.request(body)
    text = json.dumps(out)
    for needle in ("MRN123456", "123456", "Jane", "Public", "Smith", "ehr.hosp.org", "1234567890",
                   "V998877", "Dr Who", "555-0100", "Mary", "Jones", "dr77"):
        assert needle not in text, needle
    obs = out["prefetch"]["obs"]["entry"][0]["resource"]
    assert obs["code"]["coding"][0]["display"] == "Platelets"  # a code's name is kept
    assert obs["subject"] == {"reference": f"Patient/{out['context']['patientId']}"}
    # The words a rule reads in a note (§10.4, circuit heparin) survive; the rest does not.
    from cds_service.fhir.exposure import ordered_for_circuit
    assert ordered_for_circuit(out["prefetch"]["med"])


def test_capture_directory_is_closed_and_a_symlinked_key_is_refused(tmp_path):
    from types import SimpleNamespace

    from cds_service.web.capture import _own_directory, site_key
    capture = tmp_path / "cap"
    capture.mkdir(mode=0o755)
    capture.chmod(0o755)
    _own_directory(capture)
    assert (capture.stat().st_mode & 0o777) == 0o700
    (tmp_path / "elsewhere").write_text("attacker-chosen-key")
    (tmp_path / ".cap.capture-key").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        site_key(SimpleNamespace(capture_key=""), capture)
