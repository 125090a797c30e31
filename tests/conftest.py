"""Shared fixtures: the app, its test client, and response-schema assertions."""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from flask import Flask, g
from flask.testing import FlaskClient

from card_limits import card_problems
from cds_service import create_app
from cds_service.fhir.data import DataLayer
from cds_service.web.schemas import errors as schema_errors

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def load_example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def in_scope(body: dict) -> dict:
    """Put a test patient in v2 scope (clinical rules §1a) by the real rules, in place: the
    context's `encounterId` (default "<patientId>-enc"), an in-progress inpatient Encounter
    (class IMP) with that id in the `encounters` prefetch, and the COVID-19 Condition in
    `conditions` linked to it (one is added when there is none). Prefetch keys the body does
    not carry (self-fetch) are left alone. Returns the body."""
    from cds_service.fhir.codes import load_codes

    context = body["context"]
    pid = context["patientId"]
    enc_id = context.setdefault("encounterId", f"{pid}-enc")
    prefetch = body.get("prefetch")
    if not isinstance(prefetch, dict):
        return body

    def entries(key: str):
        bundle = prefetch.get(key)
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            return None
        return bundle.setdefault("entry", [])

    encounters = entries("encounters")
    if encounters is not None and not any(e.get("resource", {}).get("id") == enc_id for e in encounters):
        encounters.append({"resource": {
            "resourceType": "Encounter", "id": enc_id, "status": "in-progress",
            "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
            "subject": {"reference": f"Patient/{pid}"}}, "search": {"mode": "match"}})
    conditions = entries("conditions")
    if conditions is not None:
        codes = load_codes()
        covid = {codes.resolve(c) for c in codes.data["conditions"]["covid19"]}
        linked = False
        for entry in conditions:
            res = entry.get("resource", {})
            if any((c.get("system"), c.get("code")) in covid for c in res.get("code", {}).get("coding", [])):
                res.setdefault("encounter", {"reference": f"Encounter/{enc_id}"})
                linked = True
        if not linked:
            system, code = codes.resolve(codes.data["conditions"]["covid19"][0])
            conditions.append({"resource": {
                "resourceType": "Condition", "id": f"{pid}-covid19",
                "clinicalStatus": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "code": {"coding": [{"system": system, "code": code}], "text": "COVID-19"},
                "subject": {"reference": f"Patient/{pid}"},
                "encounter": {"reference": f"Encounter/{enc_id}"}}, "search": {"mode": "match"}})
    for key in ("encounters", "conditions"):
        bundle = prefetch.get(key)
        if isinstance(bundle, dict) and "total" in bundle:
            bundle["total"] = len(bundle.get("entry", []))
    return body


def assert_no_empty(value, path="$"):
    """CDS Hooks notes §1/§13.12: no null, "", [] or {} anywhere (top-level cards excepted)."""
    if value is None or value == "" or value == [] or value == {}:
        raise AssertionError(f"empty or null value at {path}")
    if isinstance(value, dict):
        for k, v in value.items():
            assert_no_empty(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_no_empty(v, f"{path}[{i}]")


def assert_valid_cds_response(payload: dict) -> None:
    problems = schema_errors("response", payload)
    assert not problems, problems
    for card in payload["cards"]:
        assert_no_empty(card, "$.card")
    uuids = [c["uuid"] for c in payload["cards"]]
    assert len(uuids) == len(set(uuids)), "card uuids must be unique in a response"


def assert_operation_outcome(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:500])
    assert resp.mimetype == "application/json"
    assert resp.headers.get("Access-Control-Allow-Origin"), "errors must carry CORS headers"
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] == "error"
    assert isinstance(issue["diagnostics"], str) and issue["diagnostics"]
    if code:
        assert issue["code"] == code
    return body


# What `cds-service serve` writes into os.environ for granian's workers (cli._serve, metrics).
SERVE_WRITES = ("CDS_ENV", "CDS_POLICY", "CDS_BODY_TIMEOUT", "CDS_THREADS", "CDS_ACCESS_LOG",
                "MALLOC_ARENA_MAX", "PROMETHEUS_MULTIPROC_DIR")


@pytest.fixture(autouse=True)
def _serve_in_process_isolated(request, monkeypatch):
    """Tests that run `serve` in this process replace os.execv, so nothing binds:
    - the busy-port check (cli._port_in_use) is off there, or another xdist worker's or another
      program's server on the default port 8000 would fail them (tests/test_serve_start.py,
      marker port_check, tests the check itself);
    - what serve writes into os.environ is put back after each test: under xdist the tests a
      worker runs after it differ from run to run."""
    import os
    for name in SERVE_WRITES:
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])   # its value is put back after the test
        else:
            monkeypatch.setenv(name, "unset")            # recorded as absent ...
            monkeypatch.delenv(name)                     # ... and absent again after the test
    if request.node.get_closest_marker("port_check") is None:
        from cds_service import cli
        monkeypatch.setattr(cli, "_port_in_use", lambda host, port: None)



@pytest.fixture(scope="session")
def dev_fhir():
    """`cds-service dev-fhir` in a thread on a free port (issue 22): the synthetic patients in
    memory, dated at the start of this session (per xdist worker), and the SMART launcher."""
    from cds_service.cli.integration.devfhir import DevFhir, Running
    running = Running(DevFhir()).start()
    running.app.load_synthetic()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def app_config(tmp_path):
    return {"database": str(tmp_path / "cds.sqlite3")}


@pytest.fixture
def app(app_config):
    return create_app(app_config)


@pytest.fixture
def client(app):
    return app.test_client()

# -- §18.2 on every card of every test (tests/card_limits.py) --------------------------------------
# Every hook response any test receives, through the test client or a served app, is checked:
# the data layer's `gather` is wrapped to remember the request body and the resources the service
# read (keyed by hookInstance), and Flask's `process_response` checks each 200 hook answer against
# them. A test-client call fails at once; a served call (integration) fails the test at teardown.
_HOOK_PATH = re.compile(r".*/cds-services/[^/]+")
_SEEN: dict[str, tuple[dict, list]] = {}
_VIOLATIONS: list[str] = []
_LOCK = threading.Lock()


def _remember_gather(original):
    def gather(self, call):
        data = original(self, call)
        body = getattr(call, "body", None)
        key = body.get("hookInstance") if isinstance(body, dict) else None
        if key is not None:   # hook calls only (the assessment view gathers without one)
            with _LOCK:
                if len(_SEEN) > 2000:
                    _SEEN.clear()
                _SEEN[key] = (body, list(data.resources))
        return data
    return gather


def _check_hook_answer(original):
    def process_response(self, response):
        response = original(self, response)
        from flask import request
        if (request.method == "POST" and _HOOK_PATH.fullmatch(request.path) and response.status_code == 200
                and response.mimetype == "application/json"):
            try:
                payload = json.loads(response.get_data())
            except ValueError:
                return response
            cards = payload.get("cards") if isinstance(payload, dict) else None
            if cards:
                with _LOCK:
                    body, resources = _SEEN.get(getattr(g, "hook_instance", None), ({}, []))
                for card in cards:
                    problems = card_problems(card, body, resources)
                    if problems:
                        with _LOCK:
                            _VIOLATIONS.append(f"{request.path}: card {card.get('summary')!r}: "
                                               + "; ".join(problems))
        return response
    return process_response


class _CheckingClient(FlaskClient):
    """The test client: a hook answer whose cards break §18.2 fails the call that got it."""

    def open(self, *args, **kwargs):
        with _LOCK:
            before = len(_VIOLATIONS)
        resp = super().open(*args, **kwargs)
        with _LOCK:
            new = _VIOLATIONS[before:]
            del _VIOLATIONS[before:]
        assert not new, "§18.2 card limits broken:\n" + "\n".join(new)
        return resp


@pytest.fixture(scope="session", autouse=True)
def _card_limits_installed():
    patch = pytest.MonkeyPatch()
    patch.setattr(DataLayer, "gather", _remember_gather(DataLayer.gather))
    patch.setattr(Flask, "process_response", _check_hook_answer(Flask.process_response))
    patch.setattr(Flask, "test_client_class", _CheckingClient)
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _card_limits_checked():
    with _LOCK:
        _VIOLATIONS.clear()
    yield
    with _LOCK:
        found = list(_VIOLATIONS)
        _VIOLATIONS.clear()
    assert not found, "§18.2 card limits broken:\n" + "\n".join(found)


# --- issue 15/16: the batched audit writer's flush hook ------------------------------------------
# Audit and lifecycle rows are committed by a writer thread a few ms after the response
# (storage/writer.py). Tests read the database right after a response, so every request made
# through a Flask test client flushes that app's writer before returning: the rows a test
# reads are committed, and production keeps its asynchronous writes.
@pytest.fixture(autouse=True, scope="session")
def _flush_audit_after_each_test_request():
    from flask.testing import FlaskClient

    real_open = FlaskClient.open

    def open_and_flush(self, *args, **kwargs):
        resp = real_open(self, *args, **kwargs)
        state = self.application.extensions.get("cds")
        storage = getattr(state, "extensions", {}).get("storage") if state is not None else None
        if storage is not None:
            storage.flush(timeout=2.0)
        return resp

    FlaskClient.open = open_and_flush
    yield
    FlaskClient.open = real_open


# --- issue 16: PostgreSQL and Redis fixtures (tests/backends.py) ----------------------------------
@pytest.fixture(scope="session")
def pg_database():
    """A fresh, migrated database `cds_test_<random>` for this test run; dropped at the end."""
    import backends
    backends.require_pg()
    name = f"cds_test_{backends.RUN_ID}"
    url = backends.create_database(name)
    from cds_service.storage import open_storage
    open_storage(url).migrate()
    yield url
    backends.drop_database(name)


@pytest.fixture
def pg_url(pg_database):
    """The run's database, emptied for this test (its pools closed after it)."""
    import backends
    from cds_service.storage.postgres import close_all_pools
    backends.truncate(pg_database)
    yield pg_database
    close_all_pools()


@pytest.fixture
def redis_prefix():
    """A Redis key prefix of this test (its keys deleted after it); skips without Redis."""
    import backends
    backends.require_redis()
    prefix = f"cds_test_{backends.RUN_ID}_{__import__('secrets').token_hex(3)}:"
    yield prefix
    backends.redis_delete_prefix(prefix)


@pytest.fixture(params=["sqlite", "postgres"])
def backend_db(request, tmp_path):
    """CDS_DATABASE for one backend: a SQLite file, or the run's PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "cds.sqlite3")
    return request.getfixturevalue("pg_url")


def pytest_addoption(parser):
    parser.addoption("--fast", action="store_true",
                     help="unit tests only (python3 dev.py test --fast): leaves out the tests marked "
                          "integration, server or slow, those needing PostgreSQL or Redis, and the "
                          "modules that start a service with tests/served_instance.py")


FAST_LEAVES_OUT = ("integration", "server", "slow")
# `pytestmark = pytest.mark.slow` (or a list that starts with one of these): every test of the
# module is left out by --fast, so the module is not even imported (schemathesis builds its
# cases at collection: seconds per xdist worker for tests that --fast deselects anyway).
_WHOLE_MODULE_LEFT_OUT = re.compile(
    r"^pytestmark\s*=\s*(?:pytest\.mark\.(?:%s)\s*(?:#.*)?$|\[\s*pytest\.mark\.(?:%s)\s*,)"
    % ("|".join(FAST_LEAVES_OUT), "|".join(FAST_LEAVES_OUT)), re.M)


def pytest_ignore_collect(collection_path, config):
    if config.getoption("--fast") and collection_path.suffix == ".py" \
            and collection_path.name.startswith("test_"):
        try:
            return bool(_WHOLE_MODULE_LEFT_OUT.search(collection_path.read_text(encoding="utf-8"))) or None
        except OSError:
            return None
    return None


def _uses_served_instance(item) -> bool:
    """A test module that starts `cds-service serve` through tests/served_instance.py."""
    module = getattr(item, "module", None)
    return any(getattr(value, "__module__", None) == "served_instance" for value in vars(module).values()) \
        if module is not None else False


def _fast_selection(config, items) -> None:
    import backends
    out = [item for item in items
           if any(item.get_closest_marker(m) for m in FAST_LEAVES_OUT) or backends.needs(item)
           or _uses_served_instance(item)]
    if out:
        config.hook.pytest_deselected(items=out)
        items[:] = [item for item in items if item not in set(out)]


def pytest_collection_modifyitems(config, items):
    """Without PostgreSQL or Redis (a laptop), the tests that need them are left out and one
    line says so; with CDS_REQUIRE_PG=1 (.ci/run where they exist) they run and fail instead.
    With --fast, only unit tests are kept (no servers, no browser)."""
    import backends
    if config.getoption("--fast"):
        _fast_selection(config, items)
        return
    wanted = {item: backends.needs(item) for item in items}
    if not any(wanted.values()) or backends.REQUIRED:
        return
    missing = backends.missing()
    if not missing:
        return
    left_out = [item for item, services in wanted.items() if services & set(missing)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in set(left_out)]
        what = " and ".join({"pg": "PostgreSQL", "redis": "Redis"}[k] + f" ({v})" for k, v in missing.items())
        config._cds_scale_skipped = (f"{len(left_out)} PostgreSQL/Redis tests not run: {what} not reachable "
                                     "(CI sets CDS_REQUIRE_PG=1 to require them)")


def pytest_terminal_summary(terminalreporter, config):
    line = getattr(config, "_cds_scale_skipped", None)
    if line:
        terminalreporter.write_line("SKIPPED: " + line, yellow=True)
