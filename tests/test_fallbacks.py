"""`fallbacks` keep a chat model a chat model: invoke, stream, batch, async, bind_tools and
with_structured_output all fall back when the primary is dead (a port nothing listens on), and the
capability check sees every model behind it."""

from __future__ import annotations

import json

import pytest
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel

from module_ai import BackendError, load_registry
from module_ai.controls.capabilities import configs_of


class Answer(BaseModel):
    """An answer."""

    answer: str


@pytest.fixture()
def reg(tmp_path, dashscope_server):
    key = "${MODULE_AI_TEST_KEY}"
    (tmp_path / "m.json").write_text(json.dumps({"models": {
        "dead": {"model_type": "chat", "server_type": "openai", "model": "qwen3-4b", "url": "http://127.0.0.1:9/v1",
                 "max_retries": 0, "timeout": 5, "fallbacks": ["ds"]},
        "ds": {"model_type": "chat", "server_type": "openai", "model": "qwen3-4b", "url": dashscope_server.base_url,
               "api_key": key, "no_think": True, "max_retries": 0, "capabilities": ["tools", "json"]},
        "dead-alone": {"model_type": "chat", "server_type": "openai", "model": "qwen3-4b",
                       "url": "http://127.0.0.1:9/v1", "max_retries": 0, "timeout": 5},
    }}))
    return load_registry(tmp_path)


def _joined(chunks):
    whole = None
    for chunk in chunks:
        whole = chunk if whole is None else whole + chunk
    return whole


def test_a_model_with_fallbacks_is_a_chat_model(reg):
    llm = reg.chat("dead")
    assert isinstance(llm, BaseChatModel)
    assert [c.display_name for c in configs_of(llm)] == ["dead", "ds"]
    assert llm.module_ai_config.display_name == "dead"


def test_invoke_stream_batch_fall_back(reg, dashscope_server):
    llm = reg.chat("dead")
    assert llm.invoke("你好").response_metadata["module_ai_model"] == "ds"
    whole = _joined(llm.stream("你好"))
    assert whole.content and whole.response_metadata["module_ai_model"] == "ds"
    assert [m.content for m in llm.batch(["一", "二"])] and len(dashscope_server.requests_to("/chat/completions")) == 4


async def test_async_falls_back(reg):
    llm = reg.chat("dead")
    assert (await llm.ainvoke("你好")).response_metadata["module_ai_model"] == "ds"
    whole = _joined([c async for c in llm.astream("你好")])
    assert whole.content and whole.response_metadata["module_ai_model"] == "ds"


def test_structured_output_and_tools_fall_back(reg, dashscope_server):
    structured = reg.chat("dead").with_structured_output(Answer)
    assert isinstance(structured.invoke("回答"), Answer)
    bound = reg.chat("dead").bind_tools([Answer])
    message = bound.invoke("回答")
    assert message.tool_calls and message.tool_calls[0]["name"] == "Answer"
    sent = [r.body for r in dashscope_server.requests_to("/chat/completions")]
    assert all(body.get("tools") for body in sent) and len(sent) == 2


def test_every_model_failing_raises_the_last_error_with_notes(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"models": {
        name: {"model_type": "chat", "server_type": "openai", "model": "m", "url": f"http://127.0.0.1:{port}/v1",
               "max_retries": 0, "timeout": 5, **({"fallbacks": ["b"]} if name == "a" else {})}
        for name, port in (("a", 9), ("b", 7))}}))
    with pytest.raises(BackendError) as info:
        load_registry(tmp_path).chat("a").invoke("hi")
    assert "127.0.0.1:7" in str(info.value)
    assert any("a failed first" in note for note in info.value.__notes__)
