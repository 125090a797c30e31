"""A small soak for CI (the full one is `python -m bench.soak`, 5,000 requests).

400 mixed requests from 4 threads, a tenth against faulty FHIR endpoints (the fast faults
only), with a FHIR cache far smaller than the number of patients: never a 500 or an
unexpected status, and every in-process cache ends within its bound.
"""
from __future__ import annotations

import pytest

from bench import soak

pytestmark = pytest.mark.slow  # a small soak: left out by dev.py test --fast


def test_small_soak_has_no_server_error_and_bounded_caches():
    res = soak.run(total=400, threads=4, patients=120, fault_share=0.1, slow_faults=False,
                   cache_size=16, fhir_timeout=5.0, warmup=50, verbose=False)
    # 5 s, not 1 s: only fast faults run here, and on a loaded 2-core machine (xdist workers, a
    # browser) healthy self-fetches took over 1 s and came back 412 (issue 22: flaky in CI).
    assert res["server_errors"] == 0, res["failures"]
    assert res["failures"] == [], res["failures"]
    caches = res["caches"]
    assert "data.cache" in caches and "extract.verdicts" in caches
    for name, cache in caches.items():
        assert cache["size"] <= cache["bound"], (name, cache)
    # more distinct patients than entries: the FHIR cache really was exercised to its bound
    assert caches["data.cache"]["size"] == 16
    kinds = {key.split()[0] for key in res["statuses"]}
    assert kinds == {"prefetch", "self", "fault", "bad", "feedback", "discovery"}
