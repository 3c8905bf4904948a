"""A TCP server on 127.0.0.1 that answers each HTTP request with canned bytes (for wire edge cases).

    with RawHTTPServer([b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhi"]) as srv:
        ...  # srv.url; srv.connections (accepted); srv.requests (raw request bytes)

Each reply is ``bytes``, or a list of parts with ``RawHTTPServer.WAIT`` (wait until ``release`` is
set, or ``wait_s``) and ``RawHTTPServer.CLOSE`` (hang up) between them; replies are used in turn, the
last one repeating. A request is read up to its headers plus ``Content-Length`` bytes of body.
"""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self


class RawHTTPServer:
    WAIT = object()
    CLOSE = object()

    def __init__(self, replies: list[Any], wait_s: float = 5.0) -> None:
        self.replies, self.wait_s = list(replies), wait_s
        self.release = threading.Event()
        self.released_by_client: bool | None = None
        self.connections = 0
        self.requests: list[bytes] = []
        self._served = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes]:
        while b"\r\n\r\n" not in buffer:
            data = conn.recv(65536)
            if not data:
                return None, buffer
            buffer += data
        head, rest = buffer.split(b"\r\n\r\n", 1)
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            rest += conn.recv(65536)
        return head + b"\r\n\r\n" + rest[:length], rest[length:]

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                request, buffer = self._read_request(conn, buffer)
                if request is None:
                    return
                self.requests.append(request)
                reply = self.replies[min(self._served, len(self.replies) - 1)]
                self._served += 1
                for part in reply if isinstance(reply, list) else [reply]:
                    if part is self.WAIT:
                        self.released_by_client = self.release.wait(self.wait_s)
                    elif part is self.CLOSE:
                        return
                    else:
                        conn.sendall(part)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
