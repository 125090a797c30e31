"""A bad policy file stops the service at start with one clear line (never a worker crash loop)."""
from __future__ import annotations

import json

import pytest

from cds_service import create_app
from cds_service.cli import main
from cds_service.logic.policy import PolicyError


def test_serve_refuses_a_policy_with_an_unknown_key(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "policy.json"
    bad.write_text(json.dumps({"dosing.bmi_tier9": 50}))
    monkeypatch.setenv("CDS_POLICY", str(bad))
    monkeypatch.setattr("os.execv", lambda *a: pytest.fail("gunicorn must not start"))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "dosing.bmi_tier9" in err and len(err.strip().splitlines()) == 1


def test_serve_refuses_an_ill_typed_value(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "policy.toml"
    bad.write_text('[renal]\npreferred_agent = "dalteparin"\n')
    monkeypatch.setenv("CDS_POLICY", str(bad))
    monkeypatch.setattr("os.execv", lambda *a: pytest.fail("gunicorn must not start"))
    assert main(["serve"]) == 2
    assert "renal.preferred_agent" in capsys.readouterr().err


def test_create_app_raises_policy_error(tmp_path):
    bad = tmp_path / "policy.json"
    bad.write_text("{not json")
    with pytest.raises(PolicyError):
        create_app({"policy": str(bad), "database": str(tmp_path / "db")})


def test_valid_override_changes_the_dose_tier(tmp_path):
    good = tmp_path / "policy.json"
    good.write_text(json.dumps({"dosing": {"bmi_tier1": 35}}))
    app = create_app({"policy": str(good), "database": str(tmp_path / "db")})
    assert app.extensions["cds"].policy["dosing.bmi_tier1"] == 35
