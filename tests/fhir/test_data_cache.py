"""The FHIR cache: keyed by server, query and token hash; only successes; isolated copies."""
from __future__ import annotations

import pytest
import responses

from cds_service.runtime.errors import PreconditionFailed
from _data_support import (app, rsps,  # noqa: F401 (fixtures)
                           LABS, MEDICATION, FakeFhir, gather, make_app, queries, request_body,
                           server_answers, service_of)


@pytest.fixture(params=["memory", "redis"])
def cache_config(request):
    """Issue 16: the cache suite runs against the in-process cache and Redis (CDS_CACHE)."""
    if request.param == "memory":
        return {}
    import backends
    return {"cache": backends.REDIS_URL, "redis_prefix": request.getfixturevalue("redis_prefix")}


@pytest.fixture
def app(cache_config):  # noqa: F811 - this module's app runs on both caches
    return make_app(**cache_config)


def answers(app):
    return server_answers(service_of(app)) | {"Medication/m1": MEDICATION}


def test_one_tokens_cache_never_serves_another_token(app, rsps):
    fake = FakeFhir(rsps, answers(app))
    first = gather(app, request_body(token="token-of-alice"))
    other = gather(app, request_body(token="token-of-bob"))
    assert first.fhir_calls == 2 and other.fhir_calls == 2  # bob's call went to the server
    assert [h["Authorization"] for h in fake.headers] == ["Bearer token-of-alice"] * 2 + ["Bearer token-of-bob"] * 2
    anon = gather(app, request_body(token=None))
    assert anon.fhir_calls == 2 and "Authorization" not in fake.headers[-1]
    again = gather(app, request_body(token="token-of-alice"))
    assert again.fhir_calls == 0 and again.resources == first.resources


def test_cache_is_per_fhir_server(rsps, cache_config):
    app = make_app(fhir_allowlist="http://127.0.0.1,http://localhost", **cache_config)
    service = service_of(app)
    FakeFhir(rsps, answers(app))
    FakeFhir(rsps, server_answers(service) | {"Medication/m1": MEDICATION}, base="http://localhost:9090/fhir")
    gather(app, request_body())
    assert gather(app, request_body(server="http://localhost:9090/fhir")).fhir_calls == 2


def test_failures_are_not_cached(app, rsps):
    service = service_of(app)
    data = answers(app)
    data[queries(service)["labs"]] = 500
    FakeFhir(rsps, data)
    with pytest.raises(PreconditionFailed):
        gather(app, request_body())
    rsps.reset()
    fake = FakeFhir(rsps, answers(app))
    got = gather(app, request_body())
    # Successful keys of the failed call were cached; labs was not, so it alone is asked for.
    assert fake.batches == [[queries(service)["labs"]]]
    assert got.by_key["labs"] == LABS


def test_prefetched_data_is_not_cached(app, rsps):
    service = service_of(app)
    fake = FakeFhir(rsps, answers(app))
    prefetch = {"labs": {"resourceType": "Bundle", "type": "searchset"}}
    gather(app, request_body(prefetch))
    assert queries(service)["labs"] not in fake.batches[0]
    gather(app, request_body())
    assert fake.batches[-1] == [queries(service)["labs"]]


def test_mutating_returned_resources_does_not_touch_the_cache(app, rsps):
    FakeFhir(rsps, answers(app))
    first = gather(app, request_body())
    first.by_key["labs"][0]["status"] = "entered-in-error"
    first.by_key["labs"].clear()
    assert gather(app, request_body()).by_key["labs"] == LABS


def test_cache_can_be_disabled(rsps):
    app = make_app(fhir_cache_size=0)
    FakeFhir(rsps, answers(app))
    gather(app, request_body())
    assert gather(app, request_body()).fhir_calls == 2


def test_ttl_zero_turns_the_cache_off_so_a_revoked_token_is_never_served_from_it(rsps, monkeypatch):
    """Issue 14: a FHIR token revoked at the EHR is served from the cache for up to
    CDS_FHIR_CACHE_TTL seconds (the cache is keyed by the token's hash, and a hit sends
    nothing to the FHIR server). A site that will not accept that sets the TTL to 0."""
    monkeypatch.setenv("CDS_FHIR_CACHE_TTL", "0")
    app = make_app()
    assert app.extensions["cds"].config.fhir_cache_ttl == 0
    layer = app.extensions["cds"].extensions["data"]
    assert layer.cache is None
    fake = FakeFhir(rsps, answers(app))
    gather(app, request_body(token="token-later-revoked"))
    again = gather(app, request_body(token="token-later-revoked"))
    assert again.fhir_calls == 2  # asked the server again: it can refuse a revoked token
    assert [h["Authorization"] for h in fake.headers] == ["Bearer token-later-revoked"] * 4


def test_with_the_default_ttl_the_second_call_is_served_from_the_cache(app, rsps):
    FakeFhir(rsps, answers(app))
    gather(app, request_body(token="t-1234567890"))
    assert gather(app, request_body(token="t-1234567890")).fhir_calls == 0


def test_negative_ttl_is_a_config_error(monkeypatch):
    from cds_service.config import ConfigError
    with pytest.raises(ConfigError, match="CDS_FHIR_CACHE_TTL"):
        make_app(fhir_cache_ttl=-1)


def test_cache_is_bounded(rsps):
    app = make_app(fhir_cache_size=3)
    FakeFhir(rsps, answers(app))
    gather(app, request_body())
    layer = app.extensions["cds"].extensions["data"]
    assert len(layer.cache) == 3


def test_outsize_answers_are_not_cached(cache_config):
    from cds_service.fhir.data import MAX_CACHED_ENTRY_BYTES
    layer = make_app(**cache_config).extensions["cds"].extensions["data"]
    big = [{"resourceType": "Observation", "id": "x", "note": [{"text": "y" * MAX_CACHED_ENTRY_BYTES}]}]
    layer._cache_put(("http://127.0.0.1/fhir", "Observation?x", "anon"), big)
    assert layer._cache_get(("http://127.0.0.1/fhir", "Observation?x", "anon")) is None
    small = [{"resourceType": "Observation", "id": "x"}]
    layer._cache_put(("http://127.0.0.1/fhir", "Observation?y", "anon"), small)
    assert layer._cache_get(("http://127.0.0.1/fhir", "Observation?y", "anon")) == small


# -- issue 16: the shared cache in Redis ---------------------------------------------------------------
def test_redis_cache_entries_expire_with_the_ttl_and_keys_hide_the_query(redis_prefix):
    import backends
    import redis
    layer = make_app(cache=backends.REDIS_URL, redis_prefix=redis_prefix, fhir_cache_ttl=30) \
        .extensions["cds"].extensions["data"]
    ckey = ("http://127.0.0.1/fhir", "Observation?patient=pat-secret-1", "anon")
    layer._cache_put(ckey, [{"resourceType": "Observation", "id": "o"}])
    client = redis.Redis.from_url(backends.REDIS_URL)
    [key] = list(client.scan_iter(match=redis_prefix + "*"))
    assert b"pat-secret-1" not in key and key.startswith((redis_prefix + "fhir:").encode())
    assert 0 < client.pttl(key) <= 30_000


def test_redis_down_calls_go_on_without_the_cache(rsps, caplog):
    """Nothing listens on the port (Redis unreachable): every call is a miss and goes to the
    FHIR server, the answer is right, the metric counts the errors, one log line."""
    import socket
    from cds_service.runtime import metrics
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = make_app(cache=f"redis://127.0.0.1:{port}/0", redis_timeout_ms=50)
    FakeFhir(rsps, answers(app))
    before = metrics.FHIR_CACHE.labels("error", "default")._value.get()
    caplog.set_level("ERROR")
    first = gather(app, request_body())
    again = gather(app, request_body())
    assert first.fhir_calls == again.fhir_calls == 2 and again.resources == first.resources
    assert metrics.FHIR_CACHE.labels("error", "default")._value.get() - before >= 4
    assert sum("FHIR cache (Redis) unavailable" in r.getMessage() for r in caplog.records) == 1
