"""§19.15 matrix, a subset by self-fetch: the reference patients loaded into the real FHIR server
(Medplum router, tests/integration/conftest.py), order-select sent over HTTP to the served app with
**no prefetch**, so the service reads every input from the FHIR server itself. Expectations are the
same cells as the prefetch module (tests/integration/order_matrix.py). Runs when the order check
is v3 (`order_check.V3`) or CDS_MATRIX=1, like the prefetch module.
"""
from __future__ import annotations

import json

import pytest
import requests

from cds_service.cli.integration.fixtures import load_fixtures
from integration.order_matrix import DRAFT, PATIENT, expect
from integration.test_order_matrix import PATHS, build_body, describe, draft_resource, needs_v3, problems

pytestmark = [pytest.mark.integration, needs_v3]

# One or more cells per kind of finding, chosen to cover every data path the self-fetch reads:
# stops (conditions, labs), HIT (conditions + platelet trend), renal (creatinine in µmol/L, dialysis
# Procedure + ESKD Condition), weight (body window), pregnancy, home statements, active orders,
# argatroban infusions, scope (encounters, covid tests).
SUBSET = [
    ("cov-renal-umol", "E40"), ("cov-renal-umol", "E40b"), ("cov-renal-umol", "F2.5"),
    ("cov-haemodialysis", "E60b"), ("cov-haemodialysis", "Db150"), ("cov-crcl-lt15", "A5"),
    ("cov-plt-lt25", "A5"), ("cov-active-bleed", "W5"), ("cov-hit-history", "E40"),
    ("cov-hit-acute", "W5"), ("cov-plt-fall", "E40"), ("cov-argatroban", "E40"),
    ("cov-home-doac", "A5"), ("cov-home-doac", "E1kg"), ("cov-pregnant", "W5"),
    ("cov-no-weight", "E1kg"), ("cov-bmi-40", "E40"), ("cov-non-covid", "E150b"),
    ("cov-outpatient", "E150b"), ("cov-healthy-control", "E40"), ("cov-ward-therapeutic", "E1kg"),
    ("cov-icu-therapeutic", "A5"), ("cov-sic-imv", "E40b"),
]


@pytest.fixture(scope="module")
def loaded(fhir_server):
    results = load_fixtures(fhir_server)
    assert [r.name for r in results if not r.ok] == [], [r.message for r in results if not r.ok]
    return fhir_server


@pytest.mark.parametrize("pid,key", [pytest.param(p, k, id=f"{p}×{k}") for p, k in SUBSET])
def test_matrix_cell_self_fetch(loaded, cds_service_url, pid, key):
    patient = PATIENT[pid]
    body = build_body("order-select", pid, [draft_resource(key, pid, patient.dosing_weight)], None, loaded)
    resp = requests.post(f"{cds_service_url}{PATHS['order-select']}", data=json.dumps(body), timeout=60,
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text[:800]
    cards = resp.json()["cards"]
    assert problems(expect(patient, DRAFT[key]), cards) == [], describe(cards)
