"""Integration tools for people who connect the service to a FHIR server: `load-fixtures`
(synthetic patients in conformance/patients) and `fire` (a command-line CDS client)."""
