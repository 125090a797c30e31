"""Builders shared by the order-check and regimen tests (tests/logic/test_order_check*.py,
test_review11.py, test_regimen*.py)."""
from __future__ import annotations

from typing import Any

from cds_service.logic.inputs import MedicationOrder
from cds_service.logic.order_check import OrderContext
from cds_service.logic.policy import Policy
from cds_service.logic.regimen import recommend_regimen

P = Policy.default()
DRAFT = "MedicationRequest/draft-1"


def ctx(**kw: Any) -> OrderContext:
    """An order context for a 75 kg, 175 cm adult with CrCl 80, not critically ill; `kw` overrides."""
    base: dict[str, Any] = dict(weight_kg=75.0, height_cm=175.0, bmi=24.5, crcl_ml_min=80.0,
                                crcl_lt_30=False, critically_ill=False)
    base.update(kw)
    return OrderContext(**base)


def enox(dose: float, per_day: int, **kw: Any) -> MedicationOrder:
    """A subcutaneous enoxaparin draft of `dose` mg, `per_day` times a day."""
    return MedicationOrder("enoxaparin", "lmwh", dose_mg=dose, doses_per_day=per_day,
                           route="subcutaneous", status="draft", source=DRAFT, **kw)


def reg(policy: Policy = P, **kw: Any):
    """recommend_regimen for a 75 kg adult, BMI 25, CrCl 80, no contraindication; `kw` overrides."""
    args: dict[str, Any] = dict(contraindications=(), already_therapeutic=False, crcl_ml_min=80.0,
                                crcl_lt_30=False, bmi=25.0, weight_kg=75.0, policy=policy)
    args.update(kw)
    return recommend_regimen(**args)


def row(r) -> tuple:
    return (r.drug, r.dose_mg, r.dose_units, r.doses_per_day, r.basis)
