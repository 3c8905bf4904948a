"""Smoke tests for the test servers themselves (raw openai SDK, httpx, ollama, langchain-ollama)."""

from __future__ import annotations

import asyncio
import math

import httpx
import openai
import pytest

MSG = [{"role": "user", "content": "你好, who are you?"}]


# --- real llama-cpp-python server -------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama(llama_server):
    return openai.OpenAI(base_url=llama_server, api_key="unused", max_retries=0, timeout=30)


def test_llama_models_and_max_tokens(llama, llama_server_proc):
    assert [m.id for m in llama.models.list().data] == [llama_server_proc.model_id]
    r = llama.chat.completions.create(model="tiny", messages=MSG, max_tokens=3, seed=7)
    assert r.usage.completion_tokens <= 3 and r.usage.prompt_tokens > 0
    assert r.choices[0].finish_reason in ("length", "stop")


def test_llama_ignores_max_completion_tokens(llama):
    # a ~1900-token prompt leaves little room, so the (uncapped) reply stays short and fast
    long_msg = [{"role": "user", "content": "a" * 1900}]
    r = llama.chat.completions.create(model="tiny", messages=long_msg, max_completion_tokens=3, seed=7)
    assert r.usage.completion_tokens > 3  # measured: only max_tokens is honoured
    assert r.usage.total_tokens <= 2048


def test_llama_accepts_unknown_body_fields(llama):
    for extra in (
        {"enable_thinking": False},
        {"chat_template_kwargs": {"enable_thinking": False}},
        {"thinking_budget": 5, "foo": "bar"},
    ):
        r = llama.chat.completions.create(model="tiny", messages=MSG, max_tokens=2, extra_body=extra)
        assert r.usage.completion_tokens <= 2


def test_llama_stream_has_no_usage_chunk(llama):
    chunks = list(
        llama.chat.completions.create(
            model="tiny",
            messages=MSG,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
            seed=3,
        )
    )
    assert chunks and chunks[-1].choices[0].finish_reason in ("length", "stop")
    assert all(c.usage is None for c in chunks)  # measured: include_usage is accepted but ignored


def test_llama_embeddings_64d(llama):
    r = llama.embeddings.create(model="tiny", input=["hello", "你好世界"], encoding_format="float")
    assert [len(d.embedding) for d in r.data] == [64, 64]
    assert r.usage.prompt_tokens > 0


# --- fake DashScope ----------------------------------------------------------------------------------
@pytest.fixture
def ds(dashscope_server, test_api_key):
    return openai.OpenAI(base_url=dashscope_server.base_url, api_key=test_api_key, max_retries=0)


def test_dashscope_requires_enable_thinking_false(ds, dashscope_server):
    with pytest.raises(openai.BadRequestError, match="enable_thinking must be set to false"):
        ds.chat.completions.create(model="qwen3-4b", messages=MSG)
    r = ds.chat.completions.create(
        model="qwen3-4b", messages=MSG, max_tokens=3, extra_body={"enable_thinking": False}
    )
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == "你好，我是"
    assert dashscope_server.count == 2
    assert dashscope_server.requests[-1].body["enable_thinking"] is False
    assert dashscope_server.requests[-1].headers["authorization"].startswith("Bearer sk-test-")


def test_dashscope_stream_reasoning_then_content_then_usage(ds):
    chunks = list(
        ds.chat.completions.create(
            model="qwen3-4b", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
    )
    kinds = [
        (
            "r"
            if getattr(c.choices[0].delta, "reasoning_content", None)
            else "c"
            if c.choices[0].delta.content
            else "-"
        )
        if c.choices
        else "u"
        for c in chunks
    ]
    seq = "".join(k for k in kinds if k != "-")
    assert seq.startswith("r") and "rc" in seq and seq.endswith("cu") and seq.count("u") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens_details.reasoning_tokens > 0


def test_dashscope_json_mode_with_thinking_rejected(ds):
    with pytest.raises(openai.BadRequestError, match="Json mode response is not supported"):
        ds.chat.completions.create(
            model="qwen3-4b", messages=MSG, stream=True, response_format={"type": "json_object"}
        )
    r = ds.chat.completions.create(
        model="qwen3-4b",
        messages=MSG,
        response_format={"type": "json_object"},
        extra_body={"enable_thinking": False},
    )
    assert r.choices[0].message.content.startswith("{")


def test_dashscope_auth(dashscope_server):
    bad = openai.OpenAI(base_url=dashscope_server.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_dashscope_embeddings(ds, dashscope_server):
    with pytest.raises(openai.BadRequestError, match="should not be larger than 10"):
        ds.embeddings.create(model="text-embedding-v4", input=[f"t{i}" for i in range(11)])
    r = ds.embeddings.create(model="text-embedding-v4", input=[f"t{i}" for i in range(9)] + ["t0"])
    vecs = [d.embedding for d in r.data]
    assert len(vecs) == 10 and len(vecs[0]) == 1024 and vecs[0] == vecs[9]
    assert math.isclose(sum(x * x for x in vecs[0]), 1.0, rel_tol=1e-4) and r.usage.total_tokens > 0
    r = ds.embeddings.create(model="text-embedding-v4", input="x", dimensions=256, encoding_format="float")
    assert len(r.data[0].embedding) == 256
    with pytest.raises(openai.BadRequestError):
        ds.embeddings.create(model="text-embedding-v4", input=[[1, 2, 3]])
    assert [len(q.body["input"]) for q in dashscope_server.requests_to("/embeddings")][:2] == [11, 10]


def test_dashscope_rerank_native_and_compatible(dashscope_server, test_api_key):
    h = {"Authorization": f"Bearer {test_api_key}"}
    docs = ["苹果是一种水果", "今天天气很好", "香蕉和苹果都是水果"]
    r = httpx.post(
        dashscope_server.rerank_url,
        headers=h,
        json={
            "model": "gte-rerank-v2",
            "input": {"query": "苹果水果", "documents": docs},
            "parameters": {"top_n": 2, "return_documents": True},
        },
    )
    assert r.status_code == 200
    res = r.json()["output"]["results"]
    assert [x["index"] for x in res] == [0, 2] and res[0]["document"]["text"] == docs[0]
    assert 0 <= res[-1]["relevance_score"] <= res[0]["relevance_score"] <= 1
    assert r.json()["usage"]["total_tokens"] > 0 and r.json()["request_id"]
    r = httpx.post(
        dashscope_server.compat_rerank_url,
        headers=h,
        json={
            "model": "qwen3-rerank",
            "query": "天气",
            "documents": docs,
            "top_n": 1,
            "instruct": "Retrieve.",
        },
    )
    assert r.json()["results"][0]["index"] == 1 and "document" not in r.json()["results"][0]
    r = httpx.post(
        dashscope_server.rerank_url,
        headers=h,
        json={"model": "gte-rerank-v2", "input": {"query": "q", "documents": ["d"] * 501}},
    )
    assert r.status_code == 400
    assert httpx.post(dashscope_server.compat_rerank_url, json={}).status_code == 401


# --- fake Ollama -------------------------------------------------------------------------------------
def test_ollama_chat_reasoning_invoke_and_stream(ollama_server):
    from langchain_ollama import ChatOllama

    m = ChatOllama(
        model="qwen3:4b",
        base_url=ollama_server.url,
        reasoning=True,
        num_ctx=1024,
        num_predict=4,
        validate_model_on_init=True,
    )
    r = m.invoke("你好")
    assert r.content and r.additional_kwargs.get("reasoning_content")
    assert r.usage_metadata["input_tokens"] > 0 and r.usage_metadata["output_tokens"] > 4
    assert r.response_metadata["done_reason"] == "length"
    body = ollama_server.requests_to("/api/chat")[-1].body
    assert body["think"] is True and body["options"] == {"num_ctx": 1024, "num_predict": 4}
    chunks = list(m.stream("hi"))
    assert len(chunks) > 2 and "".join(c.content for c in chunks)
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.additional_kwargs.get("reasoning_content") and total.usage_metadata["output_tokens"] > 0


def test_ollama_chat_no_reasoning(ollama_server):
    from langchain_ollama import ChatOllama

    r = ChatOllama(model="qwen3:4b", base_url=ollama_server.url, reasoning=False, num_predict=3).invoke("hi")
    assert r.content and "reasoning_content" not in r.additional_kwargs
    assert r.usage_metadata["output_tokens"] == 3


def test_ollama_embeddings_and_client(ollama_server):
    import ollama
    from langchain_ollama import OllamaEmbeddings

    e = OllamaEmbeddings(model="qwen3-embedding:0.6b", base_url=ollama_server.url)
    v = e.embed_documents(["a b", "你好", "a b"])
    assert len(v) == 3 and len(v[0]) == 64 and v[0] == v[2] and v[0] != v[1]
    assert math.isclose(sum(x * x for x in v[1]), 1.0, rel_tol=1e-4)
    c = ollama.Client(host=ollama_server.url)
    assert "qwen3:4b" in [m.model for m in c.list().models]
    assert "thinking" in c.show("qwen3:4b").capabilities
    with pytest.raises(ollama.ResponseError) as ei:
        c.chat(model="nope", messages=MSG)
    assert ei.value.status_code == 404


# --- fault server ------------------------------------------------------------------------------------
@pytest.fixture
def fo(fault_server, test_api_key):
    return openai.OpenAI(base_url=fault_server.base_url, api_key=test_api_key, max_retries=0)


def test_fault_429_has_retry_after_and_sdk_retries(fault_server, fo, test_api_key):
    fault_server.configure(faults=["429"], retry_after="0.05")
    with pytest.raises(openai.RateLimitError) as ei:
        fo.chat.completions.create(model="m", messages=MSG)
    assert ei.value.response.headers["retry-after"] == "0.05"
    fault_server.configure(faults=["429", "429"])
    retrying = openai.OpenAI(base_url=fault_server.base_url, api_key=test_api_key, max_retries=2)
    r = retrying.chat.completions.create(model="m", messages=MSG, max_tokens=2)
    assert r.choices[0].message.content == "tok0 tok1" and r.usage.completion_tokens == 2
    assert fault_server.stats()["statuses"] == {429: 3, 200: 1}


def test_fault_stream_drop_malformed_and_no_usage(fault_server, test_api_key):
    def fresh():  # a new connection pool per request: a dropped connection must not be reused
        return openai.OpenAI(base_url=fault_server.base_url, api_key=test_api_key, max_retries=0)

    fault_server.configure(faults=["drop", "malformed", "no_usage"])
    with pytest.raises(openai.APIConnectionError):
        list(fresh().chat.completions.create(model="m", messages=MSG, stream=True))
    with pytest.raises(ValueError):
        fresh().chat.completions.create(model="m", messages=MSG)
    chunks = list(
        fresh().chat.completions.create(
            model="m", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks and all(c.usage is None for c in chunks)
    assert fault_server.stats()["faults"] == {"drop": 1, "malformed": 1, "no_usage": 1}


def test_fault_latency_concurrency_and_embeddings(fault_server, test_api_key):
    fault_server.configure(latency_ms=100)
    client = openai.AsyncOpenAI(base_url=fault_server.base_url, api_key=test_api_key, max_retries=0)

    async def burst():
        return await asyncio.gather(*[client.embeddings.create(model="e", input=[f"x{i}"]) for i in range(8)])

    results = asyncio.run(burst())
    st = fault_server.stats()
    assert len(results) == 8 and len(results[0].data[0].embedding) == 8
    assert st["max_in_flight"] >= 4 and st["total"] == 8 and st["in_flight"] == 0
    assert max(st["timestamps"]) - min(st["timestamps"]) < 0.1 * 8
