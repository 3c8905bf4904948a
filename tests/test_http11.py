"""The lean HTTP/1.1 connections (module_ai/backends/_http11.py) on the wire, through httpx's client.

Each case runs sync (``httpx.Client``) and async (``httpx.AsyncClient``) over the lean transports, against
a TCP server answering canned bytes (tests/servers/raw_http.py), which counts the connections it accepted.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from module_ai.backends._http_pool import AsyncLeanTransport, LeanTransport
from tests.servers.raw_http import RawHTTPServer

CLOSE, WAIT = RawHTTPServer.CLOSE, RawHTTPServer.WAIT
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=8, keepalive_expiry=30)


def _post_twice(url: str, asynchronous: bool, timeout: float = 5.0) -> list[httpx.Response]:
    """Two POSTs one after the other on one lean transport; the responses, read to the end."""
    if not asynchronous:
        with httpx.Client(transport=LeanTransport(verify=True, limits=LIMITS), timeout=timeout) as client:
            return [client.post(f"{url}/v1/x", content=b'{"a":1}') for _ in range(2)]

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=AsyncLeanTransport(verify=True, limits=LIMITS), timeout=timeout) as c:
            return [await c.post(f"{url}/v1/x", content=b'{"a":1}') for _ in range(2)]

    return asyncio.run(run())


WIRE = {  # reply, body, status, connection kept for the second request
    "content-length": (OK, b"hi", 200, True),
    "chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n3\r\n yo\r\n0\r\n\r\n",
                b"hi yo", 200, True),
    "connection: close": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi", b"hi", 200, False),
    "HTTP/1.0": (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", b"hi", 200, False),
    "close-delimited body": ([b"HTTP/1.1 200 OK\r\n\r\nhi ", b"there", CLOSE], b"hi there", 200, False),
    "100 Continue first": (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, b"hi", 200, True),
    "bytes after the reply": (OK + b"HTTP/1.1 200 OK\r\n", b"hi", 200, False),
    "204 without body": (b"HTTP/1.1 204 No Content\r\n\r\n", b"", 204, True),
    "error status": (b'HTTP/1.1 429 Too Many\r\nContent-Length: 2\r\nRetry-After: 1\r\n\r\n{}', b"{}", 429, True),
}


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("case", list(WIRE))
def test_responses_are_framed_and_connections_kept_as_http_1_1_says(case, asynchronous):
    reply, body, status, kept = WIRE[case]
    with RawHTTPServer([reply]) as srv:
        responses = _post_twice(srv.url, asynchronous)
    assert [(r.status_code, r.content) for r in responses] == [(status, body)] * 2
    assert srv.connections == (1 if kept else 2)
    assert responses[0].http_version == "HTTP/1.1"
    head = srv.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"POST /v1/x HTTP/1.1" and b"Content-Length: 7" in head
    assert srv.requests[0].endswith(b'\r\n\r\n{"a":1}')


BROKEN = {
    "no reply": ([CLOSE], httpx.RemoteProtocolError, "without sending a response"),
    "body cut short": ([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhi", CLOSE], httpx.RemoteProtocolError,
                       "complete message body"),
    "not HTTP": (b"HTXP/1.1 200 OK\r\n\r\n", httpx.RemoteProtocolError, "malformed"),
    "no reply in time": ([WAIT, OK], httpx.ReadTimeout, None),
}


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_replies_raise_httpx_errors(case, asynchronous):
    reply, error, words = BROKEN[case]
    with RawHTTPServer([reply], wait_s=3.0) as srv, pytest.raises(error, match=words):
        _post_twice(srv.url, asynchronous, timeout=0.3)


@pytest.mark.parametrize("python_timeouts", [False, True], ids=["SO_RCVTIMEO", "Python timeouts"])
def test_a_changed_read_timeout_applies_to_a_reused_sync_connection(python_timeouts, monkeypatch):
    """The sync socket's timeout follows each request's, also on a kept connection: as SO_RCVTIMEO
    (plain TCP on Linux) and as Python's socket timeout (TLS, other systems)."""
    from module_ai.backends._http11 import Connection

    monkeypatch.setattr(Connection, "_python_timeouts", python_timeouts)
    with RawHTTPServer([OK, [WAIT, OK]], wait_s=3.0) as srv, \
            httpx.Client(transport=LeanTransport(verify=True, limits=LIMITS)) as client:
        assert client.post(f"{srv.url}/a", content=b"1", timeout=5.0).content == b"hi"
        with pytest.raises(httpx.ReadTimeout):
            client.post(f"{srv.url}/b", content=b"1", timeout=0.3)
    assert srv.connections == 1  # the second request went on the kept connection


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_body_is_handed_over_as_it_arrives(asynchronous):
    """The server sends the first event and waits until the client has it: a connection that buffered
    the whole body would leave the server waiting out its 5 s."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    first, rest = b"data: 1\n\n", b"data: 2\n\ndata: [DONE]\n\n"
    chunk = b"%x\r\n%s\r\n"
    reply = [head + chunk % (len(first), first), WAIT, chunk % (len(rest), rest) + b"0\r\n\r\n"]
    with RawHTTPServer([reply]) as srv:
        if asynchronous:
            asyncio.run(_read_streamed_async(srv))
        else:
            with httpx.Client(transport=LeanTransport(verify=True, limits=LIMITS)) as client, \
                    client.stream("POST", f"{srv.url}/s", content=b"{}") as response:
                parts = response.iter_raw()
                assert next(parts) == first
                srv.release.set()
                assert b"".join(parts) == rest
    assert srv.released_by_client is True


async def _read_streamed_async(srv: RawHTTPServer) -> None:
    async with httpx.AsyncClient(transport=AsyncLeanTransport(verify=True, limits=LIMITS)) as client, \
            client.stream("POST", f"{srv.url}/s", content=b"{}") as response:
        parts = response.aiter_raw()
        assert await parts.__anext__() == b"data: 1\n\n"
        srv.release.set()
        assert b"".join([p async for p in parts]) == b"data: 2\n\ndata: [DONE]\n\n"


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_header_carrying_a_line_break_is_refused_before_sending(asynchronous):
    with RawHTTPServer([OK]) as srv, pytest.raises(httpx.LocalProtocolError, match="invalid HTTP header"):
        if asynchronous:
            async def run() -> None:
                async with httpx.AsyncClient(transport=AsyncLeanTransport(verify=True, limits=LIMITS)) as client:
                    await client.post(f"{srv.url}/x", content=b"1", headers={"X-A": "a\r\nX-Injected: 1"})

            asyncio.run(run())
        else:
            with httpx.Client(transport=LeanTransport(verify=True, limits=LIMITS)) as client:
                client.post(f"{srv.url}/x", content=b"1", headers={"X-A": "a\r\nX-Injected: 1"})
    assert srv.requests == []
