"""Renal function: Cockcroft–Gault creatinine clearance (clinical rules §3).

CrCl (mL/min) = (140 − age) × weight kg / (72 × SCr mg/dL), × 0.85 for women; age in
completed years at `now`; not indexed to body-surface area [Cockcroft DW, Gault MH,
Nephron 1976;16:31–41]. Null if age, sex (male/female), weight or SCr is missing. eGFR
never stands in. An SCr floor applies only when `renal.scr_floor_mg_dl` is set (default
none): SCr used = max(SCr, floor).

Which weight (`crcl.weight_basis`), giving `crcl_weight_basis`; compares at 6 dp:

| policy value            | weight used                                              |
|-------------------------|----------------------------------------------------------|
| `pharmacy_rule` (default) | IBW unknown → actual; TBW < IBW → actual; TBW > `crcl.adjbw_trigger_ratio` (1.2) × IBW → AdjBW ("adjusted"); otherwise IBW ("ideal") |
| `actual`                | always actual                                            |
| `ideal`                 | always IBW; IBW unknown → CrCl null (no fallback)        |
| `adjusted`              | AdjBW when TBW > IBW (no 1.2 trigger), else actual; IBW unknown → CrCl null |
| `lower_of_actual_ideal` | TBW < IBW → actual, else IBW; IBW unknown → CrCl null    |

Only the default rule names a fallback for an unknown IBW, so the explicit options leave
CrCl null rather than silently switch weight.

`crcl_lt_30` = CrCl < `renal.crcl_cutoff` (30.0), strictly: exactly 30.0 is false.

v2 (§11):
- `crcl_actual_weight_ml_min`: Cockcroft–Gault on actual weight, whenever it can be computed
  (shown beside CrCl in renal impairment with obesity, note `renal_obesity`).
- `creatinine_unstable`: two creatinine results (labs window) within
  renal.creatinine_change_hours (48) that differ by >= renal.creatinine_change_mg_dl (0.3;
  KDIGO AKI) -> true; false when two or more results exist and no such pair; null with fewer
  than two. `creatinine_rising`: such a pair where the later is the higher (nulls the
  therapeutic dose, §13.1). Results reported as a bound are not used.
- `renal_replacement`: dialysis/CRRT in progress or within 72 h, or active ESKD (fhir/ reads
  it); null when no such data could be read.
A creatinine with a comparator (">10 mg/dL") gives no CrCl value, but `crcl_lt_30` is set
when the bound settles it (CrCl falls as SCr rises).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from . import numeric as nm
from .anthropometrics import Anthropometrics
from .inputs import Measurement, PatientInputs
from .policy import Policy

FEMALE_FACTOR = 0.85
WeightBasis = Literal["actual", "ideal", "adjusted"]


@dataclass(frozen=True)
class Renal:
    creatinine_mg_dL: float | None
    crcl_ml_min: float | None
    crcl_weight_basis: WeightBasis | None
    crcl_lt_30: bool | None
    weight_used_kg: float | None
    creatinine: Measurement | None = None       # the evidence (value, comparator, date)
    scr_used_mg_dl: float | None = None         # after the optional floor
    crcl_bound: tuple[str, float] | None = None  # ("<", 12.3) when SCr was a bound
    missing: tuple[str, ...] = ()
    crcl_actual_weight_ml_min: float | None = None
    creatinine_unstable: bool | None = None
    creatinine_rising: bool = False
    renal_replacement: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "creatinine_mg_dL": nm.display_field("creatinine_mg_dL", self.creatinine_mg_dL),
            "crcl_ml_min": nm.display_field("crcl_ml_min", self.crcl_ml_min),
            "crcl_weight_basis": self.crcl_weight_basis,
            "crcl_lt_30": self.crcl_lt_30,
            "crcl_actual_weight_ml_min": nm.display_field("crcl_ml_min",
                                                          self.crcl_actual_weight_ml_min),
            "creatinine_unstable": self.creatinine_unstable,
            "renal_replacement": self.renal_replacement,
            "weight_used_kg": nm.display_field("weight_used_kg", self.weight_used_kg),
            "creatinine_bound": nm.bound_json(self.creatinine.comparator, self.creatinine.value)
            if self.creatinine else None,
            "crcl_bound": nm.bound_json(*self.crcl_bound, decimals=1) if self.crcl_bound else None,
            "missing": list(self.missing),
        }


def choose_weight(anthro: Anthropometrics, policy: Policy) -> tuple[float | None, WeightBasis | None]:
    """(weight used, crcl_weight_basis) for Cockcroft–Gault; (None, None) if not determinable."""
    tbw, ibw = anthro.weight_kg, anthro.ibw_kg
    rule = policy["crcl.weight_basis"]
    if tbw is None:
        return None, None
    if rule == "actual" or (rule == "pharmacy_rule" and ibw is None):
        return tbw, "actual"
    if ibw is None:
        return None, None
    if rule == "ideal":
        return ibw, "ideal"
    if rule == "adjusted":
        # adjbw_kg exists exactly when TBW > IBW (§2)
        return (anthro.adjbw_kg, "adjusted") if anthro.adjbw_kg is not None else (tbw, "actual")
    if nm.cmp_lt(tbw, ibw, policy):
        return tbw, "actual"
    if rule == "lower_of_actual_ideal":
        return ibw, "ideal"
    # pharmacy_rule
    if nm.cmp_gt(tbw, policy["crcl.adjbw_trigger_ratio"] * ibw, policy):
        return anthro.adjbw_kg, "adjusted"  # TBW > 1.2 × IBW > IBW, so AdjBW is set (§2)
    return ibw, "ideal"


def cockcroft_gault(age: int, sex: str, weight_kg: float, scr_mg_dl: float) -> float:
    crcl = (140 - age) * weight_kg / (72 * scr_mg_dl)
    return crcl * FEMALE_FACTOR if sex == "female" else crcl


def creatinine_change(series: tuple[Measurement, ...],
                      policy: Policy) -> tuple[bool | None, bool]:
    """(creatinine_unstable, creatinine_rising) from results oldest first (§11)."""
    exact = sorted((m for m in series if m.comparator is None and m.time is not None),
                   key=lambda m: m.time)
    if len(exact) < 2:
        return None, False
    window = policy["renal.creatinine_change_hours"] * 3600
    step = policy["renal.creatinine_change_mg_dl"]
    unstable = rising = False
    for i, a in enumerate(exact):
        for b in exact[i + 1:]:
            if (b.time - a.time).total_seconds() > window:
                break
            if nm.cmp_ge(abs(b.value - a.value), step, policy):
                unstable = True
                rising = rising or b.value > a.value
    return unstable, rising


def compute(inputs: PatientInputs, anthro: Anthropometrics, policy: Policy) -> Renal:
    missing: list[str] = []
    age, sex, scr_m = inputs.age_years, inputs.sex, inputs.creatinine
    if age is None or not 0 <= age < 140:
        missing.append("age_years")
    if sex not in ("male", "female"):
        missing.append("sex")
    if anthro.weight_kg is None:
        missing.append("weight")
    if scr_m is None or scr_m.value <= 0:
        missing.append("creatinine")
        scr_m = None
    weight, basis = choose_weight(anthro, policy)
    if weight is None and anthro.weight_kg is not None and anthro.height_cm is None:
        missing.append("height")  # the policy weight basis needs IBW
    creat = scr_m.value if scr_m is not None and scr_m.comparator is None else None
    floor = policy["renal.scr_floor_mg_dl"]

    def scr_used(v: float) -> float:
        return max(v, floor) if floor is not None else v

    crcl = lt30 = bound = None
    if not missing and weight is not None and scr_m is not None:
        cutoff = policy["renal.crcl_cutoff"]
        comparator = scr_m.comparator
        if comparator in ("<", "<=") and floor is not None and scr_m.value <= floor:
            comparator = None  # every value below the floor is used as the floor
        crcl_edge = cockcroft_gault(age, sex, weight, scr_used(scr_m.value))  # type: ignore[arg-type]
        if comparator is None:
            crcl = crcl_edge
            lt30 = nm.cmp_lt(crcl, cutoff, policy)
        else:
            # CrCl falls as SCr rises: SCr "> x" bounds CrCl from above, "< x" from below.
            bound = ({"<": ">", "<=": ">=", ">": "<", ">=": "<="}[comparator], crcl_edge)
            lo, hi = nm.interval(crcl_edge, bound[0], policy, floor=0.0)
            lt30 = nm.exact(nm.settle(lambda c: nm.cmp_lt(c, cutoff, policy), lo, hi))
    computed = crcl is not None or bound is not None
    actual = None
    if not missing and creat is not None and anthro.weight_kg is not None:
        actual = cockcroft_gault(age, sex, anthro.weight_kg, scr_used(creat))  # type: ignore[arg-type]
    unstable, rising = creatinine_change(inputs.creatinine_series, policy)
    rrt = inputs.renal_replacement.present if inputs.renal_replacement is not None else None
    return Renal(
        creatinine_mg_dL=creat, crcl_ml_min=crcl, crcl_weight_basis=basis if computed else None,
        crcl_lt_30=lt30, weight_used_kg=weight if computed else None,
        creatinine=scr_m, scr_used_mg_dl=scr_used(creat) if creat is not None else None,
        crcl_bound=bound, missing=tuple(missing), crcl_actual_weight_ml_min=actual,
        creatinine_unstable=unstable, creatinine_rising=rising, renal_replacement=rrt)
