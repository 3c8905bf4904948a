"""Shared plumbing for the threaded fake servers (stdlib only).

`RecordingServer` runs a `ThreadingHTTPServer` on 127.0.0.1 (free port) in a daemon thread and records
every request (method, path, headers with lower-case keys, parsed JSON body, raw bytes) in a thread-safe
list. `JSONHandler` subclasses
implement `route(method, path, body)`; helpers send JSON, SSE (chunked) and NDJSON (chunked) replies.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any = None
    raw: bytes = b""
    extra: dict = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # don't wait for idle keep-alive connections on close
    owner: RecordingServer


class RecordingServer:
    """Base owner object: `.url`, `.requests`, `.count`, `.reset()`, `.stop()`."""

    handler_class: type[BaseHTTPRequestHandler]

    def __init__(self, api_key: str | None = None):
        self.api_key = api_key
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._httpd = _Server(("127.0.0.1", 0), self.handler_class)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()

    # recording -------------------------------------------------------------------------------------
    def record(self, req: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(req)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._requests)

    def requests_to(self, path_suffix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.split("?")[0].endswith(path_suffix)]

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class JSONHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections end after this
    server: _Server

    def log_message(self, format, *args):
        pass

    @property
    def owner(self) -> RecordingServer:
        return self.server.owner

    # dispatch --------------------------------------------------------------------------------------
    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        path = self.path.split("?")[0]
        headers = {k.lower(): v for k, v in self.headers.items()}  # keys lower-cased
        self.owner.record(RecordedRequest(method, path, headers, body, raw))
        if bad_json:
            return self.send_json(
                400, {"error": {"message": "request body is not valid JSON", "type": "invalid_request_error"}}
            )
        if not self.check_auth():
            return None
        try:
            self.route(method, path, body if body is not None else {})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def check_auth(self) -> bool:
        key = self.owner.api_key
        if key is None or self.headers.get("Authorization", "") == f"Bearer {key}":
            return True
        self.send_json(401, self.auth_error())
        return False

    def auth_error(self) -> dict:
        return {
            "error": {
                "message": "Incorrect API key provided.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        }

    def route(self, method: str, path: str, body: Any) -> None:
        self.send_json(404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}})

    # responses -------------------------------------------------------------------------------------
    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def start_chunked(self, content_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def sse(self, obj: Any) -> None:
        payload = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
        self.write_chunk(f"data: {payload}\n\n".encode())

    def ndjson(self, obj: Any) -> None:
        self.write_chunk((json.dumps(obj, ensure_ascii=False) + "\n").encode())
