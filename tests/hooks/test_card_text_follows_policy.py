"""Card text states the service's own thresholds from the policy, so a site that changes a key
never reads a rule the service is not applying."""
from __future__ import annotations

import json

from cds_service import create_app
from cds_service.cli.examples import build as build_example
from conftest import in_scope


def build(name, now=None):
    """The example body in v2 scope (conftest.in_scope)."""
    return in_scope(build_example(name, now))


def _card(tmp_path, keys, name="sic-positive"):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(keys))
    client = create_app({"database": str(tmp_path / "db"), "policy": str(path)}).test_client()
    resp = client.post("/cds-services/coagulopathy-risk", json=build(name))
    return resp.get_json()["cards"][0]


def test_bmi_tier_in_the_dose_line_comes_from_the_policy(tmp_path):
    # BMI 88 / 1.70^2 = 30.45: with tier 1 at 30.2 still 60 mg, and the card says 30.2.
    card = _card(tmp_path, {"dosing.bmi_tier1": 30.2})
    create = card["suggestions"][0]["actions"][0]["resource"]
    assert "BMI 30.2 or more" in create["note"][0]["text"]
    assert "BMI 30.2 or more" in card["detail"]


def test_no_competing_dose_figure_whatever_the_policy(tmp_path):
    # §18.2: the v1 "for information: 50 IU/kg would be ..." line is gone.
    card = _card(tmp_path, {"dosing.info_mg_per_kg": 0.6})
    assert "IU/kg" not in card["detail"] and "would be" not in card["detail"]
