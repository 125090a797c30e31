"""Threshold arithmetic, bounds and display rounding (clinical rules §0, §4.8).

Threshold comparison: both sides are rounded to `numeric.compare_decimals` (6) decimals
first, so BMI 115.6 kg / 1.70 m² (39.99999999999999 in binary) compares as exactly 40.0
and D-dimer 3.0 / 0.5 as exactly 6.0.

Bounds: a value reported with a comparator (`<`, `<=`, `>`, `>=`) is an interval, not a
number. `interval()` turns it into its two extreme values (a strict bound moves one
compare step, 10^-6, inside), and `settle()` evaluates a monotone scoring function at
both extremes: the result is known only when both agree. Every band used by the score
modules is monotone in its input, so this is exact.

Display rounding (output only, never before a decision): weight/height 2 dp; BMI, IBW,
AdjBW, CrCl 1 dp; creatinine 3 dp; D-dimer multiple 3 dp. Half-up on the decimal text.
"""
from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, Callable, Iterable, TypeVar

from .inputs import Measurement
from .policy import Policy, rounded

T = TypeVar("T")
_WIDE = Context(prec=400)

# Output field -> decimals shown (clinical rules §0 "Rounding for output").
DISPLAY_DECIMALS: dict[str, int] = {
    "weight_kg": 2, "height_cm": 2,
    "bmi": 1, "ibw_kg": 1, "adjbw_kg": 1, "crcl_ml_min": 1, "weight_used_kg": 1,
    "creatinine_mg_dL": 3, "multiple_of_uln": 3,
}


# -- 6-dp threshold comparison -------------------------------------------------------

def cmp_lt(a: float, b: float, policy: Policy) -> bool:
    return rounded(a, policy) < rounded(b, policy)


def cmp_le(a: float, b: float, policy: Policy) -> bool:
    return rounded(a, policy) <= rounded(b, policy)


def cmp_gt(a: float, b: float, policy: Policy) -> bool:
    return rounded(a, policy) > rounded(b, policy)


def cmp_ge(a: float, b: float, policy: Policy) -> bool:
    return rounded(a, policy) >= rounded(b, policy)


_OPS: dict[str, Callable[[float, float, Policy], bool]] = {
    "<": cmp_lt, "<=": cmp_le, ">": cmp_gt, ">=": cmp_ge}


def band(value: float, policy: Policy, edges: Iterable[tuple[str, float, int]],
         default: int = 0) -> int:
    """Points of a published band table: the highest points whose edge `value op threshold`
    holds, else `default`. Edges are (op, threshold, points), e.g. platelets for SOFA:
    [("<", 150, 1), ("<", 100, 2), ("<", 50, 3), ("<", 20, 4)]."""
    best = default
    for op, threshold, points in edges:
        if _OPS[op](value, threshold, policy) and points > best:
            best = points
    return best


# -- Bounds (comparators) --------------------------------------------------------------

def step(policy: Policy) -> float:
    """The smallest difference a threshold comparison can see."""
    return 10.0 ** -policy["numeric.compare_decimals"]


def interval(value: float, comparator: str | None, policy: Policy,
             floor: float = -math.inf, ceiling: float = math.inf) -> tuple[float, float]:
    """Extreme values a (possibly bounded) result can take. `floor`/`ceiling` clip to the
    physically possible range (e.g. a concentration is never below 0)."""
    if comparator is None:
        return value, value
    if comparator == "<":
        return floor, value - step(policy)
    if comparator == "<=":
        return floor, value
    if comparator == ">":
        return value + step(policy), ceiling
    if comparator == ">=":
        return value, ceiling
    raise ValueError(f"unknown comparator {comparator!r}")


def settle(fn: Callable[[float], T], lo: float, hi: float) -> tuple[T, T]:
    """(min, max) of a monotone `fn` over [lo, hi]: evaluated at the two extremes."""
    a, b = fn(lo), fn(hi)
    return (a, b) if a <= b else (b, a)  # type: ignore[operator]


def band_range(m: Measurement | None, edges: Iterable[tuple[str, float, int]], policy: Policy,
               value: float | None = None, floor: float = -math.inf) -> tuple[int, int] | None:
    """(min, max) points of a band table for a measurement, honouring its comparator; None
    when there is no measurement. `value` replaces m.value (e.g. the reported SI value or a
    PT prolongation) and keeps m's comparator."""
    if m is None:
        return None
    edges = list(edges)
    lo, hi = interval(m.value if value is None else value, m.comparator, policy, floor=floor)
    return settle(lambda x: band(x, policy, edges), lo, hi)


def exact(rng: tuple[T, T] | None) -> T | None:
    """The settled value of a (min, max) range, or None when it is not settled."""
    if rng is None or rng[0] != rng[1]:
        return None
    return rng[0]


# -- Display ------------------------------------------------------------------------------

def display(value: float | None, decimals: int) -> float | None:
    """Half-up rounding for output only (binary-float `round` would give 2.675 -> 2.67)."""
    if value is None or not math.isfinite(value):
        return None
    # Enough digits for any finite float (the default 28 fails on e.g. a 1e40 mg draft dose).
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP,
                                               context=_WIDE))


def display_field(name: str, value: float | None) -> float | None:
    """Display-round an output field by its name (DISPLAY_DECIMALS); other fields as is."""
    decimals = DISPLAY_DECIMALS.get(name)
    return value if decimals is None or value is None else display(value, decimals)


def bound_json(comparator: str | None, value: float | None, decimals: int = 3) -> Any:
    """A bound for output: {"comparator": ">", "value": 40.0}, or None."""
    if comparator is None or value is None or not math.isfinite(value):
        return None
    return {"comparator": comparator, "value": display(value, decimals)}
