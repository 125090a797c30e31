"""Unit normalisation of FHIR Quantities to the canonical units of clinical-rules.md §0.

Table-driven (fhir-data-requirements.md §1.1 step 6 and §3; conversions of clinical-rules
§14). How a unit is read:

- `system` is UCUM and `code` is given: the UCUM code, case-sensitive (UCUM is), except
  that `l` and `L` are both the litre (`mg/dl` == `mg/dL`).
- otherwise the `unit` text (else a system-less `code`): trimmed, µ/μ -> u, and matched
  case-insensitively against the same table plus text-only aliases (`K/uL`, `IU/mL`, ...).
- no unit at all is the key "" and is accepted only where a table lists it (INR, scores,
  FiO2 as a fraction).

A unit that is not in the input's table is never assumed: `UnitError` says why, and
extraction records the reason in `PatientInputs.rejected`. Physiologically absurd values
(negative, platelets > 2000, FiO2 outside 0.20-1.0, GCS outside 3-15, ...) are refused the
same way. Comparisons on the plausibility edges use 6-dp rounding, as thresholds do.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .codes import load_codes
from .read import number

UCUM = load_codes().systems["UCUM"]

# Only two D-dimer annotations carry meaning here; the basis they name (clinical rules §4).
_BASIS_ANNOTATION = re.compile(r"\{\s*(FEU|DDU)\s*\}", re.IGNORECASE)
_BASIS_WORD = re.compile(r"(?<![a-z])(feu|ddu)(?![a-z])")
# A litre written `l`: after a prefix letter or at the start of a denominator.
_LITRE = re.compile(r"(?<![A-Za-z\[])([mundc]?)l(?![A-Za-z_\]])")


def _fold_text(unit: str) -> str:
    return unit.strip().replace("µ", "u").replace("μ", "u").lower()


class UnitError(ValueError):
    """The quantity cannot be used: unknown unit, missing value, absurd value."""


@dataclass(frozen=True)
class Table:
    """One input's accepted units: unit -> multiplier to `canonical`.

    `reported` maps a unit to the spelling kept in `Measurement.reported_unit` (with its
    own multiplier from the sent value), for inputs whose SI report is scored on its own
    bands (creatinine, bilirubin). `percent_above_one` reads a unitless value > 1 as %.
    """

    canonical: str
    factors: Mapping[str, float]
    text: Mapping[str, float] = field(default_factory=dict)
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    integer: bool = False
    percent_above_one: bool = False
    reported: Mapping[str, tuple[str, float]] = field(default_factory=dict)
    basis_annotations: bool = False

    def __post_init__(self) -> None:
        lowered: dict[str, float] = {}
        for unit, factor in {**self.factors, **self.text}.items():
            lowered[_fold_text(unit)] = factor
        object.__setattr__(self, "_text_lookup", lowered)
        by_fold = {_fold_text(u): u for u in self.factors}
        by_fold.update({_fold_text(u): u for u in self.text})
        object.__setattr__(self, "_spelling", by_fold)


_SCORE = {"{score}": 1.0, "1": 1.0, "": 1.0}
_PRESSURE = {"mm[Hg]": 1.0, "kPa": 7.50062}
_D_DIMER = {"ng/mL": 0.001, "ug/L": 0.001, "ug/mL": 1.0, "mg/L": 1.0, "mg/dL": 10.0}

# Input name (PatientInputs field, or the sub-key of a recorded SOFA item) -> table.
TABLES: dict[str, Table] = {
    "d_dimer": Table("mg/L", _D_DIMER, low=0, high=1000, basis_annotations=True),
    "platelets": Table("10*9/L", {"10*3/uL": 1.0, "10*9/L": 1.0, "10*3/mm3": 1.0,
                                  "/uL": 0.001, "/mm3": 0.001},
                       text={"K/uL": 1.0, "10^9/L": 1.0}, low=0, high=2000),
    "inr": Table("{INR}", {"{INR}": 1.0, "{ratio}": 1.0, "1": 1.0, "": 1.0},
                 low=0, low_inclusive=False, high=30),
    "pt": Table("s", {"s": 1.0}, low=0, low_inclusive=False, high=300),
    "fibrinogen": Table("g/L", {"g/L": 1.0, "mg/dL": 0.01}, low=0, high=20),
    "creatinine": Table("mg/dL", {"mg/dL": 1.0, "umol/L": 1 / 88.4, "mmol/L": 1000 / 88.4},
                        low=0, low_inclusive=False, high=40,
                        reported={"mg/dL": ("mg/dL", 1.0), "umol/L": ("umol/L", 1.0),
                                  "mmol/L": ("umol/L", 1000.0)}),
    "bilirubin": Table("mg/dL", {"mg/dL": 1.0, "umol/L": 1 / 17.1}, low=0, high=100,
                       reported={"mg/dL": ("mg/dL", 1.0), "umol/L": ("umol/L", 1.0)}),
    "hemoglobin": Table("g/dL", {"g/dL": 1.0, "g/L": 0.1, "mmol/L": 1.611},
                        low=0, low_inclusive=False, high=30),
    "anti_xa": Table("[IU]/mL", {"[IU]/mL": 1.0, "[iU]/mL": 1.0, "U/mL": 1.0},
                     text={"IU/mL": 1.0}, low=0, high=10),
    "pao2": Table("mm[Hg]", _PRESSURE, low=0, low_inclusive=False, high=800),
    "pf_ratio": Table("mm[Hg]", _PRESSURE, low=0, low_inclusive=False, high=1000),
    "fio2": Table("1", {"%": 0.01, "1": 1.0, "{fraction}": 1.0, "": 1.0},
                  low=0.20, high=1.0, percent_above_one=True),   # v2: room air 20.9 % is 0.209
    "map": Table("mm[Hg]", {"mm[Hg]": 1.0}, low=0, low_inclusive=False, high=300),
    "gcs": Table("{score}", _SCORE, low=3, high=15, integer=True),
    "four_ts": Table("{score}", _SCORE, low=0, high=8, integer=True),   # v3 §19.6
    "urine_output_24h": Table("mL", {"mL": 1.0, "mL/(24.h)": 1.0, "mL/d": 1.0, "L": 1000.0},
                              low=0, high=20000),
    "weight": Table("kg", {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237},
                    low=0, low_inclusive=False, high=700),
    "height": Table("cm", {"cm": 1.0, "m": 100.0, "[in_i]": 2.54}, low=30, high=275),
    "recorded_bmi": Table("kg/m2", {"kg/m2": 1.0}, low=0, low_inclusive=False, high=250),
    "sofa_subscore": Table("{score}", _SCORE, low=0, high=4, integer=True),
    "sofa_total": Table("{score}", _SCORE, low=0, high=24, integer=True),
}

# Vasoactive rates (data requirements §5): per kg -> ug/kg/min; per minute -> ug/min,
# which needs the current body weight to be scored.
RATE_PER_KG = Table("ug/kg/min", {"ug/kg/min": 1.0, "ug/(kg.min)": 1.0,
                                  "mg/kg/h": 1000 / 60, "ug/kg/h": 1 / 60},
                    low=0, low_inclusive=False, high=100)
RATE_ABSOLUTE = Table("ug/min", {"ug/min": 1.0, "mg/h": 1000 / 60},
                      low=0, low_inclusive=False, high=10000)

# Order doses (data requirements §8): mass, heparin units, and volume/count (SCD map only).
# The ceilings only refuse absurd entries (no drug in scope comes near 10 g or 10^6 units per
# administration): such a dose reads as unknown instead of being classed or proposed back.
DOSE_MASS = Table("mg", {"mg": 1.0, "g": 1000.0}, low=0, low_inclusive=False, high=10_000)
DOSE_UNITS = Table("[IU]", {"[iU]": 1.0, "[IU]": 1.0, "U": 1.0},
                   text={"units": 1.0, "IU": 1.0}, low=0, low_inclusive=False, high=1_000_000)
DOSE_VOLUME = Table("mL", {"mL": 1.0}, low=0, low_inclusive=False, high=100)
# Count units (v2): the CDS Hooks Sandbox sends {pill} for every drug.
DOSE_COUNT = Table("{each}", {"{syringe}": 1.0, "{each}": 1.0, "{pill}": 1.0, "{dose}": 1.0,
                              "{unit}": 1.0, "1": 1.0}, low=0, low_inclusive=False, high=100)


@dataclass(frozen=True)
class Converted:
    value: float                  # canonical unit
    unit: str                     # the table's canonical unit
    reported_value: float         # as sent (or in the `reported` spelling's unit)
    reported_unit: str            # the unit as matched, in the table's spelling
    comparator: str | None = None
    basis: str | None = None      # D-dimer {FEU}/{DDU} annotation or unit-text word


def read_unit(quantity: Mapping[str, Any]) -> tuple[str, bool]:
    """(unit key, is_ucum) of a Quantity, per the rules in the module docstring."""
    code = quantity.get("code")
    if quantity.get("system") == UCUM and isinstance(code, str) and code.strip():
        return code.strip().replace("µ", "u").replace("μ", "u"), True
    text = quantity.get("unit")
    if not isinstance(text, str) or not text.strip():
        text = code if isinstance(code, str) and not quantity.get("system") else ""
    return text.strip().replace("µ", "u").replace("μ", "u"), False


def _strip_basis(key: str, is_ucum: bool, unit_text: Any) -> tuple[str, str | None, bool]:
    """Remove {FEU}/{DDU} (and, in text, a bare FEU/DDU word). Returns (key, basis, conflict)."""
    found = {m.upper() for m in _BASIS_ANNOTATION.findall(key)}
    key = _BASIS_ANNOTATION.sub("", key)
    if not is_ucum:
        words = {m.upper() for m in _BASIS_WORD.findall(key.lower())}
        found |= words
        key = re.sub(r"[()]", " ", _BASIS_WORD.sub(" ", key.lower())).strip()
        key = re.sub(r"\s+", "", key)
    elif isinstance(unit_text, str):
        # A UCUM code without annotation may still carry the basis in its display text.
        folded = unit_text.lower()
        found |= {m.upper() for m in _BASIS_ANNOTATION.findall(unit_text)}
        found |= {m.upper() for m in _BASIS_WORD.findall(folded)}
    if len(found) > 1:
        return key, None, True
    return key, (found.pop() if found else None), False


def _lookup(table: Table, key: str, is_ucum: bool) -> tuple[float, str] | None:
    """(factor, spelling) of `key` in `table`, or None if the unit is not accepted."""
    if is_ucum:
        for candidate in (key, _LITRE.sub(lambda m: m.group(1) + "L", key)):
            if candidate in table.factors:
                return table.factors[candidate], candidate
        return None
    folded = _fold_text(key)
    factor = table._text_lookup.get(folded)  # type: ignore[attr-defined]
    if factor is None:
        return None
    return factor, table._spelling[folded]  # type: ignore[attr-defined]


def _r6(x: float) -> float:
    return round(x, 6)


def check_range(table: Table, value: float, what: str) -> None:
    """Refuse physiologically absurd canonical values."""
    v = _r6(value)
    if table.low is not None and (v < table.low or (v == table.low and not table.low_inclusive)):
        edge = ">=" if table.low_inclusive else ">"
        raise UnitError(f"{what} {value:g} {table.canonical} is not plausible (must be {edge} {table.low:g})")
    if table.high is not None and v > table.high:
        raise UnitError(f"{what} {value:g} {table.canonical} is not plausible (must be <= {table.high:g})")
    if table.integer and not float(v).is_integer():
        raise UnitError(f"{what} {value:g} is not a whole number")


def convert(name: str, quantity: Any, *, table: Table | None = None) -> Converted:
    """Convert a FHIR Quantity for input `name` (a key of TABLES) to its canonical unit.

    Raises UnitError with a human-readable reason when the unit is not accepted for that
    input or the value is missing or implausible.
    """
    table = table or TABLES[name]
    if type(quantity) is not dict and not isinstance(quantity, Mapping):  # (the ABC check is slow)
        raise UnitError(f"{name}: no valueQuantity")
    value = number(quantity.get("value"))
    if value is None:
        raise UnitError(f"{name}: valueQuantity.value is missing or not a number")
    comparator = quantity.get("comparator")
    if comparator is not None and comparator not in ("<", "<=", ">", ">="):
        raise UnitError(f"{name}: comparator {comparator!r} is not usable")
    key, is_ucum = read_unit(quantity)
    basis = None
    if table.basis_annotations:
        key, basis, conflict = _strip_basis(key, is_ucum, quantity.get("unit"))
        if conflict:
            raise UnitError(f"{name}: unit {read_unit(quantity)[0]!r} names both FEU and DDU")
    found = _lookup(table, key, is_ucum)
    if found is None:
        shown = read_unit(quantity)[0] or "(none)"
        raise UnitError(f"{name}: unit {shown!r} is not an accepted unit "
                        f"(accepted: {', '.join(u or '(none)' for u in table.factors)}"
                        + (f", {', '.join(table.text)}" if table.text else "") + ")")
    factor, spelling = found
    if table.percent_above_one and spelling != "%" and _r6(value) > 1:
        factor = 0.01  # a unitless FiO2 above 1 is a percentage (data requirements §3)
    canonical = value * factor
    check_range(table, canonical, name)
    reported_unit, reported_factor = table.reported.get(spelling, (spelling, 1.0))
    return Converted(value=canonical, unit=table.canonical, reported_value=value * reported_factor,
                     reported_unit=reported_unit, comparator=comparator, basis=basis)
