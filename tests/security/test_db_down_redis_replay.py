"""Issue 21 L7: the README said hook calls fail with 503 when the database is down and auth is
required; with Redis holding the jti store they kept answering 200. Behaviour and README now
agree: the call is answered, its audit rows wait in the writer's queue, /readyz says so, and
rows that cannot wait are counted (README "Scale-out", failure of the shared store)."""
from __future__ import annotations

import uuid
from pathlib import Path

from backends import REDIS_URL, require_redis
from cds_service.storage import StorageError
from security_helpers import BASE, PV, bearer, hook_body
from security_helpers import es_key, jwks, make_app, mint, rs_key  # noqa: F401  (fixtures)

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_database_down_with_redis_jti_store_answers_and_keeps_the_audit_rows_waiting(make_app, mint):
    require_redis()
    app = make_app(replay=REDIS_URL, redis_prefix=f"cds-test-{uuid.uuid4().hex[:8]}:")
    client = app.test_client()
    assert client.post(PV, json=hook_body(), headers=bearer(mint(BASE + PV))).status_code == 200
    store = app.extensions["cds"].extensions["storage"]
    store.flush()

    def down(*args, **kwargs):
        raise StorageError("connection refused")

    store._write = down   # the database is down from here on (the audit key was read already)
    resp = client.post(PV, json=hook_body(), headers=bearer(mint(BASE + PV)))
    assert resp.status_code == 200 and "cards" in resp.get_json()
    assert not store.writer.flush(0.3) and store.writer.waiting >= 1
    ready = client.get("/readyz")
    assert ready.status_code == 503
    # What the README says about it.
    assert "With Redis as the\njti store** (`CDS_REPLAY=redis://…`), the jti is still recorded" in README
    assert "cds_audit_rows_lost_total" in README
    store.writer.close(timeout=0.2)
