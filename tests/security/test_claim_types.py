"""Issue 14, finding 3: a signed token whose claims have unexpected JSON types is a 401, never
a 500. Before: a `tenant` array or object against an issuer with a tenant allow-list raised
TypeError (unhashable) in the allow-list check: 500.

Every token here is correctly signed by a trusted key, so only the claim's type is wrong.
"""
from __future__ import annotations

import json

import pytest

from conftest import assert_operation_outcome
from security_helpers import BASE, ISS, PV, bearer, hook_body
from security_helpers import es_key, jwks, make_app, mint, rs_key  # noqa: F401  (fixtures)

ODD_VALUES = [["a", "b"], [], {"x": 1}, {}, 1, 0, 1.5, True, False, None, "", [[1]], [{"a": 1}]]


def _call(app, token):
    return app.test_client().post(PV, data=json.dumps(hook_body()), content_type="application/json",
                                  headers=bearer(token))


def _assert_401(resp):
    assert resp.status_code == 401, resp.get_data(as_text=True)
    assert_operation_outcome(resp, 401, "login")


@pytest.fixture
def tenant_app(make_app, jwks):
    return make_app(trust={ISS: {"jwks": jwks, "tenant": ["hospital-a", "hospital-b"]}})


@pytest.mark.parametrize("tenant", ODD_VALUES + [["hospital-a"], {"hospital-a": True}, "hospital-c"],
                         ids=repr)
def test_tenant_of_any_other_type_or_value_is_401_with_an_allow_list(tenant_app, mint, tenant):
    _assert_401(_call(tenant_app, mint(tenant=tenant)))


@pytest.mark.parametrize("tenant", [["hospital-a"], {"id": "hospital-a"}, 7, True], ids=repr)
def test_tenant_that_is_not_a_string_is_401_without_an_allow_list(make_app, mint, tenant):
    _assert_401(_call(make_app(), mint(tenant=tenant)))


def test_a_string_tenant_on_the_allow_list_is_accepted(tenant_app, mint):
    assert _call(tenant_app, mint(tenant="hospital-a")).status_code == 200


NOT_NUMBERS = [v for v in ODD_VALUES if not isinstance(v, (int, float)) or isinstance(v, bool)] + ["1"]
NOT_STRINGS = [v for v in ODD_VALUES if not isinstance(v, str)]


@pytest.mark.parametrize("claim,value",
                         [(c, v) for c in ("iss", "aud", "jti", "sub") for v in NOT_STRINGS]
                         + [(c, v) for c in ("exp", "iat", "nbf") for v in NOT_NUMBERS], ids=repr)
def test_claims_of_unexpected_types_are_401(make_app, mint, claim, value):
    _assert_401(_call(make_app(), mint(**{claim: value})))


@pytest.mark.parametrize("claim,value", [
    ("exp", "9999999999"),        # a number as a string
    ("iat", "0"),
    ("exp", 1e308),               # finite but absurd
    ("exp", 10 ** 30),            # beyond 64 bits
    ("nbf", "soon"),
    ("aud", [BASE + PV, 1]),      # one right entry, one of another type
    ("aud", {"url": BASE + PV}),
    ("iss", [ISS]),
    ("jti", ["a"]),
    ("sub", {"id": "x"}),
])
def test_claims_with_right_looking_values_in_wrong_types_are_401(make_app, mint, claim, value):
    _assert_401(_call(make_app(), mint(**{claim: value})))


def test_non_finite_numbers_in_claims_are_401(make_app, es_key):
    """Python's json accepts NaN and Infinity (PyJWT decodes with it): exp=Infinity must not
    reach int() unguarded."""
    import time
    import uuid
    from security_helpers import ES_KID, b64
    from jwt.algorithms import get_default_algorithms
    app = make_app()
    for exp in ("Infinity", "NaN", "-Infinity", "1e400"):
        header = b64(json.dumps({"alg": "ES384", "typ": "JWT", "kid": ES_KID}).encode())
        payload = (f'{{"iss": "{ISS}", "aud": "{BASE + PV}", "exp": {exp}, "iat": {int(time.time())}, '
                   f'"jti": "{uuid.uuid4()}"}}')
        signing_input = f"{header}.{b64(payload.encode())}"
        signature = get_default_algorithms()["ES384"].sign(signing_input.encode(), es_key)
        _assert_401(_call(app, f"{signing_input}.{b64(signature)}"))
