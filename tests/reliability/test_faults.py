"""Fault injection: a local FHIR server (bench.fhir_stub) that misbehaves, reached by self-fetch.

Every hook call here has no prefetch, so all nine keys are fetched from `fhirServer`. For each
fault the call must answer within CDS_FHIR_TIMEOUT + 0.5 s (the timeout is set to 1 s to keep
CI fast) with a 412 OperationOutcome (every key is required, so there is no degraded card),
never a 500 and never a hang. The elapsed-time checks are behavioural bounds (the deadline
is honoured) with generous margins, not speed measurements.
"""
from __future__ import annotations

import threading
import time
import tracemalloc

import orjson
import pytest

from bench import synth
from bench.fhir_stub import FhirStub, closed_port_url
from cds_service import create_app
from cds_service.fhir import client as fhir_client
from cds_service.fhir.data import MAX_PAGES
from conftest import assert_operation_outcome, assert_valid_cds_response

TIMEOUT = 1.0
BOUND = TIMEOUT + 0.5
PV = synth.SERVICE_PATH["patient-view"]


@pytest.fixture(scope="module")
def stub():
    with FhirStub(latency=0.0, slow_seconds=30) as server:
        yield server


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app({"database": str(tmp_path_factory.mktemp("faults") / "cds.sqlite3"),
                       "fhir_timeout": TIMEOUT, "fhir_cache_size": 0, "log_level": "ERROR"})


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def hook_call(client, fhir_server: str, pid: str = "fault-p", hook: str = "patient-view"):
    body = synth.hook_request(hook, pid, with_prefetch=False, fhir_server=fhir_server)
    t0 = time.monotonic()
    resp = client.post(synth.SERVICE_PATH[hook], data=orjson.dumps(body), content_type="application/json")
    return resp, time.monotonic() - t0


def test_healthy_stub_gives_cards_by_self_fetch(client, stub):
    """The baseline the faults are measured against: same stub, no fault, a real card."""
    stub.reset_counts()
    resp, _ = hook_call(client, stub.url())
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    body = resp.get_json()
    assert_valid_cds_response(body)
    assert [c["indicator"] for c in body["cards"]] == ["warning"]
    assert stub.counts["ok"] == 1 and stub.batch_entries == 13  # one batch round trip (13 keys, v2)


FAULTS = [
    "status500", "status503", "status401", "status404", "garbage", "truncated", "html", "wrongtype",
    "huge", "hugechunked", "slow", "drip", "reset", "redirect",
    # The fault on one resource type only: the batch fails, the GET fallback gets all but that
    # type. With slow~Observation the batch itself never answers, so every key misses the deadline.
    "status500~Condition", "slow~Observation", "garbage~Procedure",
]


@pytest.mark.parametrize("mode", FAULTS)
def test_fault_gives_412_within_the_deadline(client, stub, mode):
    resp, elapsed = hook_call(client, stub.url(mode))
    body = assert_operation_outcome(resp, 412, "incomplete")
    assert elapsed < BOUND, f"{mode}: {elapsed:.2f} s"
    diagnostics = body["issue"][0]["diagnostics"]
    assert "Required FHIR data could not be obtained" in diagnostics
    if "~" in mode and not mode.startswith("slow"):  # only the faulty type's keys are named
        rtype = mode.split("~")[1]
        failing = {k for k, t in synth.prefetch_templates().items() if t.startswith(rtype)}
        named = {k for k in synth.prefetch_templates() if f"{k} (" in diagnostics or f"{k}," in diagnostics}
        assert named == failing, diagnostics


def test_connection_refused_gives_412_quickly(client):
    resp, elapsed = hook_call(client, closed_port_url())
    body = assert_operation_outcome(resp, 412, "incomplete")
    assert "could not be reached" in body["issue"][0]["diagnostics"]
    assert elapsed < BOUND


@pytest.mark.parametrize("mode", ["loop", "endless"])
def test_looping_next_links_stop_at_the_page_cap(client, stub, mode):
    """A `next` link that points to itself, or goes on forever: the key stops at the page cap
    (or the deadline), and the call still answers in time, without a 500."""
    stub.reset_counts()
    resp, elapsed = hook_call(client, stub.url(mode))
    assert elapsed < BOUND
    assert resp.status_code in (200, 412), resp.get_data(as_text=True)[:300]
    if resp.status_code == 200:
        assert_valid_cds_response(resp.get_json())
    # one batch (not a batch-response here), then per key a first page and at most
    # MAX_PAGES - 1 further ones
    assert stub.counts[mode] <= 1 + 13 * MAX_PAGES   # 13 keys (v2)


def test_huge_body_memory_is_bounded(client, stub):
    """A 50 MB answer (declared or chunked) is cut at the client's byte cap, not buffered."""
    for mode in ("huge", "hugechunked"):
        tracemalloc.start()
        try:
            resp, _ = hook_call(client, stub.url(mode))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert resp.status_code == 412
        assert "larger than" in resp.get_json()["issue"][0]["diagnostics"]
        assert peak < 3 * fhir_client.MAX_RESPONSE_BYTES, f"{mode}: peak {peak / 1e6:.0f} MB"


def test_stuck_fetches_do_not_starve_later_calls(app, stub):
    """More concurrent hook calls against a server that trickles bytes than the FHIR thread
    pool has workers; afterwards a call to a healthy server must still get its data within
    the deadline (stuck downloads must end, not hold the pool)."""
    n = fhir_client.POOL_WORKERS + 8
    statuses: list[int] = []

    def one(i: int) -> None:
        resp, _ = hook_call(app.test_client(), stub.url("drip"), pid=f"drip-{i}")
        statuses.append(resp.status_code)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert statuses == [412] * n
    resp, elapsed = hook_call(app.test_client(), stub.url(), pid="after-drip")
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert elapsed < BOUND


def test_order_hooks_fail_safe_too(client, stub):
    for hook in ("order-select", "order-sign"):
        resp, elapsed = hook_call(client, stub.url("status503"), hook=hook)
        assert_operation_outcome(resp, 412, "incomplete")
        assert elapsed < BOUND
