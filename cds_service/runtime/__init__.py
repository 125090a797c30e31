"""What every room may use: the error types that carry their HTTP status and OperationOutcome
(errors.py) and the process's Prometheus metrics (metrics.py). Under logic/ and fhir/ in the
import order, so the data layer can raise a 412 and count its cache without importing web/."""
