"""Provider errors a user meets first (401 key, 403 access, 404 model or URL, 400 rejected request):
one ModuleAIError subclass per case, naming model, resolved URL, status, the provider's message and the
fix, never the key, with the provider's exception as ``__cause__``; in the library (invoke, stream,
batch, async, embeddings; openai SDK and Ollama paths) and in the CLI (one line, exit 1, no traceback).

Servers: the fake DashScope (401/403/404/400 as the service answers), the real llama.cpp server (404 for
a wrong URL path) and the fake Ollama (404 for a model that was never pulled).
"""

from __future__ import annotations

import json

import openai
import pytest

from module_ai import (
    AuthenticationError,
    BackendError,
    BadRequestError,
    ModelNotFoundError,
    ModuleAIError,
    PermissionDeniedError,
    load_registry,
)

WRONG_KEY = "sk-wrong-9999-should-never-be-shown"


@pytest.fixture()
def wrong_key(monkeypatch):
    monkeypatch.setenv("MODULE_AI_WRONG_KEY", WRONG_KEY)
    return WRONG_KEY


def _configs(ds, llama_url: str, ollama_url: str) -> dict:
    # the URL goes through ${VAR:-default}: messages must show the URL actually used
    ds_url = "${MODULE_AI_UNSET_DS_URL:-" + ds.base_url + "}"
    chat = {"model_type": "chat", "server_type": "openai", "url": ds_url, "no_think": True}
    emb = {"model_type": "embedding", "server_type": "openai", "url": ds_url}
    return {"models": {
        "bad-key": {**chat, "model": "qwen3-4b", "api_key": "${MODULE_AI_WRONG_KEY}"},
        "bad-key-emb": {**emb, "model": "text-embedding-v4", "api_key": "${MODULE_AI_WRONG_KEY}"},
        "good-emb": {**emb, "model": "text-embedding-v4", "api_key": "${MODULE_AI_TEST_KEY}", "dimensions": 64},
        "no-key": {**chat, "model": "qwen3-4b"},
        "denied": {**chat, "model": "qwen-plus", "api_key": "${MODULE_AI_TEST_KEY}"},
        "typo": {**chat, "model": "qwen3-4bb", "api_key": "${MODULE_AI_TEST_KEY}"},
        "typo-emb": {**emb, "model": "text-embedding-v9", "api_key": "${MODULE_AI_TEST_KEY}"},
        "thinking": {**chat, "model": "qwen3-4b", "api_key": "${MODULE_AI_TEST_KEY}", "no_think": False},
        "llama-no-v1": {"model_type": "chat", "server_type": "openai", "model": "tiny",
                        "url": llama_url.removesuffix("/v1"), "out_tokens": 2},
        "ollama-missing": {"model_type": "chat", "server_type": "ollama", "model": "not-pulled",
                           "url": ollama_url},
        "ollama-missing-emb": {"model_type": "embedding", "server_type": "ollama", "model": "not-pulled",
                               "url": ollama_url},
    }}


@pytest.fixture()
def config_file(tmp_path, dashscope_server, llama_server, ollama_server):
    dashscope_server.known_models_only = True
    dashscope_server.denied_models = frozenset({"qwen-plus"})
    path = tmp_path / "models.json"
    path.write_text(json.dumps(_configs(dashscope_server, llama_server, ollama_server.url)))
    return path


@pytest.fixture()
def reg(config_file):
    return load_registry(config_file)


def _check(err: BaseException, cls: type, status: int, url: str, *needles: str) -> str:
    assert type(err) is cls and isinstance(err, BackendError) and isinstance(err, ModuleAIError)
    message = str(err)
    assert err.status_code == status and f"HTTP {status}" in message
    assert url in message and "${MODULE_AI_UNSET" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    assert WRONG_KEY not in message and WRONG_KEY not in repr(err)
    assert err.__cause__ is not None and not isinstance(err.__cause__, ModuleAIError)
    return message


def test_wrong_key_401_in_invoke_stream_batch_and_embeddings(reg, wrong_key, dashscope_server):
    url = dashscope_server.base_url
    with pytest.raises(AuthenticationError) as info:
        reg.chat("bad-key").invoke("你好")
    message = _check(info.value, AuthenticationError, 401, url, "model 'bad-key'", "Incorrect API key provided",
                     "check MODULE_AI_WRONG_KEY")
    assert isinstance(info.value.__cause__, openai.AuthenticationError) and info.value.attempts == 1
    assert message.startswith(f"{reg.source('bad-key')}: model 'bad-key': ")
    with pytest.raises(AuthenticationError):
        list(reg.chat("bad-key").stream("你好"))
    results = reg.chat("bad-key").batch(["一", "二"], return_exceptions=True)
    assert [type(r) for r in results] == [AuthenticationError, AuthenticationError]
    with pytest.raises(AuthenticationError) as info:
        reg.embeddings("bad-key-emb").embed_documents(["你好"])
    _check(info.value, AuthenticationError, 401, url, "check MODULE_AI_WRONG_KEY")
    assert len(dashscope_server.requests) == 5  # invoke, stream, 2 batch items, embed: none retried


async def test_wrong_key_401_async(reg, wrong_key, dashscope_server):
    with pytest.raises(AuthenticationError):
        await reg.chat("bad-key").ainvoke("你好")
    with pytest.raises(AuthenticationError) as info:
        await reg.embeddings("bad-key-emb").aembed_query("你好")
    _check(info.value, AuthenticationError, 401, dashscope_server.base_url, "check MODULE_AI_WRONG_KEY")


def test_missing_key_says_to_add_one(reg, dashscope_server):
    with pytest.raises(AuthenticationError) as info:
        reg.chat("no-key").invoke("你好")
    _check(info.value, AuthenticationError, 401, dashscope_server.base_url, "add api_key")


def test_403_denied_model_names_the_key_variable(reg, dashscope_server):
    with pytest.raises(PermissionDeniedError) as info:
        reg.chat("denied").invoke("你好")
    _check(info.value, PermissionDeniedError, 403, dashscope_server.base_url, "Access denied",
           "MODULE_AI_TEST_KEY", "'qwen-plus'")


def test_404_model_typo_in_chat_and_embeddings(reg, dashscope_server):
    with pytest.raises(ModelNotFoundError) as info:
        reg.chat("typo").invoke("你好")
    _check(info.value, ModelNotFoundError, 404, dashscope_server.base_url, "`qwen3-4bb` does not exist",
           "no model 'qwen3-4bb'", "check the model and url fields")
    with pytest.raises(ModelNotFoundError):
        reg.embeddings("typo-emb").embed_query("你好")


def test_400_rejected_request_keeps_the_provider_message(reg, dashscope_server):
    with pytest.raises(BadRequestError) as info:
        reg.chat("thinking").invoke("你好")
    _check(info.value, BadRequestError, 400, dashscope_server.base_url,
           "enable_thinking must be set to false", "not retried")
    assert isinstance(info.value.__cause__, openai.BadRequestError)


def test_wrong_url_path_on_the_real_llama_server_is_404(reg, llama_server):
    with pytest.raises(ModelNotFoundError) as info:
        reg.chat("llama-no-v1").invoke("hi")
    _check(info.value, ModelNotFoundError, 404, llama_server.removesuffix("/v1") + "/chat/completions",
           "check the model and url fields")


def test_ollama_model_never_pulled_is_404(reg, ollama_server):
    with pytest.raises(ModelNotFoundError) as info:
        reg.chat("ollama-missing").invoke("hi")
    _check(info.value, ModelNotFoundError, 404, ollama_server.url, "not-pulled")
    with pytest.raises(ModelNotFoundError):
        reg.embeddings("ollama-missing-emb").embed_query("hi")


# ---------------------------------------------------------------- the CLI: one line, exit 1

@pytest.fixture()
def _cli(capsys):
    """Run `module-ai ARGV` in this process: an escaping exception is a traceback the user would see."""
    from types import SimpleNamespace

    from module_ai.cli import main

    def run(*argv: str) -> SimpleNamespace:
        capsys.readouterr()
        code = main(["--config", *argv])
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


def _one_line(proc, *needles: str) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and WRONG_KEY not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_cli_chat_and_embed_with_a_wrong_key(_cli, config_file, wrong_key):
    _one_line(_cli(str(config_file), "chat", "bad-key", "-m", "你好"), "HTTP 401",
              "check MODULE_AI_WRONG_KEY")
    _one_line(_cli(str(config_file), "embed", "bad-key-emb", "你好"), "HTTP 401",
              "check MODULE_AI_WRONG_KEY")
    _one_line(_cli(str(config_file), "chat", "typo", "-m", "你好"), "HTTP 404", "qwen3-4bb")


def test_cli_rag_index_and_ask_with_provider_errors(_cli, config_file, wrong_key, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# 安装\n\n先下载安装包，然后运行安装程序。\n", encoding="utf-8")
    kb = tmp_path / "kb"
    _one_line(_cli(str(config_file), "rag", "index", str(docs), "--kb", str(kb), "--embedding",
                   "bad-key-emb", "--quiet"), "HTTP 401", "check MODULE_AI_WRONG_KEY")
    ok = _cli(str(config_file), "rag", "index", str(docs), "--kb", str(kb), "--embedding", "good-emb", "--quiet")
    assert ok.returncode == 0, ok.stderr
    _one_line(_cli(str(config_file), "rag", "ask", "怎么安装", "--kb", str(kb), "--chat", "bad-key"),
              "HTTP 401", "check MODULE_AI_WRONG_KEY")
