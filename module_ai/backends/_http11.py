"""HTTP/1.1 connections of the lean pool: one request at a time, the wire format in :mod:`._http11_wire`.

:mod:`._http_pool` keeps these in its idle stack instead of httpcore's ``HTTPConnection`` (h11 in
pure Python, three anyio locks per async request). They speak httpcore's connection interface
(``handle_request``/``handle_async_request``, ``is_available``, ``has_expired``, ``is_idle``,
``is_closed``) and raise httpcore's exception classes, so httpx's transport converts requests,
responses and errors exactly as before. Per request:

- one write: request line, headers and body together (h11 writes headers and body apart);
- plain-TCP sync sockets on Linux stay blocking, with the read/write timeouts as ``SO_RCVTIMEO``/``SO_SNDTIMEO``:
  a reused connection costs 3 system calls per request (readability check, send, recv) where httpcore
  makes 10 (each poll before a send or recv, and every send, also hands the GIL to another thread);
  TLS sockets (and other systems) keep Python's timeouts (a poll before each send and recv: 5);
- the response is parsed by llhttp (Node's parser, through ``httptools``; :mod:`._http11_wire`): ``Content-Length``,
  chunked and close-delimited bodies, ``1xx`` interim responses skipped, ``Connection: close`` and
  HTTP/1.0 honoured (the connection is then not reused).

Only what the transport sends is supported: requests whose body has a ``Content-Length`` (or none).
"""

from __future__ import annotations

import abc
import socket
import ssl
import struct
import sys
import time
from typing import Any

import httpcore
from httpcore._utils import is_socket_readable

from module_ai.backends._http11_wire import Exchange, request_bytes

__all__ = ["AsyncConnection", "Connection"]

_READ = 2**16
_NEW, _ACTIVE, _IDLE, _CLOSED = range(4)
_TIMED_OUT = (BlockingIOError, TimeoutError)  # SO_RCVTIMEO / SO_SNDTIMEO expiring on a blocking socket


class _Base(abc.ABC):
    """State shared by the sync and async connections."""

    def __init__(self, origin: httpcore.Origin, ssl_context: Any = None, keepalive_expiry: float | None = None,
                 **_: Any) -> None:
        self._origin, self._ssl_context, self._expiry = origin, ssl_context, keepalive_expiry
        self._state, self._idle_since = _NEW, 0.0
        self._exchange: Exchange | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._origin} state={self._state}>"

    def is_available(self) -> bool:
        return self._state in (_NEW, _IDLE)

    def is_idle(self) -> bool:
        return self._state == _IDLE

    def is_closed(self) -> bool:
        return self._state == _CLOSED

    def has_expired(self) -> bool:
        if self._state != _IDLE:
            return False
        if self._expiry is not None and time.monotonic() - self._idle_since > self._expiry:
            return True
        return self._readable()  # the server closed it (or wrote to it) while it was idle

    @abc.abstractmethod
    def _readable(self) -> bool:
        """Whether the idle socket has something to read (the server closed it or wrote to it)."""

    def _begin(self) -> Exchange:
        if self._state not in (_NEW, _IDLE):
            raise httpcore.ConnectionNotAvailable()
        self._state = _ACTIVE
        self._exchange = Exchange()
        return self._exchange

    def _finished(self) -> bool:
        """After the body was read (or abandoned): ``True`` when the connection goes back idle."""
        exchange, self._exchange = self._exchange, None
        reusable = exchange is not None and exchange.complete and exchange.keep_alive and not exchange.extra
        if reusable and self._state == _ACTIVE:
            self._state, self._idle_since = _IDLE, time.monotonic()
            return True
        return False

    def _host(self) -> str:
        return self._origin.host.decode("ascii")


SOCKET_OPTION_TIMEOUTS = sys.platform.startswith("linux")
"""Where plain-TCP timeouts are ``SO_RCVTIMEO``/``SO_SNDTIMEO`` (measured here); elsewhere Python's."""


def _timeval(seconds: float | None) -> bytes:
    """A Linux ``struct timeval`` for ``SO_RCVTIMEO``/``SO_SNDTIMEO`` (zero: no timeout)."""
    micros = 0 if not seconds or seconds <= 0 else max(1, round(seconds * 1e6))
    return struct.pack("ll", micros // 1_000_000, micros % 1_000_000)


class Connection(_Base):
    """Sync connection: a blocking socket with timeouts as socket options (plain TCP on Linux), or
    Python's socket timeouts (TLS, where CPython's read retries a recv that ``SO_RCVTIMEO`` cut, forever;
    and other systems)."""

    _sock: Any = None
    _python_timeouts = not SOCKET_OPTION_TIMEOUTS
    _timeouts: tuple = (None, None)

    def _readable(self) -> bool:
        return self._sock is None or is_socket_readable(self._sock)

    def _connect(self, timeout: float | None) -> None:
        try:
            sock = socket.create_connection((self._host(), self._origin.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._origin.scheme == b"https":
                sock = self._ssl_context.wrap_socket(sock, server_hostname=self._host())
                self._python_timeouts = True
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock.settimeout(None)
        self._sock = sock

    def _set_timeouts(self, read: float | None, write: float | None) -> None:
        if (read, write) != self._timeouts:
            self._timeouts = (read, write)
            if not self._python_timeouts:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(read))
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(write))

    def _python_timeout(self, seconds: float | None) -> None:
        if self._python_timeouts and self._sock.gettimeout() != seconds:
            self._sock.settimeout(seconds)

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        exchange = self._begin()
        timeouts = request.extensions.get("timeout", {})
        try:
            if self._sock is None:
                self._connect(timeouts.get("connect"))
            self._set_timeouts(timeouts.get("read"), timeouts.get("write"))
            self._send(request_bytes(request, b"".join(request.stream)))
            while not exchange.headers_done:
                self._receive(exchange)
        except BaseException:
            self.close()
            raise
        return exchange.response(_Body(self, exchange))

    def _send(self, data: bytes) -> None:
        self._python_timeout(self._timeouts[1])
        try:
            self._sock.sendall(data)
        except (*_TIMED_OUT, ssl.SSLWantWriteError) as exc:
            raise httpcore.WriteTimeout("timed out") from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    def _receive(self, exchange: Exchange) -> None:
        self._python_timeout(self._timeouts[0])
        try:
            data = self._sock.recv(_READ)
        except (*_TIMED_OUT, ssl.SSLWantReadError) as exc:
            raise httpcore.ReadTimeout("timed out") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc
        if data:
            exchange.feed(data)
        else:
            exchange.at_eof()

    def response_closed(self) -> None:
        if not self._finished():
            self.close()

    def close(self) -> None:
        self._state, self._exchange = _CLOSED, None
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class _Body:
    """The response body of a sync connection, read as it arrives."""

    def __init__(self, conn: Connection, exchange: Exchange) -> None:
        self._conn, self._exchange = conn, exchange

    def __iter__(self):
        exchange = self._exchange
        while True:
            yield from exchange.take_body()
            if exchange.complete:
                return
            try:
                self._conn._receive(exchange)
            except BaseException:
                self._conn.close()
                raise

    def close(self) -> None:
        self._conn.response_closed()


class AsyncConnection(_Base):
    """Async connection on asyncio streams (:mod:`._http_asyncio`)."""

    _stream: Any = None

    def _readable(self) -> bool:
        return self._stream is None or bool(self._stream.get_extra_info("is_readable"))

    async def _connect(self, timeout: float | None) -> None:
        from module_ai.backends._http_asyncio import AsyncioBackend

        stream = await AsyncioBackend().connect_tcp(self._host(), self._origin.port, timeout=timeout)
        try:
            if self._origin.scheme == b"https":
                await stream.start_tls(self._ssl_context, server_hostname=self._host(), timeout=timeout)
        except BaseException:
            await stream.aclose()
            raise
        self._stream = stream

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        exchange = self._begin()
        timeouts = request.extensions.get("timeout", {})
        try:
            if self._stream is None:
                await self._connect(timeouts.get("connect"))
            body = b"".join([part async for part in request.stream])
            await self._stream.write(request_bytes(request, body), timeouts.get("write"))
            while not exchange.headers_done:
                await self.receive(exchange, timeouts.get("read"))
        except BaseException:
            await self.aclose()
            raise
        return exchange.response(_AsyncBody(self, exchange, timeouts.get("read")))

    async def receive(self, exchange: Exchange, timeout: float | None) -> None:
        data = await self._stream.read(_READ, timeout)
        if data:
            exchange.feed(data)
        else:
            exchange.at_eof()

    async def response_closed(self) -> None:
        if not self._finished():
            await self.aclose()

    async def aclose(self) -> None:
        self._state, self._exchange = _CLOSED, None
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()


class _AsyncBody:
    """The response body of an async connection, read as it arrives."""

    def __init__(self, conn: AsyncConnection, exchange: Exchange, timeout: float | None) -> None:
        self._conn, self._exchange, self._timeout = conn, exchange, timeout

    async def __aiter__(self):
        exchange = self._exchange
        while True:
            for part in exchange.take_body():
                yield part
            if exchange.complete:
                return
            try:
                await self._conn.receive(exchange, self._timeout)
            except BaseException:
                await self._conn.aclose()
                raise

    async def aclose(self) -> None:
        await self._conn.response_closed()
