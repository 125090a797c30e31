"""The service registry: every CDS service this product offers, declared once."""
from .order_check import SELECT_SERVICE, SIGN_SERVICE
from .patient_view import SERVICE as PATIENT_VIEW_SERVICE
from .registry import HookCall, Registry, Service


def build_registry() -> Registry:
    return Registry([PATIENT_VIEW_SERVICE, SELECT_SERVICE, SIGN_SERVICE])


__all__ = ["HookCall", "Registry", "Service", "build_registry"]
