"""The HTTP/1.1 wire format of :mod:`._http11`: requests as bytes, responses parsed by llhttp (``httptools``).

Pure parsing and serialising, no I/O: :class:`Exchange` is fed the bytes of one response as they
arrive and fills ``status``, ``headers`` and ``body`` (``Content-Length``, chunked and close-delimited
bodies; ``1xx`` interim responses skipped; ``keep_alive`` from ``Connection`` and the HTTP version).
"""

from __future__ import annotations

from typing import Any

import httpcore
import httptools

__all__ = ["Exchange", "request_bytes"]


class Exchange:
    """One response being parsed: httptools' callbacks fill ``status``, ``headers`` and ``body``."""

    __slots__ = ("body", "complete", "delimited", "extra", "headers", "headers_done", "keep_alive", "parser",
                 "reason", "status")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status, self.reason, self.headers, self.body = 0, b"", [], []
        self.headers_done = self.complete = self.extra = self.keep_alive = False
        self.delimited = True  # False: the body ends when the server closes the connection

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the response: the connection cannot be reused
            self.extra = True

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        names = {name.lower() for name, _ in self.headers}
        self.delimited = b"content-length" in names or b"transfer-encoding" in names or self.status in (204, 304)
        self.keep_alive = self.parser.should_keep_alive()  # llhttp answers False once the message is complete
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(bytes(body))

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200 and self.status != 101:  # interim (100 Continue, 103): read on
            self.status, self.reason, self.headers, self.headers_done = 0, b"", [], False
            return
        self.complete = True

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise httpcore.RemoteProtocolError(f"malformed HTTP response: {exc}") from exc

    def at_eof(self) -> None:
        """The server closed the connection: the end of a close-delimited body, else an error."""
        if not self.headers_done:
            raise httpcore.RemoteProtocolError("Server disconnected without sending a response.")
        if self.delimited:
            raise httpcore.RemoteProtocolError("peer closed connection without sending complete message body")
        self.complete = True

    def take_body(self) -> list[bytes]:
        body, self.body = self.body, []
        return body

    def response(self, stream: Any) -> httpcore.Response:
        return httpcore.Response(status=self.status, headers=self.headers, content=stream,
                                 extensions={"http_version": b"HTTP/1.1", "reason_phrase": self.reason.strip()})


def request_bytes(request: httpcore.Request, body: bytes) -> bytes:
    """Request line, headers and body as sent on the wire (CR/LF in a header is refused)."""
    lines = [b"%s %s HTTP/1.1" % (request.method, request.url.target)]
    for name, value in request.headers:
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name or b":" in name:
            raise httpcore.LocalProtocolError(f"invalid HTTP header {name!r}")
        lines.append(b"%s: %s" % (name, value))
    if body and not any(name.lower() == b"content-length" for name, _ in request.headers):
        raise httpcore.LocalProtocolError("the lean HTTP/1.1 connection sends bodies with a Content-Length only")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
