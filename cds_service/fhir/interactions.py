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
from .read import codings


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


# clinical rules §19.3: cards name the modality ("On haemodialysis (last session D)", "On CRRT"),
# never a post-dialysis CrCl. SNOMED codes of codes.json "renal_replacement".
_RRT_MODES = {"714749008": "crrt", "302497006": "haemodialysis", "71192002": "peritoneal"}


def renal_replacement_mode(procedures: list[dict], flag: Any) -> str | None:
    """The modality of the renal-replacement evidence `flag` (fhir/exposure.renal_replacement):
    "crrt", "haemodialysis", "peritoneal", "dialysis" (another dialysis code) or "eskd" (the
    evidence is an end-stage kidney disease Condition); None when there is none."""
    from .context import source_of
    if flag is None or not getattr(flag, "present", False):
        return None
    source = getattr(flag, "source", None) or ""
    if source.startswith("Condition/"):
        return "eskd"
    for proc in procedures:
        if source_of(proc) != source:
            continue
        for system, code in codings(proc.get("code")):
            if code in _RRT_MODES:
                return _RRT_MODES[code]
        return "dialysis"
    return "dialysis"
