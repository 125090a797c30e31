"""Pure clinical engine: plain inputs in, results out. No Flask, HTTP or FHIR."""
