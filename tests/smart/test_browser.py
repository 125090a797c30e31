"""The assessment view in a real browser: Debian's chromium driven by Python Playwright.

Playwright's own browser download cannot work here (no network beyond the package
registries), so the test launches /usr/bin/chromium (the session fixture `browser` in conftest.py) (CDS_CHROMIUM overrides the path). Without
chromium or playwright the test skips with one line, except in CI (.ci/run sets
CDS_REQUIRE_BROWSER=1), where it fails.
"""
from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

pytestmark = pytest.mark.integration


def _open(browser, url: str, width: int, height: int):
    page = browser.new_page(viewport={"width": width, "height": height}, java_script_enabled=False)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    response = page.goto(url, wait_until="load")
    return page, response, problems


def _check_page(page, points_expected: dict[str, int] | None = None):
    rec = page.locator("#recommendation h2")
    assert rec.is_visible() and rec.inner_text().startswith("Recommendation:")
    scores = page.locator(".score h3").all_inner_texts()
    assert [s.split(":")[0] for s in scores] == [
        "SIC (Iba 2017)", "ISTH overt DIC (Taylor 2001)", "SOFA (parts)", "D-dimer multiple of ULN", "BMI",
        "CrCl (Cockcroft–Gault)"]
    rows = page.locator("table.inputs tbody tr")
    assert rows.count() >= 7
    assert page.locator("svg.chart").count() == 7
    for chart in page.locator("svg.chart").all():
        box = chart.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 60    # drawn, not collapsed
    if points_expected:
        for key, n in points_expected.items():
            assert page.locator(f"#chart-{key} circle.pt").count() == n, key


SYNTHETIC = ["cov-sic-imv", "cov-ddimer-ward", "cov-plt-lt25", "cov-hit-history", "cov-renal-umol",
             "cov-no-weight"]


def test_trend_patient_in_a_browser_wide_and_narrow(browser, view_service, loaded_fhir, tmp_path):
    url = f"{view_service}/smart/launch?" + urlencode({"iss": loaded_fhir, "patient": "cov-trend-ward"})
    for width, height in ((1280, 800), (480, 800)):
        page, response, problems = _open(browser, url, width, height)
        assert response.status == 200
        _check_page(page, {"d_dimer": 9, "platelets": 9, "inr": 9, "fibrinogen": 9, "creatinine": 9,
                           "crcl": 9, "weight": 3})
        assert page.locator("#chart-platelets path.dose").count() == 8
        # Nothing wider than the window: the input table scrolls inside its own box.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(tmp_path / f"cov-trend-ward-{width}.png"), full_page=True)
        assert problems == []
        page.close()
    assert (tmp_path / "cov-trend-ward-1280.png").stat().st_size > 20_000


@pytest.mark.parametrize("patient", SYNTHETIC)
def test_synthetic_patients_render(browser, view_service, loaded_fhir, tmp_path, patient):
    url = f"{view_service}/smart/launch?" + urlencode({"iss": loaded_fhir, "patient": patient})
    page, response, problems = _open(browser, url, 1280, 800)
    assert response.status == 200
    _check_page(page)
    assert page.locator("svg.chart circle.pt").count() >= 5    # every patient has a few results
    page.screenshot(path=str(tmp_path / f"{patient}.png"), full_page=True)
    assert problems == []


def test_smart_launch_in_a_browser(browser, view_service, auth, tmp_path):
    """The EHR launch with the browser following every redirect and keeping the cookie."""
    launch = auth.new_launch("cov-plt-lt25", '{"kind":"contraindicated","hookInstance":"h-9"}')
    url = f"{view_service}/smart/launch?" + urlencode({"iss": auth.iss, "launch": launch})
    page, response, problems = _open(browser, url, 1280, 800)
    assert response.status == 200 and page.url.startswith(f"{view_service}/smart/view/")
    _check_page(page)
    assert "contraindication" in page.locator(".banner").inner_text()
    assert re.search(r"Platelets below 25 .*present", page.locator("#safety").inner_text())
    page.screenshot(path=str(tmp_path / "smart-launch.png"), full_page=True)
    assert problems == []
