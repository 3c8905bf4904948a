"""The openai transport: connection reuse, time to first token, client CPU per call (one run, side by side).

Clients: the raw ``openai`` SDK, httpx alone (a floor: post + json / SSE lines), stock ``ChatOpenAI``,
module_ai on its httpx transport and on ``transport: sdk``. The fault server runs in its own process.

1. New TCP connections (counted by the server) over 20 sequential sync and 20 async streamed calls.
2. Time to first token, p50 over 20 streamed calls, with every new connection delayed 50 ms (a
   simulated TLS handshake).
3. Client CPU (process time) per invoke and per streamed call, clients alternating call by call;
   ratios of medians to the raw SDK.

    python benchmarks/bench_transport.py [--calls 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
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
KEY = "sk-bench"


class Server:
    """The fault server in a child process; ``stats()`` / ``configure(**kw)`` over its stdin."""

    def __init__(self, **config) -> None:
        code = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); from tests.servers.fault_openai import start\n"
                f"s = start(None, reply_tokens={MAX_TOKENS}, **json.loads(sys.argv[1])); print(s.port, flush=True)\n"
                "for line in sys.stdin:\n"
                "    cmd = json.loads(line)\n"
                "    if cmd.get('configure') is not None: s.configure(**cmd['configure'])\n"
                "    print(json.dumps({'connections': s.stats()['connections'], 'total': s.count}), flush=True)\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(config)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}/v1"

    def stats(self, configure: dict | None = None) -> dict:
        self.proc.stdin.write(json.dumps({"configure": configure}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.terminate()


def module_ai_model(url: str, transport: str):
    from module_ai.config import ModelConfig
    from module_ai.registry import Registry

    cfg = ModelConfig(model_type="chat", server_type="openai", model="bench", url=url, api_key=KEY,
                      out_tokens=MAX_TOKENS, pay_in=0.3, pay_out=1.2, name=f"bench-{transport}", transport=transport)
    return Registry({cfg.name: cfg}).chat(cfg.name)


def stream_clients(url: str) -> dict:
    """name -> (sync stream fn returning TTFT seconds, async stream coroutine fn)."""
    import openai

    raw, araw = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0), None
    models = {t: module_ai_model(url, t) for t in ("httpx", "sdk")}

    def raw_stream() -> float:
        t0, first = time.perf_counter(), None
        for chunk in raw.chat.completions.create(model="bench", messages=MESSAGES, max_tokens=MAX_TOKENS,
                                                 stream=True, stream_options={"include_usage": True}):
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - t0
        return first

    async def araw_stream() -> None:
        nonlocal araw
        araw = araw or openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0)
        async for _ in await araw.chat.completions.create(model="bench", messages=MESSAGES, max_tokens=MAX_TOKENS,
                                                          stream=True, stream_options={"include_usage": True}):
            pass

    def managed(llm):
        def run() -> float:
            t0, first = time.perf_counter(), None
            for chunk in llm.stream("用一句话介绍长城。"):
                if first is None and chunk.content:
                    first = time.perf_counter() - t0
            return first

        async def arun() -> None:
            async for _ in llm.astream("用一句话介绍长城。"):
                pass

        return run, arun

    out = {"openai SDK": (raw_stream, araw_stream)}
    out.update({f"module_ai ({t})": managed(llm) for t, llm in models.items()})
    return out


def connections(calls: int = 20) -> dict:
    """New TCP connections after the first call, over ``calls`` sequential streamed calls."""
    server = Server()
    try:
        out = {}
        for name, (sync_fn, async_fn) in stream_clients(server.url).items():
            before = server.stats()["connections"]
            sync_fn()
            first = server.stats()["connections"]
            for _ in range(calls - 1):
                sync_fn()
            sync_new = server.stats()["connections"] - first

            async def run(async_fn=async_fn) -> int:
                await async_fn()
                first = server.stats()["connections"]
                for _ in range(calls - 1):
                    await async_fn()
                return server.stats()["connections"] - first

            out[name] = {"sync_first_call": first - before, "sync_after_first": sync_new,
                         "async_after_first": asyncio.run(run())}
        return out
    finally:
        server.stop()


def ttft(calls: int = 20, delay_ms: int = 50) -> dict:
    """p50 time to first token with ``delay_ms`` on every new connection; clients alternate."""
    server = Server(connect_delay_ms=delay_ms)
    try:
        clients = {name: fns[0] for name, fns in stream_clients(server.url).items()}
        for fn in clients.values():
            fn()  # warm-up: imports, first connection
        times: dict[str, list[float]] = {name: [] for name in clients}
        for i in range(calls):
            for name in list(clients)[i % len(clients):] + list(clients)[:i % len(clients)]:
                times[name].append(clients[name]())
        return {name: round(statistics.median(v) * 1000, 2) for name, v in times.items()}
    finally:
        server.stop()


def cpu_clients(url: str) -> dict:
    import httpx
    import openai
    from langchain_openai import ChatOpenAI

    raw = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
    stock = ChatOpenAI(base_url=url, api_key=KEY, model="bench", max_tokens=MAX_TOKENS, max_retries=0,
                       stream_usage=True)
    models = {t: module_ai_model(url, t) for t in ("httpx", "sdk")}
    plain = httpx.Client(headers={"Authorization": f"Bearer {KEY}"})
    body = {"model": "bench", "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    text = MESSAGES[0]["content"]

    def raw_stream():
        for _ in raw.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}):
            pass

    def httpx_stream():
        with plain.stream("POST", url + "/chat/completions",
                          json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    json.loads(line[6:])

    return {
        "invoke": {"openai SDK": lambda: raw.chat.completions.create(**body),
                   "httpx alone": lambda: plain.post(url + "/chat/completions", json=body).json(),
                   "ChatOpenAI": lambda: stock.invoke(text),
                   **{f"module_ai ({t})": (lambda llm=llm: llm.invoke(text)) for t, llm in models.items()}},
        "stream": {"openai SDK": raw_stream, "httpx alone": httpx_stream,
                   "ChatOpenAI": lambda: [None for _ in stock.stream(text)],
                   **{f"module_ai ({t})": (lambda llm=llm: [None for _ in llm.stream(text)])
                      for t, llm in models.items()}},
    }


def alternating(group: dict, calls: int) -> tuple[dict, dict]:
    """Warm each client up (20 calls), then call them in turn ``calls`` times, the starting client
    rotating: per-call process CPU and wall seconds for each name."""
    names = list(group)
    for fn in group.values():
        for _ in range(20):
            fn()
    cpus: dict[str, list[float]] = {n: [] for n in names}
    walls: dict[str, list[float]] = {n: [] for n in names}
    for i in range(calls):
        for name in names[i % len(names):] + names[:i % len(names)]:
            c0, w0 = time.process_time(), time.perf_counter()
            group[name]()
            cpus[name].append(time.process_time() - c0)
            walls[name].append(time.perf_counter() - w0)
    return cpus, walls


def cpu(calls: int) -> dict:
    server = Server()
    try:
        out = {}
        for kind, group in cpu_clients(server.url).items():
            names = list(group)
            cpus, walls = alternating(group, calls)
            # process_time ticks coarsely per call: compare means of CPU, medians of wall
            base_cpu = statistics.fmean(cpus["openai SDK"])
            base_wall = statistics.median(walls["openai SDK"])
            out[kind] = {n: {"cpu_ms": round(statistics.fmean(cpus[n]) * 1000, 3),
                             "cpu_ratio": round(statistics.fmean(cpus[n]) / base_cpu, 3),
                             "wall_median_ms": round(statistics.median(walls[n]) * 1000, 3),
                             "wall_ratio": round(statistics.median(walls[n]) / base_wall, 3)} for n in names}
        return out
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {"connections": connections(), "ttft_p50_ms": ttft(), "cpu": cpu(args.calls),
               "load_avg": os.getloadavg()[0]}
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return
    print(f"load average {results['load_avg']:.2f}")
    for name, row in results["connections"].items():
        print(f"connections {name:20} first call {row['sync_first_call']}  new after first: sync "
              f"{row['sync_after_first']:2} / 19, async {row['async_after_first']:2} / 19")
    for name, value in results["ttft_p50_ms"].items():
        print(f"TTFT p50 (50 ms connection setup) {name:20} {value:7.2f} ms")
    for kind in ("invoke", "stream"):
        for name, row in results["cpu"][kind].items():
            print(f"{kind:6} {name:20} cpu {row['cpu_ms']:6.3f} ms x{row['cpu_ratio']:.2f}   wall median "
                  f"{row['wall_median_ms']:6.3f} ms x{row['wall_ratio']:.2f}")


if __name__ == "__main__":
    main()
