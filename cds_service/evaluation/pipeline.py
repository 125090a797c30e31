"""The evaluation every hook call and the assessment view share: request context -> FHIR data
-> inputs -> assessment. hooks/ turns an Evaluation into cards; smart/ shows it."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..fhir.codes import Codes, load_codes
from ..fhir.extract import extract_inputs
from ..logic.assessment import assess
from ..logic.inputs import PatientInputs
from ..logic.policy import Policy
from .state import HookCall

log = logging.getLogger("cds_service.hooks")  # the name the out-of-scope log line has always had


@dataclass
class Evaluation:
    """One hook call's data and assessment. Cards and the audit row both come from it."""

    call: HookCall
    data: Any                      # fhir.data.GatheredData
    inputs: PatientInputs
    assessment: Any                # logic.assessment.Assessment
    codes: Codes
    extra_audit: dict[str, Any] = field(default_factory=dict)

    @property
    def policy(self) -> Policy:
        return self.call.state.policy

    @property
    def now(self) -> datetime:
        return self.call.received_at

    def patient_found(self) -> bool:
        """The context's Patient resource was had (prefetch or read). A null prefetch value or
        a 404 means the EHR or server has no such patient: nothing we say would be about them."""
        return _patient_found(self.data.resources, self.call.patient_id)

    def in_scope(self) -> bool:
        """Cards only for adult inpatients with COVID-19 (clinical rules §1a): the assessment's
        `scope`. Out of scope the assessment is still audited, with its scope reasons."""
        scope = self.assessment.scope
        if not scope.in_scope:
            log.info("no cards: out of scope", extra={"fields": {
                "service": self.call.service.id, "hookInstance": self.call.hook_instance,
                "reasons": list(scope.reasons)}})
        return scope.in_scope

    def audit_json(self) -> dict[str, Any]:
        return {**self.assessment.to_json(), **self.extra_audit, "policy_source": self.policy.source}


def _patient_found(resources, pid) -> bool:
    return any(r.get("resourceType") == "Patient" and r.get("id") == pid for r in resources)


def codes_for(call: HookCall) -> Codes:
    return load_codes(call.state.policy["codes.extra_file"])


def evaluate(call: HookCall) -> Evaluation:
    """Gather the FHIR data (412 if it cannot be had), extract the inputs at the request time,
    and assess."""
    data = call.state.extensions["data"].gather(call)
    codes = codes_for(call)
    inputs = extract_inputs(data.resources, now=call.received_at, policy=call.state.policy,
                            codes=codes, patient_id=call.patient_id, encounter_id=call.encounter_id)
    found = _patient_found(data.resources, call.patient_id)
    assessment = assess(inputs, call.state.policy, hook=call.service.hook, patient_found=found)
    return Evaluation(call, data, inputs, assessment, codes)
