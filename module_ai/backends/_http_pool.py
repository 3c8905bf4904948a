"""Keep-alive pools of the lean transport: a stack of idle HTTP/1.1 connections per endpoint.

httpcore's ``ConnectionPool`` re-examines every pooled connection whenever a request starts or ends
(and on asyncio asks each idle socket, through anyio, whether it is readable): the work per request
grows with the number of connections. Measured against a 50 ms server, 200 requests with 32 in
flight on one event loop: 6.3 ms of client CPU per request and efficiency 0.26 with httpcore's pool;
0.7 ms and 0.79-0.84 with this one (``benchmarks/bench_concurrency.py``). The connections are
:mod:`._http11`'s (one write per request, llhttp parsing, asyncio streams from :mod:`._http_asyncio`;
on Python 3.10 the async ones are httpcore's, on anyio).

A pool serves one endpoint (the transport is per endpoint), so every connection can take every
request: take the most recently returned idle connection that is still usable (not expired, not
closed by the server), else open a new one; a response gives its connection back when it is closed
after being read to the end. :class:`LeanTransport` / :class:`AsyncLeanTransport` are httpx's own
transports (request conversion and exception mapping unchanged) with this pool inside; with a proxy
they keep httpx's proxy pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from module_ai.backends._http11 import AsyncConnection, Connection
from module_ai.backends._http_asyncio import AVAILABLE as ASYNCIO_STREAMS

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["AsyncLeanTransport", "LeanTransport"]


class _Pool:
    """The idle stack shared by the sync and async pools."""

    connection_class: Any = Connection

    def __init__(self, ssl_context: Any, keepalive_expiry: float | None, max_idle: int) -> None:
        self._idle: list[Any] = []
        self._max_idle = max_idle
        self._connection_kwargs = {"ssl_context": ssl_context, "keepalive_expiry": keepalive_expiry}

    def _take(self, origin: Any) -> tuple[Any, list[Any]]:
        """A usable idle connection (or a new one) and the idle ones found unusable (to close)."""
        stale = []
        while True:
            try:
                conn = self._idle.pop()  # atomic: threads never get the same connection
            except IndexError:
                return self.connection_class(origin, **self._connection_kwargs), stale
            if conn.is_available() and not conn.has_expired():
                return conn, stale
            stale.append(conn)

    def _give_back(self, conn: Any) -> bool:
        """Put an idle connection back; ``False`` means the caller closes it."""
        if conn.is_idle() and len(self._idle) < self._max_idle:
            self._idle.append(conn)
            return True
        return conn.is_closed()


class _Returning:
    """A response body that gives its connection back to the pool when closed."""

    def __init__(self, stream: Any, pool: Any, conn: Any) -> None:
        self._stream, self._pool, self._conn = stream, pool, conn

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            if not self._pool._give_back(self._conn):
                self._conn.close()


class LeanPool(_Pool):
    """Sync pool (thread-safe: popping and appending a list are atomic)."""

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        conn, stale = self._take(request.url.origin)
        for old in stale:
            old.close()
        try:
            response = conn.handle_request(request)
        except BaseException:
            conn.close()
            raise
        return httpcore.Response(status=response.status, headers=response.headers,
                                 content=_Returning(response.stream, self, conn), extensions=response.extensions)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> Self:  # httpx's transport enters and exits its pool with the client
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AsyncReturning(_Returning):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if not self._pool._give_back(self._conn):
                await self._conn.aclose()


class AsyncLeanPool(_Pool):
    """Async pool, one per event loop (the transport keeps one per loop)."""

    connection_class = AsyncConnection if ASYNCIO_STREAMS else httpcore.AsyncHTTPConnection  # Python 3.10: anyio

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        conn, stale = self._take(request.url.origin)
        for old in stale:
            await old.aclose()
        try:
            response = await conn.handle_async_request(request)
        except BaseException:
            await conn.aclose()
            raise
        return httpcore.Response(status=response.status, headers=response.headers,
                                 content=_AsyncReturning(response.stream, self, conn),
                                 extensions=response.extensions)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _pool_args(kwargs: dict[str, Any]) -> tuple[Any, float | None, int]:
    limits = kwargs["limits"]
    return kwargs["verify"], limits.keepalive_expiry, limits.max_keepalive_connections  # set by _http._limits


class LeanTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` with :class:`LeanPool` (httpx's proxy pool when ``proxy`` is set)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not kwargs.get("proxy"):
            self._pool = LeanPool(*_pool_args(kwargs))


class AsyncLeanTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` with :class:`AsyncLeanPool` (httpx's proxy pool with ``proxy``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not kwargs.get("proxy"):
            self._pool = AsyncLeanPool(*_pool_args(kwargs))
