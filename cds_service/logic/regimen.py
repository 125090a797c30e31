"""The recommended prophylactic regimen (clinical-rules.md §11).

Rubric: evaluate top to bottom, the first matching row wins (6-dp compares).
| # | condition | drug | dose | doses/day | basis |
| 0 | hit_acute (v2) | null (therapeutic non-heparin agent via haematology, §13) | - | - | hit_acute |
| 1 | only heparin-specific contraindications (hit_recent, hit_suspected, hit_history,
      heparin_allergy) | fondaparinux if CrCl known and >= hit.fondaparinux_min_crcl AND weight
      known and >= hit.fondaparinux_min_weight_kg (v2) AND (hit_recent) a platelet count is
      known AND no renal replacement (it overrides a computed CrCl, §11); else null | hit.fondaparinux_mg (hit.fondaparinux_moderate_mg at CrCl <
      hit.fondaparinux_moderate_crcl_below) | 1 | hit_history if any HIT code, else heparin_allergy |
| 2 | any contraindication | null (mechanical prophylaxis) | - | - | contraindicated |
| 3 | already_therapeutic | null (keep the current agent) | - | - | already_therapeutic |
| 3a | CrCl < renal.severe_crcl_cutoff, or renal replacement (v2) | heparin renal.ufh_units U |
      renal.ufh_doses_per_day | crcl_lt_15 (HEP-COVID excluded CrCl < 15) |
| 4 | crcl_lt_30 | enoxaparin renal.enoxaparin_mg, or with renal.preferred_agent = "heparin"
      heparin renal.ufh_units U | 1, or renal.ufh_doses_per_day | crcl_lt_30 |
| 5 | BMI null | enoxaparin dosing.pending_weight_mg | dosing.doses_per_day | pending_weight |
| 6a | (v3, site option dosing.bmi_tier3_enabled) BMI >= dosing.bmi_tier3 | enoxaparin
      dosing.bmi_tier3_mg | dosing.bmi_tier3_doses_per_day | bmi_ge_50 |
| 6 | BMI >= dosing.bmi_tier2 | enoxaparin dosing.bmi_tier2_mg | " | bmi_ge_40 |
| 7 | BMI >= dosing.bmi_tier1 | enoxaparin dosing.bmi_tier1_mg | " | bmi_ge_30 |
| 8 | otherwise | enoxaparin dosing.standard_mg | " | standard |
With renal.overrides_bmi_rule = false, rows 6-7 are evaluated before row 4.
Rows 6-8: Piagnerelli M et al., Crit Care Med 2020 (letter); standard 40 mg: enoxaparin label,
Bikdeli 2020 (JACC), Schulman 2022 (ISTH). Row 4: enoxaparin label; ACC (Bikdeli 2020) for UFH.
Row 1: enoxaparin label (HIT), fondaparinux label (CrCl < 30; unverified).
The service never writes a therapeutic dose here (§13).

Card notes (codes, in NOTE_ORDER):
- `mechanical_prophylaxis`: no drug because of a contraindication (rows 1 without drug, 2);
- `hit_non_heparin_agent`: HIT and fondaparinux not possible: non-heparin agent via specialist;
- `confirm_renal_function`: CrCl unknown while a drug is dosed on the BMI rule or HIT row 1;
- `hit_needs_platelets`: hit_recent with no platelet count: ask for one and haematology advice;
- `fondaparinux_needs_weight` / `fondaparinux_low_weight`: weight unknown / < 50 kg (label);
- `fondaparinux_moderate_renal`: fondaparinux at CrCl 30-<50 (EU SmPC 1.5 mg; caution);
- `crcl_lt_15`: row 3a (CrCl < 15 or renal replacement): UFH; dialysis and AKI protocols;
- `renal_obesity`: row 3a/4 with BMI >= 40 or weight > 120 kg: CrCl on actual weight, anti-Xa;
- `crcl_unreliable`: creatinine not at steady state (renal.creatinine_unstable);
- `renal_trough_anti_xa`: LMWH at CrCl < 30: also check a trough anti-Xa (Piagnerelli);
- `weight_lt_50kg` / `weight_gt_120kg` (antixa.trigger_weight_low_kg / _high_kg): keep the dose
  of the row (40 mg, or the BMI tier) and monitor anti-Xa [enoxaparin label].
`weight_based_mg` = dosing.info_mg_per_kg x weight (50 IU/kg, Piagnerelli), informational only,
with `weight_based_syringe_mg` the nearest US syringe strength (ties go to the lower).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import numeric as nm
from .policy import Policy

NOTE_ORDER = ("mechanical_prophylaxis", "hit_non_heparin_agent", "hit_needs_platelets",
              "fondaparinux_needs_weight", "fondaparinux_low_weight", "fondaparinux_moderate_renal",
              "confirm_renal_function", "crcl_lt_15", "renal_obesity", "crcl_unreliable",
              "renal_trough_anti_xa", "weight_lt_50kg", "weight_gt_120kg")
# US enoxaparin prefilled syringe strengths, mg (clinical-rules.md §11, enoxaparin label).
SYRINGE_STRENGTHS_MG = (30, 40, 60, 80, 100, 120, 150)
BMI_BASES = ("standard", "bmi_ge_30", "bmi_ge_40", "bmi_ge_50", "pending_weight")


@dataclass(frozen=True)
class Regimen:
    drug: str | None
    dose_mg: float | None
    dose_units: float | None
    doses_per_day: int | None
    basis: str
    notes: tuple[str, ...] = ()
    weight_based_mg: float | None = None
    weight_based_syringe_mg: int | None = None

    def to_json(self) -> dict:
        return {"drug": self.drug, "dose_mg": self.dose_mg, "dose_units": self.dose_units,
                "doses_per_day": self.doses_per_day, "basis": self.basis,
                "notes": list(self.notes),
                "weight_based_mg": nm.display(self.weight_based_mg, 1),
                "weight_based_syringe_mg": self.weight_based_syringe_mg}


def nearest_syringe_mg(mg: float) -> int:
    return min(SYRINGE_STRENGTHS_MG, key=lambda s: (abs(s - mg), s))


def crcl_below(crcl_ml_min: float | None, crcl_bound: tuple[str, float] | None,
               threshold: float, policy: Policy) -> bool | None:
    """Is CrCl < threshold? From the value, or from its bound (`Renal.crcl_bound`, when the
    creatinine was reported with a comparator) if the bound settles it; else None."""
    if crcl_ml_min is not None:
        return nm.cmp_lt(crcl_ml_min, threshold, policy)
    if crcl_bound is None:
        return None
    lo, hi = nm.interval(crcl_bound[1], crcl_bound[0], policy, floor=0.0)
    return nm.exact(nm.settle(lambda c: nm.cmp_lt(c, threshold, policy), lo, hi))


HEPARIN_SPECIFIC = ("hit_recent", "hit_suspected", "hit_history", "heparin_allergy")
HIT_BASIS_CODES = ("hit_recent", "hit_suspected", "hit_history")


def _row(contraindications: tuple[str, ...], already_therapeutic: bool,
         fondaparinux_ok: bool, crcl_lt_30: bool | None, bmi: float | None,
         p: Policy, severe: bool = False,
         fondaparinux_mg: float | None = None) -> tuple[str | None, float | None, float | None,
                                                        int | None, str]:
    if "hit_acute" in contraindications:                                   # row 0 (v2)
        return None, None, None, None, "hit_acute"
    if "hit_suspected" in contraindications:                               # row 0b (v3 §19.6)
        # if 4Ts >= 4: therapeutic non-heparin agent; never a fondaparinux prophylaxis create
        return None, None, None, None, "hit_suspected"
    if contraindications and all(c in HEPARIN_SPECIFIC for c in contraindications):  # row 1
        basis = "hit_history" if any(c in HIT_BASIS_CODES for c in contraindications) \
            else "heparin_allergy"
        if fondaparinux_ok:
            return "fondaparinux", fondaparinux_mg, None, 1, basis
        return None, None, None, None, basis
    if contraindications:
        return None, None, None, None, "contraindicated"
    if already_therapeutic:
        return None, None, None, None, "already_therapeutic"
    if severe:                                                             # row 3a (v2)
        return "heparin", None, p["renal.ufh_units"], p["renal.ufh_doses_per_day"], "crcl_lt_15"

    per_day = p["dosing.doses_per_day"]
    tier = None
    if bmi is not None:
        value = nm.display(bmi, 1) if p["dosing.round_bmi_before_compare"] else bmi
        if p["dosing.bmi_tier3_enabled"] and nm.cmp_ge(value, p["dosing.bmi_tier3"], p):   # row 6a (v3)
            tier = ("enoxaparin", p["dosing.bmi_tier3_mg"], None, p["dosing.bmi_tier3_doses_per_day"], "bmi_ge_50")
        elif nm.cmp_ge(value, p["dosing.bmi_tier2"], p):
            tier = ("enoxaparin", p["dosing.bmi_tier2_mg"], None, per_day, "bmi_ge_40")
        elif nm.cmp_ge(value, p["dosing.bmi_tier1"], p):
            tier = ("enoxaparin", p["dosing.bmi_tier1_mg"], None, per_day, "bmi_ge_30")
    if tier and not p["renal.overrides_bmi_rule"]:
        return tier
    if crcl_lt_30 is True:
        if p["renal.preferred_agent"] == "heparin":
            return "heparin", None, p["renal.ufh_units"], p["renal.ufh_doses_per_day"], "crcl_lt_30"
        return "enoxaparin", p["renal.enoxaparin_mg"], None, 1, "crcl_lt_30"
    if bmi is None:
        return "enoxaparin", p["dosing.pending_weight_mg"], None, per_day, "pending_weight"
    return tier or ("enoxaparin", p["dosing.standard_mg"], None, per_day, "standard")


def recommend_regimen(*, contraindications: tuple[str, ...], already_therapeutic: bool,
                      crcl_ml_min: float | None, crcl_lt_30: bool | None, bmi: float | None,
                      weight_kg: float | None, policy: Policy,
                      crcl_bound: tuple[str, float] | None = None,
                      renal_replacement: bool | None = None,
                      creatinine_unstable: bool | None = None,
                      platelets_known: bool = True) -> Regimen:
    """`crcl_bound`: (comparator, value) when CrCl is only known as a bound (Renal.crcl_bound).
    `platelets_known`: a platelet count is in the labs window (row 1 with `hit_recent`)."""
    p = policy
    crcl_low = crcl_below(crcl_ml_min, crcl_bound, p["hit.fondaparinux_min_crcl"], p)
    if renal_replacement is True:
        # §11: renal replacement overrides a computed CrCl (a post-dialysis creatinine
        # overstates clearance): below the fondaparinux floor whatever the number says.
        crcl_low = True
    weight_low = None if weight_kg is None else \
        nm.cmp_lt(weight_kg, p["hit.fondaparinux_min_weight_kg"], p)
    needs_platelets = "hit_recent" in contraindications and not platelets_known
    fondaparinux_ok = crcl_low is False and weight_low is False and not needs_platelets
    moderate = crcl_below(crcl_ml_min, crcl_bound, p["hit.fondaparinux_moderate_crcl_below"], p)
    fondaparinux_mg = p["hit.fondaparinux_moderate_mg"] if moderate else p["hit.fondaparinux_mg"]
    severe = crcl_below(crcl_ml_min, crcl_bound, p["renal.severe_crcl_cutoff"], p) is True \
        or renal_replacement is True
    drug, dose_mg, dose_units, per_day, basis = _row(
        contraindications, already_therapeutic, fondaparinux_ok, crcl_lt_30, bmi, p, severe,
        fondaparinux_mg)
    notes = set()
    row1 = basis in ("hit_history", "heparin_allergy")
    if drug is None and (row1 or basis == "contraindicated"):
        notes.add("mechanical_prophylaxis")
    if row1 and drug is None:
        if needs_platelets:
            notes.add("hit_needs_platelets")
        elif weight_low is None and crcl_low is not True:
            notes.add("fondaparinux_needs_weight")
        else:
            notes.add("hit_non_heparin_agent")
        if weight_low is True:
            notes.add("fondaparinux_low_weight")
    if drug == "fondaparinux" and moderate:
        notes.add("fondaparinux_moderate_renal")
    if (basis in BMI_BASES and crcl_lt_30 is None) or (row1 and crcl_low is None):
        notes.add("confirm_renal_function")
    if basis == "crcl_lt_15":
        notes.add("crcl_lt_15")
    if basis in ("crcl_lt_15", "crcl_lt_30") and (
            (bmi is not None and nm.cmp_ge(bmi, p["antixa.trigger_bmi"], p))
            or (weight_kg is not None and nm.cmp_gt(weight_kg, p["antixa.trigger_weight_high_kg"], p))):
        notes.add("renal_obesity")
    if creatinine_unstable is True:
        notes.add("crcl_unreliable")
    if drug is not None:
        if drug == "enoxaparin" and crcl_lt_30 is True:
            notes.add("renal_trough_anti_xa")
        if weight_kg is not None and drug != "fondaparinux":
            if nm.cmp_lt(weight_kg, p["antixa.trigger_weight_low_kg"], p):
                notes.add("weight_lt_50kg")
            if nm.cmp_gt(weight_kg, p["antixa.trigger_weight_high_kg"], p):
                notes.add("weight_gt_120kg")
    info = info_syringe = None
    if drug == "enoxaparin" and weight_kg is not None:
        info = p["dosing.info_mg_per_kg"] * weight_kg
        info_syringe = nearest_syringe_mg(info)
    return Regimen(drug, dose_mg, dose_units, per_day, basis,
                   tuple(n for n in NOTE_ORDER if n in notes), info, info_syringe)
