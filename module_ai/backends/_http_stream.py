"""Streams and the SDK-shaped facades of :mod:`module_ai.backends._http` (``create``, ``with_raw_response``)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from module_ai.backends._http_errors import api_error, stream_cut_error

if TYPE_CHECKING:
    from typing_extensions import Self

DRAIN_S = 0.25
"""Seconds spent reading the rest of a stream the caller left early, to keep its connection (about
one TLS handshake: waiting longer costs more than a new connection)."""

__all__ = ["DRAIN_S", "AsyncCompletions", "AsyncStream", "Completions", "RawResponse", "Stream"]


class Completions:
    """``client.create(**payload)`` and ``client.with_raw_response.create(**payload)`` for one API path.

    Example:
        ``Completions(transport, "/chat/completions")`` is what ``ChatOpenAI.client`` is on this transport.
    """

    def __init__(self, transport: Any, path: str) -> None:
        self.transport, self.path = transport, path

    def create(self, **payload: Any) -> Any:
        return self.transport.send(self.path, payload)[0]

    @property
    def with_raw_response(self) -> _RawCreate:
        return _RawCreate(self)


class AsyncCompletions(Completions):
    """Async :class:`Completions` (the pool of the running event loop is chosen per call)."""

    async def create(self, **payload: Any) -> Any:  # type: ignore[override]
        return (await self.transport.asend(self.path, payload))[0]

    @property
    def with_raw_response(self) -> _AsyncRawCreate:
        return _AsyncRawCreate(self)


class RawResponse:
    """What ``with_raw_response.create`` returns: ``.parse()``, ``.headers``, ``.http_response``."""

    __slots__ = ("_parsed", "headers", "http_response")

    def __init__(self, parsed: Any, response: Any) -> None:
        self._parsed, self.http_response, self.headers = parsed, response, response.headers

    def parse(self) -> Any:
        return self._parsed


class _RawCreate:
    def __init__(self, owner: Completions) -> None:
        self.owner = owner

    def create(self, **payload: Any) -> RawResponse:
        return RawResponse(*self.owner.transport.send(self.owner.path, payload))


class _AsyncRawCreate(_RawCreate):
    async def create(self, **payload: Any) -> RawResponse:  # type: ignore[override]
        return RawResponse(*(await self.owner.transport.asend(self.owner.path, payload)))


class _StreamBase:
    """Shared state of a stream: which end markers were seen."""

    def __init__(self, transport: Any, response: Any) -> None:
        self.transport, self.response = transport, response
        self.response_headers = response.headers
        self.done = self.finished = self.closing = False
        self._buffer = b""
        self._data: list[bytes] = []

    def _feed(self, raw: bytes) -> list[dict]:
        """Parse SSE bytes; return the chunk dicts completed by ``raw``."""
        self._buffer += raw
        out = []
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                self._data.append(line[5:].lstrip())
            elif not line and self._data:
                data, self._data = b"\n".join(self._data), []
                if self.done:
                    continue
                if data == b"[DONE]":
                    self.done = True
                    continue
                chunk = json.loads(data)
                if chunk.get("error"):
                    raise api_error(chunk["error"], self.response)
                for choice in chunk.get("choices") or ():
                    if choice.get("finish_reason"):
                        self.finished = True
                out.append(chunk)
        return out

    def _ended(self) -> None:
        if self._data:
            self._feed(b"\n\n")
        if not (self.done or self.finished):
            raise stream_cut_error(f"the stream from {self.transport.where(self.response)} ended before "
                                 "finish_reason or [DONE]: the answer was cut", request=self.response.request)


class Stream(_StreamBase):
    """Iterator of chunk dicts; a context manager whose exit drains the body (see module docstring)."""

    def __init__(self, transport: Any, response: Any) -> None:
        super().__init__(transport, response)
        self._raw = response.iter_bytes()

    def __iter__(self) -> Iterator[dict]:
        try:
            if "event-stream" not in self.response.headers.get("content-type", ""):
                self.response.read()
                self.transport.check_stream(self.response)
            for raw in self._raw:
                yield from self._feed(raw)
            self._ended()
        finally:
            self.close()

    def close(self) -> None:
        if self.closing or self.response.is_closed:
            return
        self.closing = True
        deadline = time.monotonic() + DRAIN_S
        try:
            for _ in self._raw:  # read to the end: the connection goes back to the pool
                if time.monotonic() > deadline:
                    break
        except Exception:  # noqa: BLE001, S110 - a broken tail only costs the connection
            pass
        self.response.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_draining: set = set()  # strong references to running drain tasks


class AsyncStream(_StreamBase):
    """Async twin of :class:`Stream`."""

    def __init__(self, transport: Any, response: Any) -> None:
        super().__init__(transport, response)
        self._raw = response.aiter_bytes()
        self._drain: Any = None

    async def __aiter__(self) -> AsyncIterator[dict]:
        try:
            if "event-stream" not in self.response.headers.get("content-type", ""):
                await self.response.aread()
                self.transport.check_stream(self.response)
            async for raw in self._raw:
                for chunk in self._feed(raw):
                    yield chunk
            self._ended()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Drain in a task of its own: closers here run inside generators being finalized, where an
        await can be interrupted; the task finishes regardless and returns the connection."""
        import asyncio

        if self._drain is None:
            if self.response.is_closed:
                return
            self._drain = asyncio.get_running_loop().create_task(self._drain_and_close())
            _draining.add(self._drain)
            self._drain.add_done_callback(_draining.discard)
        await asyncio.shield(self._drain)

    async def _drain_and_close(self) -> None:
        deadline = time.monotonic() + DRAIN_S
        try:
            async for _ in self._raw:  # read to the end: the connection goes back to the pool
                if time.monotonic() > deadline:
                    break
        except Exception:  # noqa: BLE001, S110 - a broken tail only costs the connection
            pass
        finally:
            await self.response.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
