"""CDS client JWT authentication through real HTTP (CDS Hooks notes §11, issue 6)."""
from __future__ import annotations

import json
import logging
import time

import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.runtime.errors import Unauthorized
from conftest import assert_operation_outcome
from security_helpers import (BASE, FEEDBACK, ISS, JWKS_URL, OTHER_JKU, PV, RS_KID, bearer,
                              feedback_body, hook_body, public_jwk, sign)
from security_helpers import es_key, jwks, make_app, mint, rs_key  # noqa: F401  (fixtures)

GENERIC = Unauthorized().diagnostics


def call(client, token=None, path=PV, body=None, headers=None):
    h = dict(headers or {})
    if token is not None:
        h.update(bearer(token))
    return client.post(path, json=body if body is not None else hook_body(), headers=h)


def assert_401(resp):
    body = assert_operation_outcome(resp, 401, "login")  # also asserts the CORS header
    # Generic: the body never says why.
    assert body["issue"][0]["diagnostics"] == GENERIC
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="cds-services"'


def rejection_reasons(caplog) -> list[str]:
    return [r.fields["reason"] for r in caplog.records if r.getMessage() == "authentication rejected"]


@pytest.fixture
def client(make_app):
    return make_app().test_client()


# --- accepted tokens --------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_valid_token_is_accepted(client, mint, alg):
    resp = call(client, mint(alg=alg))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert "cards" in resp.get_json()


def test_aud_array_containing_the_invoked_url_is_accepted(client, mint):
    assert call(client, mint(["https://elsewhere.example/x", BASE + PV])).status_code == 200


def test_expired_within_leeway_is_accepted(client, mint):
    # exp 30 s ago, iat 330 s ago: inside the 60 s leeway.
    assert call(client, mint(exp_in=-30, iat_in=-330)).status_code == 200


def test_typ_is_required(client, mint):
    assert_401(call(client, mint(header={"typ": None})))


def test_feedback_needs_a_token_for_its_own_url(client, mint):
    assert_401(call(client, None, FEEDBACK, feedback_body()))
    assert_401(call(client, mint(BASE + PV), FEEDBACK, feedback_body()))  # service URL != feedback URL
    resp = call(client, mint(BASE + FEEDBACK), FEEDBACK, feedback_body())
    assert resp.status_code == 200, resp.get_data(as_text=True)


def test_public_base_url_sets_the_expected_aud_behind_a_proxy(make_app, mint):
    client = make_app(public_base_url="https://cds.example.org/prefix").test_client()
    assert_401(call(client, mint(BASE + PV)))  # the URL the app sees is not what the EHR called
    assert call(client, mint("https://cds.example.org/prefix" + PV)).status_code == 200


def test_client_identity_is_exposed_without_the_token(make_app, mint):
    from cds_service import security

    token = mint(tenant="t1")
    with make_app().test_client() as client:
        assert call(client, token).status_code == 200
        identity = security.client_identity()
    assert identity.as_fields() == {"iss": ISS, "jti": identity.jti, "kid": "es-key-1", "tenant": "t1"}
    assert not any(part in repr(identity) for part in token.split("."))


# --- rejected tokens: every failure is the same generic 401 ------------------------------

def test_missing_header(client, caplog):
    caplog.set_level(logging.DEBUG)
    assert_401(call(client, None))
    assert rejection_reasons(caplog) == ["no Authorization header"]


@pytest.mark.parametrize("header", [
    "Bearer",
    "Bearer ",
    "Basic dXNlcjpwYXNzd29yZA==",
    "Bearer a.b",
    "Bearer not a jwt",
    "Bearer eyJ!!.eyJ.sig",
    "Bearer eyJhbGciOiJFUzM4NCJ9.%%%.abc",
    "Bearer e30.e30.",          # {}.{}. : no alg
    "Bearer bm90anNvbg.bm90anNvbg.c2ln",  # parts that are not JSON
])
def test_malformed_authorization(client, header):
    assert_401(client.post(PV, json=hook_body(), headers={"Authorization": header}))


def test_alg_none_is_rejected(client, mint, caplog):
    caplog.set_level(logging.DEBUG)
    assert_401(call(client, mint(alg="none")))
    assert rejection_reasons(caplog) == ["alg not allowed"]


def test_hs256_signed_with_the_public_key_is_rejected(client, es_key, rs_key, mint):
    # The classic key-confusion attack: HMAC keyed with the verifier's public key.
    for key in (es_key, rs_key):
        pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        token = mint(alg="HS256", key=pem, kid="es-key-1" if key is es_key else RS_KID)
        assert_401(call(client, token))


def test_wrong_aud(client, mint):
    assert_401(call(client, mint("https://cds.example.org" + PV)))
    assert_401(call(client, mint(BASE + PV + "/")))  # exact match only
    assert_401(call(client, mint(["https://a.example", "https://b.example"])))


def test_expired_beyond_leeway(client, mint, caplog):
    caplog.set_level(logging.DEBUG)
    assert_401(call(client, mint(exp_in=-120, iat_in=-420)))
    assert rejection_reasons(caplog) == ["token expired (exp beyond leeway)"]


def test_iat_far_in_the_future(client, mint):
    assert_401(call(client, mint(iat_in=600, exp_in=900)))


def test_exp_beyond_the_maximum_lifetime(make_app, mint):
    client = make_app(jwt_max_lifetime=600).test_client()
    assert call(client, mint(exp_in=600)).status_code == 200
    assert_401(call(client, mint(exp_in=600 + 61 + 5)))  # max lifetime + leeway exceeded


def test_unknown_iss(client, mint):
    assert_401(call(client, mint(iss="https://evil.example.org")))


def test_unknown_kid_with_inline_keys(client, mint):
    assert_401(call(client, mint(kid="no-such-kid")))


def test_signature_from_another_key_with_a_known_kid(client, mint):
    impostor = ec.generate_private_key(ec.SECP384R1())
    assert_401(call(client, mint(key=impostor)))


def test_wrong_key_type_for_alg(client, mint, rs_key, es_key, caplog):
    caplog.set_level(logging.DEBUG)
    # RS384 signature, kid naming the EC P-384 key; then ES384 claiming the RSA key's kid.
    assert_401(call(client, mint(alg="RS384", kid="es-key-1")))
    assert_401(call(client, mint(alg="ES384", kid=RS_KID)))
    assert rejection_reasons(caplog) == ["key type does not fit alg"] * 2


def test_jwk_alg_must_equal_token_alg(make_app, rs_key, mint):
    client = make_app({ISS: {"jwks": {"keys": [public_jwk(rs_key, RS_KID, "RS256")]}}},
                      jwt_algorithms="RS256,RS384").test_client()
    assert_401(call(client, mint(alg="RS384")))


def test_typ_other_than_jwt(client, mint):
    assert_401(call(client, mint(header={"typ": "at+jwt"})))


def test_kid_missing(client, mint, es_key):
    now = int(time.time())
    token = sign({"alg": "ES384", "typ": "JWT"},
                 {"iss": ISS, "aud": BASE + PV, "exp": now + 300, "iat": now, "jti": "x1"}, es_key, "ES384")
    assert_401(call(client, token))


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "aud", "iss"])
def test_missing_required_claim(client, mint, claim):
    assert_401(call(client, mint(drop=[claim])))


@pytest.mark.parametrize("claims", [{"exp": "soon"}, {"iat": True}, {"jti": 42}, {"jti": ""}])
def test_ill_typed_claims(client, mint, claims):
    assert_401(call(client, mint(**claims)))


def test_replayed_jti(client, mint, caplog):
    caplog.set_level(logging.DEBUG)
    token = mint()
    assert call(client, token).status_code == 200
    assert_401(call(client, token))
    assert rejection_reasons(caplog) == ["jti replayed"]


def test_same_jti_from_another_issuer_is_not_a_replay(make_app, jwks, mint):
    client = make_app({ISS: {"jwks": jwks}, "https://other.example": {"jwks": jwks}}).test_client()
    assert call(client, mint(jti="shared-jti")).status_code == 200
    assert call(client, mint(jti="shared-jti", iss="https://other.example")).status_code == 200


def test_tenant_checked_only_when_configured(make_app, jwks, mint):
    open_client = make_app({ISS: {"jwks": jwks}}).test_client()
    assert call(open_client, mint(tenant="anything")).status_code == 200
    client = make_app({ISS: {"jwks": jwks, "tenant": ["t1", "t2"]}}).test_client()
    assert call(client, mint(tenant="t2")).status_code == 200
    assert_401(call(client, mint(tenant="t3")))
    assert_401(call(client, mint()))  # no tenant claim at all


# --- endpoints that stay open --------------------------------------------------------------

@pytest.mark.parametrize("path", ["/cds-services", PV, FEEDBACK, "/healthz"])
def test_preflight_needs_no_token(client, path):
    resp = client.options(path, headers={"Origin": "https://sandbox.cds-hooks.org",
                                         "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": "authorization,content-type"})
    assert resp.status_code == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]


def test_healthz_needs_no_token(client):
    assert client.get("/healthz").status_code == 200


def test_discovery_open_by_default_and_a_token_there_is_ignored(client):
    assert client.get("/cds-services").status_code == 200
    assert client.get("/cds-services", headers=bearer("garbage")).status_code == 200


def test_discovery_closed(make_app, mint):
    client = make_app(discovery_open=False).test_client()
    assert_401(client.get("/cds-services"))
    assert client.head("/cds-services").status_code == 401
    assert_401(client.get("/cds-services", headers=bearer(mint(BASE + PV))))
    resp = client.get("/cds-services", headers=bearer(mint(BASE + "/cds-services")))
    assert resp.status_code == 200 and resp.get_json()["services"]


def test_unknown_service_still_needs_a_token(client, mint):
    assert_401(call(client, None, "/cds-services/nope"))
    assert_operation_outcome(call(client, mint(BASE + "/cds-services/nope"), "/cds-services/nope"),
                             404, "not-found")


def test_cors_origin_echoed_on_401(make_app):
    client = make_app(cors_origins="https://ehr.example.org").test_client()
    resp = client.post(PV, json=hook_body(), headers={"Origin": "https://ehr.example.org"})
    assert resp.status_code == 401
    assert resp.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"


# --- jwks_url and jku -----------------------------------------------------------------------

@pytest.fixture
def url_client(make_app):
    return make_app({ISS: {"jwks_url": JWKS_URL, "jku": [OTHER_JKU]}}).test_client()


def test_jwks_url_is_fetched_once_and_cached(url_client, mint, jwks):
    with responses.RequestsMock() as rsps:
        rsps.get(JWKS_URL, json=jwks)
        assert call(url_client, mint()).status_code == 200
        assert call(url_client, mint(alg="RS384")).status_code == 200
        assert call(url_client, mint(header={"jku": JWKS_URL})).status_code == 200
        assert len(rsps.calls) == 1


def test_unknown_kid_refetches_once_then_is_rate_limited(make_app, mint, jwks):
    from cds_service.security import jwks as jwks_module

    app = make_app({ISS: {"jwks_url": JWKS_URL}})
    client = app.test_client()
    fetcher = app.extensions["cds"].extensions["jwt_validator"].jwks
    now = [1000.0]
    fetcher.clock = lambda: now[0]
    with responses.RequestsMock() as rsps:
        rsps.get(JWKS_URL, json=jwks)
        assert call(client, mint()).status_code == 200
        assert len(rsps.calls) == 1
        assert_401(call(client, mint(kid="rotated-kid")))
        assert len(rsps.calls) == 2                      # exactly one refetch
        assert_401(call(client, mint(kid="another-new-kid")))
        assert_401(call(client, mint(kid="rotated-kid")))
        assert len(rsps.calls) == 2                      # rate-limited
        now[0] += jwks_module.REFETCH_INTERVAL + 1
        assert_401(call(client, mint(kid="rotated-kid")))
        assert len(rsps.calls) == 3                      # allowed again after the interval
        assert call(client, mint()).status_code == 200   # known kids unaffected
        assert len(rsps.calls) == 3


def test_rotated_key_is_found_by_the_refetch(make_app, mint, jwks, es_key):
    app = make_app({ISS: {"jwks_url": JWKS_URL}})
    client = app.test_client()
    new_key = ec.generate_private_key(ec.SECP384R1())
    rotated = {"keys": jwks["keys"] + [public_jwk(new_key, "new-kid")]}
    with responses.RequestsMock() as rsps:
        rsps.get(JWKS_URL, json=jwks)
        rsps.get(JWKS_URL, json=rotated)
        assert call(client, mint()).status_code == 200
        assert call(client, mint(key=new_key, kid="new-kid")).status_code == 200
        assert len(rsps.calls) == 2


def test_jku_not_on_the_list_is_never_fetched(url_client, mint, jwks):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(JWKS_URL, json=jwks)
        rsps.get("https://attacker.example/jwks.json", json=jwks)
        assert_401(call(url_client, mint(header={"jku": "https://attacker.example/jwks.json"})))
        assert_401(call(url_client, mint(header={"jku": JWKS_URL + "?x=1"})))
        assert len(rsps.calls) == 0


def test_listed_jku_is_fetched(url_client, mint, jwks):
    with responses.RequestsMock() as rsps:
        rsps.get(OTHER_JKU, json=jwks)
        assert call(url_client, mint(header={"jku": OTHER_JKU})).status_code == 200
        assert [c.request.url for c in rsps.calls] == [OTHER_JKU]


def test_jku_is_ignored_with_inline_keys(client, mint):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get("https://attacker.example/jwks.json", json={"keys": []})
        assert call(client, mint(header={"jku": "https://attacker.example/jwks.json"})).status_code == 200
        assert len(rsps.calls) == 0


@pytest.mark.parametrize("reply", [
    {"status": 500, "json": {"error": "down"}},
    {"status": 200, "body": "not json"},
    {"status": 200, "json": {"no": "keys"}},
    {"status": 302, "headers": {"Location": "https://attacker.example/jwks.json"}},
])
def test_jwks_fetch_failure_is_401_and_not_retried_at_once(url_client, mint, reply):
    with responses.RequestsMock() as rsps:
        rsps.get(JWKS_URL, **reply)
        assert_401(call(url_client, mint()))
        assert_401(call(url_client, mint()))
        assert len(rsps.calls) == 1


def test_fetched_jwks_private_and_odd_keys_are_skipped(url_client, mint, jwks, caplog):
    caplog.set_level(logging.DEBUG)
    es_public = next(k for k in jwks["keys"] if k["kid"] == "es-key-1")
    doc = {"keys": [{"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
                    {**es_public, "kid": "enc", "use": "enc"},
                    {**es_public, "kid": "with-d", "d": "AAAA"},
                    es_public]}
    with responses.RequestsMock() as rsps:
        rsps.get(JWKS_URL, json=doc)
        assert call(url_client, mint()).status_code == 200
    fetched = [r.fields["kids"] for r in caplog.records if r.getMessage() == "JWKS fetched"]
    assert fetched == [["es-key-1"]]


def test_sandbox_trust_file_rejects_tokens_not_signed_by_the_sandbox(make_app):
    from pathlib import Path

    trust = json.loads((Path(__file__).resolve().parents[2] / "conformance" / "sandbox-trust.json").read_text())
    client = make_app(trust).test_client()
    impostor = ec.generate_private_key(ec.SECP384R1())
    now = int(time.time())
    token = sign({"alg": "ES384", "typ": "JWT", "kid": "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f",
                  "jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"},
                 {"iss": "https://sandbox.cds-hooks.org", "aud": BASE + PV, "exp": now + 300,
                  "iat": now, "jti": "sb-1"}, impostor, "ES384")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        assert_401(call(client, token))
        assert len(rsps.calls) == 0  # the sandbox's jku is not fetched: the key is inline


def test_unknown_kid_on_a_cold_cache_fetches_once(make_app, mint, jwks):
    client = make_app({ISS: {"jwks_url": JWKS_URL}}).test_client()
    with responses.RequestsMock() as rsps:
        rsps.get(JWKS_URL, json=jwks)
        assert_401(call(client, mint(kid="not-published")))
        assert len(rsps.calls) == 1  # the set was just fetched; no second fetch for the same call


# --- the replay store contract ----------------------------------------------------------------

def test_a_shared_replay_store_plugs_in_through_extensions(make_app, mint):
    class RecordingStore:
        def __init__(self):
            self.calls = []

        def check_and_add(self, iss, jti, expires_at):
            self.calls.append((iss, jti, expires_at))
            return len(self.calls) == 1

    app = make_app()
    store = RecordingStore()
    app.extensions["cds"].extensions["replay_store"] = store  # as a storage layer would
    client = app.test_client()
    token = mint(jti="jti-1", exp_in=300)
    assert call(client, token).status_code == 200
    assert_401(call(client, mint()))
    (iss, jti, expires_at), _ = store.calls
    assert (iss, jti) == (ISS, "jti-1")
    assert abs(expires_at - (time.time() + 300 + 60)) < 5  # kept until exp + leeway


def test_full_in_memory_replay_store_fails_closed(make_app, mint, caplog):
    from cds_service.security.replay import InMemoryReplayStore

    app = make_app()
    app.extensions["cds"].extensions["replay_store"] = InMemoryReplayStore(maxsize=2)
    client = app.test_client()
    assert call(client, mint()).status_code == 200
    assert call(client, mint()).status_code == 200
    caplog.set_level(logging.WARNING)
    assert_401(call(client, mint()))
    assert any("replay store is full" in r.getMessage() for r in caplog.records)


def test_in_memory_replay_store_forgets_expired_jtis():
    from cds_service.security.replay import InMemoryReplayStore

    store = InMemoryReplayStore(maxsize=1)
    assert store.check_and_add(ISS, "a", time.time() - 1) is True  # already expired: not kept
    assert store.check_and_add(ISS, "b", time.time() + 60) is True
    assert store.check_and_add(ISS, "b", time.time() + 60) is False
