"""The lean keep-alive pool of the httpx transport (module_ai/backends/_http_pool.py).

Connections are counted by the fault server (``stats()["connections"]``); each test starts with empty
process pools (``fresh_pools``). Retries are off, so a request sent on a connection the server already
closed would fail the test instead of being retried.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from module_ai.backends._http_pool import AsyncLeanPool, LeanPool
from module_ai.errors import BackendError
from tests.controls_helpers import chat_model

BURST = 16


@pytest.fixture(autouse=True)
def fresh_pools():
    """Close the process-wide sync pools, so idle connections of earlier tests are not counted."""
    from module_ai.backends import _http

    for pool in list(_http._sync_pools.values()):
        pool.close()
    _http._sync_pools.clear()


def test_both_transports_use_the_lean_pool(fault_server):
    llm = chat_model(fault_server.base_url, transport="httpx")
    llm.invoke("hi")
    transport = llm.client.transport
    assert isinstance(transport.pool()._pool, LeanPool)

    async def pool_type():
        await llm.ainvoke("hi")
        return type(transport.apool()._pool)

    assert asyncio.run(pool_type()) is AsyncLeanPool


def test_a_burst_then_sequential_calls_reuse_the_bursts_connections(fault_server):
    fault_server.configure(latency_ms=200)
    llm = chat_model(fault_server.base_url, transport="httpx", max_concurrency=BURST, max_retries=0)
    assert len(llm.batch([f"q{i}" for i in range(BURST)])) == BURST
    opened = fault_server.stats()["connections"]
    assert fault_server.stats()["max_in_flight"] <= opened <= BURST  # HTTP/1.1: one request per connection
    for _ in range(10):
        llm.invoke("again")
    assert len(llm.batch([f"r{i}" for i in range(BURST)])) == BURST
    assert fault_server.stats()["connections"] == opened  # every connection went back to the pool


def test_async_burst_then_sequential_calls_reuse_the_bursts_connections(fault_server):
    fault_server.configure(latency_ms=200)
    llm = chat_model(fault_server.base_url, transport="httpx", max_concurrency=BURST, max_retries=0)

    async def run() -> int:
        await llm.abatch([f"q{i}" for i in range(BURST)])
        opened = fault_server.stats()["connections"]
        for _ in range(10):
            await llm.ainvoke("again")
        await llm.abatch([f"r{i}" for i in range(BURST)])
        return opened

    opened = asyncio.run(run())
    assert opened <= BURST and fault_server.stats()["connections"] == opened


def test_connections_the_server_closed_are_replaced_not_used(fault_server):
    fault_server.configure(keepalive_requests=1)  # the server hangs up after every reply
    llm = chat_model(fault_server.base_url, transport="httpx", max_retries=0)
    for i in range(6):
        assert llm.invoke(f"q{i}").content.startswith("tok0")
        time.sleep(0.02)  # let the server's FIN arrive, as it would between a user's calls

    async def run() -> None:
        for i in range(6):
            assert (await llm.ainvoke(f"a{i}")).content.startswith("tok0")
            await asyncio.sleep(0.02)

    asyncio.run(run())
    stats = fault_server.stats()
    assert stats["statuses"] == {200: 12} and stats["connections"] == 12


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, test_api_key, monkeypatch_module):
    """The fault server over https with a self-signed certificate for 127.0.0.1, trusted through
    ``SSL_CERT_FILE`` (as a user trusts a private CA)."""
    import ssl
    import subprocess

    from module_ai.backends import _http
    from tests.servers import fault_openai

    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    monkeypatch_module.setenv("SSL_CERT_FILE", str(d / "cert.pem"))
    monkeypatch_module.setattr(_http, "_ssl", None)  # the shared TLS context is built from the environment
    srv = fault_openai.start(test_api_key, tls=server_ctx)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_https_calls_and_streams_reuse_their_tls_connection(tls_server):
    assert tls_server.base_url.startswith("https://")
    llm = chat_model(tls_server.base_url, transport="httpx", max_retries=0)

    async def run() -> None:
        for i in range(5):
            assert (await llm.ainvoke(f"q{i}")).content.startswith("tok0")
            assert "".join([c.content async for c in llm.astream(f"s{i}")]).startswith("tok0")

    asyncio.run(run())
    for i in range(5):
        assert "".join(c.content for c in llm.stream(f"t{i}")).startswith("tok0")
    assert tls_server.stats()["connections"] == 2  # one per event loop/process pool, 20 calls


def test_async_read_timeout_is_a_timeout_error(fault_server):
    fault_server.configure(faults=["hang"], hang_s=5.0)
    llm = chat_model(fault_server.base_url, transport="httpx", max_retries=0, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(BackendError, match="Timeout"):
        asyncio.run(llm.ainvoke("hi"))
    assert time.monotonic() - started < 4.5  # cut by the timeout, not by the server's 5 s


def test_async_connection_refused_is_a_connection_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    llm = chat_model(f"http://127.0.0.1:{port}/v1", transport="httpx", max_retries=0)
    with pytest.raises(BackendError, match="ConnectionError from http://127.0.0.1"):
        asyncio.run(llm.ainvoke("hi"))


def test_a_sync_read_timeout_over_tls_is_a_timeout_error(tls_server):
    """On a blocking TLS socket SO_RCVTIMEO surfaces as SSLWantReadError: still a timeout, and the
    connection is dropped (the next call gets a fresh one and its answer)."""
    llm = chat_model(tls_server.base_url, transport="httpx", max_retries=0, timeout=0.3)
    tls_server.configure(faults=["hang"], hang_s=3.0)
    with pytest.raises(BackendError, match="Timeout"):
        llm.invoke("hi")
    tls_server.reset()
    assert llm.invoke("again").content.startswith("tok0")
