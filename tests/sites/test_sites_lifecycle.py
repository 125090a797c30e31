"""Review #4: the card lifecycle (repeat suppression, override snooze; clinical-rules §18.3)
is per site. FHIR ids are unique per EHR, not across hospitals: hospital B's history for
`Patient/x` seen by `Practitioner/1` must never withhold or snooze hospital A's card for its
own `Patient/x` and `Practitioner/1`."""
from __future__ import annotations

import functools
import json
import uuid
from datetime import datetime, timezone

import pytest

from cds_service import create_app
from cds_service.cli.examples import build
from sites_helpers import PV, Keys, write_sites

BASE = "http://localhost"


@pytest.fixture(scope="module")
def keys():
    return Keys()


@pytest.fixture
def client(tmp_path, keys):
    path = write_sites(tmp_path, keys)
    return create_app({"sites": str(path), "database": str(tmp_path / "cds.sqlite3"),
                       "audit_batch_ms": 0}).test_client()


@functools.lru_cache(maxsize=None)
def _built(scenario: str) -> str:
    # One build per scenario: its data is dated at build time, and two builds a second apart
    # would differ in the situation digest (§18.3), which ends a snooze early by design.
    return json.dumps(build(scenario))


def call(client, keys, who, tenant, scenario, user):
    body = json.loads(_built(scenario))
    body.pop("fhirServer", None)  # the prefetch is complete: no site's FHIR server is needed
    body.pop("fhirAuthorization", None)
    body["hookInstance"] = str(uuid.uuid4())
    body["context"]["userId"] = user
    resp = client.post(PV, data=json.dumps(body), content_type="application/json",
                       headers={"Authorization": "Bearer " + keys.token(who, BASE + PV, tenant=tenant)})
    assert resp.status_code == 200
    return resp.get_json()["cards"]


def test_another_sites_info_card_does_not_suppress_this_sites(client, keys):
    user = "Practitioner/1"
    b = call(client, keys, "b", "b-1", "standard-prophylaxis", user)
    assert [c["indicator"] for c in b] == ["info"]
    a = call(client, keys, "a", "a-main", "standard-prophylaxis", user)
    assert [c["indicator"] for c in a] == ["info"], "hospital B's card withheld hospital A's"
    # Within one site the repeat rule still holds (§18.3): the same card is not shown again.
    assert call(client, keys, "a", "a-main", "standard-prophylaxis", user) == []


def test_an_override_at_another_site_does_not_snooze_this_sites_warning(client, keys):
    user = "Practitioner/shared-1"
    b = [c for c in call(client, keys, "b", "b-1", "sic-positive", user) if c["indicator"] == "warning"]
    assert b
    feedback = {"feedback": [{"card": b[0]["uuid"], "outcome": "overridden",
                              "outcomeTimestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "overrideReason": {"reason": b[0]["overrideReasons"][0]}}]}
    resp = client.post(PV + "/feedback", data=json.dumps(feedback), content_type="application/json",
                       headers={"Authorization": "Bearer " + keys.token("b", BASE + PV + "/feedback", tenant="b-1")})
    assert resp.status_code == 200
    assert not [c for c in call(client, keys, "b", "b-1", "sic-positive", user) if c["indicator"] == "warning"]
    a = call(client, keys, "a", "a-main", "sic-positive", user)
    assert [c for c in a if c["indicator"] == "warning"], "hospital B's override snoozed hospital A's warning"
