"""codes.extra_file extends the prefetch queries too (fhir-data-requirements §10)."""
from __future__ import annotations

import json

from cds_service import create_app


def test_extra_lab_code_reaches_discovery_templates(tmp_path):
    extra = tmp_path / "codes.json"
    extra.write_text(json.dumps({"observations": {"platelets": {"codes": ["LOINC:99999-9"]}}}))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"codes.extra_file": str(extra)}))
    app = create_app({"policy": str(policy), "database": str(tmp_path / "db")})
    services = app.test_client().get("/cds-services").get_json()["services"]
    for service in services:
        labs = service["prefetch"]["labs"]
        assert "http://loinc.org|99999-9" in labs and "http://loinc.org|777-3" in labs


def test_without_extra_file_templates_are_the_packaged_ones(tmp_path):
    app = create_app({"database": str(tmp_path / "db")})
    labs = app.test_client().get("/cds-services").get_json()["services"][0]["prefetch"]["labs"]
    assert "99999-9" not in labs
