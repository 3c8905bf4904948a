"""An asyncio network backend for httpcore: the lean transport's sockets without anyio in between.

httpcore reaches sockets through anyio by default; on this path every read, write and keep-alive
check enters anyio's cancel scopes and typed-attribute lookups. The backend here uses asyncio's own
streams (TLS included, ``StreamWriter.start_tls``), with timeouts from ``asyncio.timeout`` and errors
mapped to httpcore's classes, so httpx maps them as before. Python 3.11+ (older versions keep anyio).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
from httpcore._utils import is_socket_readable

__all__ = ["AVAILABLE", "AsyncioBackend"]

AVAILABLE = sys.version_info >= (3, 11)

_READ = 2**16


@contextlib.contextmanager
def _mapped(timeout_error: type[Exception], other: type[Exception]) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise timeout_error(str(exc) or "timed out") from exc
    except (OSError, EOFError, ssl.SSLError) as exc:
        raise other(str(exc) or type(exc).__name__) from exc


def _timeout(seconds: float | None) -> Any:
    return asyncio.timeout(seconds) if seconds is not None else contextlib.nullcontext()


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection as asyncio's (reader, writer) pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            async with _timeout(timeout):
                return await self._reader.read(min(max_bytes, _READ))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            self._writer.write(buffer)
            async with _timeout(timeout):
                await self._writer.drain()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.CancelledError):
            await self._writer.wait_closed()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> AsyncioStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with _timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # an idle keep-alive connection the server closed (or wrote to)
            return self._reader.at_eof() or is_socket_readable(self._writer.get_extra_info("socket"))
        key = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername",
               "socket": "socket"}.get(info)
        return self._writer.get_extra_info(key) if key else None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """``connect_tcp`` with ``asyncio.open_connection`` (TCP_NODELAY is asyncio's default)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> AsyncioStream:
        local = (local_address, 0) if local_address else None
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with _timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, local_addr=local, limit=_READ)
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> AsyncioStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with _timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path, limit=_READ)
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

