"""Prometheus metrics (prometheus_client), served at GET /metrics.

What is counted (label values come from fixed vocabularies, never from the request: no
patient id, token, URL or free text ever becomes a label):

| Metric | Labels |
|---|---|
| `cds_hook_calls_total` | service, status (HTTP status of the hook call) |
| `cds_hook_call_duration_seconds` (histogram) | service |
| `cds_fhir_requests_total` | service (HTTP requests to fhirServer) |
| `cds_fhir_round_trips_total` | service (sequential rounds of requests; a batch counts once) |
| `cds_fhir_cache_total` | result = hit / miss (self-fetch response cache) |
| `cds_precondition_failed_total` | service, cause (412s, by `precondition_cause`) |
| `cds_cards_total` | service, kind, indicator |
| `cds_cards_suppressed_total` | kind, reason (`card_suppressed(kind, reason)`) |
| `cds_feedback_total` | service, outcome (accepted / overridden; items in stored requests) |
| `cds_jwt_rejections_total` | reason (a class from `jwt_reason_class`, never the token) |

Every metric also has the label `site` (issue 24): the calling site's id from CDS_SITES,
`default` without it, `none` before the caller is known.

**Several worker processes.** The server runs several processes; a scrape reaches one of
them. Per-process counters would then jump between the workers' values (Prometheus reads
them as resets) and each worker's share would be lost. So when PROMETHEUS_MULTIPROC_DIR is
set, every process writes its values to files there (prometheus_client's multiprocess mode)
and /metrics aggregates all of them. `cds-service serve` sets it (a fresh directory) when it
starts more than one worker; `prepare_multiprocess()` does it. Without it (one process: tests,
`flask run`, a single worker) the in-process registry is exact. The directory must be empty
at start (old files would be added to the new counts): `prepare_multiprocess` clears it.
The variable must be set before prometheus_client is first imported, i.e. before the
workers start: the serve command sets it in the parent.
"""
from __future__ import annotations

import os
import tempfile

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram,
                               generate_latest)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client picks its value store when imported (just above): files in the directory
# when the variable was set then, memory otherwise. The exposition must read the same store,
# whatever happens to the variable later in this process (the serve command sets it for the
# workers it starts, not for itself).
MULTIPROCESS = bool(os.environ.get(MULTIPROC_ENV))

HOOK_CALLS = Counter("cds_hook_calls", "Hook calls answered, by service and HTTP status.",
                     ["service", "status", "site"])
HOOK_LATENCY = Histogram("cds_hook_call_duration_seconds", "Hook call latency (whole request), by service.",
                         ["service", "site"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
FHIR_REQUESTS = Counter("cds_fhir_requests", "HTTP requests sent to fhirServer, by service.", ["service", "site"])
FHIR_ROUND_TRIPS = Counter("cds_fhir_round_trips", "Sequential rounds of FHIR requests, by service.",
                           ["service", "site"])
FHIR_CACHE = Counter("cds_fhir_cache", "Self-fetch cache lookups, by result (hit, miss, or error: the shared cache did not answer).", ["result", "site"])
PRECONDITION_FAILED = Counter("cds_precondition_failed", "412 answers (required FHIR data unobtainable), "
                              "by service and cause.", ["service", "cause", "site"])
CARDS = Counter("cds_cards", "Cards returned, by service, card kind and indicator.",
                ["service", "kind", "indicator", "site"])
CARDS_SUPPRESSED = Counter("cds_cards_suppressed", "Cards not shown (e.g. snoozed), by kind and reason.",
                           ["kind", "reason", "site"])
FEEDBACK = Counter("cds_feedback", "Feedback items stored, by service and outcome.", ["service", "outcome", "site"])
AUDIT_ROWS_LOST = Counter("cds_audit_rows_lost", "Audit or lifecycle rows the writer could not store, "
                          "by reason (queue_full, refused, stop, unwritable).", ["reason", "site"])
JWT_REJECTIONS = Counter("cds_jwt_rejections", "Client JWTs refused, by reason class.", ["reason", "site"])

# Label values are cut to this length: a bug upstream must not blow up the series count.
_MAX_LABEL = 64


def _label(value: object) -> str:
    return str(value)[:_MAX_LABEL] if value is not None else "none"


def _site() -> str:
    """The calling site (issue 24, cds_service/sites): an id from the sites file, "default"
    without CDS_SITES, "none" while the caller is not yet known. Never request data."""
    try:
        from flask import g
        return _label(g.get("cds_site_id", "default"))
    except RuntimeError:  # outside a request
        return "default"


# --- recording (called by the app, the data layer, the hooks and the stores) ---------------

def hook_call(service: str, status: int, seconds: float) -> None:
    HOOK_CALLS.labels(_label(service), str(int(status)), _site()).inc()
    HOOK_LATENCY.labels(_label(service), _site()).observe(max(seconds, 0.0))


def fhir_exchange(service: str, requests: int, round_trips: int) -> None:
    if requests:
        FHIR_REQUESTS.labels(_label(service), _site()).inc(requests)
    if round_trips:
        FHIR_ROUND_TRIPS.labels(_label(service), _site()).inc(round_trips)


def fhir_cache(hit: bool) -> None:
    FHIR_CACHE.labels("hit" if hit else "miss", _site()).inc()


def fhir_cache_error() -> None:
    """The shared FHIR cache (Redis, issue 16) did not answer; the call went on without it."""
    FHIR_CACHE.labels("error", _site()).inc()


# (substring of the data layer's reason, cause); first match wins.
_PRECONDITION_CAUSES = [
    ("deadline", "timeout"),
    ("refused access", "fhir_auth"),
    ("allowlist", "not_allowed"),
    ("no fhirServer", "no_fhir_server"),
    ("could not be reached", "unreachable"),
    ("answered", "fhir_http_error"),
    ("larger than", "too_large"),
    ("template cannot be filled", "template"),
    ("not valid JSON", "invalid_answer"),
    ("was not a", "invalid_answer"),
    ("outside fhirServer", "invalid_answer"),
    ("batch", "invalid_answer"),
]


def precondition_cause(reason: str) -> str:
    """A fixed cause class for one key's 412 reason (the data layer's text)."""
    return next((cause for needle, cause in _PRECONDITION_CAUSES if needle in reason), "other")


def precondition_failed(service: str, reasons) -> None:
    for cause in sorted({precondition_cause(str(r)) for r in reasons}):
        PRECONDITION_FAILED.labels(_label(service), cause, _site()).inc()


def card_issued(service: str, kind: str, indicator: str) -> None:
    CARDS.labels(_label(service), _label(kind), _label(indicator), _site()).inc()


def card_suppressed(kind: str, reason: str) -> None:
    """Count a card the service decided not to show (snoozed, deduplicated, policy).
    `reason` must come from a fixed vocabulary (e.g. "snoozed"), never from request data."""
    CARDS_SUPPRESSED.labels(_label(kind), _label(reason), _site()).inc()


def feedback(service: str, outcome: str) -> None:
    FEEDBACK.labels(_label(service), _label(outcome), _site()).inc()


# (substring of AuthError.reason, class); first match wins. Never the token or a claim value.
_JWT_CLASSES = [
    ("audit store unavailable", "store_unavailable"),
    ("replay store full", "replay_store_full"),
    ("replayed", "replay"),
    ("no Authorization", "missing"),
    ("scheme", "malformed"),
    ("compact JWS", "malformed"),
    ("cannot be decoded", "malformed"),
    ("claim", "claims"),
    ("jti", "claims"),
    ("tenant", "claims"),
    ("kid missing", "header"),
    ("key type", "key"),
    ("kid", "key"),
    ("jku", "key"),
    ("alg", "header"),
    ("typ", "header"),
    ("crit", "header"),
    ("iss", "issuer"),
    ("signature", "signature"),
    ("aud", "audience"),
    ("expired", "time"),
    ("not yet valid", "time"),
    ("exp", "time"),
    ("iat", "time"),
]


def jwt_reason_class(reason: str) -> str:
    return next((cls for needle, cls in _JWT_CLASSES if needle in reason), "claims")


def audit_rows_lost(reason: str, count: int) -> None:
    # The writer thread serves every site: its rows are counted under the site of the request
    # that lost them when there is one (queue full), else "default".
    AUDIT_ROWS_LOST.labels(_label(reason), _site()).inc(count)


def jwt_rejected(reason: str) -> None:
    JWT_REJECTIONS.labels(jwt_reason_class(reason), _site()).inc()


# --- exposition -------------------------------------------------------------------------------

def prepare_multiprocess(workers: int) -> str | None:
    """Before starting `workers` server processes: with more than one, point
    PROMETHEUS_MULTIPROC_DIR at an empty directory (the operator's, cleared, or a fresh
    temporary one) so /metrics aggregates every worker. Returns the directory or None."""
    if workers <= 1 and not os.environ.get(MULTIPROC_ENV):
        return None
    directory = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="cds-metrics-")
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))
    os.environ[MULTIPROC_ENV] = directory
    return directory


def exposition() -> tuple[bytes, str]:
    """(body, content type) in the Prometheus text format, all workers aggregated when in
    multiprocess mode."""
    if MULTIPROCESS:
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


__all__ = ["card_suppressed", "card_issued", "exposition", "feedback", "fhir_cache", "fhir_exchange",
           "hook_call", "jwt_rejected", "precondition_failed", "prepare_multiprocess"]
