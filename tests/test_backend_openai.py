"""server_type openai: the real llama.cpp server and a DashScope-like server, through the registry."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel

from module_ai import load_registry
from module_ai.controls.events import add_listener, remove_listener


def write_configs(tmp_path, configs: dict) -> object:
    (tmp_path / "models.json").write_text(json.dumps({"models": configs}), encoding="utf-8")
    return load_registry(tmp_path)


@pytest.fixture(params=["httpx", "sdk"])
def transport(request) -> str:
    """Every test below runs on both transports of server_type openai."""
    return request.param


def with_transport(configs: dict, transport: str) -> dict:
    return {name: {**c, "transport": transport} for name, c in configs.items()}


@pytest.fixture()
def llama_reg(tmp_path, llama_server, transport):
    return write_configs(tmp_path, with_transport({
        "tiny": {"model_type": "chat", "server_type": "openai", "model": "tiny", "url": llama_server,
                 "input_tokens": 2048, "out_tokens": 3, "temperature": 0.7, "timeout": 60,
                 "thinking_style": "none", "pay_in": 1, "pay_out": 2},
        "tiny-emb": {"model_type": "embedding", "server_type": "openai", "model": "tiny", "url": llama_server,
                     "max_batch": 2},
    }, transport))


@pytest.fixture()
def ds_reg(tmp_path, dashscope_server, transport):
    base = dashscope_server.base_url
    return write_configs(tmp_path, with_transport({
        "qwen3-4b": {"model_type": "chat", "server_type": "openai", "model": "qwen3-4b", "url": base,
                     "api_key": "${MODULE_AI_TEST_KEY}", "pay_in": 0.3, "pay_out": 1.2,
                     "input_tokens": 32768, "out_tokens": 8, "temperature": 0.7, "timeout": 30, "no_think": True},
        "qwen3-think": {"model_type": "chat", "server_type": "openai", "model": "qwen3-4b", "url": base,
                        "api_key": "${MODULE_AI_TEST_KEY}", "out_tokens": 8, "no_think": False},
        "qwen3-vllm-style": {"model_type": "chat", "server_type": "openai", "model": "qwen3-4b", "url": base,
                             "api_key": "${MODULE_AI_TEST_KEY}", "no_think": True,
                             "thinking_style": "chat_template_kwargs"},
        "emb": {"model_type": "embedding", "server_type": "openai", "model": "text-embedding-v4", "url": base,
                "api_key": "${MODULE_AI_TEST_KEY}", "max_batch": 10, "dimensions": 256, "pay_in": 0.5},
    }, transport))


def last_chat_body(server) -> dict:
    return [r for r in server.requests if r.path.endswith("/chat/completions")][-1].body


# ---------------------------------------------------------------- llama.cpp (real server)

def test_llama_invoke_usage_and_max_tokens_on_the_wire(llama_reg):
    llm = llama_reg.chat("tiny")
    msg = llm.invoke("你好")
    assert isinstance(msg.content, str)
    assert msg.usage_metadata["input_tokens"] > 0
    assert 0 < msg.usage_metadata["output_tokens"] <= 3  # max_tokens honoured (max_completion_tokens is not)
    assert msg.response_metadata["cost"] == pytest.approx(
        (msg.usage_metadata["input_tokens"] * 1 + msg.usage_metadata["output_tokens"] * 2) / 1e6)
    assert msg.response_metadata["usage_estimated"] is False


def test_llama_payload_sends_max_tokens_not_max_completion_tokens(llama_reg):
    payload = llama_reg.chat("tiny")._get_request_payload("hi")
    assert payload["max_tokens"] == 3 and "max_completion_tokens" not in payload
    # thinking_style "none": nothing thinking-related goes on the wire, even with no_think
    quiet = llama_reg.chat("tiny", no_think=True)._get_request_payload("hi")
    assert "enable_thinking" not in str(quiet) and "chat_template_kwargs" not in str(quiet)


def test_llama_stream_estimates_usage_when_server_gives_none(llama_reg):
    records = []
    add_listener(records.append)
    try:
        chunks = list(llama_reg.chat("tiny").stream("写一首诗"))
    finally:
        remove_listener(records.append)
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.usage_metadata["input_tokens"] > 0
    assert total.response_metadata["usage_estimated"] is True
    assert [r.kind for r in records] == ["chat"] and records[0].estimated


def test_llama_batch_and_async(llama_reg):
    llm = llama_reg.chat("tiny")
    outs = llm.batch(["a", "b", "c"])
    assert len(outs) == 3 and all(o.usage_metadata["output_tokens"] <= 3 for o in outs)

    async def run():
        one = await llm.ainvoke("x")
        parts = [c async for c in llm.astream("y")]
        return one, parts

    one, parts = asyncio.run(run())
    assert one.usage_metadata["output_tokens"] <= 3 and len(parts) >= 1


def test_llama_embeddings_batches_by_max_batch(llama_reg):
    emb = llama_reg.embeddings("tiny-emb")
    vectors = emb.embed_documents(["一", "二", "三", "four", "five"])
    assert len(vectors) == 5 and all(len(v) == 64 for v in vectors)
    assert len(emb.embed_query("你好")) == 64
    assert len(asyncio.run(emb.aembed_documents(["a", "b", "c"]))) == 3


def test_llama_check_lists_models(llama_reg):
    report = llama_reg.check("tiny")
    assert report["ok"] and report["latency_ms"] >= 0 and report["found"]["models"]


# ---------------------------------------------------------------- DashScope-like server

def test_no_think_reaches_the_wire_as_enable_thinking_false(ds_reg, dashscope_server):
    msg = ds_reg.chat("qwen3-4b").invoke("你好")
    assert msg.content
    body = last_chat_body(dashscope_server)
    assert body["enable_thinking"] is False and body["max_tokens"] == 8
    assert dashscope_server.requests[-1].headers["authorization"] == "Bearer sk-test-0123456789abcdef0123456789"


def test_thinking_model_non_stream_gets_the_documented_400(ds_reg):
    from module_ai import BadRequestError

    with pytest.raises(BadRequestError, match="HTTP 400 .*enable_thinking must be set to false"):
        ds_reg.chat("qwen3-think").invoke("你好")


def test_reasoning_content_in_every_stream_chunk(ds_reg, dashscope_server):
    chunks = list(ds_reg.chat("qwen3-think").stream("你好"))
    reasoning = [c.additional_kwargs.get("reasoning_content", "") for c in chunks]
    assert "".join(reasoning).startswith("嗯")
    content = "".join(c.content for c in chunks)
    assert content and reasoning.index(next(r for r in reasoning if r)) < [c.content for c in chunks].index(
        next(c.content for c in chunks if c.content))
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[0]["output_tokens"] > 0  # final usage chunk with empty choices is parsed
    assert last_chat_body(dashscope_server)["stream_options"] == {"include_usage": True}


def test_reasoning_content_in_invoke_result(ds_reg):
    from module_ai.backends.openai import _chat_class

    llm = ds_reg.chat("qwen3-think")
    response = {"id": "x", "object": "chat.completion", "created": 0, "model": "qwen3-4b",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "答", "reasoning_content": "想"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    result = _chat_class()._create_chat_result(llm, response)
    assert result.generations[0].message.additional_kwargs["reasoning_content"] == "想"


def test_vllm_style_thinking_switch(ds_reg, dashscope_server):
    llm = ds_reg.chat("qwen3-vllm-style")
    payload = llm._get_request_payload("hi")
    assert "enable_thinking" not in payload
    list(llm.stream("hi"))
    assert last_chat_body(dashscope_server)["chat_template_kwargs"] == {"enable_thinking": False}


class Answer(BaseModel):
    answer: str


def test_structured_output_turns_thinking_off(ds_reg, dashscope_server):
    out = ds_reg.chat("qwen3-think").with_structured_output(Answer).invoke("1+1?")
    assert isinstance(out, Answer)
    assert last_chat_body(dashscope_server)["enable_thinking"] is False


def test_embeddings_raw_text_batches_of_ten_and_dimensions(ds_reg, dashscope_server):
    emb = ds_reg.embeddings("emb")
    texts = [f"文本{i}" for i in range(23)]
    vectors = emb.embed_documents(texts)
    assert len(vectors) == 23 and all(len(v) == 256 for v in vectors)
    bodies = [r.body for r in dashscope_server.requests if r.path.endswith("/embeddings")]
    assert sorted(len(b["input"]) for b in bodies) == [3, 10, 10]
    assert all(isinstance(x, str) for b in bodies for x in b["input"])
    assert {b["dimensions"] for b in bodies} == {256}
    assert {b["encoding_format"] for b in bodies} == {"float"}
    # order is preserved across concurrently sent batches
    again = emb.embed_documents(texts[10:12])
    assert again == vectors[10:12]


def test_embeddings_report_usage(ds_reg):
    records = []
    add_listener(records.append)
    try:
        ds_reg.embeddings("emb").embed_documents(["a", "b"])
    finally:
        remove_listener(records.append)
    assert records and records[0].kind == "embedding" and records[0].input_tokens > 0
    assert records[0].estimated is False


def test_check_reports_unreachable_server_without_raising(tmp_path):
    reg = write_configs(tmp_path, {"dead": {"model_type": "chat", "server_type": "openai", "model": "m",
                                            "url": "http://127.0.0.1:9/v1", "api_key": "sk-secret-dead-key-123"}})
    report = reg.check("dead")
    assert report["ok"] is False and "127.0.0.1:9" in report["error"]
    assert "sk-secret-dead-key-123" not in json.dumps(report)


def test_async_calls_work_across_event_loops(llama_reg):
    """langchain-openai shares one async client per URL; a second asyncio.run must still work."""
    llm, emb = llama_reg.chat("tiny"), llama_reg.embeddings("tiny-emb")
    for _ in range(3):
        assert asyncio.run(llm.ainvoke("hi")).usage_metadata["output_tokens"] <= 3
        assert len(asyncio.run(emb.aembed_documents(["a", "b", "c"]))) == 3

    async def stream():
        return [c async for c in llm.astream("x")]

    assert asyncio.run(stream()) and asyncio.run(stream())


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"{city}: sunny"


def test_tool_calls_invoke_and_stream(ds_reg):
    llm = ds_reg.chat("qwen3-4b").bind_tools([get_weather])
    msg = llm.invoke("北京天气？")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "get_weather" and "city" in msg.tool_calls[0]["args"]
    total = None
    for chunk in llm.stream("北京天气？"):
        total = chunk if total is None else total + chunk
    assert total.tool_calls[0]["name"] == "get_weather" and total.usage_metadata["output_tokens"] > 0


def test_structured_output_json_schema_and_async(ds_reg):
    llm = ds_reg.chat("qwen3-4b")
    out = llm.with_structured_output(Answer, method="json_schema").invoke("1+1?")
    assert isinstance(out, Answer)
    out = asyncio.run(llm.with_structured_output(Answer, method="json_schema").ainvoke("1+1?"))
    assert isinstance(out, Answer)
    assert isinstance(asyncio.run(llm.with_structured_output(Answer).ainvoke("1+1?")), Answer)
