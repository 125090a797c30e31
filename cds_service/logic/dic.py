"""ISTH overt DIC score (clinical rules §7).

[Taylor FB Jr, Toh CH, Hoots WK, Wada H, Levi M, Thromb Haemost 2001;86:1327–1330; item
list as in ASH-SAP.] Needs an underlying disorder known to cause DIC (severe infection
qualifies).

| Item (field)                          | 0      | 1     | 2          | 3     |
|---------------------------------------|--------|-------|------------|-------|
| platelets ×10⁹/L (`platelet_points`)  | ≥100   | 50–<100 | <50      | —     |
| D-dimer × ULN (`d_dimer_points`)      | ≤1     | —     | >1–≤10     | >10   |
| PT prolongation s (`pt_points`)       | <3     | 3–<6  | ≥6         | —     |
| fibrinogen g/L (`fibrinogen_points`)  | ≥1.0   | <1.0  | —          | —     |

- Platelet and PT edges follow the common calculator convention (the original leaves 100,
  3 s and 6 s undefined). D-dimer bands: `dic.d_dimer_moderate_above_multiple` (1.0),
  `dic.d_dimer_strong_above_multiple` (10.0), from the D-dimer module (§4). Fibrinogen:
  < `dic.fibrinogen_low_g_l` (1.0), strict.
- PT prolongation = PT s − reference, the reference taken in the order of
  `dic.pt_reference` (default: the PT observation's own referenceRange.high, then a
  lab-supplied normal control). No reference → item not determinable; 12 s is never assumed.
- `overt` = total ≥ `dic.overt_threshold` (5).
- Missing items add their maximum (platelets 2, D-dimer 3, PT 2, fibrinogen 1) to the
  upper bound: known ≥ 5 → overt true; known + missing maxima < 5 → overt false; both
  determinable. Otherwise determinable false, overt null. `total` is null whenever an item
  is missing. A comparator on a value narrows its item to a points range the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import numeric as nm
from .d_dimer import DDimerResult
from .inputs import PatientInputs
from .policy import Policy

PLATELET_EDGES = [("<", 100, 1), ("<", 50, 2)]
PT_EDGES = [(">=", 3, 1), (">=", 6, 2)]
ITEM_MAX = {"platelets": 2, "d_dimer": 3, "pt": 2, "fibrinogen": 1}
ITEMS = ("platelet_points", "d_dimer_points", "pt_points", "fibrinogen_points")


@dataclass(frozen=True)
class Dic:
    platelet_points: int | None
    d_dimer_points: int | None
    pt_points: int | None
    fibrinogen_points: int | None
    total: int | None
    determinable: bool
    overt: bool | None
    pt_prolongation_s: float | None = None
    pt_reference_used: str | None = None     # "reference_range_high" | "normal_control"
    total_range: tuple[int, int] = (0, 8)
    missing: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in ITEMS}
        out.update(total=self.total, determinable=self.determinable, overt=self.overt,
                   pt_prolongation_s=nm.display(self.pt_prolongation_s, 2),
                   pt_reference_used=self.pt_reference_used,
                   total_range=list(self.total_range), missing=list(self.missing))
        return out


def pt_reference(inputs: PatientInputs, policy: Policy) -> tuple[float | None, str | None]:
    pt = inputs.pt
    if pt is None:
        return None, None
    for kind in policy["dic.pt_reference"]:
        ref = pt.reference_high_s if kind == "reference_range_high" else pt.normal_control_s
        if ref is not None and ref > 0:
            return ref, kind
    return None, None


def compute(inputs: PatientInputs, d_dimer: DDimerResult, policy: Policy) -> Dic:
    ref, ref_kind = pt_reference(inputs, policy)
    pt_m = inputs.pt.seconds if inputs.pt is not None and ref is not None else None
    items: dict[str, tuple[int, int] | None] = {
        "platelets": nm.band_range(inputs.platelets, PLATELET_EDGES, policy),
        "d_dimer": d_dimer.dic_points_range if d_dimer.determinable else None,
        "pt": nm.band_range(pt_m, PT_EDGES, policy, value=pt_m.value - ref if pt_m and ref else None),
        "fibrinogen": nm.band_range(inputs.fibrinogen, [("<", policy["dic.fibrinogen_low_g_l"], 1)],
                                    policy),
    }
    missing: list[str] = []
    for name, rng in items.items():
        if rng is None or rng[0] != rng[1]:
            if name == "pt" and inputs.pt is not None and ref is None:
                missing.append("pt_reference")
            elif name == "d_dimer" and d_dimer.missing:
                missing.extend(d_dimer.missing)
            else:
                missing.append(name)
    lo = sum(r[0] if r else 0 for r in items.values())
    hi = sum(r[1] if r else ITEM_MAX[n] for n, r in items.items())
    threshold = policy["dic.overt_threshold"]
    overt = True if lo >= threshold else False if hi < threshold else None
    points = [nm.exact(r) for r in items.values()]
    prolongation = inputs.pt.seconds.value - ref \
        if inputs.pt is not None and ref is not None and inputs.pt.seconds.comparator is None else None
    return Dic(
        *points,
        total=lo if lo == hi else None, determinable=overt is not None, overt=overt,
        pt_prolongation_s=prolongation, pt_reference_used=ref_kind,
        total_range=(lo, hi), missing=tuple(dict.fromkeys(missing)))
