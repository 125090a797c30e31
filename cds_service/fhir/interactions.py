"""Strong CYP3A4/P-gp inhibitors active for the patient (data requirements §8a; clinical rules §19.3).

Active MedicationRequests (status active/on-hold, as the anticoagulant orders) and active
MedicationStatements whose medication (codeable concept, or the referenced Medication's code and
ingredients) matches `codes.json` "interacting_drugs" by RxNorm or ATC. Returns ingredient names,
in the data file's order; nothing is guessed from text.
"""
from __future__ import annotations

from typing import Any, Mapping

from .codes import Codes
from .orders import is_current_order, medication_codings


def interacting_drugs(requests: list[dict], statements: list[dict], meds: Mapping[str, dict],
                      codes: Codes) -> tuple[str, ...]:
    sets = codes.section("interacting_drugs") if "interacting_drugs" in codes.data else {}
    if not sets:
        return ()
    found: set[str] = set()
    for resource in [r for r in requests if is_current_order(r)] + [r for r in statements if _active(r)]:
        codings = medication_codings(resource, meds)
        for name, cs in sets.items():
            if cs.matches_any(codings):
                found.add(name)
    return tuple(n for n in sets if n in found)


def _active(statement: Any) -> bool:
    return isinstance(statement, dict) and statement.get("status") == "active"
