"""Builders shared by the score-module tests (tests/logic/test_*.py)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from cds_service.logic.inputs import Measurement, PatientInputs
from cds_service.logic.policy import Policy

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
DEFAULT = Policy.default()


def m(value: float, unit: str = "", comparator: str | None = None, **kw: Any) -> Measurement:
    return Measurement(value=value, unit=unit, time=NOW, comparator=comparator, **kw)  # type: ignore[arg-type]


def pin(**kw: Any) -> PatientInputs:
    return PatientInputs(now=NOW, **kw)


def pol(overrides: dict[str, Any] | None = None) -> Policy:
    return DEFAULT.with_overrides(overrides or {})
