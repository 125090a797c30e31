"""D-dimer as a multiple of its upper limit of normal (clinical rules §4).

[Six-fold rule: Tang N et al., J Thromb Haemost 2020;18:1094–1099. Ratio-to-ULN approach:
Zhang & Zhang, Res Pract Thromb Haemost 2022;6:e12772. FEU ≈ 2 × DDU: Favaloro EJ,
Thachil J, Clin Chem Lab Med 2020;58:1191–1199.]

1. The value arrives in mg/L (fhir/ converted it). Basis: from the LOINC code
   (`basis_from_code`) or, for codes without one, a {FEU}/{DDU} annotation or unit text
   (`basis_from_unit`). If the two disagree the basis is null.
2. ULN, first rule that applies (`uln_source`):
   (a) "reference_range": a usable referenceRange.high (`d_dimer.use_reference_range`,
       default true); works even when the basis is unknown;
   (b) "default_FEU" 0.5 mg/L (`d_dimer.default_uln_mg_l_feu`) or "default_DDU" 0.25 mg/L
       (`d_dimer.default_uln_mg_l_ddu`) when the basis is known;
   (c) otherwise `determinable: false`; multiple, gt_6x_uln and dic_points are null.
   The DDU→FEU factor is never used here (absolute cut-offs only).
3. `gt_6x_uln` = multiple > `d_dimer.marked_multiple` (6.0), strictly; ≥ when
   `d_dimer.marked_inclusive`. 3.0/0.5 = 6.0 → false; 3.01/0.5 = 6.02 → true.
4. `dic_points` (ISTH DIC fibrin marker, §7): multiple ≤ `dic.d_dimer_moderate_above_multiple`
   (1.0) → 0; above it up to ≤ `dic.d_dimer_strong_above_multiple` (10.0) → 2; above → 3.
5. A comparator makes the value a bound (§4.8): the exact multiple is then null
   (`multiple_of_uln_bound` carries it), and each flag/points is set only if the bound
   settles it (">20 mg/L FEU" → multiple > 40 → gt_6x_uln true, dic_points 3).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from . import numeric as nm
from .inputs import DDimer, PatientInputs
from .policy import Policy

Basis = Literal["FEU", "DDU"]
UlnSource = Literal["reference_range", "default_FEU", "default_DDU"]


@dataclass(frozen=True)
class DDimerResult:
    determinable: bool
    basis: Basis | None
    multiple_of_uln: float | None                  # exact multiple; null for a bound
    gt_6x_uln: bool | None
    dic_points: int | None
    uln_mg_l: float | None
    uln_source: UlnSource | None
    value_mg_l: float | None = None
    comparator: str | None = None
    basis_conflict: bool = False                   # code and unit disagreed
    multiple_range: tuple[float, float] | None = None   # extremes of the multiple (bounds)
    dic_points_range: tuple[int, int] | None = None     # for the ISTH DIC bound logic
    source: DDimer | None = None
    missing: tuple[str, ...] = ()

    def multiple_above(self, threshold: float, policy: Policy, inclusive: bool = False) -> bool | None:
        """Is the multiple > threshold (≥ if inclusive)? None unless known or settled by the
        bound. For other criteria, e.g. `escalation.d_dimer_multiple` (§13)."""
        if self.multiple_range is None:
            return None
        cmp = nm.cmp_ge if inclusive else nm.cmp_gt
        return nm.exact(nm.settle(lambda m: cmp(m, threshold, policy), *self.multiple_range))

    def to_json(self) -> dict[str, Any]:
        bound = None
        if self.comparator is not None and self.value_mg_l is not None and self.uln_mg_l:
            bound = nm.bound_json(self.comparator, self.value_mg_l / self.uln_mg_l)
        return {
            "determinable": self.determinable,
            "basis": self.basis,
            "multiple_of_uln": nm.display_field("multiple_of_uln", self.multiple_of_uln),
            "gt_6x_uln": self.gt_6x_uln,
            "dic_points": self.dic_points,
            "uln_mg_l": self.uln_mg_l,
            "uln_source": self.uln_source,
            "value_mg_l": self.value_mg_l,
            "comparator": self.comparator,
            "multiple_of_uln_bound": bound,
            "basis_conflict": self.basis_conflict,
            "missing": list(self.missing),
        }


def resolve_basis(dd: DDimer) -> tuple[Basis | None, bool]:
    """(basis, conflict): the code's and the unit's basis, null when they disagree."""
    code, unit = dd.basis_from_code, dd.basis_from_unit
    if code and unit and code != unit:
        return None, True
    return code or unit, False


def uln(dd: DDimer, basis: Basis | None, policy: Policy) -> tuple[float | None, UlnSource | None]:
    high = dd.reference_high_mg_l
    if policy["d_dimer.use_reference_range"] and high is not None and high > 0:
        return high, "reference_range"
    if basis == "FEU":
        return policy["d_dimer.default_uln_mg_l_feu"], "default_FEU"
    if basis == "DDU":
        return policy["d_dimer.default_uln_mg_l_ddu"], "default_DDU"
    return None, None


def marked(multiple: float, policy: Policy) -> bool:
    cmp = nm.cmp_ge if policy["d_dimer.marked_inclusive"] else nm.cmp_gt
    return cmp(multiple, policy["d_dimer.marked_multiple"], policy)


def dic_points(multiple: float, policy: Policy) -> int:
    return nm.band(multiple, policy, [
        (">", policy["dic.d_dimer_moderate_above_multiple"], 2),
        (">", policy["dic.d_dimer_strong_above_multiple"], 3)])


def compute(inputs: PatientInputs, policy: Policy) -> DDimerResult:
    dd = inputs.d_dimer
    if dd is None:
        return DDimerResult(False, None, None, None, None, None, None, missing=("d_dimer",))
    basis, conflict = resolve_basis(dd)
    uln_mg_l, source = uln(dd, basis, policy)
    m = dd.value
    common: dict[str, Any] = dict(basis=basis, uln_mg_l=uln_mg_l, uln_source=source,
                                  value_mg_l=m.value, comparator=m.comparator,
                                  basis_conflict=conflict, source=dd)
    if uln_mg_l is None:
        return DDimerResult(False, multiple_of_uln=None, gt_6x_uln=None, dic_points=None,
                            missing=("d_dimer_basis",), **common)
    # The comparator carries over to the multiple (ULN > 0); bounding the multiple itself
    # keeps the one-step margin at the resolution the thresholds are compared at.
    mrange = nm.interval(m.value / uln_mg_l, m.comparator, policy, floor=0.0)
    return DDimerResult(
        True,
        multiple_of_uln=mrange[0] if m.comparator is None else None,
        gt_6x_uln=nm.exact(nm.settle(lambda x: marked(x, policy), *mrange)),
        dic_points=nm.exact(nm.settle(lambda x: dic_points(x, policy), *mrange)),
        multiple_range=mrange,
        dic_points_range=nm.settle(lambda x: dic_points(x, policy), *mrange),
        **common)
