"""The §19.15 order-check matrix: every reference patient × every draft, one expected card per cell.

Written from ../shared/clinical-rules.md v3 (§19 overrides earlier sections; §10–§13, §18) and
fhir-data-requirements.md §8, §8a, §9, **without reading the order-check code**. It is the one
source of the matrix: the table in cds_service/data/patients/README.md ("Order-check matrix (v3,
§19.15)") is generated from it (`python -m tests.integration.order_matrix`), and a test checks that
the README and this module agree.

How a cell is written. `expect(patient, draft)` applies the rules in the order a pharmacist reads a
draft: scope → the §10.1 stops → HIT (§18.4, §19.1, §19.6) → pregnancy, ECMO, liver (§19.1) →
ceilings and unknown inputs (§19.2) → renal (§19.3) → DOAC renal and interactions (§19.3) →
above-prophylactic without indication (§19.2) → duplicates (§10.4, §19.9) → the COVID-19 regimen
(§11, §19.11). It returns every card the rules ask for; the first (most severe, then rule order)
is the cell's **headline** card. A cell is checked as:
- "no card" (`[]`): the response has no card at all (silence means "checked and fine");
- otherwise: the most severe indicator in the response equals the headline's; a card of the
  headline's kind (or an accepted alias, `KIND_ALIASES`) and indicator exists whose suggestions carry
  exactly the headline's actions; every further expected card's kind is present. Extra cards at or
  below the headline's indicator are tolerated (the rules do not say whether two findings share a card).

Actions: "u" one suggestion updating the draft; "d" one deleting the draft; "cd" one suggestion
creating a product and deleting the draft; "-" no suggestion.

Facts per patient are the hand-worked values of the patients' README ("Workings"); the weight-based
drafts get a per-patient dose (`draft_dose`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

# ------------------------------------------------------------------ the draft set (§19.15)

@dataclass(frozen=True)
class Draft:
    key: str            # short column code
    file: str           # conformance/patients/draft-orders/<file>
    drug: str
    dose: float | None  # mg (units for UFH, IU for dalteparin); None = weight-based, see draft_dose
    per_day: float      # doses a day; 0 = continuous infusion
    label: str


DRAFTS: list[Draft] = [
    Draft("E40", "enoxaparin-40mg-daily.json", "enoxaparin", 40, 1, "enoxaparin 40 mg daily"),
    Draft("E40b", "enoxaparin-40mg-q12h.json", "enoxaparin", 40, 2, "enoxaparin 40 mg q12h"),
    Draft("E60b", "enoxaparin-60mg-q12h.json", "enoxaparin", 60, 2, "enoxaparin 60 mg q12h"),
    Draft("E1kg", "enoxaparin-1mgkg-q12h.json", "enoxaparin", None, 2, "enoxaparin ≈1 mg/kg q12h"),
    Draft("E150b", "enoxaparin-150mg-q12h.json", "enoxaparin", 150, 2, "enoxaparin 150 mg q12h"),
    Draft("E40q", "enoxaparin-40mg-q6h.json", "enoxaparin", 40, 4, "enoxaparin 40 mg four times daily"),
    Draft("H5t", "heparin-5000u-q8h.json", "heparin", 5000, 3, "UFH 5,000 U SC q8h"),
    Draft("H5b", "heparin-5000u-q12h.json", "heparin", 5000, 2, "UFH 5,000 U SC q12h"),
    Draft("H7t", "heparin-7500u-q8h.json", "heparin", 7500, 3, "UFH 7,500 U SC q8h"),
    Draft("H10t", "heparin-10000u-q8h.json", "heparin", 10000, 3, "UFH 10,000 U SC q8h"),
    Draft("Hiv", "heparin-infusion.json", "heparin", None, 0, "UFH infusion 1,000 U/h"),
    Draft("D5k", "dalteparin-5000iu-daily.json", "dalteparin", 5000, 1, "dalteparin 5,000 IU daily"),
    Draft("D200", "dalteparin-200iukg-daily.json", "dalteparin", None, 1, "dalteparin 200 IU/kg daily"),
    Draft("F2.5", "fondaparinux-2_5mg-daily.json", "fondaparinux", 2.5, 1, "fondaparinux 2.5 mg daily"),
    Draft("F7.5", "fondaparinux-7_5mg-daily.json", "fondaparinux", 7.5, 1, "fondaparinux 7.5 mg daily"),
    Draft("F10", "fondaparinux-10mg-daily.json", "fondaparinux", 10, 1, "fondaparinux 10 mg daily"),
    Draft("A2.5", "apixaban-2_5mg-q12h.json", "apixaban", 2.5, 2, "apixaban 2.5 mg q12h"),
    Draft("A5", "apixaban-5mg-q12h.json", "apixaban", 5, 2, "apixaban 5 mg q12h"),
    Draft("R10", "rivaroxaban-10mg-daily.json", "rivaroxaban", 10, 1, "rivaroxaban 10 mg daily"),
    Draft("R20", "rivaroxaban-20mg-daily.json", "rivaroxaban", 20, 1, "rivaroxaban 20 mg daily"),
    Draft("Db150", "dabigatran-150mg-q12h.json", "dabigatran", 150, 2, "dabigatran 150 mg q12h"),
    Draft("Db220", "dabigatran-220mg-daily.json", "dabigatran", 220, 1, "dabigatran 220 mg daily"),
    Draft("Ed60", "edoxaban-60mg-daily.json", "edoxaban", 60, 1, "edoxaban 60 mg daily"),
    Draft("W5", "warfarin-5mg-daily.json", "warfarin", 5, 1, "warfarin 5 mg daily"),
    Draft("Arg", "argatroban-infusion.json", "argatroban", None, 0, "argatroban infusion 2 µg/kg/min"),
    Draft("Biv", "bivalirudin-infusion.json", "bivalirudin", None, 0, "bivalirudin infusion 0.15 mg/kg/h"),
]
DRAFT = {d.key: d for d in DRAFTS}
HEPARINS = {"enoxaparin", "heparin", "dalteparin"}
LMWH = {"enoxaparin", "dalteparin"}
DOACS = {"apixaban", "rivaroxaban", "dabigatran", "edoxaban"}
NON_HEPARIN = {"fondaparinux", "argatroban", "bivalirudin"} | DOACS


def round_10(mg: float) -> int:
    """Nearest 10 mg, 5 rounds up (§13.1, §19.2)."""
    return int(math.floor(mg / 10 + 0.5) * 10)


def draft_dose(draft: Draft, weight_kg: float | None) -> float | None:
    """The dose the test writes into a weight-based template for this patient.

    ≈1 mg/kg enoxaparin: 1 mg/kg actual body weight rounded to the nearest 10 mg (5 up), as a
    pharmacist rounds to the 10 mg graduations of the 60–150 mg syringes (§13.1).
    Dalteparin 200 IU/kg: 200 IU/kg rounded down to 100 IU, at most 18,000 IU a day (label cap).
    A patient without a current weight (cov-no-weight) is dosed on the last weight on file (95 kg,
    40 days old), as a prescriber would: the check must still say the weight is out of date.
    """
    if draft.dose is not None:
        return draft.dose
    if weight_kg is None:
        return None
    if draft.key == "E1kg":
        return round_10(weight_kg)
    if draft.key == "D200":
        return min(18000, math.floor(200 * weight_kg / 100) * 100)
    return None


# ------------------------------------------------------------------ the patients (README "Workings")

@dataclass(frozen=True)
class Active:
    drug: str
    intensity: str          # prophylactic | intermediate | therapeutic (§19.0)
    statement: bool = False  # a home MedicationStatement, not an inpatient order
    per_day: float | None = None  # mg a day (statements: for continuation, §19.9)


@dataclass(frozen=True)
class Patient:
    pid: str
    age: int
    sex: str
    weight: float | None          # current actual weight (30-day window); None = unknown
    bmi: float | None
    scr: float | None             # mg/dL
    crcl: float | None            # policy-weight CrCl (README Workings)
    adult_inpatient: bool = True  # the order-check safety layer runs (§19.0)
    covid: bool = True            # in COVID-19 scope (§1a): the guidance parts run
    critically_ill: bool = False
    pathway: str = "prophylaxis"
    regimen: tuple | None = ("enoxaparin", 40, 1)   # §11 (drug, dose, per day); None = no drug
    stops: tuple = ()             # §10.1 active_bleeding / platelets_lt_25 / fibrinogen_lt_0.5
    hit: str | None = None        # acute | suspected | history
    other_indication: bool = False
    possible_other: bool = False  # §19.12 (computed by v3-exposure)
    rrt: str | None = None        # "hd" | "crrt" (§19.0: counts as CrCl < 15)
    renal_rising: bool = False
    pregnant: bool = False
    ecmo: bool = False
    bilirubin: float | None = None
    inr: float | None = None
    last_weight: float | None = None  # cov-no-weight: the prescriber's weight for weight-based drafts
    active: tuple = ()
    note: str = ""

    @property
    def dosing_weight(self):
        return self.weight if self.weight is not None else self.last_weight

    @property
    def crcl_actual(self) -> float | None:
        """Cockcroft–Gault on actual body weight (the DOAC labels, §19.3)."""
        if self.weight is None or self.scr is None or self.age is None:
            return None
        value = (140 - self.age) * self.weight / (72 * self.scr)
        return value * (0.85 if self.sex == "F" else 1.0)

    @property
    def renal(self) -> float | None:
        """Effective CrCl of the rules: renal replacement counts as 10 (§19.0)."""
        return 10.0 if self.rrt else self.crcl

    @property
    def renal_doac(self) -> float | None:
        return 10.0 if self.rrt else self.crcl_actual


ENOX_THER = Active("enoxaparin", "therapeutic", per_day=160)
P = Patient
PATIENTS: list[Patient] = [
    P("cov-sic-imv", 67, "M", 82, 25.9, 1.1, 67.5, critically_ill=True, bilirubin=1.0, inr=1.5),
    P("cov-ddimer-ward", 54, "F", 70, 25.7, 0.8, 78.9, pathway="therapeutic_candidate"),
    P("cov-bmi-40", 48, "M", 135, 44.1, 0.9, 136.7, regimen=("enoxaparin", 80, 1)),
    P("cov-renal-umol", 82, "F", 58, 22.7, 190 / 88.4, 16.7, regimen=("enoxaparin", 30, 1)),
    P("cov-plt-lt25", 71, "M", 76, 25.7, 1.3, 49.9, critically_ill=True, pathway="contraindicated",
      regimen=None, stops=("platelets_lt_25",)),
    P("cov-hit-history", 63, "F", 74, 26.2, 0.9, 66.0, regimen=("fondaparinux", 2.5, 1), hit="history"),
    P("cov-active-bleed", 59, "M", 88, 27.2, 1.0, 84.4, pathway="contraindicated", regimen=None,
      stops=("active_bleeding",)),
    P("cov-on-therapeutic", 45, "F", 78, 27.0, 0.7, 109.0, pathway="keep_therapeutic", regimen=None,
      active=(ENOX_THER,)),
    P("cov-ddu-norange", 61, "F", 66, 24.8, 0.8, 64.2, pathway="therapeutic_candidate"),
    P("cov-no-weight", 52, "M", None, None, 1.0, None, pathway="therapeutic_candidate", last_weight=95),
    P("cov-healthy-control", 38, "F", 64, 22.7, 0.7, 102.6),
    P("cov-child", 17, "M", 68, 22.0, 0.8, 145.2, adult_inpatient=False, covid=False),
    P("cov-outpatient", 44, "F", 66, 23.7, 0.7, 95.1, adult_inpatient=False, covid=False),
    P("cov-non-covid", 70, "M", 80, 26.1, 1.0, 68.5, covid=False, pathway="therapeutic_candidate"),
    P("cov-hit-acute", 58, "F", 72, 26.4, 0.8, 76.2, pathway="hit_acute", regimen=None, hit="acute",
      active=(Active("heparin", "prophylactic", per_day=10000),)),
    P("cov-hit-remote-lowweight", 76, "F", 45, 18.7, 0.7, 48.6, regimen=None, hit="history"),
    P("cov-plt-fall", 66, "M", 84, 26.5, 1.0, 75.2, regimen=("fondaparinux", 2.5, 1), hit="suspected",
      active=(Active("enoxaparin", "prophylactic", per_day=40),)),
    P("cov-haemodialysis", 63, "M", 78, 26.4, 2.2, 32.9, regimen=("heparin", 5000, 2), rrt="hd"),
    P("cov-crcl-lt15", 79, "F", 60, 24.0, 3.6, 10.1, regimen=("heparin", 5000, 2)),
    P("cov-ward-therapeutic", 57, "M", 92, 28.4, 0.9, 104.8, pathway="therapeutic_candidate"),
    P("cov-icu-therapeutic", 61, "M", 84, 27.4, 0.9, 85.9, critically_ill=True, pathway="deescalate",
      regimen=None, active=(ENOX_THER,)),
    P("cov-icu-therapeutic-af", 72, "F", 70, 26.7, 0.9, 54.0, critically_ill=True, pathway="keep_therapeutic",
      regimen=None, other_indication=True, inr=1.2, active=(Active("enoxaparin", "therapeutic", per_day=140),)),
    P("cov-argatroban", 55, "M", 95, 28.4, 1.0, 99.9, critically_ill=True, pathway="keep_therapeutic",
      regimen=None, bilirubin=0.9, inr=1.9, active=(Active("argatroban", "therapeutic"),)),
    P("cov-home-doac", 68, "F", 64, 25.0, 0.8, 60.6, possible_other=True, inr=1.3,
      active=(Active("apixaban", "therapeutic", statement=True, per_day=10),)),
    P("cov-pregnant", 31, "F", 78, 28.7, 0.6, 140.2, pregnant=True),
    # Issue 20's ten patients (facts from their README workings; circuit heparin counts as exposure, §19.4).
    P("cov-flush-infusion", 54, "F", 70, 25.7, 0.8, 78.9, pathway="keep_therapeutic", regimen=None,
      active=(Active("heparin", "therapeutic"),)),
    P("cov-pressure-bag", 67, "M", 82, 25.9, 1.1, 67.5, critically_ill=True, bilirubin=1.0, inr=1.5),
    P("cov-ecmo-no-heparin", 67, "M", 82, 25.9, 1.1, 67.5, critically_ill=True, ecmo=True, bilirubin=1.0, inr=1.5),
    P("cov-ecmo-heparin", 67, "M", 82, 25.9, 1.1, 67.5, critically_ill=True, ecmo=True, pathway="keep_therapeutic",
      regimen=None, bilirubin=1.0, inr=1.5, active=(Active("heparin", "therapeutic"),)),
    P("cov-crrt-prefilter", 67, "M", 82, 25.9, 1.1, 67.5, critically_ill=True, rrt="crrt",
      pathway="keep_therapeutic", regimen=None, bilirubin=1.0, inr=1.5, active=(Active("heparin", "therapeutic"),)),
    P("cov-alteplase", 38, "F", 64, 22.7, 0.7, 102.6),
    P("cov-partial-birth", 18, "M", 70, 25.7, 0.8, 130.1),
    P("cov-hx-pe", 61, "M", 84, 27.4, 0.9, 85.9, critically_ill=True, pathway="deescalate", regimen=None,
      possible_other=True, active=(ENOX_THER,)),
    P("cov-apixaban-continued", 68, "F", 64, 25.0, 0.8, 60.6, pathway="keep_therapeutic", regimen=None,
      possible_other=True, inr=1.3, active=(Active("apixaban", "therapeutic", statement=True, per_day=10),
                                             Active("apixaban", "therapeutic", per_day=10))),
    P("cov-bmi-55", 48, "M", 159, 55.0, 0.9, 146.5, regimen=("enoxaparin", 80, 1),
      active=(Active("enoxaparin", "prophylactic", per_day=120),)),
]
PATIENT = {p.pid: p for p in PATIENTS}
# INR of the patients not listed above (all < 2): the §10.4 VKA bridge reads it.
_DEFAULT_INR = 1.1


# ------------------------------------------------------------------ intensity (§19.0)

def intensity(p: Patient, d: Draft, dose: float | None) -> str:
    w = p.weight
    if d.drug == "enoxaparin":
        if equivalent(p, d, dose):
            return "prophylactic"
        if d.per_day == 1 and dose <= (30 if (p.renal is not None and p.renal < 30) else 40):
            return "prophylactic"
        if w is None:   # §10.3 weight unknown
            if d.per_day == 1:
                return "prophylactic" if dose <= 40 else "intermediate" if dose <= 80 else "therapeutic"
            return "intermediate" if dose <= 40 and d.per_day <= 2 else "therapeutic"
        if d.per_day >= 2:
            per_kg = dose / w
            return "therapeutic" if per_kg >= 0.7 else "intermediate" if per_kg >= 0.4 else "prophylactic"
        daily = dose / w
        renal_low = p.renal is not None and p.renal < 30
        if daily > 1.4 or (renal_low and daily >= 0.7):
            return "therapeutic"
        return "intermediate" if daily >= 0.7 else "prophylactic"
    if d.drug == "heparin":
        if d.per_day == 0:
            return "therapeutic"
        if dose <= 5000 and d.per_day in (2, 3):
            return "prophylactic"
        if dose == 7500 and d.per_day == 3 and ((w or 0) > 100 or (p.bmi or 0) >= 40):
            return "prophylactic"
        return "intermediate"
    if d.drug == "dalteparin":
        if dose <= 5000:
            return "prophylactic"
        return "therapeutic" if w is not None and dose / w >= 140 else "intermediate" if w is not None else "therapeutic"
    if d.drug == "fondaparinux":
        return "prophylactic" if dose <= 2.5 else "therapeutic" if dose >= 5 else "intermediate"
    if d.key in ("A2.5", "R10", "Db220"):
        return "prophylactic"
    return "therapeutic"  # other DOAC doses, VKA, argatroban, bivalirudin


def equivalent(p: Patient, d: Draft, dose) -> bool:
    """The §11 regimen or an accepted equivalent (§11 equivalents, §19.11)."""
    if p.regimen is None or not p.covid:
        reg = None
    else:
        reg = p.regimen
    if reg and reg[0] == d.drug and reg[1] == dose and reg[2] == d.per_day:
        return True
    if reg and reg[0] == "enoxaparin" and reg[1] == 40:   # standard-prophylaxis equivalents (§11)
        if (d.drug, dose, d.per_day) in {("heparin", 5000, 2), ("heparin", 5000, 3), ("dalteparin", 5000, 1),
                                        ("fondaparinux", 2.5, 1)}:
            return True
    if reg and reg[0] == "enoxaparin" and reg[1] == 30:   # CrCl < 30: "or UFH 5,000 U SC every 8–12 h" (§11)
        if d.drug == "heparin" and dose == 5000 and d.per_day in (2, 3):
            return True
    if reg and reg[0] == "heparin" and d.drug == "heparin" and dose == 5000 and d.per_day in (2, 3):
        return True
    if p.bmi is not None and p.bmi >= 40 and d.drug == "enoxaparin" and (dose, d.per_day) in {(80, 1), (40, 2)}:
        return True
    if p.bmi is not None and p.bmi >= 40 and d.drug == "heparin" and (dose, d.per_day) == (7500, 3) \
            and (p.weight or 0) > 100:
        return True
    return False


# ------------------------------------------------------------------ the cell

@dataclass(frozen=True)
class Card:
    kind: str
    indicator: str   # critical | warning | info
    actions: str     # "u" | "d" | "cd" | "-"
    why: str = ""


RANK = {"critical": 2, "warning": 1, "info": 0}


def _ceil10(x: float) -> float:
    return math.ceil(round(x, 6) / 10) * 10


def expect(p: Patient, d: Draft, *, extra_drafts: tuple = (), interacting: bool = False,
           replacement: bool = False) -> list[Card]:
    """Every card the rules ask for when `d` is drafted for `p`, headline first."""
    if not p.adult_inpatient:
        return []   # §1a / §19.0: the safety layer runs for adult inpatients only
    dose = draft_dose(d, p.dosing_weight)
    inten = intensity(p, d, dose)
    cards: list[Card] = []
    add = cards.append
    w, crcl = p.weight, p.renal
    heparin = d.drug in HEPARINS
    doac, vka = d.drug in DOACS, d.drug == "warfarin"

    # §10.1 stops (§19.1): every anticoagulant draft
    stops = set(p.stops)
    if p.hit in ("acute", "suspected") and d.drug in NON_HEPARIN:
        stops.discard("platelets_lt_25")
    if stops:
        quiet = p.hit in ("acute", "suspected") or p.other_indication or p.possible_other or p.ecmo
        stop = [Card("contraindicated", "critical", "-" if quiet else "d", "§10.1 stop, §19.1")]
        if p.hit == "acute" and (heparin or vka):   # the HIT card still deletes a heparin or VKA draft
            stop.insert(0, Card("hit_acute", "critical", "d", "heparin/VKA draft in acute HIT with a stop"))
        return stop

    # HIT (§18.4, §19.1, §19.6)
    hit_card = None
    if p.hit == "acute":
        if heparin:
            hit_card = Card("hit_acute", "critical", "d", "heparin draft in acute HIT (§18.4)")
        elif vka:
            hit_card = Card("hit_acute", "critical", "d", "VKA in acute HIT (§19.1)")
        elif inten == "prophylactic":
            hit_card = Card("hit_acute", "critical", "-", "prophylactic intensity in acute HIT (§19.1)")
    elif p.hit == "suspected":
        if heparin:
            hit_card = Card("hit_suspected", "warning", "d", "heparin draft in suspected HIT (§19.6 warning)")
        elif vka:
            hit_card = Card("hit_suspected", "critical", "d", "VKA in suspected HIT (§19.1)")
        elif inten == "prophylactic":
            hit_card = Card("hit_suspected", "warning", "-", "prophylactic non-heparin in suspected HIT (§19.1)")
    elif p.hit == "history" and heparin:
        # §19.6 by intensity: prophylactic/intermediate → fondaparinux 2.5 mg (row 1: ≥ 50 kg, CrCl ≥ 30);
        # therapeutic → treatment-band fondaparinux when CrCl ≥ 30, no RRT, weight known.
        row1 = w is not None and w >= 50 and crcl is not None and crcl >= 30
        band = w is not None and crcl is not None and crcl >= 30 and not p.rrt
        fonda = band if inten == "therapeutic" else row1
        hit_card = Card("hit_history", "warning", "cd" if fonda else "d", "heparin draft with HIT history (§19.6)")
    if hit_card:
        add(hit_card)
    dti_running = any(a.drug in ("argatroban", "bivalirudin") or (a.drug == "fondaparinux" and a.intensity == "therapeutic")
                      for a in p.active if not a.statement)
    if heparin and dti_running:
        add(Card("dti_running", "critical", "d", "heparin draft while a non-heparin therapeutic agent runs (§18.4)"))

    # pregnancy (§19.1)
    if p.pregnant and vka:
        add(Card("pregnancy", "critical", "-" if p.other_indication else "d", "warfarin in pregnancy (§19.1)"))
    if p.pregnant and doac:
        add(Card("pregnancy", "warning", "-", "DOAC in pregnancy (§19.1)"))
    # ECMO (§19.1 DOAC/VKA; §19.4 LMWH/fondaparinux in the order hooks)
    if p.ecmo and (doac or vka or d.drug in LMWH or d.drug == "fondaparinux"):
        add(Card("ecmo", "warning", "-", "draft on ECMO (§19.1, §19.4)"))
    # argatroban start dose (§19.1)
    if d.drug == "argatroban" and ((p.bilirubin or 0) > 1.5 or p.critically_ill):
        add(Card("argatroban_dose", "warning", "-", "argatroban start 0.5 µg/kg/min (§19.1)"))

    in_hit = p.hit is not None and heparin   # the HIT card replaces the heparin: no heparin update
    switch_card = False
    # §19.2 ceilings and §19.3 renal table (enoxaparin)
    if d.drug == "enoxaparin":
        renal_low = crcl is not None and crcl < 30
        if crcl is not None and crcl < 15:
            prophylactic_intent = d.per_day == 1 and dose <= 40   # the regimen/equivalent at normal renal function
            # review-v3 M16: with CRRT circuit heparin running, no one-click SC UFH on top (duplicate card only)
            circuit = p.rrt == "crrt" and any(a.drug == "heparin" and not a.statement for a in p.active)
            if prophylactic_intent and not in_hit and not circuit:   # in HIT the HIT card deletes it
                add(Card("renal", "warning", "u", "LMWH at CrCl < 15 / RRT → UFH 5,000 U (§19.3)"))
                switch_card = True
            elif prophylactic_intent:
                switch_card = True
            elif d.per_day == 1:
                add(Card("renal", "warning", "d", "LMWH ≥ intermediate once daily at CrCl < 15 / RRT (§19.3)"))
                switch_card = True
            else:
                add(Card("dose_above_maximum", "critical", "d", "LMWH twice daily or more at CrCl < 15 / RRT (§19.3)"))
                switch_card = True
        elif renal_low:
            too_much = (d.per_day >= 2 and dose > 30) or (d.per_day == 1 and w is not None and dose > _ceil10(1.0 * w))
            if too_much:
                add(Card("dose_above_maximum", "critical", "-" if in_hit else "u", "CrCl 15–< 30 ceiling (§19.3)"))
            elif d.per_day == 1 and dose > 30:
                obese = (p.bmi or 0) >= 40 or (w or 0) > 120
                if obese or not in_hit:   # review H1: in HIT the card was only its update (the HIT card deletes)
                    add(Card("renal", "warning", "-" if obese else "u", "CrCl 15–< 30: 30 mg daily (§19.3)"))
        else:
            if d.per_day > 2:
                # v3-orders (code kept, table fixed): no one-click update that RAISES the daily dose
                # (40 mg x 4 = 160 mg a day; 1 mg/kg twice daily at 135 kg would be 280 mg)
                raises = w is not None and 2 * round_10(w) > dose * d.per_day
                # review-v3 M4: a prophylactic strength (<= 40 mg) too often is a frequency slip: the
                # 1 mg/kg update only with another indication or on the therapeutic-candidate pathway
                slip = dose <= 40 and not (p.other_indication or p.pathway == "therapeutic_candidate")
                add(Card("dose_above_maximum", "critical", "u" if (w is not None and not in_hit and not raises
                                                                   and not slip) else "-",
                         "more than 2 doses a day (§19.2)"))
            elif w is not None and d.per_day == 2 and dose > _ceil10(1.0 * w):
                add(Card("dose_above_maximum", "critical", "-" if in_hit else "u", "above 1 mg/kg q12h (§19.2)"))
            elif w is not None and d.per_day == 1 and dose > _ceil10(1.5 * w):
                add(Card("dose_above_maximum", "critical", "-" if in_hit else "u", "above 1.5 mg/kg daily (§19.2)"))
    if d.drug == "dalteparin" and w is not None and (dose > _ceil10(200 * w) or dose > 18000):
        add(Card("dose_above_maximum", "critical", "-", "dalteparin ceiling (§19.2)"))
    if d.drug == "fondaparinux" and dose > 2.5 and w is not None:
        band = 5 if w < 50 else 7.5 if w <= 100 else 10
        if dose > band:   # no one-click to another contraindicated dose at CrCl < 30 (label)
            renal_ok = crcl is not None and crcl >= 30
            add(Card("dose_above_maximum", "critical", "u" if renal_ok else "-", "fondaparinux treatment band (§19.2)"))
        elif dose < band:
            add(Card("fondaparinux_dose", "warning", "-", "not a labelled regimen for this weight (§19.2)"))
    # §19.2 unknown or changing inputs
    weight_needed = w is None and (
        (d.drug == "enoxaparin" and ((d.per_day >= 2 and (dose > 40 or d.per_day > 2)) or (d.per_day == 1 and dose > 80)))
        or (d.drug == "dalteparin" and dose > 5000) or (d.drug == "fondaparinux" and dose > 2.5))
    renal_unknown = (p.crcl is None and not p.rrt) or p.renal_rising
    renal_needed = renal_unknown and (
        (d.drug in LMWH and inten in ("intermediate", "therapeutic")) or (d.drug == "fondaparinux" and dose > 2.5) or doac)
    if weight_needed or renal_needed:
        add(Card("input_unknown", "warning", "-", "weight / renal function unknown or changing (§19.2)"))
    # §19.3 dalteparin and fondaparinux at CrCl < 30; fondaparinux under 50 kg (§18.4)
    if d.drug == "dalteparin" and crcl is not None and crcl < 30:
        add(Card("renal", "warning", "-", "dalteparin at CrCl < 30 (§19.3)"))
    if d.drug == "fondaparinux" and ((crcl is not None and crcl < 30) or (dose <= 2.5 and w is not None and w < 50)):
        add(Card("renal", "warning", "-", "fondaparinux label contraindication (§18.4)"))
    # §19.3 DOAC renal rules (actual-weight CrCl; RRT = 10) and interactions
    rc = p.renal_doac
    if doac and rc is not None:
        daily = dose * d.per_day
        bad = ((d.drug == "rivaroxaban" and ((rc < 50 and daily > 15) or rc < 15))
               or (d.drug == "dabigatran" and ((rc < 30 and daily > 150) or rc < 15))
               or (d.drug == "edoxaban" and (15 <= rc <= 50 or rc < 15 or rc > 95))
               or (d.key == "A5" and sum([p.age >= 80, w is not None and w <= 60, (p.scr or 0) >= 1.5]) >= 2))
        if bad:
            add(Card("doac_renal", "warning", "-", "DOAC renal label rule (§19.3)"))
    if interacting and (d.key == "A5" or d.drug in ("rivaroxaban", "edoxaban", "dabigatran")):
        add(Card("interaction", "warning", "-", "strong CYP3A4/P-gp inhibitor (§19.3)"))

    # §19.2 above-prophylactic with no indication (COVID-19 scope only)
    continuation = any(a.statement and a.drug == d.drug and a.per_day is not None and dose is not None
                       and dose * d.per_day <= a.per_day for a in p.active)
    exempt = (not p.covid or inten == "prophylactic" or equivalent(p, d, dose) or p.other_indication
              or p.ecmo or continuation   # §18.4 ECMO; §19.2 continuation (§19.9)
              # acute/suspected HIT is itself an indication for a therapeutic non-heparin agent;
              # a heparin draft in any HIT state gets the HIT card instead
              or p.hit in ("acute", "suspected") or (p.hit == "history" and heparin)
              or (p.pathway == "therapeutic_candidate" and inten == "therapeutic" and heparin)
              or (d.drug == "heparin" and d.per_day == 0 and (p.ecmo or p.rrt == "crrt"))
              or switch_card or p.stops
              # v3-orders (code kept, table fixed): a heparin draft while argatroban/bivalirudin runs
              # gets the critical delete; §10.1 "never suggests a heparin while one is active", so no
              # escalation card offering a one-click heparin regimen beside it
              or (heparin and dti_running))
    if not exempt:
        one_click = p.critically_ill and inten == "intermediate" and heparin and not p.possible_other
        add(Card("escalation_warning", "warning", "u" if one_click else "-", "above prophylactic, no indication (§19.2)"))

    # duplicates (§10.4, §19.9)
    others = [a for a in p.active] + [Active(x.drug, intensity(p, x, draft_dose(x, p.dosing_weight))) for x in extra_drafts]
    if replacement:
        others = [a for a in others if a.drug != d.drug or a.statement]
    dup = None
    for a in others:
        if a.statement and a.drug == d.drug and a.per_day is not None and dose is not None and dose * d.per_day <= a.per_day:
            continue   # continuation (§19.9)
        both_ther = inten == "therapeutic" and a.intensity == "therapeutic" and not a.statement
        if a.drug == "argatroban" and vka:
            level = "critical"   # §19.9: no INR bridge while argatroban runs
        elif both_ther and (vka or a.drug == "warfarin") and (p.inr or _DEFAULT_INR) < 2 \
                and not (a.drug in DOACS or d.drug in DOACS):
            # v3-orders (table fixed): §10.4's bridge is "a VKA with a PARENTERAL anticoagulant";
            # a DOAC order with a VKA draft is two therapeutic inpatient agents: critical (§19.9)
            level = "info"       # the deliberate VKA bridge (§10.4)
        elif both_ther:
            level = "critical"
        else:
            level = "warning"
        if dup is None or RANK[level] > RANK[dup]:
            dup = level
    if dup:
        add(Card("duplicate_anticoagulant", dup, "-", "another anticoagulant active or drafted (§10.4, §19.9)"))

    # the COVID-19 regimen for a prophylactic draft below it (§11 BMI tier, §19.11)
    if p.covid and p.hit is None and not cards and inten == "prophylactic" and not equivalent(p, d, dose) \
            and p.regimen is not None and d.drug in (HEPARINS - {"dalteparin"}) and p.bmi is not None and p.bmi >= 40:
        # v3-orders (table fixed): the rules give no dalteparin obesity dose (§11 tiers are
        # enoxaparin rules; §19.11 equivalents are enoxaparin and UFH), so nothing to update it to
        add(Card("dose_correction", "warning", "u", "below the obesity regimen (§11, §19.11)"))

    order = {"critical": 0, "warning": 1, "info": 2}
    cards.sort(key=lambda c: order[c.indicator])   # stable: rule order within an indicator
    return cards


# Kinds the rules name are matched exactly; for findings the rules give no kind name, the test
# accepts the kinds listed here (the integrator narrows them once v3-orders has named its kinds).
# v3-orders named its kinds: "order_caution" (a warning without a one-click change: DOAC in pregnancy,
# ECMO, argatroban start dose, DOAC renal rules, interactions, dalteparin at CrCl < 30, a fondaparinux
# dose below its band), "product_switch" (LMWH -> UFH at CrCl < 15), "contraindicated" (the
# fondaparinux label floors, as in v2).
KIND_ALIASES: dict[str, set[str]] = {
    "contraindicated": {"contraindicated"},
    "hit_acute": {"hit_acute"},
    "hit_suspected": {"hit_suspected"},
    "dose_above_maximum": {"dose_above_maximum"},
    "escalation_warning": {"escalation_warning"},
    "duplicate_anticoagulant": {"duplicate_anticoagulant"},
    "hit_history": {"product_switch", "heparin_avoidance", "contraindicated", "hit_history"},
    "dti_running": {"contraindicated", "heparin_avoidance", "duplicate_anticoagulant", "product_switch"},
    "pregnancy": {"pregnancy", "contraindicated", "drug_caution", "order_caution"},
    "ecmo": {"ecmo", "drug_caution", "order_caution"},
    "argatroban_dose": {"argatroban_dose", "dose_correction", "drug_caution", "hepatic_caution", "order_caution"},
    "renal": {"dose_correction", "renal_dose", "dose_review", "renal", "order_caution", "contraindicated", "product_switch"},
    "input_unknown": {"not_determinable", "input_unknown", "weight_unknown", "renal_unknown", "dose_unknown"},
    "fondaparinux_dose": {"dose_correction", "dose_check", "fondaparinux_dose", "dose_above_maximum", "order_caution"},
    "doac_renal": {"doac_renal", "renal_dose", "dose_correction", "renal", "order_caution"},
    "interaction": {"interaction", "drug_interaction", "order_caution"},
    "dose_correction": {"dose_correction"},
}

SHORT = {"contraindicated": "CI", "hit_acute": "HA", "hit_suspected": "HS", "hit_history": "HH",
         "dti_running": "DT", "pregnancy": "PG", "ecmo": "EC", "argatroban_dose": "AG", "renal": "RN",
         "dose_above_maximum": "MX", "input_unknown": "UK", "fondaparinux_dose": "FD", "doac_renal": "DR",
         "interaction": "IX", "escalation_warning": "ES", "duplicate_anticoagulant": "DU", "dose_correction": "DC"}
IND = {"critical": "!", "warning": "w", "info": "i"}


def cell_code(cards: list[Card]) -> str:
    """'—' for no card; else the headline as <indicator><KIND><actions>, then '+KIND' for the rest."""
    if not cards:
        return "—"
    head = cards[0]
    text = f"{IND[head.indicator]}{SHORT[head.kind]}" + ("" if head.actions == "-" else f"·{head.actions}")
    rest = sorted({SHORT[c.kind] for c in cards[1:]} - {SHORT[head.kind]})
    return text + "".join(f"+{k}" for k in rest)


# ------------------------------------------------------------------ situations (§19.15 list)
# Each is a documented mutation of a reference patient (the test module applies the mutation to the
# rendered Bundle), or names the reference patient that already is the situation.

@dataclass(frozen=True)
class Situation:
    key: str
    base: str
    mutation: str            # README text
    drafts: tuple            # draft keys
    facts: dict = field(default_factory=dict)   # fields of Patient that the mutation changes
    hook: str = "order-select"
    extra: dict = field(default_factory=dict)   # expect() keyword arguments
    xfail: str | None = None  # reason, for the cells whose expectation needs the parallel branch
    xfail_drafts: tuple | None = None   # those cells (None: every draft of the situation)

    def xfails(self, key: str) -> bool:
        return bool(self.xfail) and (self.xfail_drafts is None or key in self.xfail_drafts)


SITUATIONS: list[Situation] = [
    Situation("weight-unknown", "cov-no-weight", "none: `cov-no-weight` is the situation (last weight 40 days old)", ()),
    Situation("no-creatinine", "cov-healthy-control", "remove every creatinine Observation",
              ("E40", "E1kg", "F7.5", "A5", "R10"), {"crcl": None, "scr": None}),
    Situation("rising-creatinine", "cov-ddimer-ward", "add creatinine 1.2 mg/dL at now−1h (0.8 at now−6h: +0.4 in 48 h)",
              ("E40", "E1kg", "A5"), {"renal_rising": True, "scr": 1.2, "crcl": 52.6}),
    Situation("haemodialysis", "cov-haemodialysis", "none: `cov-haemodialysis` is the situation", ()),
    Situation("crrt-prefilter-heparin", "cov-sic-imv",
              "add a CRRT Procedure (SNOMED 714749008) in progress since now−1d and an active UFH order 500 U/h "
              "IV (25,000 U/250 mL) with the text \"CRRT circuit, pre-filter\"",
              ("E40", "Hiv", "A5"), {"rrt": "crrt", "active": (Active("heparin", "therapeutic"),)}),
    Situation("pressure-bag", "cov-sic-imv",
              "add an active heparin order 1,000 U in 500 mL (2 U/mL) for an arterial-line pressure bag, no rate",
              ("E40", "Hiv")),
    Situation("hd-catheter-lock", "cov-haemodialysis",
              "add an active heparin order 5,000 U/mL × 2 mL per lumen, route/text \"catheter lock\", no rate",
              ("E40", "H5b")),
    Situation("ecmo", "cov-sic-imv", "add an ECMO Procedure (SNOMED 233573008) in progress since now−2d",
              ("E40", "E1kg", "Hiv", "F2.5", "A5", "W5"), {"ecmo": True}),
    Situation("hit-acute-plt20-argatroban", "cov-hit-acute", "latest platelet count 20 ×10⁹/L (was 60)",
              ("Arg", "A5", "E40"), {"stops": ("platelets_lt_25",)}),
    Situation("hit-history-crcl-lt30", "cov-hit-history", "latest creatinine 3.0 mg/dL (was 0.9): CrCl 19.8 mL/min "
              "(review H1: was an HTTP 500)", ("E40", "Hiv"), {"scr": 3.0, "crcl": 19.8}),
    Situation("warfarin-hit-acute", "cov-hit-acute", "none: `cov-hit-acute` × W5 in the main table", ()),
    Situation("nirmatrelvir-apixaban", "cov-ddimer-ward",
              "add an active nirmatrelvir/ritonavir order (RxNorm 2587892 + ritonavir 85762, ATC J05AE30; unverified)",
              ("A2.5", "A5", "R20", "E1kg"), extra={"interacting": True}),
    Situation("dose-change-redraft", "cov-on-therapeutic",
              "draft enoxaparin 60 mg q12h with `priorPrescription` → the active 80 mg q12h order",
              ("E60b",), extra={"replacement": True}),
    Situation("dose-change-stopped", "cov-on-therapeutic",
              "the same, with the active order also in draftOrders as status `stopped` (no priorPrescription)",
              ("E60b",), extra={"replacement": True}),
    Situation("order-sign-two-drafts", "cov-healthy-control",
              "order-sign with two drafts: E40 + A5 (headline) and E1kg + A5", ("E40+A5", "E1kg+A5"),
              hook="order-sign"),
    Situation("out-of-covid-scope", "cov-non-covid", "none: `cov-non-covid` is the situation", ()),
    Situation("partial-birth-date", "cov-child",
              "birthDate becomes the year only, `YYYY` = (now − 18 y).year: earliest day → 18 y (adult), latest → 17 y",
              ("E40", "E150b", "E1kg"), {"adult_inpatient": True, "covid": True, "age": 18, "pathway": "prophylaxis"}),
]


def situation_patient(s: Situation) -> Patient:
    return replace(PATIENT[s.base], **s.facts)


def situation_cells(s: Situation) -> list[tuple[str, list[Card]]]:
    p = situation_patient(s)
    out = []
    for key in s.drafts:
        if "+" in key:   # order-sign: both drafts checked; one duplicate card naming both (§19.9)
            a, b = (DRAFT[k] for k in key.split("+"))
            cards = expect(p, a, extra_drafts=(b,)) + expect(p, b, extra_drafts=(a,))
            seen, merged = set(), []
            for c in sorted(cards, key=lambda c: -RANK[c.indicator]):
                if (c.kind, c.indicator) not in seen:
                    seen.add((c.kind, c.indicator))
                    merged.append(c)
            dup = [c for c in merged if c.kind == "duplicate_anticoagulant"]
            merged = [c for c in merged if c.kind != "duplicate_anticoagulant" or c is dup[0]]
            if dup:   # the headline of an order-sign pair is its (one) duplicate card
                merged.remove(dup[0])
                merged.insert(0, dup[0])
            out.append((key, merged))
        else:
            out.append((key, expect(p, DRAFT[key], **s.extra)))
    return out


# ------------------------------------------------------------------ the README table

def matrix() -> dict[str, dict[str, list[Card]]]:
    return {p.pid: {d.key: expect(p, d) for d in DRAFTS} for p in PATIENTS}


def alert_volume() -> dict[str, dict[str, int]]:
    """Cards per draft across the 25 reference patients, by the headline's indicator."""
    m = matrix()
    out = {}
    for d in DRAFTS:
        counts = {"critical": 0, "warning": 0, "info": 0, "none": 0}
        for p in PATIENTS:
            cards = m[p.pid][d.key]
            counts[cards[0].indicator if cards else "none"] += 1
        out[d.key] = counts
    return out


BEGIN = "<!-- order-matrix:begin (generated by python -m tests.integration.order_matrix; do not edit) -->"
END = "<!-- order-matrix:end -->"


def readme_block() -> str:
    m = matrix()
    lines = [BEGIN, "", "Drafts (`draft-orders/`, columns):", ""]
    lines += ["| Code | File | Draft |", "|---|---|---|"]
    lines += [f"| {d.key} | `{d.file}` | {d.label} |" for d in DRAFTS]
    lines += ["", "Cell legend: `—` no card. Otherwise the headline card: indicator (`!` critical, `w` warning, "
              "`i` info), kind, `·` actions (`u` update the draft, `d` delete the draft, `cd` one suggestion "
              "creating a product and deleting the draft; none = no suggestion), then `+KIND` for the other cards "
              "expected. Kinds: " + ", ".join(f"`{v}` {k}" for k, v in SHORT.items()) + ".", ""]
    lines.append("| Patient | " + " | ".join(d.key for d in DRAFTS) + " |")
    lines.append("|---" * (len(DRAFTS) + 1) + "|")
    for p in PATIENTS:
        lines.append(f"| `{p.pid}` | " + " | ".join(cell_code(m[p.pid][d.key]) for d in DRAFTS) + " |")
    lines += ["", "Weight-based drafts: E1kg = 1 mg/kg actual weight rounded to the nearest 10 mg (5 up); "
              "D200 = 200 IU/kg rounded down to 100 IU, at most 18,000 IU; `cov-no-weight` is dosed on its last "
              "weight on file (95 kg, 40 days old).", ""]
    vol = alert_volume()
    lines += [f"Alert volume the matrix implies (headline card per cell, {len(PATIENTS)} patients):", "",
              "| Draft | critical | warning | info | no card |", "|---|---|---|---|---|"]
    tot = {"critical": 0, "warning": 0, "info": 0, "none": 0}
    for d in DRAFTS:
        c = vol[d.key]
        for k in tot:
            tot[k] += c[k]
        lines.append(f"| {d.key} | {c['critical']} | {c['warning']} | {c['info']} | {c['none']} |")
    lines.append(f"| **all {len(DRAFTS) * len(PATIENTS)}** | {tot['critical']} | {tot['warning']} | {tot['info']} | {tot['none']} |")
    lines += ["", "Situations (§19.15), as mutations of a reference patient (the test applies them to the rendered "
              "Bundle):", "", "| Situation | Patient | Mutation | Drafts → expected |", "|---|---|---|---|"]
    for s in SITUATIONS:
        cells = "; ".join(f"{k} → {cell_code(c)}" + (" (xfail)" if s.xfails(k) else "")
                          for k, c in situation_cells(s)) or "(main table)"
        mark = f" *({s.xfail})*" if s.xfail else ""
        hook = "" if s.hook == "order-select" else f" ({s.hook})"
        lines.append(f"| {s.key}{hook}{mark} | `{s.base}` | {s.mutation} | {cells} |")
    lines += ["", END]
    return "\n".join(lines)


if __name__ == "__main__":   # print the README block
    print(readme_block())
