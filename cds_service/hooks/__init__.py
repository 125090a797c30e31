"""The service registry: every CDS service this product offers, declared once."""
from .order_check import SELECT_SERVICE, SIGN_SERVICE
from .patient_view import SERVICE as PATIENT_VIEW_SERVICE
from dataclasses import replace

from ..fhir.codes import Codes
from ..fhir.templates import prefetch_templates
from .registry import HookCall, Registry, Service


def build_registry(codes: Codes | None = None) -> Registry:
    """The services; with `codes` (the packaged data merged with codes.extra_file), their
    prefetch templates carry the extra codes, so discovery, prefetch and self-fetch ask for
    what the institution added (fhir-data-requirements §10)."""
    services = [PATIENT_VIEW_SERVICE, SELECT_SERVICE, SIGN_SERVICE]
    if codes is not None:
        templates = prefetch_templates(codes)
        services = [replace(s, prefetch=templates) if s.prefetch else s for s in services]
    return Registry(services)


__all__ = ["HookCall", "Registry", "Service", "build_registry"]
