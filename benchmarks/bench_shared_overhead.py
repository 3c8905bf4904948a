"""Added per-call latency of shared limits and budgets (Redis) vs the in-process limiter, same run.

Starts a redis-server on a free port and the fault server in its own process (no latency), then
times sequential ``invoke`` calls of one model config (max_concurrency, rpm and tpm set high enough
never to wait) with and without ``MODULE_AI_REDIS_URL``, alternating blocks of calls; with a budget
(``track_usage(max_cost=..., budget=...)``) the shared path adds the reservation and settlement.
Reported: medians, p95, the ratio and the added milliseconds per call, and the round trip of a bare
``PING`` (a call adds about three: admission, release, ledger; a budget two more: reserve, settle).

    python benchmarks/bench_shared_overhead.py [--calls 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_chat_overhead import start_server


def _model(url: str, name: str):
    from module_ai.config import ModelConfig
    from module_ai.registry import Registry

    cfg = ModelConfig(model_type="chat", server_type="openai", model="bench", url=url, api_key="sk-bench",
                      out_tokens=16, pay_in=0.3, pay_out=1.2, name=name, max_concurrency=8, rpm=10**6,
                      tpm=10**9)
    return Registry({name: cfg}).chat(name)


def _time(llm, calls: int, budget: str | None) -> list[float]:
    from module_ai import track_usage

    out = []
    with track_usage(max_cost=10**6, budget=budget):
        for _ in range(calls):
            t0 = time.perf_counter()
            llm.invoke("hi")
            out.append(time.perf_counter() - t0)
    return out


def run(calls: int) -> dict:
    from module_ai import configure_shared
    from module_ai.controls import shared_state as switch
    from module_ai.controls.limits import reset_limiters
    from tests.servers.redis_server import start_redis

    server, url = start_server()
    redis = start_redis(Path(tempfile.mkdtemp()) / "redis")
    try:
        local = _model(url, "bench-local")  # built without Redis: in-process limiter
        configure_shared(redis.url)
        reset_limiters()
        state = switch.shared_state()
        shared = _model(url, "bench-shared")  # built with Redis: shared limiter
        times: dict[str, list[float]] = {"in-process": [], "redis": [], "redis+budget": []}
        _time(shared, 20, "bench")  # warm up (scripts loaded, connections open)
        switch._state = None
        _time(local, 20, None)
        for _ in range(10):  # alternate blocks; the switch off also silences the shared ledger
            switch._state = None
            times["in-process"] += _time(local, calls // 10, None)
            switch._state = state
            times["redis"] += _time(shared, calls // 10, None)
            times["redis+budget"] += _time(shared, calls // 10, "bench")
        pings = []
        for _ in range(200):
            t0 = time.perf_counter()
            state.client.ping()
            pings.append(time.perf_counter() - t0)
        configure_shared(None)
    finally:
        redis.stop()
        server.kill()
    base = statistics.median(times["in-process"])
    report = {}
    for name, values in times.items():
        median = statistics.median(values)
        report[name] = {"median_ms": 1000 * median, "p95_ms": 1000 * sorted(values)[int(0.95 * len(values))],
                        "ratio": median / base, "added_ms": 1000 * (median - base)}
    report["redis PING"] = {"median_ms": 1000 * statistics.median(pings), "p95_ms": 1000 * sorted(pings)[190],
                            "ratio": float("nan"), "added_ms": float("nan")}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.calls)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, row in report.items():
        print(f"{name:13s} median {row['median_ms']:.3f} ms  p95 {row['p95_ms']:.3f} ms  "
              f"ratio {row['ratio']:.2f}  added {row['added_ms']:+.3f} ms")


if __name__ == "__main__":
    main()
