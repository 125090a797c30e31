"""SOFA sub-scores, all six, and SOFA-4 (clinical rules §5).

[Vincent JL et al., Intensive Care Med 1996;22:707–710, table as reprinted in Singer M et
al., JAMA 2016;315:801–810.] The bands are the published score, not policy choices.

| Organ (field)      | 0      | 1       | 2        | 3                  | 4                  |
|--------------------|--------|---------|----------|--------------------|--------------------|
| respiratory P/F    | ≥400   | <400    | <300     | <200 and support   | <100 and support   |
| coagulation plt    | ≥150   | <150    | <100     | <50                | <20                |
| hepatic bili mg/dL | <1.2   | 1.2–<2  | 2–<6     | 6–<12              | ≥12                |
| hepatic bili µmol/L| <20    | 20–<33  | 33–<102  | 102–204            | >204               |
| cardiovascular     | MAP≥70 | MAP<70  | dopa ≤5 or dobutamine | dopa >5, epi ≤0.1, norepi ≤0.1 | dopa >15, epi >0.1, norepi >0.1 |
| cns GCS            | 15     | 13–14   | 10–12    | 6–9                | <6                 |
| renal creat mg/dL  | <1.2   | 1.2–<2  | 2–<3.5   | 3.5–<5             | ≥5                 |
| renal creat µmol/L | <110   | 110–<171| 171–<300 | 300–440            | >440               |
| renal urine mL/24h |        |         |          | <500               | <200               |

Rates in µg/kg/min. mg/dL lower edges are inclusive (12.0 and 5.0 score 4); dopamine 5
scores 2, norepinephrine 0.1 scores 3.

- SI units score on their own bands (`sofa.si_native_bands`, default true) when the lab
  reported µmol/L (`Measurement.reported_value/reported_unit`; mmol/L × 1000 first). With
  false, the mg/dL value (fhir/ converted it) is scored on the mg/dL bands.
- Respiratory support (`sofa.respiratory_support_modalities`, default IMV/NIV/CPAP; HFNC
  does not count) unlocks 3 and 4; without support P/F <200 scores 2. When P/F <200 and no
  current modality or room air is recorded at all, support is unknown: the sub-score is
  null with lower bound 2 (nothing is guessed).
- Cardiovascular: vasoactives count once run ≥ `sofa.vasoactive_min_minutes`
  (`Vasoactive.meets_min_duration`); the highest contribution wins. Unknown rate gives a
  lower bound (norepinephrine/epinephrine ≥3, dopamine ≥2): null sub-score, bound kept.
  Dobutamine scores 2 at any rate. Vasopressin/phenylephrine are not in SOFA. No
  vasoactive and no MAP → null.
- Renal = max(creatinine score, urine score); either alone is enough.
- CNS from the recorded GCS (clinically, the pre-sedation GCS is intended).
- Recorded sub-scores (integers 0–4) fill only organs that cannot be scored from raw data,
  unless `sofa.prefer_recorded_subscores`. A recorded score that contradicts a computed
  bound is not used.
- A comparator makes a raw value a bound; a sub-score is set only if the bound settles it.
- `sofa4` = respiratory + cardiovascular + hepatic + renal when all four are known, else
  null; `sofa4_lower_bound` sums the known lower bounds of those four (the S of §6).
- `sofa.value_selection = "worst_in_window"` needs the worst value per window, which
  PatientInputs does not carry (it holds the latest); the latest is scored and a note says
  so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from . import numeric as nm
from .inputs import Measurement, PatientInputs, Vasoactive
from .policy import Policy

Range = tuple[int, int]
ORGANS = ("respiratory", "cardiovascular", "hepatic", "renal", "coagulation", "cns")
SOFA4 = ("respiratory", "cardiovascular", "hepatic", "renal")
Edges = list[tuple[str, float, int]]

PF_EDGES: Edges = [("<", 400, 1), ("<", 300, 2), ("<", 200, 3), ("<", 100, 4)]
PF_EDGES_NO_SUPPORT: Edges = [("<", 400, 1), ("<", 300, 2)]
PLATELET_EDGES: Edges = [("<", 150, 1), ("<", 100, 2), ("<", 50, 3), ("<", 20, 4)]
BILI_MG_DL_EDGES: Edges = [(">=", 1.2, 1), (">=", 2.0, 2), (">=", 6.0, 3), (">=", 12.0, 4)]
BILI_UMOL_L_EDGES: Edges = [(">=", 20, 1), (">=", 33, 2), (">=", 102, 3), (">", 204, 4)]
CREAT_MG_DL_EDGES: Edges = [(">=", 1.2, 1), (">=", 2.0, 2), (">=", 3.5, 3), (">=", 5.0, 4)]
CREAT_UMOL_L_EDGES: Edges = [(">=", 110, 1), (">=", 171, 2), (">=", 300, 3), (">", 440, 4)]
URINE_EDGES: Edges = [("<", 500, 3), ("<", 200, 4)]
MAP_EDGES: Edges = [("<", 70, 1)]
GCS_EDGES: Edges = [("<", 15, 1), ("<", 13, 2), ("<", 10, 3), ("<", 6, 4)]
# Vasoactive rate bands (µg/kg/min): (score at low dose, edges above it).
VASO_BANDS: dict[str, tuple[int, Edges]] = {
    "dopamine": (2, [(">", 5, 3), (">", 15, 4)]),
    "dobutamine": (2, []),
    "epinephrine": (3, [(">", 0.1, 4)]),
    "norepinephrine": (3, [(">", 0.1, 4)]),
}
SI_FACTORS = {"umol/l": 1.0, "mmol/l": 1000.0}


@dataclass(frozen=True)
class Sofa:
    respiratory: int | None
    cardiovascular: int | None
    hepatic: int | None
    renal: int | None
    coagulation: int | None
    cns: int | None
    sofa4: int | None
    sofa4_complete: bool
    sofa4_lower_bound: int                 # S of §6: known lower bounds of the SOFA-4 organs
    sofa4_upper_bound: int                 # unknown organs count 4
    ranges: Mapping[str, Range | None] = field(default_factory=dict)   # organ -> (min, max)
    sources: Mapping[str, str | None] = field(default_factory=dict)    # "computed"|"recorded"
    missing: tuple[str, ...] = ()
    missing_by_organ: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def missing_for(self, organs: tuple[str, ...] = SOFA4) -> tuple[str, ...]:
        """Inputs that would settle the given organs (default the SOFA-4 ones)."""
        return tuple(dict.fromkeys(x for o in organs for x in self.missing_by_organ.get(o, ())))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {o: getattr(self, o) for o in ORGANS}
        out.update(
            sofa4=self.sofa4, sofa4_complete=self.sofa4_complete,
            sofa4_lower_bound=self.sofa4_lower_bound, sofa4_upper_bound=self.sofa4_upper_bound,
            bounds={o: list(r) for o, r in self.ranges.items() if r is not None and r[0] != r[1]},
            sources={o: s for o, s in self.sources.items() if s is not None},
            missing=list(self.missing), notes=list(self.notes))
        return out


def _merge_max(ranges: list[Range]) -> Range | None:
    """Range of max(...) over several contributions."""
    if not ranges:
        return None
    return max(r[0] for r in ranges), max(r[1] for r in ranges)


def _si_or_conventional(m: Measurement | None, mg_edges: Edges, si_edges: Edges,
                        policy: Policy) -> Range | None:
    """Score on the SI bands when the lab reported µmol/L (or mmol/L) and the policy says so."""
    if m is None:
        return None
    unit = (m.reported_unit or "").strip().lower().replace("µ", "u").replace("μ", "u")
    if policy["sofa.si_native_bands"] and unit in SI_FACTORS and m.reported_value is not None:
        return nm.band_range(m, si_edges, policy, value=m.reported_value * SI_FACTORS[unit])
    return nm.band_range(m, mg_edges, policy)


def respiratory(inputs: PatientInputs, policy: Policy) -> tuple[Range | None, list[str]]:
    pf = inputs.pf_ratio
    if pf is None:
        return None, ["pf_ratio"]
    resp = inputs.respiratory
    counted = set(policy["sofa.respiratory_support_modalities"])
    present = set(resp.modalities) | ({"ECMO"} if resp.ecmo else set())
    with_support = nm.band_range(pf, PF_EDGES, policy)
    without = nm.band_range(pf, PF_EDGES_NO_SUPPORT, policy)
    assert with_support is not None and without is not None
    if present & counted:
        return with_support, []
    if present or resp.room_air_documented:
        return without, []
    # Support status unknown: anything from the unsupported to the supported score.
    rng = (without[0], with_support[1])
    return rng, ([] if rng[0] == rng[1] else ["respiratory_support"])


def _vasoactive(v: Vasoactive, policy: Policy) -> Range | None:
    if v.ingredient not in VASO_BANDS or not v.meets_min_duration:
        return None
    low, edges = VASO_BANDS[v.ingredient]
    if v.rate_ug_kg_min is None:
        return low, max([low] + [p for _, _, p in edges])
    if v.rate_ug_kg_min <= 0:
        return None  # not running
    score = nm.band(v.rate_ug_kg_min, policy, edges, default=low)
    return score, score


def cardiovascular(inputs: PatientInputs, policy: Policy) -> tuple[Range | None, list[str]]:
    parts = [r for r in (_vasoactive(v, policy) for v in inputs.vasoactives) if r is not None]
    map_range = nm.band_range(inputs.map, MAP_EDGES, policy)
    if map_range is not None:
        parts.append(map_range)
    rng = _merge_max(parts)
    if rng is None:
        return None, ["map"]
    return rng, ([] if rng[0] == rng[1] else ["vasoactive_rate"])


def renal(inputs: PatientInputs, policy: Policy) -> tuple[Range | None, list[str]]:
    parts = [r for r in (
        _si_or_conventional(inputs.creatinine, CREAT_MG_DL_EDGES, CREAT_UMOL_L_EDGES, policy),
        nm.band_range(inputs.urine_output_24h, URINE_EDGES, policy)) if r is not None]
    rng = _merge_max(parts)
    return rng, (["creatinine", "urine_output_24h"] if rng is None else [])


def _single(name: str, rng: Range | None) -> tuple[Range | None, list[str]]:
    return rng, ([name] if rng is None or rng[0] != rng[1] else [])


def _recorded(m: Measurement | None) -> int | None:
    if m is None or m.comparator is not None or not float(m.value).is_integer() \
            or not 0 <= m.value <= 4:
        return None
    return int(m.value)


def compute(inputs: PatientInputs, policy: Policy) -> Sofa:
    computed: dict[str, tuple[Range | None, list[str]]] = {
        "respiratory": respiratory(inputs, policy),
        "cardiovascular": cardiovascular(inputs, policy),
        "hepatic": _single("bilirubin", _si_or_conventional(
            inputs.bilirubin, BILI_MG_DL_EDGES, BILI_UMOL_L_EDGES, policy)),
        "renal": renal(inputs, policy),
        "coagulation": _single("platelets", nm.band_range(inputs.platelets, PLATELET_EDGES, policy)),
        "cns": _single("gcs", nm.band_range(inputs.gcs, GCS_EDGES, policy)),
    }
    prefer_recorded = policy["sofa.prefer_recorded_subscores"]
    ranges: dict[str, Range | None] = {}
    sources: dict[str, str | None] = {}
    missing: dict[str, tuple[str, ...]] = {}
    notes: list[str] = []
    for organ in ORGANS:
        rng, why = computed[organ]
        rec = _recorded(getattr(inputs.recorded_sofa, organ))
        known = rng is not None and rng[0] == rng[1]
        if rec is not None and (prefer_recorded or (not known and (rng is None or rng[0] <= rec <= rng[1]))):
            ranges[organ], sources[organ] = (rec, rec), "recorded"
            continue
        if rec is not None and not known and rng is not None:
            notes.append(f"recorded {organ} sub-score {rec} contradicts the computed range {rng}; not used")
        ranges[organ] = rng
        sources[organ] = "computed" if known else None
        if why:
            missing[organ] = tuple(why)
    if policy["sofa.value_selection"] == "worst_in_window":
        notes.append("sofa.value_selection=worst_in_window is not supported by the inputs "
                     "(latest value per window only); scored on the latest values")
    scores = {o: nm.exact(ranges[o]) for o in ORGANS}
    complete = all(scores[o] is not None for o in SOFA4)
    return Sofa(
        **scores,  # type: ignore[arg-type]
        sofa4=sum(scores[o] for o in SOFA4) if complete else None,  # type: ignore[misc]
        sofa4_complete=complete,
        sofa4_lower_bound=sum(ranges[o][0] for o in SOFA4 if ranges[o] is not None),  # type: ignore[index]
        sofa4_upper_bound=sum(ranges[o][1] if ranges[o] is not None else 4 for o in SOFA4),  # type: ignore[index]
        ranges=ranges, sources=sources,
        missing=tuple(dict.fromkeys(x for why in missing.values() for x in why)),
        missing_by_organ=missing, notes=tuple(notes))
