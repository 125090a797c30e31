"""`python -m bench postgres`: the audit on PostgreSQL against SQLite, in the same run (issue 16).

Two copies of the service under gunicorn (2 gthread workers each), identical but for
CDS_DATABASE: a SQLite file, or a fresh PostgreSQL database (`bench_pg_<random>` at
CDS_BENCH_PG, default postgresql://postgres@127.0.0.1:5432; migrated first, dropped after).
Rounds alternate between the two so both see the same machine load. Scenario: patient-view,
full prefetch (~150 Observations), a new patient per call (so each call writes its audit row
and lifecycle rows and reads the lifecycle history), concurrency 1 and 8.

Reported per backend: throughput, p50/p99 and the service's CPU ms per call (gunicorn master
and workers; PostgreSQL's own CPU is reported apart, from its backends serving this database).
"""
from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson

from . import loadgen, synth
from .run import OUT, Gunicorn, machine, numbered

PG_BASE = __import__("os").environ.get("CDS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")


def _pg_backend_cpu(dbname: str) -> float:
    """CPU seconds so far of the PostgreSQL backends connected to `dbname` (read from /proc)."""
    import os

    import psycopg
    try:
        with psycopg.connect(PG_BASE + "/postgres", autocommit=True) as conn:
            pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (dbname,))]
    except psycopg.Error:
        return 0.0
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def run(args) -> dict:
    import psycopg

    from cds_service.storage import open_storage
    dbname = f"bench_pg_{secrets.token_hex(4)}"
    with psycopg.connect(PG_BASE + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    url = f"{PG_BASE}/{dbname}"
    res: dict = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
                 "args": {"duration": args.duration, "rounds": args.rounds}, "results": {}}
    try:
        open_storage(url).migrate()
        with tempfile.TemporaryDirectory() as tmp:
            common = {"MALLOC_ARENA_MAX": "2", "CDS_LOG_LEVEL": "WARNING"}
            with Gunicorn("svc-sqlite", "cds_service.wsgi:app",
                          {**common, "CDS_DATABASE": str(Path(tmp) / "bench.sqlite3")}, OUT) as lite, \
                    Gunicorn("svc-postgres", "cds_service.wsgi:app", {**common, "CDS_DATABASE": url}, OUT) as pg:
                path = synth.SERVICE_PATH["patient-view"]
                marker = b"PIDXP"
                template = orjson.dumps(synth.hook_request("patient-view", marker.decode(), n_obs=150))
                for c in (1, 8):
                    samples = {"sqlite": loadgen.Sample(), "postgres": loadgen.Sample()}
                    cpu = {"sqlite": 0.0, "postgres": 0.0}
                    pg_cpu = 0.0
                    for rnd in range(args.rounds + 1):
                        for name, srv in (("sqlite", lite), ("postgres", pg)):
                            before = srv.cpu_seconds()
                            pg_before = _pg_backend_cpu(dbname) if name == "postgres" else 0.0
                            s = loadgen.run("127.0.0.1", srv.port, path, numbered(template, marker, f"{name}{c}-{rnd}-"),
                                            c, args.duration if rnd else args.duration / 3)
                            if rnd:
                                samples[name].extend(s)
                                cpu[name] += srv.cpu_seconds() - before
                                if name == "postgres":
                                    pg_cpu += _pg_backend_cpu(dbname) - pg_before
                    out = {}
                    for name in samples:
                        st = samples[name].stats()
                        n = st.get("n", 0) + st.get("errors", 0)
                        st["cpu_ms"] = round(cpu[name] * 1000 / n, 3) if n else None
                        out[name] = st
                    n = out["postgres"].get("n", 0) + out["postgres"].get("errors", 0)
                    out["postgres"]["postgres_server_cpu_ms"] = round(pg_cpu * 1000 / n, 3) if n else None
                    out["ratio"] = {k: round(out["postgres"][k] / out["sqlite"][k], 3)
                                    for k in ("cpu_ms", "p50_ms", "p99_ms", "rps")
                                    if out["postgres"].get(k) and out["sqlite"].get(k)}
                    res["results"][f"c{c}"] = out
                    print(f"c{c} done", file=sys.stderr, flush=True)
                time.sleep(0.2)
    finally:
        from cds_service.storage.postgres import close_all_pools
        close_all_pools()
        with psycopg.connect(PG_BASE + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return res


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"Run {res['date']}: {m['nproc']} cores ({m['cpu']}), Python {m['python']}, load average at start "
             f"{m['loadavg_at_start']}; {res['args']['rounds']} rounds of {res['args']['duration']} s per backend, "
             "alternating. patient-view, ~150 Observations, a new patient per call, auth off.", "",
             "| concurrency | backend | req/s | p50 ms | p99 ms | service CPU ms/call | PostgreSQL CPU ms/call |",
             "|---|---|---|---|---|---|---|"]
    for key, out in res["results"].items():
        for name in ("sqlite", "postgres"):
            r = out[name]
            lines.append(f"| {key[1:]} | {name} | {r.get('rps')} | {r.get('p50_ms')} | {r.get('p99_ms')} | "
                         f"{r.get('cpu_ms')} | {r.get('postgres_server_cpu_ms', '-')} |")
        ratio = out["ratio"]
        lines.append(f"| {key[1:]} | **postgres / sqlite** | {ratio.get('rps')} | {ratio.get('p50_ms')} | "
                     f"{ratio.get('p99_ms')} | {ratio.get('cpu_ms')} | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench postgres", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=2.0, help="seconds per round and backend")
    p.add_argument("--rounds", type=int, default=3, help="measured rounds per backend (plus a warm-up)")
    p.add_argument("--quick", action="store_true", help="1 s rounds, 2 rounds (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.rounds = 1.0, 2
    OUT.mkdir(parents=True, exist_ok=True)
    res = run(args)
    md = markdown(res)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    (OUT / f"postgres-{stamp}.json").write_text(json.dumps(res, indent=2))
    print(md)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
