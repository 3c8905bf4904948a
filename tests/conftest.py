"""Shared fixtures: a tiny GGUF, the real llama-cpp-python server, and fake DashScope / Ollama / fault servers.

Session-scoped (each server starts once, lazily, on first use) and torn down at session end:
- `test_api_key` -> str "sk-test-0123456789abcdef0123456789"; also exported as env MODULE_AI_TEST_KEY.
- `tiny_gguf` -> pathlib.Path of the tiny llama GGUF.
- `llama_server` -> str base URL "http://127.0.0.1:P/v1" (no API key required; model id "tiny").
- `llama_server_proc` -> tests.servers.llama_server.LlamaServer (.base_url, .url, .model_id, .log(), .stop()).
- `dashscope_server` -> FakeDashScope (.url, .base_url = url + "/compatible-mode/v1", .rerank_url,
  .compat_rerank_url, .requests, .count, .requests_to(suffix), .reset(); settings .thinking_default,
  .max_batch, .max_rerank_docs, .honour_max_completion_tokens). Requires `Authorization: Bearer <test_api_key>`.
- `ollama_server` -> FakeOllama (.url = base for ChatOllama/OllamaEmbeddings, .requests, .count, .reset(),
  .thinking_default). No auth (like Ollama).
- `redis_server` -> tests.servers.redis_server.RedisServer (.url "redis://127.0.0.1:P/0", .port, .stop());
  a real redis-server; fails (never skips) when the binary is missing.
- `fault_server` -> FaultServer (.url, .base_url = url + "/v1", .configure(...), .stats(), .reset(),
  .requests). Requires `Authorization: Bearer <test_api_key>`.
Before every test the fake servers that were started are reset (recordings cleared, settings restored).
Per test:
- `echo` -> the shared EchoFaultServer of tests.controls_helpers, reset (`fresh_echo()`).
- `cli` -> `cli(*argv, stdin=None)` runs `module-ai ARGV` in this process: `.returncode`, `.stdout`, `.stderr`.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

TEST_API_KEY = "sk-test-0123456789abcdef0123456789"
os.environ["MODULE_AI_TEST_KEY"] = TEST_API_KEY

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:  # so `tests.servers` imports under plain `pytest` too
    sys.path.insert(0, _ROOT)

_started: list = []  # fake servers to reset before each test


@pytest.fixture(scope="session")
def test_api_key() -> str:
    os.environ["MODULE_AI_TEST_KEY"] = TEST_API_KEY
    return TEST_API_KEY


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    from tests.servers.tiny_gguf import make_tiny_gguf

    return make_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="session")
def llama_server_proc(tiny_gguf):
    from tests.servers.llama_server import start_llama_server

    srv = start_llama_server(tiny_gguf)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def llama_server(llama_server_proc) -> str:
    return llama_server_proc.base_url


@pytest.fixture(scope="session")
def dashscope_server(test_api_key):
    from tests.servers import fake_dashscope

    srv = fake_dashscope.start(test_api_key)
    _started.append(srv)
    yield srv
    _started.remove(srv)
    srv.stop()


@pytest.fixture(scope="session")
def ollama_server(tiny_gguf):
    from tests.servers import fake_ollama

    srv = fake_ollama.start(tiny_gguf)
    _started.append(srv)
    yield srv
    _started.remove(srv)
    srv.stop()


@pytest.fixture(scope="session")
def fault_server(test_api_key):
    from tests.servers import fault_openai

    srv = fault_openai.start(test_api_key)
    _started.append(srv)
    yield srv
    _started.remove(srv)
    srv.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    from tests.servers.redis_server import start_redis

    srv = start_redis(tmp_path_factory.mktemp("redis"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def fake_servers(test_api_key):
    """{style: FakeRerank} for the Cohere, Xinference and TEI rerank wire formats."""
    from tests.servers import fake_rerank

    servers = {style: fake_rerank.start(style, api_key=test_api_key) for style in fake_rerank.STYLES}
    _started.extend(servers.values())
    yield servers
    for srv in servers.values():
        _started.remove(srv)
        srv.stop()


@pytest.fixture(autouse=True)
def _reset_fake_servers():
    for srv in _started:
        srv.reset()
    yield


@pytest.fixture()
def echo():
    from tests.controls_helpers import fresh_echo

    return fresh_echo()


@pytest.fixture()
def cli(capsys, monkeypatch):
    """Run `module-ai ARGV` in this process (stdin from a string): returncode, stdout, stderr."""
    import io
    from types import SimpleNamespace

    from module_ai.cli import main

    def run(*argv: str, stdin: str | None = None) -> SimpleNamespace:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors exit through SystemExit
            code = exc.code
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


def pytest_configure(config):
    from tests import _secret_guard

    _secret_guard.install()
