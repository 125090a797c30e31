"""The assessment view's wording of PT and platelets (issue 22): a PT shorter than its reference
is said so (never "prolonged -0.7 s"), and the page uses one platelet unit."""
from __future__ import annotations

import re
from dataclasses import dataclass

import requests

from cds_service.smart.page import _platelet_unit, _pt_difference


@dataclass
class M:
    value: float | None
    reported_value: float | None
    reported_unit: str | None


def test_pt_difference_words():
    assert _pt_difference(2.5) == " (prolonged 2.5 s)"
    assert _pt_difference(-0.7) == " (shorter than reference by 0.7 s)"
    assert _pt_difference(0.0) == " (equal to reference)"
    assert _pt_difference(None) == ""


def test_platelet_unit_is_the_labs_when_it_is_the_same_number():
    assert _platelet_unit(M(95, 95, "10*3/uL")) == "×10³/µL"
    assert _platelet_unit(M(95, 95, "10*9/L")) == "×10⁹/L"
    assert _platelet_unit(M(95, 95000, "/uL")) == "×10⁹/L"      # another number: the canonical unit
    assert _platelet_unit(None) == "×10⁹/L"


def _page_text(dev_fhir, dev_service, patient: str) -> str:
    session = requests.Session()
    launch = session.post(dev_fhir.iss + "/_services/smart/Launch", timeout=10,
                          json={"launchUrl": dev_service + "/smart/launch", "parameters": {"patient": patient}})
    html = session.get(f"{dev_service}/smart/launch", params={"launch": launch.json()["launch_id"],
                                                              "iss": dev_fhir.iss}, timeout=60).text
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_page_has_one_platelet_unit(dev_fhir, dev_service):
    text = _page_text(dev_fhir, dev_service, "cov-sic-imv")      # platelets reported in 10*3/uL
    assert "Platelets below 25 ×10³/µL" in text and "95 ×10³/µL" in text
    assert "×10⁹/L" not in text
