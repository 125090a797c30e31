"""`python -m bench`: the service against a floor app, both under granian, same session.

Scenarios (see bench/RESULTS.md for the targets):
  a  patient-view, full prefetch, ~150 Observations           concurrency 1 and 8
  b  order-select, full prefetch and one draft order          concurrency 1 and 8
  c  patient-view, self-fetch from a FHIR stub (20 ms/request), cold and warm cache
  d  patient-view prefetch sweep: 10 / 100 / 1,000 / 10,000 Observations, concurrency 1

Every measurement alternates rounds between the service and the floors, so all see the
same machine load; figures are reported as service/floor ratios. The floor (issue 25) is a bare
Flask app under the same server parsing with stdlib `json`; the orjson floor is reported too.
The machine's load average is sampled before and after every scenario.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import orjson

from . import loadgen, synth
from .fhir_stub import FhirStub

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
NOTES_MARKER = "<!-- notes: kept across --record runs -->"
WORKERS = 2
THREADS = None  # None: the serve default (config.ServerConfig.threads)
FHIR_LATENCY_S = 0.020
SWEEP = (10, 100, 1000, 10000)

TARGETS = {  # issue 25 (issue 15's, tightened)
    "a_cpu_ratio": 2.0,           # patient-view, new patient, 150 obs: server CPU <= 2.0x the floor's, c=1 and c=8
    "a_rps_ratio_c8": 0.50,       # throughput >= 0.5x the floor's at concurrency 8
    "a_p99_ratio_c8": 1.5,        # p99 at c=8 within 1.5x of the floor's p99 in the same run
    "c_warm_fhir_calls": 0,       # warm cache: no FHIR call
    "c_cold_rtt_budget_ms": 10.0,  # cold p50 <= 2 round trips + 10 ms
    "d_net_ms_per_1000": 1.0,     # <= 1.0 ms extra CPU per 1,000 Observations above the floor's own slope
}


TARGETS_ALL = ("service", "floor", "floor_orjson", "baseline")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One granian server (WORKERS workers) on a free loopback port, started with the same
    command line as `cds-service serve` (cli.granian_argv), only the app differs."""

    def __init__(self, name: str, app: str, env: dict[str, str], log_dir: Path, interface: str = "asgi",
                 cwd: Path = ROOT):
        self.name, self.app, self.env, self.interface, self.cwd = name, app, env, interface, cwd
        self.port = free_port()
        self.log = open(log_dir / f"{name}.log", "wb")
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Server":
        from dataclasses import replace

        from cds_service.cli import granian_argv
        from cds_service.config import ServerConfig

        server = replace(ServerConfig(), port=self.port, workers=WORKERS,
                         threads=THREADS or ServerConfig.threads)
        cmd = granian_argv(server)[:-1] + [self.app]
        cmd[cmd.index("--interface") + 1] = self.interface  # the floors are bare Flask (WSGI) apps
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, env={**os.environ, **self.env},
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start; see {self.log.name}")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def pids(self) -> list[int]:
        pids = [self.proc.pid]
        try:
            pids += [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        except OSError:
            pass
        return pids

    def cpu_seconds(self) -> float:
        """User + system CPU time of the master and its workers so far."""
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
            except (OSError, IndexError, ValueError):
                pass
        return total / os.sysconf("SC_CLK_TCK")

    def rss_kb(self) -> int:
        """Summed VmRSS of the master and its workers."""
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total


def constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def numbered(template: bytes, placeholder: bytes, prefix: str) -> Callable[[], bytes]:
    """Bodies with a fresh patient id each call (a cold cache on every request)."""
    counter = itertools.count()
    return lambda: template.replace(placeholder, f"{prefix}{next(counter)}".encode())


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model or platform.processor(),
            "python": platform.python_version(), "platform": platform.platform(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


class Bench:
    def __init__(self, args: argparse.Namespace, service: Server, floor: Server, stub: FhirStub,
                 floor_orjson: Server | None = None, baseline: Server | None = None):
        self.args, self.service, self.floor, self.stub = args, service, floor, stub
        self.floor_orjson, self.baseline = floor_orjson, baseline

    def alternate(self, path: str, body: Callable[[], bytes], concurrency: int, *,
                  floor_body: Callable[[], bytes] | None = None, max_requests: int | None = None,
                  targets: tuple[str, ...] = TARGETS_ALL) -> dict:
        """Rounds alternating service and floor; returns stats per target (+ FHIR calls)."""
        servers = {"service": self.service, "floor": self.floor, "floor_orjson": self.floor_orjson,
                   "baseline": self.baseline}
        if targets == TARGETS_ALL:
            targets = tuple(t for t in targets if servers[t] is not None)
        samples = {t: loadgen.Sample() for t in targets}
        cpu = {t: 0.0 for t in targets}
        fhir_calls = 0
        for rnd in range(self.args.rounds + 1):  # round 0 warms up and is discarded
            for target in targets:
                srv = servers[target]
                fn = body if target == "service" else (floor_body or body)
                before, cpu_before = self.stub.total, srv.cpu_seconds()
                duration = self.args.duration if rnd else self.args.duration / 3
                s = loadgen.run("127.0.0.1", srv.port, path, fn, concurrency, duration,
                                max_requests=max_requests)
                if rnd:
                    samples[target].extend(s)
                    cpu[target] += srv.cpu_seconds() - cpu_before
                    if target == "service":
                        fhir_calls += self.stub.total - before
        out = {t: samples[t].stats() for t in targets}
        for t in targets:  # CPU per request: independent of what else the machine is running
            n = out[t].get("n", 0) + out[t].get("errors", 0)
            out[t]["cpu_ms"] = round(cpu[t] * 1000 / n, 2) if n else None
        if "service" in out and out["service"].get("n"):
            n = out["service"]["n"] + out["service"].get("errors", 0)
            out["service"]["fhir_calls_per_hook"] = round(fhir_calls / n, 3)
        if "floor" in out:
            out["ratio"] = ratios(out["service"], out["floor"])
        if "floor_orjson" in out:
            out["ratio_orjson"] = ratios(out["service"], out["floor_orjson"])
        if "baseline" in out:
            out["ratio_baseline"] = ratios(out["service"], out["baseline"])
        return out

    def prewarm(self, path: str, body: bytes) -> None:
        """Fill every worker's FHIR cache: one request per new connection (granian hands
        connections to either worker) until ten in a row make no FHIR call."""
        quiet = 0
        for _ in range(200):
            before = self.stub.total
            loadgen.run("127.0.0.1", self.service.port, path, constant(body), 1, 5.0, max_requests=1)
            quiet = quiet + 1 if self.stub.total == before else 0
            if quiet >= 10:
                return
        print("warning: FHIR cache did not settle before the warm rounds", file=sys.stderr)

    def scenario_a(self) -> dict:
        """Two variants: every request a new patient (nothing reused; the target figures),
        and one patient's chart re-opened (the same prefetch each time, as when a hook
        re-fires)."""
        path = synth.SERVICE_PATH["patient-view"]
        marker = b"PIDXA"
        template = orjson.dumps(synth.hook_request("patient-view", marker.decode(), n_obs=150))
        out = {f"c{c}": self.alternate(path, numbered(template, marker, f"a{c}-"), c) for c in (1, 8)}
        same = template.replace(marker, b"bench-a")
        out.update({f"same_c{c}": self.alternate(path, constant(same), c) for c in (1, 8)})
        return out

    def scenario_b(self) -> dict:
        marker = b"PIDXB"
        template = orjson.dumps(synth.hook_request("order-select", marker.decode(), n_obs=150))
        return {f"c{c}": self.alternate(synth.SERVICE_PATH["order-select"], numbered(template, marker, f"b{c}-"), c)
                for c in (1, 8)}

    def scenario_c(self) -> dict:
        path = synth.SERVICE_PATH["patient-view"]
        out: dict = {"fhir_latency_ms": FHIR_LATENCY_S * 1000}
        marker = b"PIDXCOLDX"
        cold = orjson.dumps(synth.hook_request("patient-view", marker.decode(), with_prefetch=False,
                                               fhir_server=self.stub.url()))
        # The floor gets the same (small) body: it only shows the HTTP+parse share.
        floor_body = numbered(cold, marker, "floor-")
        for c in (1, 8):
            out[f"cold_c{c}"] = self.alternate(path, numbered(cold, marker, f"cold{c}-"), c,
                                               floor_body=floor_body)
        warm = cold.replace(marker, b"bench-warm")
        self.prewarm(path, warm)
        for c in (1, 8):
            out[f"warm_c{c}"] = self.alternate(path, constant(warm), c, floor_body=constant(warm))
        return out

    def scenario_d(self) -> dict:
        path = synth.SERVICE_PATH["patient-view"]
        out: dict = {"sizes": {}}
        for n in SWEEP:
            body = orjson.dumps(synth.hook_request("patient-view", f"bench-d{n}", n_obs=n))
            res = self.alternate(path, constant(body), 1)
            res["body_bytes"] = len(body)
            out["sizes"][str(n)] = res
        present = [t for t in TARGETS_ALL if t in out["sizes"][str(SWEEP[0])]]
        for target in present:
            pts = [(n, out["sizes"][str(n)][target]["p50_ms"]) for n in SWEEP]
            out[f"{target}_ms_per_1000"] = round(slope(pts) * 1000, 3)
        out["net_ms_per_1000"] = round(out["service_ms_per_1000"] - out["floor_ms_per_1000"], 3)
        for target in present:   # CPU per request: less disturbed by a busy machine
            pts = [(n, out["sizes"][str(n)][target]["cpu_ms"] or 0.0) for n in SWEEP]
            out[f"{target}_cpu_ms_per_1000"] = round(slope(pts) * 1000, 3)
        out["net_cpu_ms_per_1000"] = round(out["service_cpu_ms_per_1000"] - out["floor_cpu_ms_per_1000"], 3)
        if "baseline" in present:
            out["baseline_net_cpu_ms_per_1000"] = round(out["baseline_cpu_ms_per_1000"] - out["floor_cpu_ms_per_1000"], 3)
        return out


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def ratios(service: dict, floor: dict) -> dict:
    def r(key: str) -> float | None:
        return round(service[key] / floor[key], 3) if service.get(key) and floor.get(key) else None
    return {"rps": r("rps"), "p50": r("p50_ms"), "p95": r("p95_ms"), "p99": r("p99_ms"), "cpu": r("cpu_ms")}


def check_targets(res: dict) -> list[tuple[str, str, str, bool]]:
    """(target, wanted, measured, met) rows."""
    rows = []
    sc = res["scenarios"]
    if "a" in sc:
        for c in ("c1", "c8"):
            r = sc["a"][c]
            rows.append((f"(a) new patient: server CPU per request vs floor, {c.replace('c', 'c=')}",
                         f"<= {TARGETS['a_cpu_ratio']:g}x", f"{r['ratio']['cpu']:g}x (orjson floor "
                         f"{(r.get('ratio_orjson') or {}).get('cpu')}x)",
                         (r["ratio"]["cpu"] or 99) <= TARGETS["a_cpu_ratio"]))
        c8 = sc["a"]["c8"]
        rows.append(("(a) new patient: throughput vs floor, c=8", f">= {TARGETS['a_rps_ratio_c8']:g}x",
                     f"{c8['ratio']['rps']:g}x", c8["ratio"]["rps"] >= TARGETS["a_rps_ratio_c8"]))
        rows.append(("(a) new patient: p99 latency vs the floor's p99, c=8", f"<= {TARGETS['a_p99_ratio_c8']:g}x",
                     f"{c8['ratio']['p99']:g}x ({c8['service']['p99_ms']:.1f} against {c8['floor']['p99_ms']:.1f} ms)",
                     (c8["ratio"]["p99"] or 99) <= TARGETS["a_p99_ratio_c8"]))
    if "c" in sc:
        c = sc["c"]
        warm = c["warm_c1"]["service"]["fhir_calls_per_hook"]
        rows.append(("(c) warm cache FHIR calls per hook call", "0", f"{warm:g}",
                     warm <= TARGETS["c_warm_fhir_calls"]))
        budget = 2 * c["fhir_latency_ms"] + TARGETS["c_cold_rtt_budget_ms"]
        cold = c["cold_c1"]["service"]
        rows.append(("(c) cold p50, c=1", f"<= {budget:g} ms (2 x {c['fhir_latency_ms']:g} + 10)",
                     f"{cold['p50_ms']:.1f} ms, {cold['fhir_calls_per_hook']:g} FHIR calls",
                     cold["p50_ms"] <= budget))
    if "d" in sc:
        d = sc["d"]
        rows.append(("(d) extra latency per 1,000 Observations above the floor's (p50 slope; for reference)",
                     "-", f"{d['net_ms_per_1000']:.2f} ms (service {d['service_ms_per_1000']:.2f}, floor "
                     f"{d['floor_ms_per_1000']:.2f})", True))
        if "net_cpu_ms_per_1000" in d:
            rows.append(("(d) extra CPU per 1,000 Observations above the floor's (CPU ms/req slope)",
                         f"<= {TARGETS['d_net_ms_per_1000']:g} ms",
                         f"{d['net_cpu_ms_per_1000']:.2f} ms (service {d['service_cpu_ms_per_1000']:.2f}, floor "
                         f"{d['floor_cpu_ms_per_1000']:.2f}, orjson floor {d.get('floor_orjson_cpu_ms_per_1000')}"
                         + (f"; baseline net {d['baseline_net_cpu_ms_per_1000']:.2f}" if "baseline_net_cpu_ms_per_1000" in d
                            else "") + ")",
                         d["net_cpu_ms_per_1000"] <= TARGETS["d_net_ms_per_1000"]))
    return rows


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"Run {res['date']} on {m['nproc']} CPU ({m['cpu']}), Python {m['python']}, "
             f"load average at start {m['loadavg_at_start']}, during the run (1/5/15 min, after each "
             f"scenario) {res.get('loadavg', [])}; granian (the command line of `cds-service serve`: ASGI "
             f"for the service, WSGI for the bare-Flask floors) {WORKERS} workers for service and floors; "
             f"{res['args']['rounds']} rounds of {res['args']['duration']:g} s each, interleaved.", ""]
    lines += ["| Scenario | n | p50 ms | p95 ms | p99 ms | req/s | CPU ms/req | FHIR calls/hook | "
              "floor p50 | floor p99 | floor req/s | floor CPU ms/req | ratio req/s | ratio p50 | ratio p95 | "
              "ratio p99 | ratio CPU | orjson floor CPU ms/req | ratio CPU (orjson floor) | baseline CPU ms/req | "
              "baseline p99 | CPU vs baseline |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def row(label: str, r: dict) -> None:
        s, f, q = r["service"], r.get("floor", {}), r.get("ratio", {})
        lines.append(f"| {label} | {s['n']} | {s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} | {s['rps']} | "
                     f"{s.get('cpu_ms', '')} | {s.get('fhir_calls_per_hook', '')} | {f.get('p50_ms', '')} | "
                     f"{f.get('p99_ms', '')} | {f.get('rps', '')} | {f.get('cpu_ms', '')} | {q.get('rps', '')} | "
                     f"{q.get('p50', '')} | {q.get('p95', '')} | {q.get('p99', '')} | {q.get('cpu', '')} | "
                     f"{r.get('floor_orjson', {}).get('cpu_ms', '')} | {r.get('ratio_orjson', {}).get('cpu', '')} | "
                     f"{r.get('baseline', {}).get('cpu_ms', '')} | {r.get('baseline', {}).get('p99_ms', '')} | "
                     f"{r.get('ratio_baseline', {}).get('cpu', '')} |")
        if s.get("errors"):
            lines.append(f"| {label}: **{s['errors']} non-200 answers** | | | | | | | | | | | | | | | | |")
    sc = res["scenarios"]
    for key, title in (("a", "(a) patient-view, 150 obs, new patient each call"),
                       ("a", "(a) patient-view, 150 obs, same patient re-opened"),
                       ("b", "(b) order-select + draft, new patient each call")):
        same = "same" in title
        for c in ("c1", "c8"):
            if key in sc:
                row(f"{title}, {c.replace('c', 'c=')}", sc[key][("same_" if same else "") + c])
    if "c" in sc:
        for k in ("cold_c1", "cold_c8", "warm_c1", "warm_c8"):
            cache, c = k.split("_")
            row(f"(c) self-fetch, {cache}, {c.replace('c', 'c=')}", sc["c"][k])
    if "d" in sc:
        for n, r in sc["d"]["sizes"].items():
            row(f"(d) {int(n):,} obs ({r['body_bytes'] / 1e6:.2f} MB), c=1", r)
    lines += ["", "| Target | Wanted | Measured | Met |", "|---|---|---|---|"]
    for name, wanted, got, ok in check_targets(res):
        lines.append(f"| {name} | {wanted} | {got} | {'yes' if ok else '**no**'} |")
    return "\n".join(lines) + "\n"


def record(md: str) -> None:
    notes = ""
    if RESULTS_MD.exists():
        text = RESULTS_MD.read_text()
        if NOTES_MARKER in text:
            notes = text.split(NOTES_MARKER, 1)[1]
    RESULTS_MD.write_text("# Benchmark results\n\nGenerated by `python -m bench --record`; the targets are "
                          "those of issue 25. Ratios are service/floor from the same session.\n\n"
                          + md + "\n" + NOTES_MARKER + notes)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["postgres"]:  # issue 16: `python -m bench postgres` (bench/pg.py)
        from .pg import main as postgres_main
        return postgres_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default="abcd", help="subset of 'abcd' (default all)")
    p.add_argument("--duration", type=float, default=2.0, help="seconds per round and target")
    p.add_argument("--rounds", type=int, default=3, help="measured rounds per target (plus a warm-up)")
    p.add_argument("--quick", action="store_true", help="1 s rounds, 2 rounds (a smoke run)")
    p.add_argument("--record", action="store_true", help="write the tables to bench/RESULTS.md")
    p.add_argument("--baseline", type=Path, default=None,
                   help="a checkout of another commit (e.g. `git archive main | tar -x -C DIR`): its service "
                        "runs as a fourth interleaved target, reported as service/baseline ratios")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.rounds = 1.0, 2
    OUT.mkdir(parents=True, exist_ok=True)
    res: dict = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
                 "args": {"duration": args.duration, "rounds": args.rounds}, "scenarios": {}}
    with tempfile.TemporaryDirectory() as tmp, FhirStub(latency=FHIR_LATENCY_S) as stub:
        env = {"CDS_DATABASE": str(Path(tmp) / "bench.sqlite3"),
               # the 10,000-Observation sweep body is ~6 MB, over the 5 MB default
               "CDS_MAX_BODY_BYTES": str(64 * 1024 * 1024),
               "MALLOC_ARENA_MAX": "2"}  # as `cds-service serve` and the Dockerfile set it
        with Server("service", "cds_service.asgi:app", env, OUT) as service, \
                Server("floor", "bench.floor:app", {}, OUT, interface="wsgi") as floor, \
                Server("floor_orjson", "bench.floor:app_orjson", {}, OUT, interface="wsgi") as floor_orjson, \
                contextlib.ExitStack() as more:
            baseline = None
            if args.baseline:
                base_env = {**env, "CDS_DATABASE": str(Path(tmp) / "baseline.sqlite3"),
                            "PYTHONPATH": str(args.baseline.resolve())}
                baseline = more.enter_context(Server("baseline", "cds_service.asgi:app", base_env, OUT,
                                                     cwd=args.baseline.resolve()))
            bench = Bench(args, service, floor, stub, floor_orjson, baseline)
            rss_before = service.rss_kb()
            res["loadavg"] = [[round(x, 2) for x in os.getloadavg()]]
            for key in args.scenarios:
                t0 = time.perf_counter()
                res["scenarios"][key] = getattr(bench, f"scenario_{key}")()
                res["loadavg"].append([round(x, 2) for x in os.getloadavg()])
                print(f"scenario {key}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            res["service_rss_kb"] = {"before": rss_before, "after": service.rss_kb()}
    md = markdown(res)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    (OUT / f"results-{stamp}.json").write_text(json.dumps(res, indent=2))
    (OUT / f"results-{stamp}.md").write_text(md)
    print(md)
    print(f"JSON: {OUT / f'results-{stamp}.json'}", file=sys.stderr)
    if args.record:
        record(md)
        print(f"recorded in {RESULTS_MD}", file=sys.stderr)
    return 0
