"""Per-call client overhead: a registry chat model vs the raw openai SDK (and stock ChatOpenAI).

The fault-injecting test server (tests/servers/fault_openai.py) runs in a separate process with no
latency, so the time measured is client + loopback + a trivial server. Clients alternate call by call
(order rotated every round); reported: medians, p95 and the ratio of medians to the raw SDK, for
non-stream and stream (stream_options.include_usage) calls.

    python benchmarks/bench_chat_overhead.py [--calls 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MESSAGES = [{"role": "user", "content": "用一句话介绍长城。"}]
MAX_TOKENS = 16


def start_server(latency_ms: int = 0) -> tuple[subprocess.Popen, str]:
    """The fault server in its own process (so it does not share the client's GIL); returns its /v1 URL."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tests.servers.fault_openai import start; "
            f"s = start(None, latency_ms={latency_ms}, reply_tokens={MAX_TOKENS}); print(s.port, flush=True); "
            "sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


def registry_model(url: str, **extra):
    from module_ai.config import ModelConfig
    from module_ai.registry import Registry

    cfg = ModelConfig(model_type="chat", server_type="openai", model="bench", url=url, api_key="sk-bench",
                      out_tokens=MAX_TOKENS, pay_in=0.3, pay_out=1.2, name="bench-model", **extra)
    return Registry({"bench-model": cfg}).chat("bench-model")


def clients(url: str) -> dict:
    import openai
    from langchain_openai import ChatOpenAI

    raw = openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0)
    stock = ChatOpenAI(base_url=url, api_key="sk-bench", model="bench", max_tokens=MAX_TOKENS, max_retries=0,
                       stream_usage=True)
    managed = registry_model(url)
    text = MESSAGES[0]["content"]

    def raw_stream():
        for _ in raw.chat.completions.create(model="bench", messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True,
                                             stream_options={"include_usage": True}):
            pass

    return {
        "invoke": {
            "openai": lambda: raw.chat.completions.create(model="bench", messages=MESSAGES, max_tokens=MAX_TOKENS),
            "ChatOpenAI": lambda: stock.invoke(text),
            "module_ai": lambda: managed.invoke(text),
        },
        "stream": {
            "openai": raw_stream,
            "ChatOpenAI": lambda: [None for _ in stock.stream(text)],
            "module_ai": lambda: [None for _ in managed.stream(text)],
        },
    }


def measure(group: dict, calls: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in group}
    names = list(group)
    for fn in group.values():  # warm up connections and lazy imports
        for _ in range(20):
            fn()
    for i in range(calls):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            start = time.perf_counter()
            group[name]()
            times[name].append(time.perf_counter() - start)
    return times


def summarize(times: dict[str, list[float]]) -> dict[str, dict]:
    base = statistics.median(times["openai"])
    out = {}
    for name, values in times.items():
        median = statistics.median(values)
        out[name] = {"median_ms": round(median * 1000, 3),
                     "p95_ms": round(statistics.quantiles(values, n=20)[18] * 1000, 3),
                     "ratio_to_openai": round(median / base, 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    proc, url = start_server()
    try:
        results = {kind: summarize(measure(group, args.calls)) for kind, group in clients(url).items()}
    finally:
        proc.terminate()
    results["load_avg"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.calls} calls per client, alternating; load average {results['load_avg']:.2f}")
    for kind in ("invoke", "stream"):
        for name, row in results[kind].items():
            print(f"{kind:7} {name:11} median {row['median_ms']:7.3f} ms  p95 {row['p95_ms']:7.3f} ms  "
                  f"x{row['ratio_to_openai']:.3f} openai")


if __name__ == "__main__":
    main()
