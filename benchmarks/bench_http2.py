"""HTTP/2 vs HTTP/1.1 over TLS for the openai transport: does ``httpx(http2=True)`` help? (one run, side by side).

Server: hypercorn (h2 + http/1.1, ALPN decides) in its own process with a self-signed certificate made at
run time by the ``openssl`` CLI, serving ``POST /v1/chat/completions`` like tests/servers/fault_openai.py
(JSON, or SSE chunks + ``data: [DONE]`` with ``stream: true``) after ``asyncio.sleep(latency)``. It counts
the TCP connections (distinct client ports), the HTTP versions and its own CPU. Reference server: the fault
server (raw asyncio, HTTP/1.1 only) over the same TLS, to see whether hypercorn is the bottleneck.

1. Throughput, 200 requests, modes rotated round by round: ``httpx.AsyncClient`` (gather + semaphore)
   and ``httpx.Client`` (ThreadPoolExecutor), http2 on/off, concurrency 8 and 32; the same HTTP/1.1 clients
   over module_ai's own pool (``_http_pool.LeanTransport``: httpcore's pool costs CPU per pooled connection,
   so it is the HTTP/1.1 that module_ai really runs); module_ai (HTTP/1.1) ``abatch``/``batch``.
   efficiency = ideal / wall, ideal = ceil(200 / concurrency) x latency; client CPU = process time /
   requests; connections used (server side); server CPU / request.
2. Sequential client CPU per invoke and per streamed call (read to the end), clients alternating call by call.
3. Cold burst: a fresh AsyncClient sends 32 requests at once (32 TLS handshakes on h1, one on h2).
4. TTFT p50 of a streamed call on a fresh client (TLS + HTTP/2 preface vs TLS + HTTP/1.1), and on a warm one.

Requests that fail are counted, not retried: ``httpx.Client(http2=True)`` shared by threads corrupts its one
connection's h2 state now and then (httpcore calls h2's ``send_headers`` outside its locks; GOAWAY
PROTOCOL_ERROR, "Server disconnected", h2 ``ProtocolError``; cf. encode/httpx#3072, iiasa/ixmp4#224).

Needs ``pip install hypercorn h2`` (not in the package's extras: only this script uses them).

    python benchmarks/bench_http2.py [--requests 200] [--rounds 5] [--calls 400] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MAX_TOKENS = 16
KEY = "sk-bench"
BODY = {"model": "bench", "messages": [{"role": "user", "content": "用一句话介绍长城。"}], "max_tokens": MAX_TOKENS}
SBODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}


# ---------------------------------------------------------------- server (child process)

def _chunks(body: dict, rid: str) -> list[bytes]:
    base = {"id": rid, "created": int(time.time()), "model": body.get("model")}
    n = min(body.get("max_tokens") or MAX_TOKENS, MAX_TOKENS)
    usage = {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}
    if not body.get("stream"):
        return [json.dumps(dict(base, object="chat.completion", usage=usage, choices=[{
            "index": 0, "finish_reason": "stop", "logprobs": None,
            "message": {"role": "assistant", "content": " ".join(f"tok{i}" for i in range(n))}}])).encode()]

    def chunk(delta: dict, fin: str | None = None) -> dict:
        return dict(base, object="chat.completion.chunk", choices=[{"index": 0, "delta": delta, "finish_reason": fin}])

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": (" " if i else "") + f"tok{i}"}) for i in range(n)]
    events.append(chunk({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(dict(base, object="chat.completion.chunk", choices=[], usage=usage))
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


def serve(port: int, cert: str, key: str, latency: float) -> None:
    """hypercorn on 127.0.0.1:port; stdin lines {"latency": s} -> stats JSON on stdout (counters reset)."""
    import threading

    from hypercorn.asyncio import serve as hyper_serve
    from hypercorn.config import Config

    state = {"latency": latency, "ports": set(), "seen": set(), "versions": Counter(), "n": 0}

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"].split(".")[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        raw = b""
        while True:
            msg = await receive()
            raw += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        state["n"] += 1
        state["ports"].add(scope["client"][1])
        state["versions"][scope["http_version"]] += 1
        body = json.loads(raw)
        await asyncio.sleep(state["latency"])
        parts = _chunks(body, f"chatcmpl-{state['n']}")
        ctype = b"text/event-stream" if body.get("stream") else b"application/json"
        headers = [(b"content-type", ctype)]
        if not body.get("stream"):
            headers.append((b"content-length", str(len(parts[0])).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < len(parts) - 1})

    def control() -> None:
        for line in sys.stdin:
            cmd = json.loads(line)
            new = state["ports"] - state["seen"]
            out = {"connections": len(state["ports"]), "new_connections": len(new), "requests": state["n"],
                   "versions": dict(state["versions"]), "cpu_s": time.process_time()}
            state["seen"] |= state["ports"]
            state["ports"], state["versions"], state["n"] = set(), Counter(), 0
            if cmd.get("latency") is not None:
                state["latency"] = cmd["latency"]
            print(json.dumps(out), flush=True)
        os._exit(0)

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.certfile, config.keyfile = cert, key
    config.keep_alive_timeout = 600  # no idle closes between rotated modes
    config.keep_alive_max_requests = 10**9  # no recycling of the h2 connection after 1000 requests
    config.errorlog = None
    threading.Thread(target=control, daemon=True).start()
    asyncio.run(hyper_serve(app, config))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on {port} did not come up")


class Child:
    """A server process; ``stats(**cmd)`` writes one JSON line to its stdin and reads one back."""

    def __init__(self, argv: list[str], port: int, scheme: str = "https") -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = port
        wait_port(port, self.proc)
        self.url = f"{scheme}://127.0.0.1:{port}/v1"

    def stats(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.kill()  # hypercorn's graceful shutdown logs a traceback per open connection
        self.proc.wait(5)


def hypercorn_server(tls: Path, latency: float) -> Child:
    port = free_port()
    return Child([sys.executable, __file__, "--serve", str(port), str(tls / "cert.pem"), str(tls / "key.pem"),
                  "--latency", str(latency)], port)


def fault_server(tls: Path, latency: float) -> Child:
    """The HTTP/1.1-only fault server (raw asyncio streams) over the same TLS certificate."""
    code = (f"import sys, ssl, json, time; sys.path.insert(0, {str(ROOT)!r})\n"
            "from tests.servers.fault_openai import FaultServer\n"
            "ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)\n"
            f"ctx.load_cert_chain({str(tls / 'cert.pem')!r}, {str(tls / 'key.pem')!r})\n"
            "s = FaultServer(None, tls=ctx)\n"
            f"s.configure(latency_ms={int(latency * 1000)}, reply_tokens={MAX_TOKENS})\n"
            "print(s.port, flush=True)\n"
            "last = 0\n"
            "for line in sys.stdin:\n"
            "    c = s.stats()['connections']\n"
            "    print(json.dumps({'new_connections': c - last, 'cpu_s': time.process_time()}), flush=True)\n"
            "    last = c\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    child = Child.__new__(Child)
    child.proc, child.port, child.url = proc, port, f"https://127.0.0.1:{port}/v1"
    return child


def make_cert(d: Path) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)


# ---------------------------------------------------------------- clients

AUTH = {"Authorization": f"Bearer {KEY}"}


def tls_context(cert: Path) -> ssl.SSLContext:
    """One per client: httpcore sets the ALPN list on the context it is given at every connect."""
    return ssl.create_default_context(cafile=str(cert))


def client(cert: Path, http2: bool, sync: bool = False):
    import httpx

    cls = httpx.Client if sync else httpx.AsyncClient
    # as module_ai: no cap on connections; no idle expiry while the modes rotate
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=600)
    return cls(http2=http2, verify=tls_context(cert), limits=limits, headers=AUTH, timeout=30)


def lean_client(cert: Path, sync: bool = False):
    """An httpx client over module_ai's own HTTP/1.1 pool (the lean transport); None if it has moved."""
    import httpx

    try:
        from module_ai.backends._http_pool import AsyncLeanTransport, LeanTransport
    except ImportError:
        return None
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=600)
    transport = (LeanTransport if sync else AsyncLeanTransport)(verify=tls_context(cert), limits=limits)
    return (httpx.Client if sync else httpx.AsyncClient)(transport=transport, headers=AUTH, timeout=30)


def read_stream(response) -> float | None:
    """Read an SSE reply to the end; return the time the first content delta arrived (perf_counter)."""
    first = None
    for line in response.iter_lines():
        if line.startswith("data: {"):
            event = json.loads(line[6:])
            if first is None and event["choices"] and event["choices"][0]["delta"].get("content"):
                first = time.perf_counter()
    return first


def outcome(post) -> str:
    """The reply's HTTP version, or the error: httpcore's sync HTTP/2 connection calls h2's
    ``send_headers`` outside its locks, so threads sharing one connection corrupt its state."""
    import h2.exceptions
    import httpx

    try:
        reply = post()
        reply.json()
        return reply.http_version
    except (httpx.HTTPError, h2.exceptions.ProtocolError, RuntimeError, KeyError) as exc:  # seen leaking out of h2
        return f"error {type(exc).__name__}: {str(exc)[:60]}"


def gather_mode(http, url: str, concurrency: int, loop: asyncio.AbstractEventLoop):
    import httpx

    async def go(n: int) -> Counter:
        semaphore = asyncio.Semaphore(concurrency)

        async def one() -> str:
            async with semaphore:
                try:
                    reply = await http.post(url + "/chat/completions", json=BODY)
                    reply.json()
                    return reply.http_version
                except httpx.HTTPError as exc:
                    return f"error {type(exc).__name__}: {str(exc)[:60]}"

        return Counter(await asyncio.gather(*(one() for _ in range(n))))

    return lambda n: loop.run_until_complete(go(n))


def threads_mode(http, url: str, concurrency: int):
    pool = ThreadPoolExecutor(max_workers=concurrency)

    def one(_: int) -> str:
        return outcome(lambda: http.post(url + "/chat/completions", json=BODY))

    return lambda n: Counter(pool.map(one, range(n)))


def module_ai_model(url: str, concurrency: int):
    from bench_chat_overhead import registry_model

    return registry_model(url, max_concurrency=concurrency)


def throughput_modes(hyper: Child, fault: Child, cert: Path, loop, with_module_ai: bool) -> dict:
    """(name, concurrency) -> (server, fn(n) -> Counter of HTTP versions / errors the client saw, or None)."""
    modes = {}
    for conc in (8, 32):
        for h2 in (False, True):
            proto = "h2" if h2 else "h1"
            modes[(f"httpx.AsyncClient {proto}", conc)] = (hyper, gather_mode(client(cert, h2), hyper.url, conc, loop))
            modes[(f"httpx.Client+threads {proto}", conc)] = (hyper, threads_mode(client(cert, h2, True), hyper.url,
                                                                                   conc))
        lean = lean_client(cert), lean_client(cert, True)
        if lean[0] is not None:
            modes[("AsyncClient h1, module_ai pool", conc)] = (hyper, gather_mode(lean[0], hyper.url, conc, loop))
            modes[("Client+threads h1, module_ai pool", conc)] = (hyper, threads_mode(lean[1], hyper.url, conc))
        ref = lean_client(cert) or client(cert, False)  # the fault server's ceiling, not httpcore's pool
        modes[("AsyncClient h1 -> fault server", conc)] = (fault, gather_mode(ref, fault.url, conc, loop))
        if with_module_ai:
            llm = module_ai_model(hyper.url, conc)
            modes[("module_ai abatch (h1)", conc)] = (
                hyper, lambda n, llm=llm: (loop.run_until_complete(llm.abatch(["问题"] * n)), None)[1])
            modes[("module_ai batch (h1)", conc)] = (hyper, lambda n, llm=llm: (llm.batch(["问题"] * n), None)[1])
    return modes


def throughput(modes: dict, requests: int, rounds: int, latency: float) -> list[dict]:
    for server, fn in modes.values():  # warm-up: imports, threads, connections
        fn(64)
    samples: dict = {key: [] for key in modes}
    keys = list(modes)
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            server, fn = modes[key]
            before = server.stats()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            versions = fn(requests)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            after = server.stats()
            samples[key].append({"wall": wall, "cpu": cpu, "server_cpu": after["cpu_s"] - before["cpu_s"],
                                 "connections": after.get("connections"), "new": after["new_connections"],
                                 "client_outcomes": versions,
                                 "server_versions": after.get("versions")})
    rows = []
    for (name, conc), runs in samples.items():
        ideal = math.ceil(requests / conc) * latency
        wall = statistics.median(s["wall"] for s in runs)
        rows.append({"mode": name, "concurrency": conc, "ideal_s": round(ideal, 3), "median_wall_s": round(wall, 3),
                     "efficiency": round(ideal / wall, 3),
                     "efficiencies": [round(ideal / s["wall"], 3) for s in runs],
                     "client_cpu_ms_per_request": round(1000 * statistics.median(s["cpu"] for s in runs) / requests, 3),
                     "server_cpu_ms_per_request": round(1000 * statistics.median(s["server_cpu"] for s in runs)
                                                        / requests, 3),
                     "connections": [s["connections"] for s in runs], "new_connections": [s["new"] for s in runs],
                     "client_outcomes": dict(sum((s["client_outcomes"] or Counter() for s in runs), Counter())),
                     "runs_with_errors": sum(any(k.startswith("error") for k in s["client_outcomes"] or ())
                                             for s in runs),
                     "server_versions": runs[-1]["server_versions"]})
    return rows


def sequential_cpu(hyper: Child, cert: Path, calls: int, with_module_ai: bool) -> dict:
    """Client CPU per call, clients alternating call by call; means of CPU (coarse ticks), medians of wall."""
    url = hyper.url + "/chat/completions"
    http = {proto: client(cert, proto == "h2", sync=True) for proto in ("h1", "h2")}
    if lean_client(cert, True) is not None:
        http["h1, module_ai pool"] = lean_client(cert, True)

    def streamer(c):
        def run() -> None:
            with c.stream("POST", url, json=SBODY) as reply:
                read_stream(reply)
        return run

    groups = {"invoke": {f"httpx {p}": (lambda c=c: c.post(url, json=BODY).json()) for p, c in http.items()},
              "stream": {f"httpx {p}": streamer(c) for p, c in http.items()}}
    if with_module_ai:
        llm = module_ai_model(hyper.url, 1)
        groups["invoke"]["module_ai (h1)"] = lambda: llm.invoke("用一句话介绍长城。")
        groups["stream"]["module_ai (h1)"] = lambda: [None for _ in llm.stream("用一句话介绍长城。")]
    out = {}
    from bench_transport import alternating

    for kind, group in groups.items():
        names = list(group)
        cpus, walls = alternating(group, calls)
        out[kind] = {n: {"cpu_ms": round(statistics.fmean(cpus[n]) * 1000, 3),
                         "wall_median_ms": round(statistics.median(walls[n]) * 1000, 3)} for n in names}
        out[kind]["h2/h1 cpu"] = round(out[kind]["httpx h2"]["cpu_ms"] / out[kind]["httpx h1"]["cpu_ms"], 3)
        out[kind]["h2/h1 wall"] = round(out[kind]["httpx h2"]["wall_median_ms"]
                                        / out[kind]["httpx h1"]["wall_median_ms"], 3)
        if "httpx h1, module_ai pool" in out[kind]:
            out[kind]["h2/h1-module_ai-pool cpu"] = round(out[kind]["httpx h2"]["cpu_ms"]
                                                          / out[kind]["httpx h1, module_ai pool"]["cpu_ms"], 3)
    return out


def ttft(hyper: Child, cert: Path, calls: int) -> dict:
    """p50 TTFT of a streamed call: on a fresh client (new TCP + TLS + protocol setup each time) and warm."""
    import httpx

    url = hyper.url + "/chat/completions"
    ctx = {p: tls_context(cert) for p in ("h1", "h2")}
    warm = {p: client(cert, p == "h2", sync=True) for p in ("h1", "h2")}

    def one(c) -> tuple[float, str]:
        t0 = time.perf_counter()
        with c.stream("POST", url, json=SBODY) as reply:
            return read_stream(reply) - t0, reply.http_version

    times: dict = {f"{kind} {p}": [] for kind in ("fresh", "warm") for p in ("h1", "h2")}
    versions: dict = {}
    for c in warm.values():
        one(c)
    for i in range(calls + 2):
        order = ["h1", "h2"] if i % 2 else ["h2", "h1"]
        for p in order:
            with httpx.Client(http2=p == "h2", verify=ctx[p], headers=AUTH, timeout=30) as fresh:
                t, versions[f"fresh {p}"] = one(fresh)
            if i >= 2:  # the first two rounds warm imports and code paths
                times[f"fresh {p}"].append(t)
            t, versions[f"warm {p}"] = one(warm[p])
            if i >= 2:
                times[f"warm {p}"].append(t)
    out = {name: round(statistics.median(v) * 1000, 2) for name, v in times.items()}
    out["fresh h2/h1"] = round(out["fresh h2"] / out["fresh h1"], 3)
    out["warm h2/h1"] = round(out["warm h2"] / out["warm h1"], 3)
    out["fresh h2 - h1 ms"] = round(out["fresh h2"] - out["fresh h1"], 2)
    out["versions"] = versions
    return out


def cold_burst(hyper: Child, cert: Path, loop, reps: int, conc: int = 32) -> dict:
    """A fresh AsyncClient sends ``conc`` requests at once: h1 opens ``conc`` TLS connections, h2 one.
    Medians over ``reps`` (h1 / h2 alternating) of wall, client CPU and connections opened."""
    makers = {"h1": lambda: client(cert, False), "h2": lambda: client(cert, True)}
    if lean_client(cert) is not None:
        makers["h1, module_ai pool"] = lambda: lean_client(cert)
    samples: dict = {name: [] for name in makers}
    names = list(makers)
    for i in range(reps + 1):
        for name in names[i % len(names):] + names[:i % len(names)]:
            http = makers[name]()
            hyper.stats()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            outcomes = gather_mode(http, hyper.url, conc, loop)(conc)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            connections = hyper.stats()["connections"]
            loop.run_until_complete(http.aclose())
            assert not any(k.startswith("error") for k in outcomes), outcomes
            if i:  # the first round warms code paths
                samples[name].append((wall, cpu, connections))
    out = {name: {"wall_ms": round(1000 * statistics.median(s[0] for s in v), 2),
                  "cpu_ms_per_request": round(1000 * statistics.median(s[1] for s in v) / conc, 3),
                  "connections": statistics.median(s[2] for s in v)} for name, v in samples.items()}
    out["h2/h1 wall"] = round(out["h2"]["wall_ms"] / out["h1"]["wall_ms"], 3)
    out["h2/h1 cpu"] = round(out["h2"]["cpu_ms_per_request"] / out["h1"]["cpu_ms_per_request"], 3)
    if "h1, module_ai pool" in out:
        lean = out["h1, module_ai pool"]
        out["h2/h1-module_ai-pool wall"] = round(out["h2"]["wall_ms"] / lean["wall_ms"], 3)
        out["h2/h1-module_ai-pool cpu"] = round(out["h2"]["cpu_ms_per_request"] / lean["cpu_ms_per_request"], 3)
    return out


def ratios(rows: list[dict]) -> list[dict]:
    """h2 / h1 with httpx's own pool, and h2 / h1 over module_ai's pool (what module_ai runs today)."""
    by = {(r["mode"], r["concurrency"]): r for r in rows}
    pairs = [("httpx.AsyncClient", "httpx.AsyncClient h1"), ("httpx.Client+threads", "httpx.Client+threads h1"),
             ("httpx.AsyncClient", "AsyncClient h1, module_ai pool"),
             ("httpx.Client+threads", "Client+threads h1, module_ai pool")]
    out = []
    for kind, base in pairs:
        for conc in (8, 32):
            if (base, conc) not in by:
                continue
            h1, h2 = by[(base, conc)], by[(f"{kind} h2", conc)]
            out.append({"client": f"{kind} h2 / {base}", "concurrency": conc,
                        "efficiency h2/h1": round(h2["efficiency"] / h1["efficiency"], 3),
                        "client cpu h2/h1": round(h2["client_cpu_ms_per_request"] / h1["client_cpu_ms_per_request"], 3),
                        "server cpu h2/h1": round(h2["server_cpu_ms_per_request"] / h1["server_cpu_ms_per_request"], 3)})
    return out


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_all(args) -> dict:
    results: dict = {"load_avg_start": load(), "latency_ms": args.latency * 1000}
    with tempfile.TemporaryDirectory() as d:
        tls = Path(d)
        make_cert(tls)
        os.environ["SSL_CERT_FILE"] = str(tls / "cert.pem")  # module_ai's one TLS context trusts the cert
        hyper, fault = hypercorn_server(tls, args.latency), fault_server(tls, args.latency)
        loop = asyncio.new_event_loop()
        try:
            modes = throughput_modes(hyper, fault, tls / "cert.pem", loop, not args.no_module_ai)
            results["throughput"] = throughput(modes, args.requests, args.rounds, args.latency)
            results["throughput_ratios"] = ratios(results["throughput"])
            results["load_avg_after_throughput"] = load()
            results["cold_burst"] = cold_burst(hyper, tls / "cert.pem", loop, args.burst_reps)
            hyper.stats(latency=args.cpu_latency)
            results["cpu_latency_ms"] = args.cpu_latency * 1000
            results["sequential_cpu"] = sequential_cpu(hyper, tls / "cert.pem", args.calls, not args.no_module_ai)
            hyper.stats(latency=args.latency)
            results["ttft"] = ttft(hyper, tls / "cert.pem", args.ttft_calls)
        finally:
            loop.close()
            hyper.stop()
            fault.stop()
    results["load_avg_end"] = load()
    return results


def show(results: dict, args) -> None:
    print(f"load average at start {results['load_avg_start']}, after throughput "
          f"{results['load_avg_after_throughput']}, at end {results['load_avg_end']}")
    print(f"\n{args.requests} requests, server latency {results['latency_ms']:.0f} ms, {args.rounds} rounds (medians)")
    print(f"{'mode':34} {'conc':>4} {'eff':>6} {'cli ms/req':>10} {'srv ms/req':>10}  connections / new   versions")
    for r in results["throughput"]:
        print(f"{r['mode']:34} {r['concurrency']:4} {r['efficiency']:6.3f} {r['client_cpu_ms_per_request']:10.3f} "
              f"{r['server_cpu_ms_per_request']:10.3f}  {r['connections']} / {r['new_connections']}  "
              f"{r['client_outcomes'] or ''} server {r['server_versions']}"
              + (f"  ERRORS in {r['runs_with_errors']} of {len(r['efficiencies'])} runs" if r["runs_with_errors"] else ""))
    for r in results["throughput_ratios"]:
        print(f"{r['client']:56} conc {r['concurrency']:3}: efficiency x{r['efficiency h2/h1']:.3f}  "
              f"client cpu x{r['client cpu h2/h1']:.3f}  server cpu x{r['server cpu h2/h1']:.3f}")
    burst = results["cold_burst"]
    print(f"\ncold burst: a fresh AsyncClient sends 32 requests at once (median of {args.burst_reps}):")
    for name, row in burst.items():
        if isinstance(row, dict):
            print(f"  {name:20} wall {row['wall_ms']:8.2f} ms  cpu {row['cpu_ms_per_request']:6.3f} ms/req  "
                  f"connections {row['connections']}")
    print(f"  h2/h1: wall x{burst['h2/h1 wall']:.3f}  cpu x{burst['h2/h1 cpu']:.3f}"
          + (f"   h2 / h1 over module_ai's pool: wall x{burst['h2/h1-module_ai-pool wall']:.3f}  "
             f"cpu x{burst['h2/h1-module_ai-pool cpu']:.3f}" if "h2/h1-module_ai-pool wall" in burst else ""))
    print(f"\nsequential, {args.calls} calls each, alternating, server latency {results['cpu_latency_ms']:.0f} ms")
    for kind, group in results["sequential_cpu"].items():
        for name, row in group.items():
            if isinstance(row, dict):
                print(f"{kind:6} {name:28} cpu {row['cpu_ms']:7.3f} ms   wall median {row['wall_median_ms']:7.3f} ms")
        print(f"{kind:6} h2/h1: cpu x{group['h2/h1 cpu']:.3f}  wall x{group['h2/h1 wall']:.3f}"
              + (f"   h2 / h1 over module_ai's pool: cpu x{group['h2/h1-module_ai-pool cpu']:.3f}"
                 if "h2/h1-module_ai-pool cpu" in group else ""))
    t = results["ttft"]
    print(f"\nTTFT p50 of {args.ttft_calls} (server latency {results['latency_ms']:.0f} ms): fresh client h1 "
          f"{t['fresh h1']} ms, h2 {t['fresh h2']} ms (x{t['fresh h2/h1']}, {t['fresh h2 - h1 ms']:+} ms); "
          f"warm client h1 {t['warm h1']} ms, h2 {t['warm h2']} ms (x{t['warm h2/h1']})  {t['versions']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400, help="sequential calls per client")
    parser.add_argument("--ttft-calls", type=int, default=20)
    parser.add_argument("--burst-reps", type=int, default=10, help="cold bursts of 32 per client")
    parser.add_argument("--latency", type=float, default=0.05, help="server latency (s) for throughput and TTFT")
    parser.add_argument("--cpu-latency", type=float, default=0.0, help="server latency (s) for the sequential part")
    parser.add_argument("--no-module-ai", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "CERT", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.serve[2], args.latency)
        return
    results = run_all(args)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        show(results, args)


if __name__ == "__main__":
    main()
