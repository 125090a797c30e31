"""The synthetic patients' README (cds_service/data/patients/README.md) says which card each
patient gets; this test opens every patient as the CDS Hooks Sandbox does (patient-view, no
encounterId, the service fetching from `dev-fhir`) and compares kind, indicator and the quoted
summary with what the service answers (issue 22: two summaries had drifted).

In a quoted summary, "…" stands for any text and "<date>" for a date."""
from __future__ import annotations

import re
import uuid

import pytest

from cds_service import create_app
from cds_service.data import path as data_path

ROW = re.compile(r"^\| [^|]+ \| `(?P<id>cov-[a-z0-9-]+)` \| [^|]+ \| (?P<card>.+) \|$")


def _rows() -> list[tuple[str, str]]:
    """(id, expected card) from every "| Patient | Id | Scenario |" table (v2 and v3 patients)."""
    text = data_path("patients", "README.md").read_text()
    tables = [part.split("\n\n", 1)[0] for part in text.split("| Patient | Id | Scenario |")[1:]]
    return [(m["id"], m["card"]) for table in tables for m in map(ROW.match, table.splitlines()) if m]


def _pattern(quoted: str) -> re.Pattern:
    parts = re.split(r"( ?… ?|<date>)", quoted)
    return re.compile("".join(".+" if p == "<date>" else " ?.*? ?" if "…" in p else re.escape(p) for p in parts))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    database = tmp_path_factory.mktemp("patients") / "cds.sqlite3"
    return create_app({"database": str(database), "fhir_timeout": 20.0}).test_client()


def test_every_patient_has_a_row():
    ids = sorted(p.stem for p in data_path("patients").glob("cov-*.json"))
    assert sorted(pid for pid, _ in _rows()) == ids


@pytest.mark.parametrize("patient, expected", _rows())
def test_the_card_is_the_one_the_readme_quotes(client, dev_fhir, patient, expected):
    body = {"hookInstance": str(uuid.uuid4()), "hook": "patient-view", "fhirServer": dev_fhir.iss,
            "context": {"userId": "Practitioner/readme", "patientId": patient}}
    resp = client.post("/cds-services/coagulopathy-risk", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    cards = resp.get_json()["cards"]
    if expected.startswith("**no card**"):
        assert cards == [], [c["summary"] for c in cards]
        return
    assert len(cards) == 1, [c["summary"] for c in cards]
    card = cards[0]
    kind = re.match(r"`([a-z_]+)`", expected)
    indicator = re.search(r"\*\*(info|warning|critical)\*\*", expected)
    assert kind and card["source"]["topic"]["code"] == kind[1]
    assert indicator and card["indicator"] == indicator[1]
    quoted = re.search(r'\*\*[a-z]+\*\*[^"]*: "([^"]+)"', expected)
    if quoted:
        assert _pattern(quoted[1]).fullmatch(card["summary"]), (card["summary"], quoted[1])
