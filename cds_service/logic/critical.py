"""Oxygen modality and critical illness (clinical-rules.md §9).

Rubric
- `oxygen` = the highest modality recorded in window.respiratory_support_hours:
  IMV > NIV (CPAP reported as NIV) > HFNC > low-flow > none. `"none"` needs explicit
  evidence of room air (`room_air_documented`); with no record at all it is null.
- `critically_ill`:
  - true if a recorded modality is in `critical.modalities` (default IMV, NIV, CPAP, HFNC,
    ECMO; ECMO from the ECMO flag), or `critical.vasoactive_counts` and a vasoactive infusion
    is recorded or a vasopressor-therapy procedure is in progress;
  - false if oxygen is known ("none", "low-flow", or a modality the policy does not count)
    and none of the above holds;
  - null otherwise (nothing recorded about oxygen, and no criterion met).
  With the default policy "false" is exactly §9's "none or low-flow, no ECMO, no vasoactive".
- A vasoactive counts whatever its duration: the 60-min rule is a SOFA rule
  (`sofa.vasoactive_min_minutes`); the trial definition is "receiving vasopressors".

Source: ATTACC/ACTIV-4a/REMAP-CAP, N Engl J Med 2021;385:777-789 (ICU-level organ support:
high-flow oxygen, NIV, IMV, vasopressors or inotropes, ECMO).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .inputs import RespiratorySupport, Vasoactive
from .policy import Policy

# Lowest to highest. CPAP is folded into NIV for the reported modality (data requirements §4).
OXYGEN_ORDER = ("none", "low-flow", "HFNC", "NIV", "IMV")
_REPORTED = {"IMV": "IMV", "NIV": "NIV", "CPAP": "NIV", "HFNC": "HFNC", "low-flow": "low-flow"}


@dataclass(frozen=True)
class CriticalIllness:
    critically_ill: bool | None
    oxygen: str | None
    # What made the patient critically ill, in a stable order: modality names ("IMV", "CPAP",
    # ...), "ECMO", "vasoactive:<ingredient>", "vasopressor_procedure". Empty when not.
    criteria: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"critically_ill": self.critically_ill, "oxygen": self.oxygen,
                "criteria": list(self.criteria)}


def oxygen_modality(support: RespiratorySupport) -> str | None:
    """The highest recorded modality, "none" on documented room air, else None."""
    reported = {_REPORTED[m] for m in support.modalities if m in _REPORTED}
    for modality in reversed(OXYGEN_ORDER[1:]):
        if modality in reported:
            return modality
    return "none" if support.room_air_documented else None


def critical_illness(support: RespiratorySupport, vasoactives: Iterable[Vasoactive],
                     policy: Policy) -> CriticalIllness:
    oxygen = oxygen_modality(support)
    counted = set(policy["critical.modalities"])
    criteria = [m for m in ("IMV", "NIV", "CPAP", "HFNC", "low-flow")
                if m in support.modalities and m in counted]
    if support.ecmo and "ECMO" in counted:
        criteria.append("ECMO")
    if policy["critical.vasoactive_counts"]:
        criteria.extend(f"vasoactive:{name}" for name in sorted({v.ingredient for v in vasoactives}))
        if support.vasopressor_procedure:
            criteria.append("vasopressor_procedure")
    if criteria:
        return CriticalIllness(True, oxygen, tuple(criteria))
    return CriticalIllness(False if oxygen is not None else None, oxygen)
