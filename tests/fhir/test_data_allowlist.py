"""CDS_FHIR_ALLOWLIST: parsed-URL matching, https outside loopback, no request when refused."""
from __future__ import annotations

import logging

import pytest
import responses

from cds_service.config import ConfigError
from cds_service.runtime.errors import PreconditionFailed
from cds_service.fhir.allowlist import refusal_reason, same_base
from _data_support import TOKEN, gather, make_app, request_body

DEFAULT = ("http://127.0.0.1", "http://localhost", "http://[::1]")


@pytest.mark.parametrize("url", [
    "http://localhost:8080/fhir",
    "http://LOCALHOST/fhir",
    "http://localhost./r4",
    "http://127.0.0.1:8080/fhir",
    "http://[::1]:9000/baseR4",
    "http://127.0.0.1",
])
def test_default_allows_loopback(url):
    assert refusal_reason(url, DEFAULT) is None


@pytest.mark.parametrize("url", [
    "http://localhost.evil.com/fhir",
    "http://localhost@evil.com/fhir",
    "http://evil.com/localhost",
    "http://127.0.0.2:8080/fhir",  # loopback, but not on the list
    "https://localhost/fhir",  # scheme differs from the entry
    "http://localhost:8080/fhir/../admin",
    "http://localhost:8080/fhir/%2e%2e/admin",
    "http://localhost:8080/fhir?x=1",
    "http://localhost:8080/fhir#frag",
    "ftp://localhost/fhir",
    "http://localhost:99999/fhir",
    "localhost/fhir",
    "",
])
def test_default_refuses(url):
    assert refusal_reason(url, DEFAULT) is not None


@pytest.mark.parametrize("url,allowed", [
    ("https://ehr.example.org/fhir", True),
    ("https://ehr.example.org/fhir/r4", True),
    ("https://ehr.example.org/fhirx", False),  # path boundary
    ("https://ehr.example.org/other", False),
    ("https://ehr.example.org:8443/fhir", False),  # no port in the entry: 443 only
    ("https://EHR.example.org/fhir", True),
    ("https://ehr.example.org.evil.com/fhir", False),
    ("http://ehr.example.org/fhir", False),  # https required off loopback
])
def test_entry_with_path(url, allowed):
    assert (refusal_reason(url, ("https://ehr.example.org/fhir",)) is None) is allowed


def test_entry_port_rules():
    assert refusal_reason("https://ehr.example.org:8443/fhir", ("https://ehr.example.org:8443",)) is None
    assert refusal_reason("https://ehr.example.org/fhir", ("https://ehr.example.org:443",)) is None
    assert refusal_reason("https://ehr.example.org:9443/fhir", ("https://ehr.example.org:8443",))
    # Without a port, an entry admits the default port, or any port on loopback.
    assert refusal_reason("https://ehr.example.org:443/fhir", ("https://ehr.example.org/fhir",)) is None
    assert refusal_reason("http://localhost:5555/fhir", ("http://localhost",)) is None
    assert refusal_reason("http://localhost:5555/fhir", ("http://localhost:8080",))


def test_plain_http_outside_loopback_is_refused_even_if_listed_or_star():
    assert refusal_reason("http://ehr.example.org/fhir", ("http://ehr.example.org",))
    assert refusal_reason("http://ehr.example.org/fhir", ("*",))
    assert refusal_reason("https://ehr.example.org/fhir", ("*",)) is None
    assert refusal_reason("http://127.0.0.5:8080/fhir", ("*",)) is None


def test_star_is_refused_by_config_when_auth_is_required(tmp_path):
    trust = tmp_path / "trust.json"
    trust.write_text("{}")
    with pytest.raises(ConfigError):
        make_app(auth="required", trusted_issuers=str(trust), fhir_allowlist="*")


def test_next_links_must_stay_under_fhir_server():
    base = "https://ehr.example.org/fhir"
    assert same_base("https://ehr.example.org/fhir?_getpages=1", base)
    assert same_base("https://ehr.example.org:443/fhir/Observation?page=2", base)
    assert not same_base("https://ehr.example.org/fhirx?page=2", base)
    assert not same_base("https://ehr.example.org.evil.com/fhir?page=2", base)
    assert not same_base("https://user@ehr.example.org/fhir?page=2", base)
    assert not same_base("http://ehr.example.org/fhir?page=2", base)
    assert not same_base("https://ehr.example.org/fhir/../admin", base)


@pytest.mark.parametrize("server", [
    "http://localhost.evil.com/fhir",
    "http://localhost.evil.com:8080",
    "http://10.0.0.5/fhir",  # plain http to a non-loopback host
    "https://ehr.example.org/fhir",  # https, but not on the default list
    "http://localhost@evil.com/fhir",
    # Issue 21 M4: Tomcat (HAPI) reads `..;` as `..`, and `;` starts a path parameter.
    "http://localhost:8080/fhir/..;/admin",
    "http://localhost:8080/fhir/..;x=1/admin",
    "http://localhost:8080/fhir/%2e%2e;/admin",
    "http://localhost:8080/fhir/%2E%2E%3B/admin",
    "http://localhost:8080/fhir;jsessionid=1",
    "http://localhost:8080/fhir/%252e%252e/admin",
])
def test_refused_server_gets_no_request_and_the_log_says_why(server, caplog):
    app = make_app()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        with caplog.at_level(logging.WARNING, logger="cds_service.fhir.data"):
            with pytest.raises(PreconditionFailed) as err:
                gather(app, request_body(server=server))
        assert len(rsps.calls) == 0
    assert "allowlist" in err.value.diagnostics and "patient, labs" in err.value.diagnostics
    refused = [r for r in caplog.records if r.getMessage() == "fhirServer refused, no request sent"]
    assert refused and refused[0].fields["reason"]
    assert TOKEN not in caplog.text and "evil.com/fhir" not in err.value.diagnostics


def test_configured_https_server_is_called():
    app = make_app(fhir_allowlist="https://ehr.example.org/fhir")
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, "https://ehr.example.org/fhir/r4", status=401)
        with pytest.raises(PreconditionFailed):
            gather(app, request_body(server="https://ehr.example.org/fhir/r4"))
        assert len(rsps.calls) == 1
