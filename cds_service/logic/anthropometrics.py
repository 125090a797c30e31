"""Anthropometrics (clinical rules §2).

- `weight_kg`, `height_cm`: the latest valid observations (already in kg / cm).
- `bmi` = weight / (height in m)². Null if either is missing. A recorded BMI is used only
  when BMI cannot be computed (`bmi_source` "computed" | "recorded" | None). Never rounded
  before a comparison (`dosing.round_bmi_before_compare = false`).
- `ibw_kg` (Devine 1974): 50 kg (male) or 45.5 kg (female) + 2.3 kg per inch above 60 in,
  i.e. base + (2.3 / 2.54) × (cm − 152.4) [the rules write the slope as 0.9055 kg/cm, its
  4-dp rounding]. Below 152.4 cm the line is extended when
  `ibw.extrapolate_below_152_4_cm` (default true); with false, IBW stays at the base.
  Null if sex is not male/female or height is missing.
- `adjbw_kg` = IBW + `crcl.adjbw_factor` (0.4) × (TBW − IBW), only when TBW > IBW.
- `who_class` (display only): <18.5 underweight; 18.5–<25 normal; 25–<30 overweight;
  30–<35 obese_I; 35–<40 obese_II; ≥40 obese_III. The WHO edges are fixed, not policy.

A weight or height reported with a comparator (">150 kg") is not a number and counts as
missing. `missing` names the PatientInputs fields that left an output null.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from . import numeric as nm
from .inputs import Measurement, PatientInputs
from .policy import Policy

DEVINE_BASE_KG = {"male": 50.0, "female": 45.5}
DEVINE_KG_PER_CM = 2.3 / 2.54          # 2.3 kg per inch
DEVINE_BASE_HEIGHT_CM = 152.4          # 60 in

# WHO BMI classes (display only), lower edges inclusive.
WHO_CLASSES = (("underweight", 0.0), ("normal", 18.5), ("overweight", 25.0),
               ("obese_I", 30.0), ("obese_II", 35.0), ("obese_III", 40.0))


@dataclass(frozen=True)
class Anthropometrics:
    weight_kg: float | None
    height_cm: float | None
    bmi: float | None
    bmi_source: Literal["computed", "recorded"] | None
    ibw_kg: float | None
    adjbw_kg: float | None
    who_class: str | None
    weight: Measurement | None = None     # the evidence, for card text (value, date, source)
    height: Measurement | None = None
    missing: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: nm.display_field(k, getattr(self, k))
                               for k in ("weight_kg", "height_cm", "bmi", "ibw_kg", "adjbw_kg")}
        out.update(bmi_source=self.bmi_source, who_class=self.who_class,
                   missing=list(self.missing))
        return out


def _usable(m: Measurement | None) -> bool:
    return m is not None and m.comparator is None and m.value > 0


def ideal_body_weight(sex: str | None, height_cm: float | None, policy: Policy) -> float | None:
    """Devine IBW in kg, or None when sex is not male/female or height is unknown."""
    if sex not in DEVINE_BASE_KG or height_cm is None:
        return None
    above = height_cm - DEVINE_BASE_HEIGHT_CM
    if above < 0 and not policy["ibw.extrapolate_below_152_4_cm"]:
        above = 0.0
    return DEVINE_BASE_KG[sex] + DEVINE_KG_PER_CM * above


def adjusted_body_weight(tbw: float | None, ibw: float | None, policy: Policy) -> float | None:
    """IBW + factor × (TBW − IBW), only when TBW > IBW (6-dp compare); else None."""
    if tbw is None or ibw is None or not nm.cmp_gt(tbw, ibw, policy):
        return None
    return ibw + policy["crcl.adjbw_factor"] * (tbw - ibw)


def who_class(bmi: float | None, policy: Policy) -> str | None:
    if bmi is None:
        return None
    name = WHO_CLASSES[0][0]
    for label, lower in WHO_CLASSES:
        if nm.cmp_ge(bmi, lower, policy):
            name = label
    return name


def compute(inputs: PatientInputs, policy: Policy) -> Anthropometrics:
    missing: list[str] = []
    weight = inputs.weight.value if _usable(inputs.weight) else None
    height = inputs.height.value if _usable(inputs.height) else None
    if weight is None:
        missing.append("weight")
    if height is None:
        missing.append("height")

    bmi: float | None = None
    source: Literal["computed", "recorded"] | None = None
    if weight is not None and height is not None:
        bmi, source = weight / (height / 100.0) ** 2, "computed"
    elif _usable(inputs.recorded_bmi):
        bmi, source = inputs.recorded_bmi.value, "recorded"  # type: ignore[union-attr]

    if inputs.sex not in DEVINE_BASE_KG:
        missing.append("sex")
    ibw = ideal_body_weight(inputs.sex, height, policy)
    return Anthropometrics(
        weight_kg=weight, height_cm=height, bmi=bmi, bmi_source=source, ibw_kg=ibw,
        adjbw_kg=adjusted_body_weight(weight, ibw, policy), who_class=who_class(bmi, policy),
        weight=inputs.weight if weight is not None else None,
        height=inputs.height if height is not None else None,
        missing=tuple(missing))
