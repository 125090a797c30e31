"""Small readers over FHIR JSON dicts: codings, references, dates, numbers.

Tolerant by design: a field of the wrong shape reads as absent, never raises. Resources
whose values are actually used are validated separately (extract.validate).
"""
from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator

from .codes import Coding

_DATETIME = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def items(value: Any) -> list:
    """A JSON array's items; any other shape (a number, an object, true) reads as none."""
    return value if isinstance(value, list) else []


def obj(value: Any) -> dict:
    """A JSON object; any other shape reads as an empty one."""
    return value if isinstance(value, dict) else {}


def codings(concept: Any) -> Iterator[Coding]:
    """(system, code) pairs of a CodeableConcept; `text` and `display` are never read."""
    if not isinstance(concept, dict):
        return
    for coding in items(concept.get("coding")):
        if isinstance(coding, dict):
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str):
                yield system, code


def concept_codes(concept: Any) -> set[str]:
    """Bare codes of a CodeableConcept, for FHIR-defined status vocabularies
    (clinicalStatus, verificationStatus) whose binding is required."""
    if not isinstance(concept, dict):
        return set()
    return {c["code"] for c in items(concept.get("coding"))
            if isinstance(c, dict) and isinstance(c.get("code"), str)}


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def parse_datetime(value: Any) -> datetime | None:
    """A FHIR date/dateTime/instant as an aware datetime, or None if malformed.

    Partial dates take the start of their period (2024 -> 2024-01-01T00:00). A value
    without an offset is read as UTC (FHIR requires one whenever a time is given).
    """
    if type(value) is not str:
        if not isinstance(value, str):
            return None
    elif len(value) == 20 and value[19] == "Z" and value[10] == "T" and value[4] == "-" \
            and value[7] == "-" and value[13] == ":" and value[16] == ":" and value[0] != "0":
        # The commonest form, YYYY-MM-DDThh:mm:ssZ: straight to the C parser, which rejects
        # what the regex below would (non-digits, month 13, hour 24, second 60 -> None too).
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    value = value.strip()
    m = _DATETIME.match(value)
    if not m:
        return None
    year, month, day, hh, mm, ss, frac, tz = m.groups()
    if tz and tz != "Z" and (int(tz[4:6]) > 59 or int(tz[1:3]) * 60 + int(tz[4:6]) > 14 * 60):
        return None  # FHIR offsets lie within -14:00..+14:00 (and +99:00 made timezone() raise)
    try:
        if ss is not None and (frac is None or len(frac) <= 7):
            # The common full form: the C parser, same result (<= 6 fraction digits need no rounding).
            dt = datetime.fromisoformat(value)
            dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
        else:
            dt = datetime(int(year), int(month or 1), int(day or 1), int(hh or 0), int(mm or 0),
                          int(ss or 0), int(round(float(frac) * 1_000_000)) if frac else 0)
            if tz and tz != "Z":
                sign = 1 if tz[0] == "+" else -1
                dt = dt.replace(tzinfo=timezone(timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])) * sign))
            else:
                dt = dt.replace(tzinfo=timezone.utc)
        if dt.year in (1, 9999):
            dt.astimezone(timezone.utc)  # 0001-01-01T00:00+14:00 has no UTC form: cards would raise
    except (ValueError, OverflowError):
        return None
    return dt


def parse_date(value: Any) -> date | None:
    """A FHIR date; partial dates (YYYY, YYYY-MM) are filled with 01."""
    dt = parse_datetime(value) if isinstance(value, str) and "T" not in value else None
    return dt.date() if dt else None


def aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def reference_target(reference: Any) -> tuple[str | None, str | None]:
    """(resourceType, id) of a Reference's `reference`, for relative, absolute and
    versioned URLs; (None, literal) for urn:/# references; (None, None) if absent."""
    if not isinstance(reference, dict):
        return None, None
    ref = reference.get("reference")
    if not isinstance(ref, str) or not ref:
        return None, None
    if ref.startswith(("urn:", "#")):
        return None, ref
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[:parts.index("_history")]
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None, ref
