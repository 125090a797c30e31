"""Anticoagulant and antiplatelet MedicationRequests -> `MedicationOrder` (data requirements §8).

Used for the patient's active orders (extract.py, filtered with `is_current_order`) and
for draft orders in the order hooks (§9), so nothing here filters on `status`.

- Drug: by ingredient, from every coding of `medicationCodeableConcept`, or of the
  referenced Medication (`code`, then `ingredient[].itemCodeableConcept`; contained, Bundle
  entry or fetched). RxNorm IN, SCD (strength map), ATC (combinations count each
  ingredient) and SNOMED substance codes come from codes.json. Unmapped -> no order.
- Ignored: `doNotPerform`, intent `proposal`/`plan`, an as-needed first dosage.
- Dose per administration, from the first dosageInstruction (lowest `sequence`) and its
  first doseAndRate: `doseQuantity`, else `doseRange.high`. mg (g x1000); IU/U for heparins
  (enoxaparin IU / 100 -> mg); mL or a count unit ({syringe}, {each}, {pill}, {dose},
  {unit}, 1) only through the SCD strength map (count x strength of a single-dose product).
- v2: product codes (SCD/SBD -> ingredient); heparin flushes/locks are never anticoagulants;
  an anticoagulant-class code the file cannot map is exposure ("unmapped"); the same reader
  serves MedicationStatement (home and reported medicines).
  Anything else leaves the dose None, so the order is not classified.
- Doses per day: timing.repeat (frequency x 24 h / period), else timing.code (GTS), else the
  number of timeOfDay entries, else None.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

from ..logic.inputs import UNMAPPED_ANTICOAGULANT, MedicationOrder
from .codes import CodeSet, Codes, Coding
from .read import codings, items, number, parse_datetime, reference_target
from .units import DOSE_COUNT, DOSE_MASS, DOSE_UNITS, DOSE_VOLUME, UnitError, convert

ORDER_CLASSES = frozenset({"anticoagulant", "lmwh", "vka", "doac", "dti", "antiplatelet"})
IGNORED_INTENTS = frozenset({"proposal", "plan"})
HEPARIN_UNIT_DOSED = frozenset({"heparin", "dalteparin", "tinzaparin"})
ENOXAPARIN_IU_PER_MG = 100.0   # clinical rules §14
PERIOD_HOURS = {"s": 1 / 3600, "min": 1 / 60, "h": 1.0, "d": 24.0, "wk": 168.0, "mo": 720.0}


@dataclass(frozen=True)
class _OrderCodes:
    ingredients: tuple[tuple[str, str, CodeSet], ...]   # (name, class, codes)
    combinations: dict[Coding, tuple[str, ...]]
    scd: dict[Coding, dict]
    timing: dict[Coding, float]
    routes: dict[str, CodeSet]
    products: dict[Coding, str]                         # SCD/SBD -> ingredient (v2)
    anticoagulant_products: frozenset[Coding]           # anticoagulant products, no ingredient
    flush_products: frozenset[Coding]                   # heparin lock/flush products
    atc: str
    rxnorm: str


@lru_cache(maxsize=8)
def order_codes(codes: Codes) -> _OrderCodes:
    data = codes.data
    return _OrderCodes(
        ingredients=tuple((name, cls, cs) for name, (cls, cs) in codes.ingredients().items()),
        combinations={codes.resolve(k): tuple(v) for k, v in data.get("combinations", {}).items()},
        scd={codes.resolve(k): v for k, v in data.get("scd_strengths", {}).items()},
        timing={codes.resolve(k): float(v) for k, v in data.get("timing_codes", {}).items()
                if not k.startswith("_")},
        routes=codes.section("routes"),
        products={codes.resolve(k): v for k, v in data.get("products", {}).items()
                  if not k.startswith("_") and isinstance(v, str)},
        anticoagulant_products=frozenset(codes.resolve(k) for k in
                                         data.get("anticoagulant_products_without_ingredient", [])),
        flush_products=frozenset(codes.resolve(k) for k in data.get("heparin_flush_products", [])),
        atc=codes.systems["ATC"],
        rxnorm=codes.systems["RXNORM"],
    )


# ATC fallback for unmapped anticoagulant codes (clinical rules §19.4; data requirements §8 step
# 3): B01AA, B01AE, B01AF, B01AX05, and B01AB except B01AB02 (antithrombin) and B01AB09
# (danaparoid, a non-heparin agent allowed in HIT). Never B01AC (antiplatelets, prostacyclins)
# nor B01AD (thrombolytic enzymes: alteplase 2 mg catheter clearance is not exposure).
ANTICOAGULANT_ATC_PREFIXES = ("B01AA", "B01AB", "B01AE", "B01AF")
ANTICOAGULANT_ATC_CODES = frozenset({"B01AX05"})
NOT_ANTICOAGULANT_ATC = frozenset({"B01AB02", "B01AB09"})


def anticoagulant_atc(code: str) -> bool:
    code = code.strip().upper()
    if code in NOT_ANTICOAGULANT_ATC:
        return False
    return code in ANTICOAGULANT_ATC_CODES or code.startswith(ANTICOAGULANT_ATC_PREFIXES)


def unmapped_anticoagulant(found: list[Coding], codes: Codes) -> Coding | None:
    """The first coding naming an anticoagulant class the data file cannot map to an
    ingredient (the §19.4 ATC fallback, or an RxNorm code listed as an anticoagulant product),
    or None."""
    oc = order_codes(codes)
    for coding in found:
        if coding[0] == oc.atc and anticoagulant_atc(coding[1]):
            return coding
        if coding in oc.anticoagulant_products:
            return coding
    return None


def rxnorm_codes(found: list[Coding], codes: Codes) -> list[str]:
    rx = order_codes(codes).rxnorm
    return [code for system, code in found if system == rx]


def _texts(*values: Any) -> list[str]:
    return [v for v in values if isinstance(v, str)]


def is_heparin_flush(resource: Mapping[str, Any], found: list[Coding], dosage: Mapping[str, Any] | None,
                     codes: Codes, medications: Mapping[str, dict] | None = None, *,
                     max_units_per_hour: float | None = None) -> bool:
    """A heparin flush, pressure-bag flush or catheter lock by the five steps of clinical rules
    §19.4 (exposure.heparin_flush_kind). Text alone never makes one."""
    from .exposure import FLUSH_DEFAULT_MAX_UNITS_PER_HOUR, heparin_flush_kind   # (exposure imports this module)
    limit = FLUSH_DEFAULT_MAX_UNITS_PER_HOUR if max_units_per_hour is None else max_units_per_hour
    return heparin_flush_kind(resource, found, dosage, codes, medications, max_units_per_hour=limit) is not None


def _units_per_ml(ratio: Any) -> float | None:
    if not isinstance(ratio, dict):
        return None
    num, den = ratio.get("numerator"), ratio.get("denominator")
    if not isinstance(num, dict) or not isinstance(den, dict):
        return None
    try:
        units = convert("dose", num, table=DOSE_UNITS).value
        ml = convert("dose", den, table=DOSE_VOLUME).value
    except UnitError:
        return None
    return units / ml if ml > 0 else None


def is_current_order(resource: Mapping[str, Any]) -> bool:
    """The active-order filter (data requirements §8): a MedicationRequest with status active."""
    return resource.get("resourceType") == "MedicationRequest" and resource.get("status") == "active"


def find_medication(resource: Mapping[str, Any], medications: Mapping[str, dict]) -> dict | None:
    """The Medication a `medicationReference` points to: contained (#id), or in
    `medications`, keyed by "Medication/<id>", a Bundle fullUrl, or the bare id."""
    ref = resource.get("medicationReference")
    literal = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(literal, str) or not literal:
        return None
    if literal.startswith("#"):
        for contained in items(resource.get("contained")):
            if isinstance(contained, dict) and contained.get("resourceType") == "Medication" \
                    and contained.get("id") == literal[1:]:
                return contained
        return None
    for key in (literal, "/".join(literal.split("/")[-2:]), literal.split("/")[-1]):
        found = medications.get(key)
        if isinstance(found, dict) and found.get("resourceType") == "Medication":
            return found
    return None


def medication_codings(resource: Mapping[str, Any], medications: Mapping[str, dict]) -> list[Coding]:
    """All codings naming the drug of a MedicationRequest/MedicationAdministration."""
    if isinstance(resource.get("medicationCodeableConcept"), dict):
        return list(codings(resource["medicationCodeableConcept"]))
    medication = find_medication(resource, medications)
    if medication is None:
        return []
    found = list(codings(medication.get("code")))
    for ingredient in items(medication.get("ingredient")):
        if isinstance(ingredient, dict):
            found.extend(codings(ingredient.get("itemCodeableConcept")))
    return found


def ingredients_of(found: list[Coding], codes: Codes) -> list[tuple[str, str]]:
    """Distinct (ingredient, class) named by the codings, in coding order."""
    oc = order_codes(codes)
    classes = {name: cls for name, cls, _ in oc.ingredients}
    out: list[tuple[str, str]] = []

    def add(name: str) -> None:
        if name in classes and (name, classes[name]) not in out:
            out.append((name, classes[name]))

    for coding in found:
        for name in oc.combinations.get(coding, ()):
            add(name)
        if coding in oc.scd:
            add(oc.scd[coding]["ingredient"])
        if coding in oc.products:
            add(oc.products[coding])
        for name, _, cs in oc.ingredients:
            if cs.matches(*coding):
                add(name)
    return out


def first_dosage(resource: Mapping[str, Any], key: str = "dosageInstruction") -> dict | None:
    """The dosage with the lowest `sequence` (list order breaks ties and fills gaps)."""
    dosages = [d for d in items(resource.get(key)) if isinstance(d, dict)]
    if not dosages:
        return None
    ranked = sorted(enumerate(dosages), key=lambda p: (
        number(p[1].get("sequence")) if number(p[1].get("sequence")) is not None else float("inf"),
        p[0]))
    return ranked[0][1]


def _first_dose_and_rate(dosage: Mapping[str, Any]) -> dict:
    for item in items(dosage.get("doseAndRate")):
        if isinstance(item, dict):
            return item
    return {}


def doses_per_day(timing: Any, codes: Codes) -> float | None:
    if not isinstance(timing, dict):
        return None
    repeat = timing.get("repeat") if isinstance(timing.get("repeat"), dict) else {}
    period, unit = number(repeat.get("period")), repeat.get("periodUnit")
    if period is not None and period > 0 and isinstance(unit, str) and unit in PERIOD_HOURS:
        frequency = repeat.get("frequency", 1)
        frequency = number(frequency)
        if frequency is None or frequency <= 0 or not frequency.is_integer():
            return None
        per_day = frequency * 24.0 / (period * PERIOD_HOURS[unit])
        return per_day if math.isfinite(per_day) else None  # 1e308 times a day is not a schedule
    timing_codes = order_codes(codes).timing
    for coding in codings(timing.get("code")):
        if coding in timing_codes:
            return timing_codes[coding]
    times = [t for t in items(repeat.get("timeOfDay")) if isinstance(t, str)]
    if times:
        return float(len(set(times)))
    return None


def scd_for(found: list[Coding], ingredient: str, codes: Codes) -> dict | None:
    scd = order_codes(codes).scd
    for coding in found:
        spec = scd.get(coding)
        if spec and spec.get("ingredient") == ingredient:
            return spec
    return None


def order_dose(quantity: Any, ingredient: str, scd: dict | None) -> tuple[float | None, float | None]:
    """(dose_mg, dose_units) per administration; (None, None) when not determinable."""
    if not isinstance(quantity, dict):
        return None, None
    try:
        return convert("dose", quantity, table=DOSE_MASS).value, None
    except UnitError:
        pass
    try:
        units = convert("dose", quantity, table=DOSE_UNITS).value
        if ingredient == "enoxaparin":
            return units / ENOXAPARIN_IU_PER_MG, None
        if ingredient in HEPARIN_UNIT_DOSED:
            return None, units
        return None, None
    except UnitError:
        pass
    if scd is None:
        return None, None
    # count units: count x strength of a single-dose product (v2); never for a multi-dose vial
    tables = [(DOSE_COUNT, float(scd["amount"]))] if scd.get("single_dose", True) else []
    if scd.get("volume_ml"):
        tables.insert(0, (DOSE_VOLUME, float(scd["amount"]) / float(scd["volume_ml"])))
    for table, per_item in tables:
        try:
            amount = convert("dose", quantity, table=table).value * per_item
        except UnitError:
            continue
        if scd["unit"] == "mg":
            return amount, None
        return None, amount
    return None, None


@dataclass(frozen=True)
class Normalised:
    """What `read_medication` found in one MedicationRequest/MedicationStatement."""

    orders: list[MedicationOrder]
    flush: bool = False                  # a heparin lock/flush: never an anticoagulant
    # v3 (§19.4): the flush/lock as orders, kept apart: heparin exposure for HIT only
    flush_orders: tuple[MedicationOrder, ...] = ()
    unmapped: Coding | None = None       # anticoagulant-class code the file cannot map
    unknown_rxnorm: tuple[str, ...] = () # RxNorm codes that map to nothing at all


def _encounter_id(reference: Any) -> str | None:
    rtype, rid = reference_target(reference)
    return rid if rtype == "Encounter" else None


def read_medication(resource: Mapping[str, Any], codes: Codes,
                    medications: Mapping[str, dict] | None = None, *,
                    allow_unmapped: bool = False,
                    flush_max_units_per_hour: float | None = None) -> Normalised:
    """One MedicationOrder per anticoagulant/antiplatelet ingredient of a MedicationRequest
    (or, v2, a MedicationStatement: its `dosage`, `context` and effective start).

    Ignored: doNotPerform, intent proposal/plan, as-needed (asNeededBoolean true or any
    asNeededCodeableConcept), heparin flushes/locks (`flush` set). With `allow_unmapped`, an
    anticoagulant-class code the file cannot map gives one MedicationOrder with ingredient
    "unmapped" and drug_class UNMAPPED_ANTICOAGULANT (exposure, never classified)."""
    rtype = resource.get("resourceType") if isinstance(resource, Mapping) else None
    if rtype not in ("MedicationRequest", "MedicationStatement"):
        return Normalised([])
    if resource.get("doNotPerform") is True or str(resource.get("intent")) in IGNORED_INTENTS:
        return Normalised([])
    statement = rtype == "MedicationStatement"
    dosage = first_dosage(resource, "dosage" if statement else "dosageInstruction") or {}
    if dosage.get("asNeededBoolean") is True or isinstance(dosage.get("asNeededCodeableConcept"), dict):
        return Normalised([])
    found = medication_codings(resource, medications or {})
    named = [(n, c) for n, c in ingredients_of(found, codes) if c in ORDER_CLASSES]
    rid = resource.get("id")
    source = f"{rtype}/{rid}" if isinstance(rid, str) else None
    if statement:
        period = resource.get("effectivePeriod") if isinstance(resource.get("effectivePeriod"), dict) else {}
        authored = parse_datetime(period.get("start")) or parse_datetime(resource.get("effectiveDateTime"))
        encounter = _encounter_id(resource.get("context"))
    else:
        authored = parse_datetime(resource.get("authoredOn"))
        encounter = _encounter_id(resource.get("encounter"))
    status = str(resource.get("status") or "unknown")
    if not named:
        all_named = ingredients_of(found, codes)
        if allow_unmapped and not all_named:
            unmapped = unmapped_anticoagulant(found, codes)
            if unmapped is not None:
                return Normalised([MedicationOrder(
                    ingredient="unmapped", drug_class=UNMAPPED_ANTICOAGULANT, status=status, source=source,
                    authored_on=authored, encounter_id=encounter)], unmapped=unmapped)
            return Normalised([], unknown_rxnorm=tuple(rxnorm_codes(found, codes)))
        return Normalised([])
    flush = any(n == "heparin" for n, _ in named) and is_heparin_flush(
        resource, found, dosage, codes, medications, max_units_per_hour=flush_max_units_per_hour)
    dose_and_rate = _first_dose_and_rate(dosage)
    quantity = dose_and_rate.get("doseQuantity")
    if not isinstance(quantity, dict) and isinstance(dose_and_rate.get("doseRange"), dict):
        quantity = dose_and_rate["doseRange"].get("high")
    routes = order_codes(codes).routes
    route_codes = list(codings(dosage.get("route")))
    route = next((name for name, cs in routes.items() if cs.matches_any(route_codes)), None)
    has_rate = any(isinstance(item, dict) and any(
        isinstance(item.get(k), dict) for k in ("rateQuantity", "rateRatio", "rateRange"))
        for item in items(dosage.get("doseAndRate")))
    per_day = doses_per_day(dosage.get("timing"), codes)
    orders = []
    for ingredient, cls in named:
        dose_mg, dose_units = order_dose(quantity, ingredient, scd_for(found, ingredient, codes))
        orders.append(MedicationOrder(
            ingredient=ingredient, drug_class=cls, dose_mg=dose_mg, dose_units=dose_units,
            doses_per_day=per_day, route=route,
            continuous=has_rate or (ingredient == "heparin" and route == "intravenous"),
            status=status, source=source, authored_on=authored, encounter_id=encounter))
    if flush:
        return Normalised([], flush=True, flush_orders=tuple(o for o in orders if o.ingredient == "heparin"))
    return Normalised(orders)


def normalise_orders(resource: Mapping[str, Any], codes: Codes,
                     medications: Mapping[str, dict] | None = None, *,
                     flush_max_units_per_hour: float | None = None) -> list[MedicationOrder]:
    """One MedicationOrder per anticoagulant/antiplatelet ingredient (combination products
    give several); [] when the request is not one, is ignored (as needed, a heparin flush, ...)
    or its drug is unmapped. Used for drafts (§9), which are never unmapped exposure."""
    if not isinstance(resource, Mapping) or resource.get("resourceType") != "MedicationRequest":
        return []
    return read_medication(resource, codes, medications,
                           flush_max_units_per_hour=flush_max_units_per_hour).orders


def normalise_order(resource: Mapping[str, Any], codes: Codes,
                    medications: Mapping[str, dict] | None = None) -> MedicationOrder | None:
    """The order's (first) anticoagulant/antiplatelet ingredient as a MedicationOrder, or None.
    Combination products: use `normalise_orders` to get every ingredient."""
    orders = normalise_orders(resource, codes, medications)
    return orders[0] if orders else None
