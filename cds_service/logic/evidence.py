"""Seed trigger (clinical-rules.md §8) and the card evidence note (§13).

Seed trigger [Tang N et al., J Thromb Haemost 2020;18:1094-1099]
- `reasons` ⊆ (`sic_positive`, `d_dimer_gt_6x_uln`) in that order; `triggered` = any reason;
  null when no reason is present and SIC positivity or the D-dimer flag is undetermined.
- Observational 2020 signal: risk information only, never a reason to dose above prophylaxis.

Evidence note, first row that applies:
| `not_applicable` | any contraindication, or already_therapeutic |
| `critically_ill_prophylactic_only` | critically_ill true [INSPIRATION, JAMA 2021;325:1620;
    ATTACC/ACTIV-4a/REMAP-CAP critically ill, NEJM 2021;385:777] |
| `therapeutic_option` | critically_ill false, oxygen "low-flow" (when escalation.require_low_flow),
    D-dimer multiple > escalation.d_dimer_multiple and settled (a reported bound must settle
    it), no escalation caution, escalation.enabled [ATTACC/ACTIV-4a/REMAP-CAP non-critically
    ill, NEJM 2021;385:790; NIH 2022; ASH 2022 Rec 2b; HEP-COVID; RAPID] |
| `escalation_blocked` | critically_ill false and at least one caution |
| `prophylactic` | critically_ill false, otherwise. When only unchecked cautions (a §10.2 lab
    missing from its window) stand between the patient and `therapeutic_option`, they are
    listed in `unchecked_cautions`: "no caution" must be known, never assumed (§0) |
| `severity_unknown` | critically_ill null |
For `therapeutic_option`, `therapeutic_hint` says what cards describe: "enoxaparin_1_mg_kg_q12h"
when crcl_lt_30 is false, else "local_protocol" (CrCl < 30 or unknown; HEP-COVID used
0.5 mg/kg q12h at CrCl 15-29 and excluded CrCl < 15).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import numeric as nm
from .policy import Policy

SEED_REASONS = ("sic_positive", "d_dimer_gt_6x_uln")
NOTES = ("not_applicable", "critically_ill_prophylactic_only", "therapeutic_option",
         "escalation_blocked", "prophylactic", "severity_unknown")


@dataclass(frozen=True)
class SeedTrigger:
    triggered: bool | None
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"triggered": self.triggered, "reasons": list(self.reasons)}


def seed_trigger(sic_positive: bool | None, d_dimer_gt_6x_uln: bool | None) -> SeedTrigger:
    hits = {"sic_positive": sic_positive, "d_dimer_gt_6x_uln": d_dimer_gt_6x_uln}
    reasons = tuple(r for r in SEED_REASONS if hits[r] is True)
    if reasons:
        return SeedTrigger(True, reasons)
    return SeedTrigger(None if None in hits.values() else False)


@dataclass(frozen=True)
class EvidenceNote:
    code: str
    # Cautions that block escalation (escalation_blocked) and what the therapeutic option
    # would be (therapeutic_option); empty/None otherwise.
    blocking_cautions: tuple[str, ...] = ()
    therapeutic_hint: str | None = None
    # prophylactic only: the cautions that could not be checked and withheld the option.
    unchecked_cautions: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"code": self.code, "blocking_cautions": list(self.blocking_cautions),
                "therapeutic_hint": self.therapeutic_hint,
                "unchecked_cautions": list(self.unchecked_cautions)}


def evidence_note(*, contraindications: tuple[str, ...], already_therapeutic: bool,
                  critically_ill: bool | None, oxygen: str | None,
                  d_dimer_multiple_range: tuple[float, float] | None,
                  cautions: tuple[str, ...], crcl_lt_30: bool | None,
                  policy: Policy, unchecked_cautions: tuple[str, ...] = ()) -> EvidenceNote:
    """`d_dimer_multiple_range`: (min, max) of the D-dimer multiple of ULN (equal when exact,
    apart when the value was a bound: `DDimerResult.multiple_range`); None if undeterminable.
    `unchecked_cautions`: §10.2 caution codes whose lab could not be checked (Safety.undetermined)."""
    p = policy
    if contraindications or already_therapeutic:
        return EvidenceNote("not_applicable")
    if critically_ill is None:
        return EvidenceNote("severity_unknown")
    if critically_ill:
        return EvidenceNote("critically_ill_prophylactic_only")
    oxygen_ok = oxygen == "low-flow" or not p["escalation.require_low_flow"]
    threshold = p["escalation.d_dimer_multiple"]
    d_dimer_ok = d_dimer_multiple_range is not None and nm.exact(nm.settle(
        lambda m: nm.cmp_gt(m, threshold, p), *d_dimer_multiple_range)) is True
    eligible = p["escalation.enabled"] and oxygen_ok and d_dimer_ok and not cautions
    if eligible and unchecked_cautions:
        return EvidenceNote("prophylactic", unchecked_cautions=tuple(unchecked_cautions))
    if eligible:
        return EvidenceNote("therapeutic_option",
                            therapeutic_hint="enoxaparin_1_mg_kg_q12h" if crcl_lt_30 is False
                            else "local_protocol")
    if cautions:
        return EvidenceNote("escalation_blocked", blocking_cautions=tuple(cautions))
    return EvidenceNote("prophylactic")
