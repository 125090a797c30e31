"""The service registry: every CDS service this product offers, declared once."""
from .orders import SELECT_SERVICE, SIGN_SERVICE
from .patient_view import SERVICE as PATIENT_VIEW_SERVICE
from dataclasses import replace

from ..fhir.codes import Codes
from ..fhir.templates import prefetch_templates
from ..evaluation.state import HookCall, Registry, Service

# The card catalogue version: 2 = clinical-rules §18 (v2 cards). Tests of other branches gate their
# card expectations on it (tests/integration/expected_patients.py).
CARDS_VERSION = 2


def build_registry(codes: Codes | None = None) -> Registry:
    """The services; with `codes` (the packaged data merged with codes.extra_file), their
    prefetch templates carry the extra codes, so discovery, prefetch and self-fetch ask for
    what the institution added (fhir-data-requirements §10)."""
    services = [PATIENT_VIEW_SERVICE, SELECT_SERVICE, SIGN_SERVICE]
    if codes is not None:
        templates = prefetch_templates(codes)
        services = [replace(s, prefetch=templates) if s.prefetch else s for s in services]
    return Registry(services)


__all__ = ["CARDS_VERSION", "HookCall", "Registry", "Service", "build_registry"]
