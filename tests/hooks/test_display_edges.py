"""Card text next to a decision edge: the number shown must not contradict the decision.

Clinical rules §0 display BMI/CrCl to 1 dp and the D-dimer multiple to 3 dp, but decide on
the 6-dp value. A value that display-rounds onto the edge (BMI 29.997 -> "30.0") would read
"BMI 30 is below 30"; the card shows as many decimals as it takes to stay on the right side.
"""
from __future__ import annotations

from hook_helpers import only_card, run


def _obs(body, key):
    return [e["resource"] for k in ("labs", "bedside", "body")
            for e in body["prefetch"][k].get("entry", []) if key in e["resource"]["id"]]


def _set(body, key, value):
    for r in _obs(body, key):
        r["valueQuantity"]["value"] = value


def _drop(body, key):
    for k in ("labs", "bedside", "body"):
        bundle = body["prefetch"][k]
        bundle["entry"] = [e for e in bundle.get("entry", []) if key not in e["resource"]["id"]]


def test_bmi_just_below_30_is_not_shown_as_30(client):
    # 86.69 kg / 1.70 m^2 = 29.99654 -> below tier 1 (40 mg); 1 dp would show 30.0.
    _, payload = run(client, "sic-positive", mutate=lambda b: _set(b, "weight", 86.69))
    card = only_card(payload)
    assert card["summary"].endswith("consider enoxaparin 40 mg SC daily")
    assert "BMI 29.997" in card["detail"]
    assert "BMI 30 " not in card["detail"] and "BMI 30;" not in card["detail"]


def test_crcl_just_below_30_is_not_shown_as_30(client):
    # Male, 80 y, no height (actual weight), 72 kg, SCr 2.001: (140-80) x 72 / (72 x 2.001)
    # = 29.985 mL/min -> crcl_lt_30, 30 mg; 1 dp would show 30.0.
    def mutate(b):
        b["prefetch"]["patient"]["birthDate"] = f"{int(b['prefetch']['patient']['birthDate'][:4]) - 14}-01-01"
        _drop(b, "height")
        _set(b, "weight", 72)
        _set(b, "creatinine", 2.001)
    _, payload = run(client, "sic-positive", mutate=mutate)
    card = only_card(payload)
    assert card["summary"].endswith("consider enoxaparin 30 mg SC daily")
    assert "CrCl 29.99 mL/min" in card["detail"]
    assert "CrCl 30 mL/min" not in card["detail"]


def test_d_dimer_just_above_6x_is_shown_with_3_decimals(client):
    # 3.001 / ULN 0.5 = 6.002x > 6 -> signal. §0: the multiple is displayed to 3 dp. Without the
    # low-flow record (severity unknown) the ward patient is on the prophylaxis pathway.
    def mutate(b):
        _set(b, "d-dimer", 3.001)
        b["prefetch"]["procedures"]["entry"] = []
    _, payload = run(client, "d-dimer-ward", mutate=mutate)
    card = only_card(payload)
    # §19.13 changes this: the summary names the dose reason; the signal is in the why line
    assert card["summary"].startswith("No prophylaxis ordered; BMI ") and card["indicator"] == "warning"
    assert "6.002× ULN" in card["detail"]
