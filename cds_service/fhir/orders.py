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
  (enoxaparin IU / 100 -> mg); mL or {syringe}/{each} only through the SCD strength map.
  Anything else leaves the dose None, so the order is not classified.
- Doses per day: timing.repeat (frequency x 24 h / period), else timing.code (GTS), else the
  number of timeOfDay entries, else None.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

from ..logic.inputs import MedicationOrder
from .codes import CodeSet, Codes, Coding
from .read import codings, items, number
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


@lru_cache(maxsize=8)
def _order_codes(codes: Codes) -> _OrderCodes:
    data = codes.data
    return _OrderCodes(
        ingredients=tuple((name, cls, cs) for name, (cls, cs) in codes.ingredients().items()),
        combinations={codes.resolve(k): tuple(v) for k, v in data.get("combinations", {}).items()},
        scd={codes.resolve(k): v for k, v in data.get("scd_strengths", {}).items()},
        timing={codes.resolve(k): float(v) for k, v in data.get("timing_codes", {}).items()
                if not k.startswith("_")},
        routes=codes.section("routes"),
    )


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
    oc = _order_codes(codes)
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
    timing_codes = _order_codes(codes).timing
    for coding in codings(timing.get("code")):
        if coding in timing_codes:
            return timing_codes[coding]
    times = [t for t in items(repeat.get("timeOfDay")) if isinstance(t, str)]
    if times:
        return float(len(set(times)))
    return None


def _scd_for(found: list[Coding], ingredient: str, codes: Codes) -> dict | None:
    scd = _order_codes(codes).scd
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
    for table, per_item in ((DOSE_VOLUME, float(scd["amount"]) / float(scd["volume_ml"])),
                            (DOSE_COUNT, float(scd["amount"]))):
        try:
            amount = convert("dose", quantity, table=table).value * per_item
        except UnitError:
            continue
        if scd["unit"] == "mg":
            return amount, None
        return None, amount
    return None, None


def normalise_orders(resource: Mapping[str, Any], codes: Codes,
                     medications: Mapping[str, dict] | None = None) -> list[MedicationOrder]:
    """One MedicationOrder per anticoagulant/antiplatelet ingredient (combination products
    give several); [] when the request is not one, is ignored, or its drug is unmapped."""
    if not isinstance(resource, Mapping) or resource.get("resourceType") != "MedicationRequest":
        return []
    if resource.get("doNotPerform") is True or str(resource.get("intent")) in IGNORED_INTENTS:
        return []
    dosage = first_dosage(resource) or {}
    if dosage.get("asNeededBoolean") is True or isinstance(dosage.get("asNeededCodeableConcept"), dict):
        return []
    found = medication_codings(resource, medications or {})
    named = [(n, c) for n, c in ingredients_of(found, codes) if c in ORDER_CLASSES]
    if not named:
        return []
    dose_and_rate = _first_dose_and_rate(dosage)
    quantity = dose_and_rate.get("doseQuantity")
    if not isinstance(quantity, dict) and isinstance(dose_and_rate.get("doseRange"), dict):
        quantity = dose_and_rate["doseRange"].get("high")
    routes = _order_codes(codes).routes
    route_codes = list(codings(dosage.get("route")))
    route = next((name for name, cs in routes.items() if cs.matches_any(route_codes)), None)
    has_rate = any(isinstance(item, dict) and any(
        isinstance(item.get(k), dict) for k in ("rateQuantity", "rateRatio", "rateRange"))
        for item in items(dosage.get("doseAndRate")))
    per_day = doses_per_day(dosage.get("timing"), codes)
    rid = resource.get("id")
    source = f"MedicationRequest/{rid}" if isinstance(rid, str) else None
    orders = []
    for ingredient, cls in named:
        dose_mg, dose_units = order_dose(quantity, ingredient, _scd_for(found, ingredient, codes))
        orders.append(MedicationOrder(
            ingredient=ingredient, drug_class=cls, dose_mg=dose_mg, dose_units=dose_units,
            doses_per_day=per_day, route=route,
            continuous=has_rate or (ingredient == "heparin" and route == "intravenous"),
            status=str(resource.get("status") or "unknown"), source=source))
    return orders


def normalise_order(resource: Mapping[str, Any], codes: Codes,
                    medications: Mapping[str, dict] | None = None) -> MedicationOrder | None:
    """The order's (first) anticoagulant/antiplatelet ingredient as a MedicationOrder, or None.
    Combination products: use `normalise_orders` to get every ingredient."""
    orders = normalise_orders(resource, codes, medications)
    return orders[0] if orders else None
