"""Closed-loop HTTP load generator: N threads, each with one keep-alive connection, each
sending its next request as soon as the previous answer is read."""
from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Sample:
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    errors: dict[int, int] = field(default_factory=dict)  # status (0 = transport error) -> count

    def extend(self, other: "Sample") -> None:
        self.latencies_ms.extend(other.latencies_ms)
        self.elapsed_s += other.elapsed_s
        for k, v in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + v

    def stats(self) -> dict[str, float]:
        lat = sorted(self.latencies_ms)
        n = len(lat)
        if not n:
            return {"n": 0}

        def pct(p: float) -> float:
            return round(lat[min(n - 1, int(round(p / 100 * (n - 1))))], 3)
        return {"n": n, "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
                "mean_ms": round(sum(lat) / n, 3),
                "rps": round(n / self.elapsed_s, 1) if self.elapsed_s else 0.0,
                "errors": sum(self.errors.values())}


def run(host: str, port: int, path: str, body: Callable[[], bytes], concurrency: int,
        duration_s: float, max_requests: int | None = None, expect: int = 200) -> Sample:
    """Drive POST `path` for `duration_s` or until `max_requests` are sent, whichever comes first."""
    stop = threading.Event()
    lock = threading.Lock()
    result = Sample()
    sent = [0]

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        local: list[float] = []
        errors: dict[int, int] = {}
        while not stop.is_set():
            if max_requests is not None:
                with lock:
                    if sent[0] >= max_requests:
                        break
                    sent[0] += 1
            data = body()
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if resp.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
            dt = (time.perf_counter() - t0) * 1000
            if status == expect:
                local.append(dt)
            else:
                errors[status] = errors.get(status, 0) + 1
        conn.close()
        with lock:
            result.latencies_ms.extend(local)
            for k, v in errors.items():
                result.errors[k] = result.errors.get(k, 0) + v

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    deadline = t0 + duration_s
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.perf_counter()))
    stop.set()
    for t in threads:
        t.join()
    result.elapsed_s = time.perf_counter() - t0
    return result
