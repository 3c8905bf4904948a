"""A fault-injecting OpenAI-compatible server (asyncio, own thread + event loop), deterministic.

    srv = start(api_key=None)          # srv.url = "http://127.0.0.1:P", srv.base_url = srv.url + "/v1"
    srv.configure(latency_ms=50, faults=["429", None, "500"], every=(5, "drop"), retry_after="0.2")
    srv.stats()  -> {"total", "statuses", "faults", "max_in_flight", "in_flight", "timestamps", "paths",
                     "billed"}  # billed = {"prompt_tokens", "completion_tokens"} sent in usage fields
    srv.reset()  # clear stats AND restore the default config
    srv.stop()
    start(api_key, tls=ssl_context)    # https (an ``ssl.SSLContext`` with the server's certificate)

Routes: `POST /v1/chat/completions` (stream or not; content "tok0 tok1 ..." of
min(max_tokens|max_completion_tokens, reply_tokens) words; usage unless `usage=False`; streaming usage
chunk only with `stream_options.include_usage`), `POST /v1/embeddings` (str | [str] | token arrays →
`embed_dims`-dim hash vectors, base64 honoured), `GET /v1/models`.
Prompt tokens: words + 3 per message, or with `prompt_count="bytes"` UTF-8 bytes + 3 per message (a
tokenizer far above the 3.5-characters estimate, as real ones are on hex/base64/code).
Fault for the k-th request (1-based, over all routes, counted from the last configure(faults=/every=)
or reset()): `faults[k-1]` if `faults` is a list
(None = ok), or `faults(k, path, body)` if callable, else `every=(N, name)` when k % N == 0.
Fault names: "429" (with `Retry-After: retry_after`), "500", "502", "503", "408", "400", "401",
"malformed" (200 with a truncated JSON body / a non-JSON SSE line), "empty" (200, empty JSON body),
"html" (200, an HTML page), "text" (200, text/plain that is not JSON), "cut" (stream: `drop_after` chunks,
then the body ends cleanly with neither finish_reason nor [DONE]), "drop" (stream: `drop_after` chunks then
the connection is aborted; non-stream: aborted before any response), "no_usage", "hang" (sleeps `hang_s`).
`connect_delay_ms` delays the first reply on each new TCP connection (a simulated TLS handshake);
`keepalive_requests=N` closes each connection after its N-th reply (nginx's ``keepalive_requests``; 0 = never);
stats()["connections"] counts TCP connections accepted. stats()["statuses"] counts replies by status (0 = connection dropped); counts are final before the
client sees the end of the reply. `latency_ms` is added to every request (before the reply); in-flight counting spans the whole request.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import threading
import time
from collections import Counter
from http import HTTPStatus
from typing import Any

from ._util import hash_vector

ERRORS = {
    "429": (429, "rate_limit_error", "Rate limit reached for requests. Please try again later."),
    "500": (500, "server_error", "The server had an error while processing your request."),
    "502": (502, "server_error", "Bad gateway."),
    "503": (503, "server_error", "The engine is currently overloaded, please try again later."),
    "408": (408, "timeout_error", "Request timed out."),
    "400": (400, "invalid_request_error", "Invalid request (injected)."),
    "401": (401, "invalid_request_error", "Incorrect API key provided."),
}
DEFAULTS: dict[str, Any] = {
    "latency_ms": 0,
    "faults": None,
    "every": None,
    "retry_after": "1",
    "usage": True,
    "reply_tokens": 8,
    "drop_after": 2,
    "hang_s": 30.0,
    "embed_dims": 8,
    "model": "fault-model",
    "prompt_count": "words",
    "connect_delay_ms": 0,
    "keepalive_requests": 0,
}


class FaultServer:
    def __init__(self, api_key: str | None = None, tls: Any = None):
        self.api_key, self._tls = api_key, tls  # tls: an ssl.SSLContext for https
        self._lock = threading.Lock()
        self.config: dict[str, Any] = dict(DEFAULTS)
        self._clear()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True, name="fault-openai")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault server did not start")
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.base_url = self.url + "/v1"

    # control API -----------------------------------------------------------------------------------
    def configure(self, **kwargs: Any) -> FaultServer:
        unknown = set(kwargs) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        with self._lock:
            self.config.update(kwargs)
            if "faults" in kwargs or "every" in kwargs:
                self._sched = 0  # fault schedules count requests from the configure() call
        return self

    def _clear(self) -> None:
        self._n = 0
        self._sched = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._statuses: Counter = Counter()
        self._faults: Counter = Counter()
        self._timestamps: list[float] = []
        self._billed: Counter = Counter()
        self._connections = 0
        self.requests: list[dict] = []

    def reset(self) -> None:
        with self._lock:
            self._clear()
            self.config = dict(DEFAULTS)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._n,
                "statuses": dict(self._statuses),
                "faults": dict(self._faults),
                "max_in_flight": self._max_in_flight,
                "in_flight": self._in_flight,
                "timestamps": list(self._timestamps),
                "paths": [r["path"] for r in self.requests],
                "billed": {"prompt_tokens": self._billed["prompt_tokens"],
                           "completion_tokens": self._billed["completion_tokens"]},
                "connections": self._connections,
            }

    @property
    def count(self) -> int:
        with self._lock:
            return self._n

    def stop(self) -> None:
        async def _shutdown() -> None:
            self._server.close()
            for t in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                t.cancel()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(_shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # server ----------------------------------------------------------------------------------------
    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0, backlog=1024, ssl=self._tls)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._connections += 1
            delay = self.config["connect_delay_ms"]
        try:
            if delay:
                await asyncio.sleep(delay / 1000)
            served = 0
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length") or 0)
                raw = await reader.readexactly(n) if n else b""
                if not await self._handle(method, target.split("?")[0], headers, raw, writer):
                    break
                served += 1
                if 0 < self.config["keepalive_requests"] <= served:
                    await writer.drain()
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, ValueError):
            pass
        finally:
            writer.close()

    def _fault_for(self, k: int, path: str, body: Any) -> str | None:
        faults, every = self.config["faults"], self.config["every"]
        if callable(faults):
            return faults(k, path, body)
        if isinstance(faults, (list, tuple)) and k <= len(faults):
            return faults[k - 1]
        if every and k % every[0] == 0:
            return every[1]
        return None

    async def _handle(
        self, method: str, path: str, headers: dict, raw: bytes, w: asyncio.StreamWriter
    ) -> bool:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        with self._lock:
            self._n += 1
            self._sched += 1
            k = self._sched
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            w.pending = True  # type: ignore[attr-defined]  # this connection's current request is in flight
            self._timestamps.append(time.monotonic())
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
            cfg = dict(self.config)
            fault = self._fault_for(k, path, body)
            if fault:
                self._faults[fault] += 1
        status = 200
        try:
            if cfg["latency_ms"]:
                await asyncio.sleep(cfg["latency_ms"] / 1000)
            if self.api_key and headers.get("authorization") != f"Bearer {self.api_key}":
                fault = "401"
            if body is None:
                status = await self._error(w, 400, "invalid_request_error", "body is not valid JSON")
            elif fault in ERRORS:
                st, typ, msg = ERRORS[fault]
                extra = {"Retry-After": str(cfg["retry_after"])} if fault == "429" else {}
                status = await self._error(w, st, typ, msg, extra)
            elif fault == "hang":
                await asyncio.sleep(cfg["hang_s"])
                status = await self._error(w, 504, "timeout_error", "hung request finished")
            elif fault == "drop" and not body.get("stream"):
                self._finish(w, 0)
                w.transport.abort()
                status = 0
            elif method == "GET" and path == "/v1/models":
                status = await self._send(
                    w,
                    200,
                    {
                        "object": "list",
                        "data": [{"id": cfg["model"], "object": "model", "created": 0, "owned_by": "test"}],
                    },
                )
            elif method == "POST" and path == "/v1/chat/completions":
                status = await self._chat(w, body, cfg, fault)
            elif method == "POST" and path == "/v1/embeddings":
                status = await self._embeddings(w, body, cfg, fault)
            else:
                status = await self._error(w, 404, "not_found", f"no route {method} {path}")
        finally:
            self._finish(w, status)
        return status not in (0,) and fault not in ("drop", "malformed")

    def _bill(self, usage: dict) -> None:
        with self._lock:
            self._billed["prompt_tokens"] += usage.get("prompt_tokens", 0)
            self._billed["completion_tokens"] += usage.get("completion_tokens", 0)

    def _finish(self, w, status: int) -> None:
        """Count the request as done (before its last bytes go out, so stats() is exact for clients)."""
        if getattr(w, "pending", False):
            w.pending = False
            with self._lock:
                self._in_flight -= 1
                self._statuses[status] += 1

    # responses -------------------------------------------------------------------------------------
    async def _send(
        self, w, status: int, obj: Any, headers: dict | None = None, raw: bytes | None = None
    ) -> int:
        data = raw if raw is not None else json.dumps(obj).encode()
        head = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
        ] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        self._finish(w, status)
        w.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await w.drain()
        return status

    async def _error(self, w, status: int, typ: str, msg: str, headers: dict | None = None) -> int:
        return await self._send(
            w, status, {"error": {"message": msg, "type": typ, "code": str(status)}}, headers
        )

    async def _glitch(self, w, fault: str) -> int:
        """A 200 that is not what it claims: empty JSON, an HTML page, plain text."""
        ctype, data = {"empty": ("application/json", b""),
                       "html": ("text/html; charset=utf-8", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
                       "text": ("text/plain", b"upstream connect error")}[fault]
        self._finish(w, 200)
        w.write(f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        await w.drain()
        return 200

    async def _chat(self, w, body: dict, cfg: dict, fault: str | None) -> int:
        msgs = body.get("messages") or []
        cap = body.get("max_tokens") or body.get("max_completion_tokens")
        n = min(cap, cfg["reply_tokens"]) if cap else cfg["reply_tokens"]
        words = [f"tok{i}" for i in range(n)]
        if cfg["prompt_count"] == "bytes":
            prompt = sum(len(str(m.get("content", "")).encode()) + 3 for m in msgs)
        else:
            prompt = sum(len(str(m.get("content", "")).split()) + 3 for m in msgs)
        usage = {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}
        with_usage = cfg["usage"] and fault != "no_usage"
        finish = "length" if cap and cap < cfg["reply_tokens"] else "stop"
        base = {"id": f"chatcmpl-{self.count}", "created": int(time.time()), "model": body.get("model")}
        if fault in ("empty", "html", "text"):
            return await self._glitch(w, fault)
        if not body.get("stream"):
            if fault == "malformed":
                return await self._send(w, 200, None, raw=b'{"id": "chatcmpl-x", "choices": [{"message": ')
            out = dict(
                base,
                object="chat.completion",
                choices=[
                    {
                        "index": 0,
                        "finish_reason": finish,
                        "message": {"role": "assistant", "content": " ".join(words)},
                        "logprobs": None,
                    }
                ],
            )
            if with_usage:
                out["usage"] = usage
                self._bill(usage)
            return await self._send(w, 200, out)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")

        async def sse(payload: str) -> None:
            data = f"data: {payload}\n\n".encode()
            w.write(b"%x\r\n%s\r\n" % (len(data), data))
            await w.drain()

        def chunk(delta: dict, fin: str | None = None) -> str:
            return json.dumps(
                dict(
                    base,
                    object="chat.completion.chunk",
                    choices=[{"index": 0, "delta": delta, "finish_reason": fin}],
                )
            )

        await sse(chunk({"role": "assistant", "content": ""}))
        for i, word in enumerate(words):
            if fault == "drop" and i >= cfg["drop_after"]:
                self._finish(w, 0)
                w.transport.abort()
                return 0
            if fault == "cut" and i >= cfg["drop_after"]:
                self._finish(w, 200)
                w.write(b"0\r\n\r\n")
                await w.drain()
                return 200
            if fault == "malformed" and i == 1:
                await sse('{"id": "broken", "choices": [')
                continue
            await sse(chunk({"content": (" " if i else "") + word}))
        await sse(chunk({}, finish))
        if with_usage and (body.get("stream_options") or {}).get("include_usage"):
            self._bill(usage)
            await sse(json.dumps(dict(base, object="chat.completion.chunk", choices=[], usage=usage)))
        self._finish(w, 200)
        await sse("[DONE]")
        w.write(b"0\r\n\r\n")
        await w.drain()
        return 200

    async def _embeddings(self, w, body: dict, cfg: dict, fault: str | None) -> int:
        inp = body.get("input")
        items = (
            [inp]
            if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int))
            else (inp or [])
        )
        if fault == "malformed":
            return await self._send(w, 200, None, raw=b'{"data": [{"embedding": [0.1, ')
        if fault in ("empty", "html", "text"):
            return await self._glitch(w, fault)
        dims = body.get("dimensions") or cfg["embed_dims"]
        data = []
        for i, item in enumerate(items):
            vec: Any = hash_vector(item if isinstance(item, str) else json.dumps(item), dims)
            if body.get("encoding_format") == "base64":
                vec = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vec})
        n = sum(len(x.split()) if isinstance(x, str) else len(x) for x in items)
        out: dict[str, Any] = {"object": "list", "data": data, "model": body.get("model")}
        if cfg["usage"] and fault != "no_usage":
            out["usage"] = {"prompt_tokens": n, "total_tokens": n}
            self._bill(out["usage"])
        return await self._send(w, 200, out)


def start(api_key: str | None = None, tls: Any = None, **config: Any) -> FaultServer:
    srv = FaultServer(api_key, tls)
    return srv.configure(**config) if config else srv
