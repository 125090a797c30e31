"""Allowlist hardening: an encoded slash or backslash cannot climb out of the base path."""
from __future__ import annotations

import pytest

from cds_service.fhir.allowlist import refusal_reason, same_base


@pytest.mark.parametrize("url", [
    "https://ehr.example.org/fhir/..%2f..%2fadmin",
    "https://ehr.example.org/fhir/..%2F..%2Fadmin",
    "https://ehr.example.org/fhir/..%5cadmin",
    # Issue 21 M4: `..;` is `..` to Tomcat-based servers (HAPI); `;` path parameters at all.
    "https://ehr.example.org/fhir/..;/admin",
    "https://ehr.example.org/fhir/..;jsessionid=x/admin",
    "https://ehr.example.org/fhir/.;/Patient",
    "https://ehr.example.org/fhir/%2e%2e;/admin",
    "https://ehr.example.org/fhir/..%3b/admin",
    "https://ehr.example.org/fhir/Patient;x=1",
    "https://ehr.example.org/fhir/%252e%252e/admin",
])
def test_encoded_separators_never_stay_under_the_base(url):
    assert same_base(url, "https://ehr.example.org/fhir") is False
    assert refusal_reason(url, ("https://ehr.example.org/fhir",)) is not None


def test_plain_subpath_is_still_under_the_base():
    assert same_base("https://ehr.example.org/fhir/Observation?page=2", "https://ehr.example.org/fhir")
