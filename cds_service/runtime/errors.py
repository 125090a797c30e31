"""HTTP errors as FHIR OperationOutcomes (CDS Hooks notes §9)."""
from __future__ import annotations

from typing import Any

from ..logging_setup import redact

# status -> OperationOutcome issue.code
ISSUE_CODES = {
    400: "invalid",
    401: "login",
    404: "not-found",
    405: "not-supported",
    412: "incomplete",
    413: "too-long",
    408: "timeout",
    415: "not-supported",
    500: "exception",
    503: "transient",
}


def operation_outcome(status: int, diagnostics: str, *, severity: str = "error",
                      expression: list[str] | None = None) -> dict[str, Any]:
    # Last line of defence: a diagnostic that echoes input (a path, a JSON Schema message)
    # must never carry a credential back out.
    issue: dict[str, Any] = {
        "severity": severity,
        "code": ISSUE_CODES.get(status, "processing"),
        "diagnostics": redact(diagnostics),
    }
    if expression:
        issue["expression"] = [redact(e) for e in expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class CDSError(Exception):
    """An error answered with `status` and an OperationOutcome naming `diagnostics`.

    `diagnostics` is shown to the caller, so it must never carry a token or a stack trace.
    """

    status = 400

    def __init__(self, diagnostics: str, *, status: int | None = None,
                 expression: list[str] | None = None):
        super().__init__(diagnostics)
        if status is not None:
            self.status = status
        self.diagnostics = diagnostics
        self.expression = expression

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.status, self.diagnostics, expression=self.expression)


class BadRequest(CDSError):
    status = 400


class Unauthorized(CDSError):
    status = 401

    def __init__(self, reason: str = "unauthorized"):
        # The reason is for the debug log only; the body is always generic.
        super().__init__("Authentication required or the credential was not accepted.")
        self.reason = reason


class NotFound(CDSError):
    status = 404


class ServiceUnavailable(CDSError):
    """A dependency of ours (the audit database) is down: 503 with Retry-After, so a client
    retries later instead of reading a 401 as bad credentials (issue 14)."""

    status = 503
    RETRY_AFTER_S = 5

    def __init__(self, diagnostics: str, *, retry_after: int = RETRY_AFTER_S):
        super().__init__(diagnostics)
        self.retry_after = retry_after


class PreconditionFailed(CDSError):
    """Required FHIR data could not be obtained (CDS Hooks 2.0 §6: SHALL answer 412)."""

    status = 412
