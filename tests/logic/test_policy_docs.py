"""The README documents every policy key with its default and a source."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cds_service.logic.policy import DEFAULTS, source_of

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("key", list(DEFAULTS))
def test_every_key_is_in_the_readme_with_its_default_and_source(key):
    default = json.dumps(DEFAULTS[key][0])
    assert f"| `{key}` | `{default}` | {source_of(key)} |" in README, key


def test_assessment_contract_sections_are_documented():
    for section in ("anthropometrics:", "renal:", "d_dimer:", "sofa:", "sic:", "isth_dic:",
                    "seed_trigger:", "safety:", "regimen:", "anti_xa:", "critical_illness:",
                    "scope:", "recommendation:"):
        assert section in README
