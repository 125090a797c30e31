"""coagulopathy-risk (patient-view): scores, prophylaxis dose and anti-Xa plan on chart open."""
from __future__ import annotations

from .common import PREFETCH, REQUIRED_KEYS, USAGE
from .registry import HookCall, Service


def handle(call: HookCall) -> dict:
    return {"cards": []}


SERVICE = Service(
    id="coagulopathy-risk",
    hook="patient-view",
    title="COVID-19 coagulopathy and heparin prophylaxis",
    description=("SIC, ISTH overt DIC and D-dimer (multiple of ULN) for hospitalised COVID-19 "
                 "patients, with weight- and renal-adjusted LMWH prophylaxis, contraindication "
                 "warnings and anti-Xa monitoring advice."),
    handler=handle,
    prefetch=PREFETCH,
    usage_requirements=USAGE,
    required_keys=REQUIRED_KEYS,
)
