"""What the service reads from FHIR, as strict msgspec structs (issue 15).

These structs are the single description of the fields extraction reads (fhir-data-requirements
v2): resource types, codes, values, units, dates, status, subject, dosage, timing, encounter.
A resource whose values are used is checked against its struct (`Checker.problem`): a field the
service reads that has the wrong JSON type, an ill-formed FHIR date/dateTime/instant, id, code or
uri, a missing required element, or two choices of one `[x]` element make the resource "not valid
FHIR R4B" with the first reason, exactly where the fhir.resources R4B models rejected it before
(extract.py, flags.py, scope.py, exposure.py, support.py, observations.py).

What moved where (the R4B models are no longer on the hot path):
- Checked here, as before: types and FHIR formats of every field read, required elements
  (Observation.status/code, subject/patient where R4B requires it, Encounter.status/class,
  MedicationRequest.intent, reaction.manifestation, component.code), one choice per `[x]`
  among the choices the service reads, decimals (JSON numbers, never true/false or inf).
- Stricter than the R4B models: a decimal sent as a JSON string ("90") is rejected (FHIR JSON
  carries decimals as numbers; the readers never used a string value anyway).
- No longer checked on the hot path: fields the service never reads (an unknown or R5 field,
  a malformed `note` or `identifier` no longer drops an otherwise usable value), and the
  calendar validity of a well-formed date (2024-02-30 reads as no date, so the value is
  outside every window instead of rejected).
- Still checked with fhir.resources R4B (context.R4BValidator): resources the service emits
  (hooks/order_check.py's updated draft), `cds-service assess --strict`, and the tests.

Field values are not converted: extraction keeps reading the JSON dicts with the tolerant
readers of read.py; the struct only decides whether a resource is fit to be used.
"""
from __future__ import annotations

import typing
from typing import Annotated, Any, Mapping

import msgspec

# --------------------------------------------------------------------------- FHIR primitives
# The R4B (fhir_core) regular expressions, anchored.
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TZ = r"(Z|([+\-])((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
DateTime = Annotated[str, msgspec.Meta(
    pattern=rf"^{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T{_TIME}{_TZ})?)?)?$")]
Date = Annotated[str, msgspec.Meta(pattern=rf"^{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?$")]
Instant = Annotated[str, msgspec.Meta(
    pattern=rf"^{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T{_TIME}{_TZ}$")]
Time = Annotated[str, msgspec.Meta(pattern=rf"^{_TIME}$")]
Id = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
Code = Annotated[str, msgspec.Meta(pattern=r"^[^\s]+(\s[^\s]+)*$")]
Uri = Annotated[str, msgspec.Meta(pattern=r"^\S*$")]
String = Annotated[str, msgspec.Meta(min_length=1)]
# Human-readable strings no rule reads (display, text, version): any string. An empty one is invalid
# FHIR but must not drop the resource it sits in (a HIT Condition with display "" is still HIT;
# review-v3 H10, HELPERS "validate exactly the fields you read").
Text = str
Decimal = Annotated[float, msgspec.Meta(ge=-1.7976931348623157e308, le=1.7976931348623157e308)]
# (a JSON number, int or float; never a bool, a string, inf or nan)
Integer = int
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class _S(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Unknown fields are ignored: only what the service reads is described."""


def _one_choice(struct: Any, names: tuple[str, ...], element: str) -> None:
    present = [n for n in names if getattr(struct, n) is not None]
    if len(present) > 1:
        raise ValueError(f"{element}[x]: one choice expected, got {', '.join(present)}")


# --------------------------------------------------------------------------- data types


class Coding(_S, kw_only=True):
    system: Uri | None = None
    version: Text | None = None
    code: Code | None = None
    display: Text | None = None
    userSelected: bool | None = None


class CodeableConcept(_S, kw_only=True):
    coding: list[Coding] | None = None
    text: Text | None = None


class Reference(_S, kw_only=True):
    reference: String | None = None
    type: Uri | None = None
    display: Text | None = None


class Quantity(_S, kw_only=True):
    value: Decimal | None = None
    comparator: Code | None = None
    unit: String | None = None
    system: Uri | None = None
    code: Code | None = None


class Period(_S, kw_only=True):
    start: DateTime | None = None
    end: DateTime | None = None


class _LowHigh(_S, kw_only=True):
    low: Quantity | None = None
    high: Quantity | None = None


class Range(_LowHigh, kw_only=True):
    pass


class Ratio(_S, kw_only=True):
    numerator: Quantity | None = None
    denominator: Quantity | None = None


class ReferenceRange(_LowHigh, kw_only=True):
    type: CodeableConcept | None = None
    appliesTo: list[CodeableConcept] | None = None
    age: Range | None = None
    text: String | None = None


_VALUE_X = ("valueQuantity", "valueCodeableConcept", "valueBoolean", "valueString", "valueInteger",
            "valueRange", "valueRatio", "valueSampledData", "valueTime", "valueDateTime", "valuePeriod")


class _Valued(_S, kw_only=True):
    valueQuantity: Quantity | None = None
    valueCodeableConcept: CodeableConcept | None = None
    valueBoolean: bool | None = None
    valueString: String | None = None
    # value[x] choices never read: present or not (for the one-choice rule), any shape
    valueInteger: Any = None
    valueRange: Any = None
    valueRatio: Any = None
    valueSampledData: Any = None
    valueTime: Any = None
    valueDateTime: Any = None
    valuePeriod: Any = None
    dataAbsentReason: CodeableConcept | None = None
    interpretation: list[CodeableConcept] | None = None
    referenceRange: list[ReferenceRange] | None = None

    def __post_init__(self) -> None:
        _one_value(self)


def _one_value(s: _Valued) -> None:
    # Inline for speed (every used Observation): at most one value[x].
    if ((s.valueQuantity is not None) + (s.valueCodeableConcept is not None) + (s.valueBoolean is not None)
            + (s.valueString is not None) + (s.valueInteger is not None) + (s.valueRange is not None)
            + (s.valueRatio is not None) + (s.valueSampledData is not None) + (s.valueTime is not None)
            + (s.valueDateTime is not None) + (s.valuePeriod is not None)) > 1:
        _one_choice(s, _VALUE_X, "value")


class ObservationComponent(_Valued, kw_only=True):
    code: CodeableConcept


class Observation(_Valued, kw_only=True):
    id: Id | None = None
    status: Code
    code: CodeableConcept
    subject: Reference | None = None
    encounter: Reference | None = None
    effectiveDateTime: DateTime | None = None
    effectivePeriod: Period | None = None
    effectiveInstant: Instant | None = None
    effectiveTiming: Any = None
    issued: Instant | None = None
    component: list[ObservationComponent] | None = None

    def __post_init__(self) -> None:
        _one_value(self)
        if ((self.effectiveDateTime is not None) + (self.effectivePeriod is not None)
                + (self.effectiveInstant is not None) + (self.effectiveTiming is not None)) > 1:
            _one_choice(self, ("effectiveDateTime", "effectivePeriod", "effectiveInstant", "effectiveTiming"),
                        "effective")


class Patient(_S, kw_only=True):
    id: Id | None = None
    gender: Code | None = None
    birthDate: Date | None = None


_ONSET_X = ("onsetDateTime", "onsetPeriod", "onsetAge", "onsetRange", "onsetString")


class _ClinicalStatement(_S, kw_only=True):
    """What Condition and AllergyIntolerance share: statuses, code, onset[x], recordedDate."""
    id: Id | None = None
    clinicalStatus: CodeableConcept | None = None
    verificationStatus: CodeableConcept | None = None
    code: CodeableConcept | None = None
    onsetDateTime: DateTime | None = None
    onsetPeriod: Period | None = None
    onsetAge: Quantity | None = None
    onsetRange: Range | None = None
    onsetString: Text | None = None
    recordedDate: DateTime | None = None

    def _onset(self) -> None:
        _one_choice(self, _ONSET_X, "onset")


class Condition(_ClinicalStatement, kw_only=True):
    subject: Reference
    encounter: Reference | None = None
    abatementDateTime: DateTime | None = None
    abatementPeriod: Period | None = None
    abatementAge: Quantity | None = None
    abatementRange: Range | None = None
    abatementString: Text | None = None

    def __post_init__(self) -> None:
        self._onset()
        _one_choice(self, ("abatementDateTime", "abatementPeriod", "abatementAge", "abatementRange",
                           "abatementString"), "abatement")


class AllergyReaction(_S, kw_only=True):
    manifestation: list[CodeableConcept]
    onset: DateTime | None = None


class AllergyIntolerance(_ClinicalStatement, kw_only=True):
    patient: Reference
    reaction: list[AllergyReaction] | None = None

    def __post_init__(self) -> None:
        self._onset()


class Procedure(_S, kw_only=True):
    id: Id | None = None
    status: Code
    code: CodeableConcept | None = None
    subject: Reference
    encounter: Reference | None = None
    performedDateTime: DateTime | None = None
    performedPeriod: Period | None = None
    performedString: String | None = None
    performedAge: Quantity | None = None
    performedRange: Range | None = None
    usedCode: list[CodeableConcept] | None = None

    def __post_init__(self) -> None:
        _one_choice(self, ("performedDateTime", "performedPeriod", "performedString", "performedAge",
                           "performedRange"), "performed")


class TimingRepeat(_S, kw_only=True):
    boundsPeriod: Period | None = None
    boundsDuration: Quantity | None = None
    boundsRange: Range | None = None
    count: PositiveInt | None = None
    frequency: PositiveInt | None = None
    frequencyMax: PositiveInt | None = None
    period: Decimal | None = None
    periodMax: Decimal | None = None
    periodUnit: Code | None = None
    dayOfWeek: list[Code] | None = None
    timeOfDay: list[Time] | None = None
    when: list[Code] | None = None
    offset: Annotated[int, msgspec.Meta(ge=0)] | None = None


class Timing(_S, kw_only=True):
    event: list[DateTime] | None = None
    repeat: TimingRepeat | None = None
    code: CodeableConcept | None = None


class DoseAndRate(_S, kw_only=True):
    type: CodeableConcept | None = None
    doseRange: Range | None = None
    doseQuantity: Quantity | None = None
    rateRatio: Ratio | None = None
    rateRange: Range | None = None
    rateQuantity: Quantity | None = None

    def __post_init__(self) -> None:
        _one_choice(self, ("doseRange", "doseQuantity"), "dose")
        _one_choice(self, ("rateRatio", "rateRange", "rateQuantity"), "rate")


class Dosage(_S, kw_only=True):
    sequence: Integer | None = None
    text: String | None = None
    patientInstruction: String | None = None
    timing: Timing | None = None
    asNeededBoolean: bool | None = None
    asNeededCodeableConcept: CodeableConcept | None = None
    route: CodeableConcept | None = None
    doseAndRate: list[DoseAndRate] | None = None

    def __post_init__(self) -> None:
        _one_choice(self, ("asNeededBoolean", "asNeededCodeableConcept"), "asNeeded")


class _Medicated(_S, kw_only=True):
    medicationCodeableConcept: CodeableConcept | None = None
    medicationReference: Reference | None = None
    # Contained resources: a contained Medication is read through find_medication's tolerant
    # readers; each must at least be an object with a resourceType (as R4B requires).
    contained: list[dict[str, Any]] | None = None

    def _medication(self) -> None:
        if (self.medicationCodeableConcept is None) == (self.medicationReference is None):
            raise ValueError("medication[x]: exactly one of medicationCodeableConcept, "
                             "medicationReference expected")
        for item in self.contained or ():
            if not isinstance(item.get("resourceType"), str):
                raise ValueError("contained: a resource without a resourceType")


class MedicationRequest(_Medicated, kw_only=True):
    id: Id | None = None
    status: Code
    intent: Code
    doNotPerform: bool | None = None
    subject: Reference
    encounter: Reference | None = None
    authoredOn: DateTime | None = None
    dosageInstruction: list[Dosage] | None = None

    def __post_init__(self) -> None:
        self._medication()


class AdministrationDosage(_S, kw_only=True):
    text: String | None = None
    route: CodeableConcept | None = None
    dose: Quantity | None = None
    rateRatio: Ratio | None = None
    rateQuantity: Quantity | None = None

    def __post_init__(self) -> None:
        _one_choice(self, ("rateRatio", "rateQuantity"), "rate")


class _MedicationUse(_Medicated, kw_only=True):
    """What MedicationAdministration and MedicationStatement share (effective[x] is checked by
    each: an administration needs exactly one, a statement at most one)."""
    id: Id | None = None
    status: Code
    subject: Reference
    context: Reference | None = None
    effectiveDateTime: DateTime | None = None
    effectivePeriod: Period | None = None


class MedicationAdministration(_MedicationUse, kw_only=True):
    dosage: AdministrationDosage | None = None

    def __post_init__(self) -> None:
        self._medication()
        if (self.effectiveDateTime is None) == (self.effectivePeriod is None):
            raise ValueError("effective[x]: exactly one of effectiveDateTime, effectivePeriod expected")


class MedicationStatement(_MedicationUse, kw_only=True):
    dosage: list[Dosage] | None = None
    # Not read, but checked: a statement whose assertion date is garbled is not trusted
    # (fhir-data-requirements v2 §8; tests/fhir/test_extract_v2.py pins it).
    dateAsserted: DateTime | None = None

    def __post_init__(self) -> None:
        self._medication()
        _one_choice(self, ("effectiveDateTime", "effectivePeriod"), "effective")




class Encounter(_S, kw_only=True):
    id: Id | None = None
    status: Code
    class_: Coding = msgspec.field(name="class")
    subject: Reference | None = None
    period: Period | None = None


class MedicationIngredient(_S, kw_only=True):
    itemCodeableConcept: CodeableConcept | None = None
    itemReference: Reference | None = None
    isActive: bool | None = None
    strength: Ratio | None = None

    def __post_init__(self) -> None:
        if (self.itemCodeableConcept is None) == (self.itemReference is None):
            raise ValueError("item[x]: exactly one of itemCodeableConcept, itemReference expected")


class Medication(_S, kw_only=True):
    id: Id | None = None
    code: CodeableConcept | None = None
    ingredient: list[MedicationIngredient] | None = None


STRUCTS: dict[str, type[_S]] = {t.__name__: t for t in (
    Observation, Patient, Condition, AllergyIntolerance, Procedure, MedicationRequest,
    MedicationAdministration, MedicationStatement, Encounter, Medication)}


_PATTERN_NAMES = {
    "DateTime": DateTime, "Date": Date, "Instant": Instant, "Time": Time, "id": Id, "code": Code, "uri": Uri}
_NAMES = {typing.get_args(t)[1].pattern: name for name, t in _PATTERN_NAMES.items()}


def _wording(exc: msgspec.ValidationError) -> str:
    """msgspec's "Expected `str`, got `int` - at `$.valueQuantity.system`" as
    "valueQuantity.system: Expected `str`, got `int`" (the R4B reasons named the path first)."""
    text = str(exc)
    for pattern, name in _NAMES.items():
        text = text.replace(f"`str` matching regex {pattern!r}", f"a FHIR {name}")
    message, sep, where = text.rpartition(" - at `$")
    if not sep:
        return text
    path = where.rstrip("`").lstrip(".").replace("][", "].[")
    path = path.replace("[", ".").replace("]", "").lstrip(".")
    return f"{path}: {message}" if path else message


def problem(resource: Mapping[str, Any]) -> str | None:
    """Why `resource` (a JSON object) does not fit what the service reads, or None. Resource
    types the service does not read are not checked."""
    struct = STRUCTS.get(resource.get("resourceType"))  # type: ignore[arg-type]
    if struct is None:
        return None
    try:
        msgspec.convert(resource, struct, strict=True)
    except msgspec.ValidationError as exc:
        return f"not valid FHIR R4B ({_wording(exc)})"
    except (RecursionError, OverflowError) as exc:   # absurdly nested or sized values
        return f"not valid FHIR R4B ({type(exc).__name__})"
    return None
