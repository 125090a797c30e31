"""Start-up checks: auth modes, the production refusal (app, wsgi, `serve`), the trust file."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service import cli, create_app
from cds_service.config import ConfigError
from cds_service.security.trust import load_trust_file
from security_helpers import ISS, JWKS_URL, public_jwk
from security_helpers import es_key, jwks, make_app, rs_key  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_TRUST = ROOT / "conformance" / "sandbox-trust.json"
REFUSAL = "refusing to start in production with CDS_AUTH=off"


@pytest.fixture
def clean_env(monkeypatch):
    """No CDS_* variable from the outer environment; restored afterwards (serve writes CDS_ENV and
    the serving settings)."""
    for name in list(os.environ):
        if name.startswith("CDS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CDS_ENV", "development")
    for name in ("CDS_BODY_TIMEOUT", "CDS_THREADS", "CDS_ACCESS_LOG"):  # serve writes these for the workers
        monkeypatch.setenv(name, "true" if name == "CDS_ACCESS_LOG" else "15")
    return monkeypatch


def test_auth_off_logs_a_loud_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    create_app({"database": str(tmp_path / "db"), "auth": "off"})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "CDS_AUTH=off" in r.getMessage()]
    assert warnings and "DISABLED" in warnings[0].getMessage()


def test_auth_required_logs_no_auth_off_warning(make_app, caplog):
    caplog.set_level(logging.WARNING)
    make_app()
    assert not [r for r in caplog.records if "CDS_AUTH=off" in r.getMessage()]


def test_production_refuses_auth_off(tmp_path):
    with pytest.raises(ConfigError, match=REFUSAL):
        create_app({"database": str(tmp_path / "db"), "env": "production", "auth": "off"})


def test_production_override_starts_with_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    app = create_app({"database": str(tmp_path / "db"), "env": "production", "auth": "off",
                      "allow_insecure_production": True})
    assert app.test_client().get("/healthz").status_code == 200
    assert any("CDS_ALLOW_INSECURE_PRODUCTION" in r.getMessage() for r in caplog.records)


def test_production_with_auth_required_starts(make_app):
    make_app(env="production", public_base_url="https://cds.example.org")


def _import_wsgi(env: dict) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    return subprocess.run([sys.executable, "-c", "import cds_service.wsgi"], cwd=ROOT,
                          env={**base, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.server  # imports cds_service.wsgi in two subprocesses: left out by --fast
def test_wsgi_import_refuses_production_without_auth_and_accepts_the_override(tmp_path):
    refused = _import_wsgi({"CDS_ENV": "production", "CDS_DATABASE": str(tmp_path / "db")})
    assert refused.returncode != 0
    assert f"cds-service: {REFUSAL}" in refused.stderr
    allowed = _import_wsgi({"CDS_ENV": "production", "CDS_ALLOW_INSECURE_PRODUCTION": "true",
                            "CDS_DATABASE": str(tmp_path / "db")})
    assert allowed.returncode == 0, allowed.stderr
    assert "CDS_AUTH=off" in allowed.stderr  # the loud warning


@pytest.fixture
def execv(monkeypatch):
    calls = []

    def fake_execv(path, argv):
        calls.append({"argv": argv, "CDS_ENV": os.environ.get("CDS_ENV")})

    monkeypatch.setattr(cli.os, "execv", fake_execv)
    monkeypatch.setattr(cli, "_port_in_use", lambda host, port: None)  # whatever runs on :8000 here
    return calls


def test_serve_production_refuses_auth_off(clean_env, execv, capsys):
    assert cli.main(["serve", "--production"]) == 2
    assert execv == []
    assert REFUSAL in capsys.readouterr().err


def test_serve_refuses_when_cds_env_is_production(clean_env, execv, capsys):
    clean_env.setenv("CDS_ENV", "production")
    assert cli.main(["serve"]) == 2
    assert execv == [] and REFUSAL in capsys.readouterr().err


def test_serve_production_override_execs_gunicorn(clean_env, execv, capsys):
    clean_env.setenv("CDS_ALLOW_INSECURE_PRODUCTION", "true")
    cli.main(["serve", "--production"])
    assert len(execv) == 1
    assert execv[0]["argv"][-1] == "cds_service.asgi:app"
    assert execv[0]["CDS_ENV"] == "production"  # so the workers re-check it
    err = capsys.readouterr().err   # issue 22: JSON lines
    assert any(line["level"] == "WARNING" and line["msg"].startswith("CDS_AUTH=off")
               for line in map(json.loads, err.splitlines()))


def test_serve_production_with_auth_execs_gunicorn(clean_env, execv, tmp_path, jwks):
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps({ISS: {"jwks": jwks}}))
    clean_env.setenv("CDS_AUTH", "required")
    clean_env.setenv("CDS_TRUSTED_ISSUERS", str(trust))
    cli.main(["serve", "--production"])
    assert len(execv) == 1 and execv[0]["CDS_ENV"] == "production"


def test_serve_reports_a_broken_trust_file_before_starting(clean_env, execv, tmp_path, capsys):
    trust = tmp_path / "trust.json"
    trust.write_text("{not json")
    clean_env.setenv("CDS_AUTH", "required")
    clean_env.setenv("CDS_TRUSTED_ISSUERS", str(trust))
    assert cli.main(["serve"]) == 2
    assert execv == [] and "is not valid JSON (line 1" in capsys.readouterr().err


# --- algorithms ---------------------------------------------------------------------------

@pytest.mark.parametrize("algs", ["HS256", "none", "ES384,HS384", "EdDSA"])
def test_only_asymmetric_algorithms_may_be_configured(make_app, algs):
    with pytest.raises(ConfigError, match="only asymmetric algorithms"):
        make_app(jwt_algorithms=algs)


def test_max_lifetime_bounds(make_app):
    with pytest.raises(ConfigError, match="CDS_JWT_MAX_LIFETIME"):
        make_app(jwt_max_lifetime=10)


# --- the trust file -------------------------------------------------------------------------

def _write(tmp_path, doc) -> str:
    path = tmp_path / "trust.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def _bad_docs(rsa_small, es_public):
    return [
        ("{", "is not valid JSON"),
        ([], "must hold a JSON object"),
        ({}, "names no issuer"),
        ({"_comment": "only a comment"}, "names no issuer"),
        ({ISS: "https://x"}, "must be a JSON object"),
        ({ISS: {}}, "exactly one of 'jwks'"),
        ({ISS: {"jwks": {"keys": [es_public]}, "jwks_url": JWKS_URL}}, "exactly one of 'jwks'"),
        ({ISS: {"jwks_uri": JWKS_URL}}, "unknown keys ['jwks_uri']"),
        ({ISS: {"jwks": {"keys": []}}}, "at least one key"),
        ({ISS: {"jwks": {"keys": [es_public]}, "jku": [JWKS_URL]}}, "'jku' applies only with 'jwks_url'"),
        ({ISS: {"jwks_url": "http://ehr.example.org/jwks"}}, "must be an https URL"),
        ({ISS: {"jwks_url": JWKS_URL, "jku": "https://x.example/jwks"}}, "'jku' must be a list"),
        ({ISS: {"jwks_url": JWKS_URL, "jku": ["ftp://x.example/jwks"]}}, "must be an https URL"),
        ({ISS: {"jwks_url": JWKS_URL, "tenant": []}}, "omit it to accept any tenant"),
        ({ISS: {"jwks_url": JWKS_URL, "tenant": [1]}}, "'tenant' must be"),
        ({ISS: {"jwks": {"keys": [{**es_public, "d": "secret"}]}}}, "private or symmetric key material"),
        ({ISS: {"jwks": {"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}}}, "private or symmetric"),
        ({ISS: {"jwks": {"keys": [{**es_public, "kid": None}]}}}, "has no 'kid'"),
        ({ISS: {"jwks": {"keys": [es_public, es_public]}}}, "duplicate kid"),
        ({ISS: {"jwks": {"keys": [{**es_public, "alg": "HS256"}]}}}, "only asymmetric"),
        ({ISS: {"jwks": {"keys": [{**es_public, "use": "enc"}]}}}, "not 'sig'"),
        ({ISS: {"jwks": {"keys": [{**es_public, "x": "AAAA"}]}}}, "not a valid EC public key"),
        ({ISS: {"jwks": {"keys": [public_jwk(rsa_small, "small")]}}}, "at least 2048 bits"),
        ({ISS: {"jwks": {"keys": [public_jwk(ec.generate_private_key(ec.SECP256K1()), "k1")]}}},
         "unsupported curve"),
    ]


def test_trust_file_errors_are_clear(tmp_path, es_key):
    rsa_small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    es_public = public_jwk(es_key, "k1")
    for doc, message in _bad_docs(rsa_small, es_public):
        with pytest.raises(ConfigError) as info:
            load_trust_file(_write(tmp_path, doc))
        text = str(info.value)
        assert message in text and "CDS_TRUSTED_ISSUERS file" in text, (doc, text)
        assert "secret" not in text  # key material is never echoed


def test_missing_trust_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_trust_file(str(tmp_path / "nope.json"))


def test_auth_required_needs_a_trust_file(tmp_path):
    with pytest.raises(ConfigError, match="CDS_TRUSTED_ISSUERS"):
        create_app({"database": str(tmp_path / "db"), "auth": "required"})


def test_trust_file_full_format(tmp_path, es_key, rs_key):
    issuers = load_trust_file(_write(tmp_path, {
        "_comment": "comments are allowed",
        ISS: {"_comment": "inline", "jwks": {"keys": [public_jwk(es_key, "e"), public_jwk(rs_key, "r", "RS384")]},
              "tenant": "t1"},
        "https://other.example": {"jwks_url": JWKS_URL, "jku": ["https://keys.example/jwks.json"],
                                  "tenant": ["a", "b"]},
        "http://localhost:9999": {"jwks_url": "http://127.0.0.1:9999/jwks.json"},
    }))
    assert set(issuers) == {ISS, "https://other.example", "http://localhost:9999"}
    inline = issuers[ISS]
    assert inline.tenants == {"t1"} and inline.jwks_url is None and inline.jku == set()
    assert inline.keys["e"].fits("ES384") and not inline.keys["e"].fits("ES256")
    assert not inline.keys["e"].fits("RS384")
    assert inline.keys["r"].fits("RS384") and not inline.keys["r"].fits("PS384")  # JWK alg pins it
    other = issuers["https://other.example"]
    assert other.keys is None and other.jku == {JWKS_URL, "https://keys.example/jwks.json"}


def test_sandbox_trust_file_is_public_only_and_marked_for_testing():
    doc = json.loads(SANDBOX_TRUST.read_text())
    assert "TESTING ONLY" in doc["_comment"] and "private key" in doc["_comment"].lower()
    (key,) = doc["https://sandbox.cds-hooks.org"]["jwks"]["keys"]
    assert key["kid"] == "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
    assert key["kty"] == "EC" and key["crv"] == "P-384" and key["alg"] == "ES384"
    assert not {"d", "p", "q", "k"} & set(key)
    issuers = load_trust_file(str(SANDBOX_TRUST))
    loaded = issuers["https://sandbox.cds-hooks.org"].keys[key["kid"]]
    assert loaded.fits("ES384") and loaded.key.curve.name == "secp384r1"
