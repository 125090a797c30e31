"""`python -m bench.soak`: many mixed requests against one in-process app; no 500, bounded caches.

The mix (by share): patient-view, order-select and order-sign with full prefetch; self-fetch
from the FHIR stub (a pool of patients larger than the FHIR cache, so it evicts); self-fetch
from a faulty FHIR endpoint (`--fault-share`, default a tenth); malformed requests; feedback;
discovery. Requests run from several threads through the Flask test client. Reported: status
counts, process RSS before and after (after a warm-up), and every cache's size against its
bound. Exit status 1 on a 500, an unexpected status, or a cache over its bound.
"""
from __future__ import annotations

import argparse
import collections
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from . import synth
from .fhir_stub import FhirStub, closed_port_url

FAST_FAULTS = ["status500", "status503", "status401", "garbage", "truncated", "html", "wrongtype", "huge",
               "hugechunked", "reset", "redirect", "loop", "status500~Condition", "closed"]
SLOW_FAULTS = ["slow", "drip", "slow~Observation"]
EXPECTED = {
    "prefetch": {200}, "self": {200}, "fault": {200, 412}, "bad": {400, 404, 405, 413, 415},
    "feedback": {200}, "discovery": {200},
}


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cache_bounds(app) -> dict[str, tuple[int, int]]:
    """name -> (current size, bound) for every bounded cache the service keeps in process."""
    from cds_service.fhir import context
    state = app.extensions["cds"]
    out: dict[str, tuple[int, int]] = {}
    for name, ext in state.extensions.items():
        for attr in ("cache", "replay_cache", "jwks_cache", "_cache"):
            cache = getattr(ext, attr, None)
            if cache is not None and hasattr(cache, "maxsize") and hasattr(cache, "currsize"):
                out[f"{name}.{attr}"] = (int(cache.currsize), int(cache.maxsize))
    out["extract.verdicts"] = (int(context._verdicts.currsize), int(context._verdicts.maxsize))
    return out


class Soak:
    def __init__(self, stub: FhirStub, patients: int, fault_share: float, slow_faults: bool, seed: int):
        self.stub = stub
        self.patients = patients
        self.fault_share = fault_share
        self.faults = FAST_FAULTS + (SLOW_FAULTS if slow_faults else [])
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        # Prefetch bodies are built once per hook (a new hookInstance per request is not needed:
        # the service does not deduplicate on it) and varied by patient id in the bytes.
        self.templates = {hook: orjson.dumps(synth.hook_request(hook, "PIDXSOAK", n_obs=60))
                          for hook in synth.SERVICE_PATH}
        self.self_fetch = orjson.dumps(synth.hook_request("patient-view", "PIDXSOAK", with_prefetch=False,
                                                          fhir_server="FHIRXSOAK"))

    def pick(self) -> tuple[str, str, str, bytes, str]:
        """(kind, method, path, body, content type) for the next request."""
        with self.lock:
            r = self.rng.random()
            pid = f"soak-{self.rng.randrange(self.patients)}".encode()
            if r < self.fault_share:
                mode = self.rng.choice(self.faults)
                url = closed_port_url() if mode == "closed" else self.stub.url(mode)
                body = self.self_fetch.replace(b"PIDXSOAK", pid).replace(b"FHIRXSOAK", url.encode())
                return "fault", "POST", synth.SERVICE_PATH["patient-view"], body, "application/json"
            r = (r - self.fault_share) / (1 - self.fault_share)
            if r < 0.45:
                hook = self.rng.choice(["patient-view", "patient-view", "order-select", "order-sign"])
                return "prefetch", "POST", synth.SERVICE_PATH[hook], \
                    self.templates[hook].replace(b"PIDXSOAK", pid), "application/json"
            if r < 0.80:
                body = self.self_fetch.replace(b"PIDXSOAK", pid).replace(b"FHIRXSOAK", self.stub.url().encode())
                return "self", "POST", synth.SERVICE_PATH["patient-view"], body, "application/json"
            if r < 0.90:
                bad = self.rng.choice([
                    (b"{not json", "application/json"), (b"[]", "application/json"),
                    (b'{"hook": "patient-view"}', "application/json"), (b"{}", "text/plain"),
                    (self.templates["order-select"].replace(b"PIDXSOAK", pid), "application/json"),
                ])
                path = synth.SERVICE_PATH["patient-view"] if bad[0] != b"{}" else "/cds-services/nope"
                return "bad", "POST", path, bad[0], bad[1]
            if r < 0.95:
                item = {"card": f"{self.rng.getrandbits(128):032x}", "outcome": "overridden",
                        "outcomeTimestamp": "2024-05-01T10:05:31Z"}
                return "feedback", "POST", "/cds-services/coagulopathy-risk/feedback", \
                    orjson.dumps({"feedback": [item]}), "application/json"
            return "discovery", "GET", "/cds-services", b"", ""


def run(total: int = 5000, threads: int = 8, patients: int = 1500, fault_share: float = 0.1,
        slow_faults: bool = True, cache_size: int = 512, fhir_timeout: float = 1.0, seed: int = 1,
        warmup: int = 200, verbose: bool = True) -> dict[str, Any]:
    from cds_service import create_app

    with tempfile.TemporaryDirectory() as tmp, FhirStub(latency=0.002, n_obs=60, slow_seconds=30) as stub:
        app = create_app({"database": str(Path(tmp) / "soak.sqlite3"), "fhir_timeout": fhir_timeout,
                          "fhir_cache_size": cache_size, "log_level": "ERROR"})
        soak = Soak(stub, patients, fault_share, slow_faults, seed)
        statuses: collections.Counter[tuple[str, int]] = collections.Counter()
        failures: list[str] = []
        counter = iter(range(total + warmup))
        counter_lock = threading.Lock()
        marks: dict[str, Any] = {}
        trend: list[tuple[int, int]] = []  # (requests done, RSS MB): growth should level off

        def worker() -> None:
            client = app.test_client()
            while True:
                with counter_lock:
                    i = next(counter, None)
                    if i == warmup:
                        marks["rss_before_kb"], marks["t0"] = rss_kb(), time.perf_counter()
                    if i is not None and i >= warmup and (i - warmup) % 500 == 0:
                        trend.append((i - warmup, rss_kb() // 1024))
                if i is None:
                    return
                kind, method, path, body, ctype = soak.pick()
                if method == "GET":
                    resp = client.get(path)
                else:
                    resp = client.post(path, data=body, content_type=ctype)
                with counter_lock:
                    statuses[(kind, resp.status_code)] += 1
                    if resp.status_code not in EXPECTED[kind] and len(failures) < 20:
                        failures.append(f"{kind} {path} -> {resp.status_code}: {resp.get_data(as_text=True)[:200]}")

        pool = [threading.Thread(target=worker, name=f"soak-{n}") for n in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - marks.get("t0", time.perf_counter())
        caches = cache_bounds(app)
        result = {
            "requests": total, "warmup": warmup, "threads": threads, "fault_share": fault_share,
            "elapsed_s": round(elapsed, 1), "statuses": {f"{k} {s}": n for (k, s), n in sorted(statuses.items())},
            "rss_before_kb": marks.get("rss_before_kb"), "rss_after_kb": rss_kb(),
            "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "rss_trend_mb": trend + [(total, rss_kb() // 1024)],
            "caches": {k: {"size": s, "bound": b} for k, (s, b) in caches.items()},
            "fhir_requests": dict(stub.counts),
            "failures": failures,
            "over_bound": [k for k, (s, b) in caches.items() if s > b],
            "server_errors": sum(n for (_, s), n in statuses.items() if s >= 500),
        }
        if verbose:
            print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--patients", type=int, default=1500, help="distinct patient ids (above the cache size)")
    p.add_argument("--fault-share", type=float, default=0.1)
    p.add_argument("--no-slow-faults", action="store_true", help="leave out slow/trickling servers")
    p.add_argument("--cache-size", type=int, default=512, help="CDS_FHIR_CACHE_SIZE for the run")
    args = p.parse_args(argv)
    res = run(args.requests, args.threads, args.patients, args.fault_share, not args.no_slow_faults,
              args.cache_size)
    before, after = res["rss_before_kb"], res["rss_after_kb"]
    print(f"RSS {before / 1024:.0f} MB after warm-up -> {after / 1024:.0f} MB after {args.requests} requests "
          f"(peak {res['max_rss_kb'] / 1024:.0f} MB); {res['server_errors']} server errors; "
          f"caches over bound: {res['over_bound'] or 'none'}", file=sys.stderr)
    return 1 if res["server_errors"] or res["failures"] or res["over_bound"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
