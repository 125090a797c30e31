"""Sepsis-induced coagulopathy score (clinical rules §6).

[Iba T, Di Nisio M, Levy JH, Kitamura N, Thachil J, BMJ Open 2017;7:e017046, Table 3;
adopted by the ISTH DIC subcommittee, Iba T et al., J Thromb Haemost 2019;17:1989–1994.]

| Item (field)                 | 0     | 1          | 2                 |
|------------------------------|-------|------------|-------------------|
| platelets ×10⁹/L (`platelet_points`) | ≥150 | 100–<150 | <100         |
| PT-INR (`inr_points`)        | ≤1.2  | >1.2–≤1.4  | >1.4              |
| SOFA-4 (`sofa_points`)       | 0     | 1          | ≥2 (capped at 2)  |

SOFA-4 = respiratory + cardiovascular + hepatic + renal (no coagulation, no CNS). The INR
item never takes a PT ratio. `positive`: total ≥ `sic.positive_total` (4) and, when
`sic.require_plt_inr_gt_2` (default true), platelet + INR points > 2 (Iba rule); with
false, total ≥ 4 alone (Tang 2020, HEP-COVID wording).

Missing data (P = platelet + INR points; S = `Sofa.sofa4_lower_bound`, the sum of known
SOFA-4 lower bounds, an unknown-rate vasoactive counting its bound):

| Situation                   | sofa_points   | total   | determinable | positive |
|-----------------------------|---------------|---------|--------------|----------|
| platelets or INR missing    | null          | null    | false        | null     |
| SOFA-4 complete             | min(sofa4, 2) | P + pts | true         | rule     |
| incomplete, S ≥ 2           | 2             | P + 2   | true         | P ≥ 3    |
| incomplete, S < 2, P = 4    | null          | null    | true         | true     |
| incomplete, S < 2, P ≤ 2    | null          | null    | true         | false    |
| incomplete, P = 3, S = 1    | null          | null    | true         | true     |
| incomplete, P = 3, S = 0    | null          | null    | false        | null     |

Implementation: the sofa item lies in [min(S, 2), 2] when SOFA-4 is incomplete, and
positivity is monotone in P and in the sofa item, so it is decided at the two corners of
the box; it is determinable when both agree. That reproduces every row above and, with
`require_plt_inr_gt_2 = false`, the rule "decide from the bounds P + min(S, 2) .. P + 2".
A platelet or INR value with a comparator gives a points range the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import numeric as nm
from .inputs import Measurement
from .policy import Policy
from .sofa import Sofa

PLATELET_EDGES = [("<", 150, 1), ("<", 100, 2)]
INR_EDGES = [(">", 1.2, 1), (">", 1.4, 2)]
SOFA_POINTS_CAP = 2
PLT_INR_MIN_EXCLUSIVE = 2   # "platelet + INR points > 2"


@dataclass(frozen=True)
class Sic:
    platelet_points: int | None
    inr_points: int | None
    sofa_points: int | None
    total: int | None
    determinable: bool
    positive: bool | None
    total_range: tuple[int, int] | None = None   # bounds of the total when not all known
    missing: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "platelet_points": self.platelet_points, "inr_points": self.inr_points,
            "sofa_points": self.sofa_points, "total": self.total,
            "determinable": self.determinable, "positive": self.positive,
            "total_range": list(self.total_range) if self.total_range else None,
            "missing": list(self.missing),
        }


def compute(platelets: Measurement | None, inr: Measurement | None, sofa: Sofa,
            policy: Policy) -> Sic:
    plt = nm.band_range(platelets, PLATELET_EDGES, policy)
    inr_r = nm.band_range(inr, INR_EDGES, policy)
    plt_pts, inr_pts = nm.exact(plt), nm.exact(inr_r)
    missing = [name for name, r in (("platelets", plt), ("inr", inr_r)) if r is None]
    if plt is None or inr_r is None:
        return Sic(plt_pts, inr_pts, None, None, False, None, missing=tuple(missing))

    if sofa.sofa4_complete and sofa.sofa4 is not None:
        s_lo = s_hi = min(sofa.sofa4, SOFA_POINTS_CAP)
    else:
        s_lo, s_hi = min(sofa.sofa4_lower_bound, SOFA_POINTS_CAP), SOFA_POINTS_CAP
    sofa_pts = s_lo if s_lo == s_hi else None
    if sofa_pts is None:
        missing.extend(sofa.missing_for())
    p_lo, p_hi = plt[0] + inr_r[0], plt[1] + inr_r[1]
    if p_lo != p_hi:
        missing.extend(n for n, r in (("platelets", plt), ("inr", inr_r)) if r[0] != r[1])

    threshold = policy["sic.positive_total"]
    require = policy["sic.require_plt_inr_gt_2"]

    def positive(p: int, s: int) -> bool:
        return p + s >= threshold and (not require or p > PLT_INR_MIN_EXCLUSIVE)

    low, high = positive(p_lo, s_lo), positive(p_hi, s_hi)
    decided = low if low == high else None
    exact_total = p_lo + s_lo if (p_lo == p_hi and sofa_pts is not None) else None
    return Sic(
        platelet_points=plt_pts, inr_points=inr_pts, sofa_points=sofa_pts, total=exact_total,
        determinable=decided is not None, positive=decided,
        total_range=(p_lo + s_lo, p_hi + s_hi), missing=tuple(dict.fromkeys(missing)))
