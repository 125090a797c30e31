"""`python -m bench.profile [scenario] [n] [--cpu]`: profile hook calls in-process with pyinstrument.

Scenarios: a (patient-view, 150 obs prefetch), b (order-select), d10000 (sweep size), c
(self-fetch against the FHIR stub, cold cache). Prints pyinstrument's text report.
With --cpu: no profiler; the thread CPU time of each call (median, p10, p90), which a
shared, busy machine disturbs far less than wall time (for before/after comparisons).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import orjson

from . import synth
from .fhir_stub import FhirStub


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cpu_only = "--cpu" in argv
    argv = [a for a in argv if a != "--cpu"]
    scenario = argv[0] if argv else "a"
    n = int(argv[1]) if len(argv) > 1 else 300
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pip install pyinstrument (the 'bench' extra)", file=sys.stderr)
        return 2
    from cds_service import create_app

    with tempfile.TemporaryDirectory() as tmp, FhirStub(latency=0.0) as stub:
        app = create_app({"database": str(Path(tmp) / "p.sqlite3"), "log_level": "INFO",
                          "max_body_bytes": 64 * 1024 * 1024})
        client = app.test_client()
        hook = "order-select" if scenario == "b" else "patient-view"
        if scenario == "c":
            template = orjson.dumps(synth.hook_request(hook, "PIDX", with_prefetch=False, fhir_server=stub.url()))
            bodies = [template.replace(b"PIDX", f"p{i}".encode()) for i in range(n + 5)]
        else:
            n_obs = int(scenario[1:]) if scenario.startswith("d") else 150
            template = orjson.dumps(synth.hook_request(hook, "PIDX", n_obs=n_obs))
            bodies = [template.replace(b"PIDX", f"p{i}".encode()) for i in range(n + 5)]  # new patient each call
        path = synth.SERVICE_PATH[hook]
        for body in bodies[:5]:  # warm-up: imports, schema compilation
            resp = client.post(path, data=body, content_type="application/json")
            assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
        if cpu_only:
            times = []
            for body in bodies[5:]:
                t0 = time.thread_time()
                client.post(path, data=body, content_type="application/json")
                times.append((time.thread_time() - t0) * 1000)
            times.sort()
            pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]  # noqa: E731
            print(f"{scenario}: {len(times)} calls, thread CPU ms/call median {pick(0.5):.3f} "
                  f"p10 {pick(0.1):.3f} p90 {pick(0.9):.3f}")
            return 0
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for body in bodies[5:]:
            client.post(path, data=body, content_type="application/json")
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
