"""Throughput vs ideal: 200 requests against a server that sleeps 50 ms per request.

Modes (rotated every round, same run): sequential ``invoke``; registry models with
``max_concurrency`` 1, 8 and 32 through ``batch()`` and ``abatch()`` with *no* RunnableConfig (module_ai
sets it from the model config), and the same models through LangChain's own ``Runnable.abatch`` runner;
the raw ``AsyncOpenAI`` SDK at 8 and 32 in flight (the floor), and
``httpx.AsyncClient`` alone (POST + ``json()`` on httpx's own httpcore pool, no SDK, no LangChain);
a ``BaseChatModel`` posting on raw sockets (the ceiling of any LangChain chat model here);
stock ``ChatOpenAI`` for reference: ``batch()`` with LangChain's default,
``batch``/``abatch`` with an explicit ``max_concurrency``. On a shared 2-core VM absolute efficiencies
move with the neighbours' load; compare module_ai with stock at the same concurrency (same run).
efficiency = ideal / wall with ideal = ceil(200 / concurrency) x 50 ms; client CPU per request is
process CPU time (all threads) / requests. The server runs in its own process.

    python benchmarks/bench_concurrency.py [--requests 200] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_chat_overhead import MAX_TOKENS, start_server

LATENCY_S = 0.05


def build_modes(url: str, loop: asyncio.AbstractEventLoop) -> dict:
    import httpx
    import openai
    from langchain_core.runnables import Runnable
    from langchain_openai import ChatOpenAI

    from module_ai.config import ModelConfig
    from module_ai.registry import Registry

    configs = {f"c{n}": ModelConfig(model_type="chat", server_type="openai", model="bench", url=url,
                                    api_key="sk-bench", out_tokens=MAX_TOKENS, max_concurrency=n, name=f"c{n}")
               for n in (1, 8, 32)}
    reg = Registry(configs)
    models = {name: reg.chat(name) for name in configs}
    stock = ChatOpenAI(base_url=url, api_key="sk-bench", model="bench", max_tokens=MAX_TOKENS, max_retries=0)
    modes = {("sequential invoke", 1): lambda xs: [models["c1"].invoke(x) for x in xs]}
    for n in (1, 8, 32):
        llm = models[f"c{n}"]
        modes[(f"batch, max_concurrency {n}", n)] = llm.batch
        modes[(f"abatch, max_concurrency {n}", n)] = lambda xs, llm=llm: loop.run_until_complete(llm.abatch(xs))
    for n in (8, 32):  # the same model through LangChain's own abatch runner (a semaphore per input)
        modes[(f"abatch via Runnable.abatch, {n}", n)] = (
            lambda xs, n=n: loop.run_until_complete(Runnable.abatch(models[f"c{n}"], xs, {"max_concurrency": n})))
    modes[("stock ChatOpenAI.batch, default", min(32, (os.cpu_count() or 1) + 4))] = stock.batch
    for n in (8, 32):
        modes[(f"stock ChatOpenAI.batch, max_concurrency {n}", n)] = (
            lambda xs, n=n: stock.batch(xs, config={"max_concurrency": n}))
    modes[("stock ChatOpenAI.abatch, max_concurrency 32", 32)] = (
        lambda xs: loop.run_until_complete(stock.abatch(xs, config={"max_concurrency": 32})))
    ceiling = _raw_socket_chat_model(url)
    for n in (8, 32):
        modes[(f"ceiling: BaseChatModel on raw sockets, batch {n}", n)] = (
            lambda xs, n=n: ceiling.batch(xs, config={"max_concurrency": n}))
        modes[(f"ceiling: BaseChatModel on raw sockets, abatch {n}", n)] = (
            lambda xs, n=n: loop.run_until_complete(ceiling.abatch(xs, config={"max_concurrency": n})))
    raw = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)
    plain = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
    for n in (8, 32):
        modes[(f"raw AsyncOpenAI, gather, concurrency {n}", n)] = (
            lambda xs, n=n: loop.run_until_complete(_raw_gather(raw, xs, n)))
        modes[(f"httpx.AsyncClient alone (no LangChain), concurrency {n}", n)] = (
            lambda xs, n=n: loop.run_until_complete(_httpx_gather(plain, url, xs, n)))
    return modes


def _raw_socket_chat_model(url: str):
    """The ceiling of any LangChain chat model against this server: a ``BaseChatModel`` whose
    ``_generate``/``_agenerate`` post a fixed request on kept raw sockets and skip the JSON (LangChain's
    own invoke/batch machinery is all the client work left)."""
    import socket

    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    host, port = url.split("//")[1].split("/")[0].split(":")
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": MAX_TOKENS})
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n{body}").encode()
    idle_sync: list = []
    idle_async: list = []

    def length(head: bytes) -> int:
        return next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))

    class RawSocketChat(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "raw-socket"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            sock = idle_sync.pop() if idle_sync else socket.create_connection((host, int(port)))
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, rest = data.split(b"\r\n\r\n", 1)
            while len(rest) < length(head):
                rest += sock.recv(65536)
            idle_sync.append(sock)
            return ChatResult(generations=[ChatGeneration(message=AIMessage("ok"))])

        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
            reader, writer = idle_async.pop() if idle_async else await asyncio.open_connection(host, int(port))
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(length(head))
            idle_async.append((reader, writer))
            return ChatResult(generations=[ChatGeneration(message=AIMessage("ok"))])

    return RawSocketChat()


async def _httpx_gather(client, url: str, inputs: list[str], concurrency: int) -> list:
    """POST and ``json()`` on httpx's own pool (httpcore): no SDK, no LangChain."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(text: str):
        async with semaphore:
            reply = await client.post(f"{url}/chat/completions", json={
                "model": "bench", "messages": [{"role": "user", "content": text}], "max_tokens": MAX_TOKENS})
            return reply.json()

    return await asyncio.gather(*(one(x) for x in inputs))


async def _raw_gather(client, inputs: list[str], concurrency: int) -> list:
    """The floor: the raw async SDK, ``concurrency`` requests in flight (a semaphore), results in order."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(text: str):
        async with semaphore:
            return await client.chat.completions.create(
                model="bench", messages=[{"role": "user", "content": text}], max_tokens=MAX_TOKENS)

    return await asyncio.gather(*(one(x) for x in inputs))


def run(modes: dict, requests: int, rounds: int) -> list[dict]:
    inputs = [f"问题 {i}" for i in range(requests)]
    walls: dict = {key: [] for key in modes}
    cpus: dict = {key: [] for key in modes}
    keys = list(modes)
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            results = modes[key](inputs)
            walls[key].append(time.perf_counter() - wall0)
            cpus[key].append(time.process_time() - cpu0)
            assert len(results) == requests
    rows = []
    for (name, concurrency), values in walls.items():
        ideal = math.ceil(requests / concurrency) * LATENCY_S
        wall = statistics.median(values)
        rows.append({"mode": name, "concurrency": concurrency, "ideal_s": round(ideal, 3),
                     "median_wall_s": round(wall, 3), "efficiency": round(ideal / wall, 3),
                     "client_cpu_ms_per_request": round(1000 * statistics.median(cpus[(name, concurrency)]) / requests, 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    proc, url = start_server(latency_ms=int(LATENCY_S * 1000))
    loop = asyncio.new_event_loop()
    try:
        modes = build_modes(url, loop)
        for fn in modes.values():  # warm-up: imports, connections
            fn(["warm-up"] * 8)
        rows = run(modes, args.requests, args.rounds)
    finally:
        loop.close()
        proc.terminate()
    if args.json:
        print(json.dumps({"rows": rows, "load_avg": os.getloadavg()[0]}, indent=2, ensure_ascii=False))
        return
    print(f"{args.requests} requests, server latency {LATENCY_S * 1000:.0f} ms, {args.rounds} rounds, "
          f"load average {os.getloadavg()[0]:.2f}")
    for row in rows:
        print(f"{row['mode']:34} conc {row['concurrency']:3}  ideal {row['ideal_s']:6.2f} s  "
              f"wall {row['median_wall_s']:6.3f} s  efficiency {row['efficiency']:.3f}  "
              f"cpu {row['client_cpu_ms_per_request']:.2f} ms/req")


if __name__ == "__main__":
    main()
