"""Two replicas sharing PostgreSQL (and Redis), as behind a load balancer (issue 16).

Each replica is a real `cds-service serve` (gunicorn) on its own free port, in its own
process group (killed by its id only). The shared state is the run's cds_test_<random>
database and a per-test Redis key prefix. Faults go through a TCP proxy the test owns
(tests/tcp_proxy.py): the machine's PostgreSQL and Redis are never stopped."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
import backends  # noqa: E402
from security_helpers import ISS, Minter, hook_body, public_jwk  # noqa: E402
from tcp_proxy import TcpProxy  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = "https://cds.example.org"          # both replicas sit behind one name (the balancer)
PV = "/cds-services/coagulopathy-risk"
FEEDBACK = PV + "/feedback"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    def __init__(self, tmp: Path, name: str, env: dict[str, str]):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"{name}.log"
        full = {k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "PROMETHEUS_"))}
        full.update({"CDS_LOG_LEVEL": "WARNING", "CDS_PUBLIC_BASE_URL": PUBLIC, **env})
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cds_service", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", "1", "--threads", "4"],
                cwd=ROOT, env=full, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"replica {name} exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError(f"replica {name} did not start: {self.log.read_text()[-2000:]}")

    def post(self, path: str, body: dict, token: str | None = None, timeout: float = 10):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.post(self.base + path, data=json.dumps(body), headers=headers, timeout=timeout)

    def signal(self, sig) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)   # this replica's own process group (its master and worker)

    def stop(self) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def replicas(tmp_path, pg_url):
    started: list[Replica] = []

    def start(n: int = 2, **env) -> list[Replica]:
        env = {"CDS_DATABASE": pg_url, **{k: str(v) for k, v in env.items()}}
        with ThreadPoolExecutor(n) as pool:
            new = list(pool.map(lambda i: Replica(tmp_path, f"replica-{len(started) + i}", env), range(n)))
        started.extend(new)
        return new

    yield start
    for replica in started:
        replica.stop()


@pytest.fixture(scope="module")
def keys():
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    return ec.generate_private_key(ec.SECP384R1()), rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def auth_env(tmp_path, keys):
    es, rs = keys
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps({ISS: {"jwks": {"keys": [public_jwk(es, "es-key-1", "ES384"),
                                                        public_jwk(rs, "rs-key-1")]}}}))
    return {"CDS_AUTH": "required", "CDS_TRUSTED_ISSUERS": str(trust)}, Minter(es, rs)


def db(pg_url: str, sql: str, *args) -> list[tuple]:
    import psycopg
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]


# -- the jti --------------------------------------------------------------------------------------
@pytest.mark.parametrize("replay", ["database", "redis"])
def test_a_jti_used_on_one_replica_is_refused_on_the_other_even_when_sent_concurrently(
        replicas, auth_env, replay, request):
    env, mint = auth_env
    if replay == "redis":
        env = {**env, "CDS_REPLAY": backends.REDIS_URL, "CDS_REDIS_PREFIX": request.getfixturevalue("redis_prefix")}
    a, b = replicas(**env)
    token = mint(PUBLIC + PV)
    assert a.post(PV, hook_body(), token).status_code == 200
    replayed = b.post(PV, hook_body(), token)
    assert replayed.status_code == 401
    assert b.post(PV, hook_body(), mint(PUBLIC + PV)).status_code == 200   # B accepts a fresh token
    # Concurrent sends of one fresh token to both replicas: exactly one is answered.
    for _ in range(3):
        token = mint(PUBLIC + PV)
        barrier = threading.Barrier(8)

        def send(replica):
            barrier.wait()
            return replica.post(PV, hook_body(), token).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(send, [a, b] * 4))
        assert sorted(codes) == [200] + [401] * 7, codes


# -- the card lifecycle and feedback ---------------------------------------------------------------
def test_a_card_overridden_through_a_is_snoozed_on_b_and_feedback_to_both_counts_once(replicas, pg_url, capsys):
    a, b = replicas()
    body = hook_body()
    [card] = a.post(PV, body).json()["cards"]
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2030-01-01T00:00:00Z"}
    # The same feedback item (an EHR retrying through the balancer) reaches both replicas.
    first = a.post(FEEDBACK, {"feedback": [item]}).json()
    second = b.post(FEEDBACK, {"feedback": [item]}).json()
    assert (first["stored"], second["stored"], second["duplicates"]) == (1, 0, 1)
    again = hook_body()
    assert b.post(PV, again).json()["cards"] == []                           # snoozed on B
    other_user = hook_body()
    other_user["context"]["userId"] = "Practitioner/colleague"
    assert len(b.post(PV, other_user).json()["cards"]) == 1                  # for that user only
    from cds_service.cli import main as cli_main
    assert cli_main(["feedback-report", "--database", pg_url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["feedback_items"] == 1
    assert report["totals"]["unmatched_feedback"] == 0
    assert report["lifecycle"]["suppressed_reasons"] == {"override_snooze": 1}


def test_kill_9_of_a_replica_mid_stream_loses_no_acknowledged_feedback(replicas, pg_url):
    a, b = replicas()
    acknowledged, lock = [], threading.Lock()
    stop = threading.Event()

    def stream(replica):
        while not stop.is_set():
            item = {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2030-01-01T00:00:00Z"}
            try:
                resp = replica.post(FEEDBACK, {"feedback": [item]}, timeout=5)
            except requests.RequestException:
                continue   # never acknowledged: the client would retry elsewhere
            if resp.status_code == 200 and resp.json()["stored"] == 1:
                with lock:
                    acknowledged.append(item["card"])

    threads = [threading.Thread(target=stream, args=(r,)) for r in (a, a, b, b)]
    for t in threads:
        t.start()
    while len(acknowledged) < 40:
        time.sleep(0.05)
    a.signal(signal.SIGKILL)                 # mid-stream, no flush, no goodbye
    a.proc.wait(timeout=10)
    count_at_kill = len(acknowledged)
    while len(acknowledged) < count_at_kill + 20:   # B goes on
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    stored = {r[0] for r in db(pg_url, "SELECT card_uuid FROM feedback")}
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged feedback items lost"


def test_sigterm_flushes_the_queued_audit_rows(replicas, pg_url):
    # A group commit far away (50 s, 10,000 rows): only the shutdown flush can commit them.
    [a] = replicas(1, CDS_AUDIT_BATCH_MS=50_000, CDS_AUDIT_BATCH_ROWS=10_000)
    instances = []
    for _ in range(5):
        body = hook_body()
        instances.append(body["hookInstance"])
        assert a.post(PV, body).status_code == 200
    assert db(pg_url, "SELECT COUNT(*) FROM hook_call") == [(0,)]
    a.stop()
    assert sorted(r[0] for r in db(pg_url, "SELECT hook_instance FROM hook_call")) == sorted(instances)


# -- faults: PostgreSQL and Redis cut by a proxy the test owns ---------------------------------------
def _assert_503(resp) -> None:
    assert resp.status_code == 503, resp.text[:500]
    assert int(resp.headers["Retry-After"]) > 0
    assert "Audit store unavailable" in resp.json()["issue"][0]["diagnostics"]


def test_postgres_unreachable_answers_503_and_recovers_without_a_restart(replicas, pg_url, auth_env):
    env, mint = auth_env
    host_port = pg_url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        via_proxy = pg_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        [a] = replicas(1, **env, CDS_DATABASE=via_proxy, CDS_DATABASE_TIMEOUT_MS=300)
        assert a.post(PV, hook_body(), mint(PUBLIC + PV)).status_code == 200
        proxy.cut()
        _assert_503(a.post(PV, hook_body(), mint(PUBLIC + PV)))
        ready = requests.get(a.base + "/readyz", timeout=5)
        assert ready.status_code == 503 and "database" in ready.json()["reason"]
        fb = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                            "outcomeTimestamp": "2030-01-01T00:00:00Z"}]}
        _assert_503(a.post(FEEDBACK, fb, mint(PUBLIC + FEEDBACK)))
        proxy.restore()
        deadline = time.monotonic() + 30
        while requests.get(a.base + "/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "did not recover"
            time.sleep(0.2)
        assert a.post(PV, hook_body(), mint(PUBLIC + PV)).status_code == 200
        assert a.post(FEEDBACK, fb, mint(PUBLIC + FEEDBACK)).json()["stored"] == 1


def test_postgres_unreachable_with_auth_off_still_gives_the_advice(replicas, pg_url):
    host_port = pg_url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        [a] = replicas(1, CDS_DATABASE=pg_url.replace(host_port, f"127.0.0.1:{proxy.port}"),
                       CDS_DATABASE_TIMEOUT_MS=300)
        assert a.post(PV, hook_body()).status_code == 200      # the pepper is read while it is up
        proxy.cut()
        during = hook_body()
        resp = a.post(PV, during)
        assert resp.status_code == 200 and resp.json()["cards"]  # the audit row waits in the queue
        assert requests.get(a.base + "/readyz", timeout=5).status_code == 503
        proxy.restore()
        deadline = time.monotonic() + 30
        while not db(pg_url, "SELECT 1 FROM hook_call WHERE hook_instance = %s", during["hookInstance"]):
            assert time.monotonic() < deadline, "the queued audit row was not committed after the outage"
            time.sleep(0.2)
        assert a.post(PV, hook_body()).status_code == 200


def test_redis_unreachable(replicas, auth_env, redis_prefix):
    """Redis as the jti store: down -> 503 (fail closed); as the FHIR cache only: calls go on."""
    env, mint = auth_env
    redis_host, redis_port = backends.REDIS_URL.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    with TcpProxy(redis_host, int(redis_port)) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        replay, cache_only = replicas(1, **env, CDS_REPLAY=url, CDS_REDIS_PREFIX=redis_prefix)[0], \
            replicas(1, CDS_CACHE=url, CDS_REDIS_PREFIX=redis_prefix)[0]
        assert replay.post(PV, hook_body(), mint(PUBLIC + PV)).status_code == 200
        assert cache_only.post(PV, hook_body()).status_code == 200
        proxy.cut()
        resp = replay.post(PV, hook_body(), mint(PUBLIC + PV))
        assert resp.status_code == 503 and int(resp.headers["Retry-After"]) > 0
        ready = requests.get(replay.base + "/readyz", timeout=5).json()
        assert ready["checks"]["replay_store"].startswith("unavailable")
        assert cache_only.post(PV, hook_body()).status_code == 200
        proxy.restore()
        deadline = time.monotonic() + 30
        while replay.post(PV, hook_body(), mint(PUBLIC + PV)).status_code != 200:
            assert time.monotonic() < deadline, "did not recover"
            time.sleep(0.2)
