"""chat_chain: system prompts (zh/en, overridable), history stores, window trimming, streaming, usage."""

from __future__ import annotations

import asyncio

import pytest

from module_ai import ContextWindowError
from module_ai.chains.chat import (
    InMemoryHistoryStore,
    SQLiteHistoryStore,
    chat_chain,
    load_system_prompt,
)
from module_ai.controls.limits import trim_to_window
from module_ai.controls.tokens import estimate_message_tokens
from module_ai.controls.usage import track_usage
from tests.controls_helpers import chat_model, config, registry


def _sent(server, n: int = -1) -> list[dict]:
    return server.requests[n]["body"]["messages"]


def _session(name: str) -> dict:
    return {"configurable": {"session_id": name}}


def test_turns_are_remembered_per_session(echo):
    chat = chat_chain(chat_model(echo.base_url))
    chat.invoke("我叫小王", config=_session("a"))
    reply = chat.invoke({"input": "我叫什么？"}, config=_session("a"))
    assert reply.content.startswith("tok0")
    assert [m["role"] for m in _sent(echo)] == ["system", "user", "assistant", "user"]
    assert _sent(echo)[1]["content"] == "我叫小王" and _sent(echo)[0]["content"] == load_system_prompt("zh")
    chat.invoke("你好", config=_session("b"))
    assert [m["role"] for m in _sent(echo)] == ["system", "user"]
    chat.invoke("默认会话")  # no session id: the default session
    assert len(_sent(echo)) == 2


def test_sqlite_history_survives_a_new_chain(echo, tmp_path):
    db = tmp_path / "chats.db"
    llm = chat_model(echo.base_url)
    chat_chain(llm, history=db).invoke("第一句", config=_session("u1"))
    chat_chain(llm, history=str(db)).invoke("第二句", config=_session("u1"))
    assert [m["content"] for m in _sent(echo) if m["role"] == "user"] == ["第一句", "第二句"]
    store = SQLiteHistoryStore(db)
    assert store.sessions() == ["u1"]
    messages = store("u1").messages
    assert [m.type for m in messages] == ["human", "ai", "human", "ai"] and messages[0].content == "第一句"
    store("u1").clear()
    assert store("u1").messages == []


def test_trimming_keeps_the_system_message_and_the_last_turns(echo):
    llm = chat_model(echo.base_url, input_tokens=400, out_tokens=50)
    store = InMemoryHistoryStore()
    chat = chat_chain(llm, "你是助手。", history=store)
    for i in range(12):
        chat.invoke(f"第{i}轮：" + "很长的问题" * 8, config=_session("t"))
    sent = _sent(echo)
    assert sent[0] == {"role": "system", "content": "你是助手。"}
    assert sent[-1]["content"].startswith("第11轮")
    assert sent[1]["role"] == "user" and len(sent) < 24
    assert estimate_message_tokens([m["content"] for m in sent]) <= 350
    assert len(store("t").messages) == 24  # the stored history stays whole


def test_trim_to_window_unit():
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    turns = [SystemMessage("系统")]
    for i in range(10):
        turns += [HumanMessage(f"问题{i}" * 5), AIMessage(f"回答{i}" * 5)]
    turns.append(HumanMessage("最后的问题"))
    kept = trim_to_window(turns, max_tokens=100)
    assert kept[0].content == "系统" and kept[-1].content == "最后的问题" and kept[1].type == "human"
    assert estimate_message_tokens(kept) <= 100 < estimate_message_tokens(turns)
    assert kept[-3:] == turns[-3:]
    with pytest.raises(ContextWindowError, match="tokens over"):
        trim_to_window([SystemMessage("系" * 50), HumanMessage("问" * 60)], max_tokens=80)


def test_over_window_without_trimming_raises_with_numbers(echo):
    llm = chat_model(echo.base_url, input_tokens=100, out_tokens=20)
    chat = chat_chain(llm, "短", max_input_tokens=10_000)  # trimming budget larger than the model's window
    with pytest.raises(ContextWindowError, match=r"tokens over"):
        chat.invoke("长" * 120)
    assert echo.count == 0


def test_system_prompts_zh_en_and_overrides(echo, tmp_path, monkeypatch):
    llm = chat_model(echo.base_url)
    chat_chain(llm, lang="en").invoke("hi")
    assert _sent(echo)[0]["content"] == load_system_prompt("en") and "assistant" in load_system_prompt("en")
    assert "助手" in load_system_prompt("zh")
    (tmp_path / "chat_system.zh.txt").write_text("你是一只猫。", encoding="utf-8")
    monkeypatch.setenv("MODULE_AI_PROMPTS", str(tmp_path))
    chat_chain(llm).invoke("hi")
    assert _sent(echo)[0]["content"] == "你是一只猫。"
    prompt_file = tmp_path / "mine.txt"
    prompt_file.write_text("文件里的提示词\n", encoding="utf-8")
    chat_chain(llm, prompt_file).invoke("hi")
    assert _sent(echo)[0]["content"] == "文件里的提示词"


def test_stream_saves_history_and_reports_cost(echo):
    llm = chat_model(echo.base_url, pay_in=1.0, pay_out=2.0)
    store = InMemoryHistoryStore()
    chat = chat_chain(llm, history=store)
    with track_usage() as usage:
        chunks = list(chat.stream("讲个故事", config=_session("s")))
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    assert whole.content == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7"
    assert whole.response_metadata["cost"] == pytest.approx(usage.total_cost) and usage.calls == 1
    saved = store("s").messages
    assert [m.type for m in saved] == ["human", "ai"] and saved[1].content == whole.content


def test_async_invoke_and_stream(echo):
    chat = chat_chain(chat_model(echo.base_url), history=InMemoryHistoryStore())

    async def run():
        first = await chat.ainvoke("一", config=_session("x"))
        parts = [c.content async for c in chat.astream("二", config=_session("x"))]
        return first, "".join(parts)

    first, second = asyncio.run(run())
    assert first.content == second == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7"
    assert [m["role"] for m in _sent(echo)] == ["system", "user", "assistant", "user"]


def test_chain_over_a_model_with_fallbacks_trims_to_its_window(echo):
    backup = config(echo.base_url, model="backup")
    primary = config(echo.base_url, model="primary", input_tokens=300, out_tokens=20,
                     fallbacks=[backup.display_name])
    llm = registry(primary, backup).chat(primary.display_name)
    chat = chat_chain(llm, "系统")
    for i in range(10):
        chat.invoke(f"第{i}个问题" + "内容" * 20)
    assert len(_sent(echo)) < 21 and _sent(echo)[0]["content"] == "系统"
    # the primary answered every turn: had the history not been trimmed to its 300-token window, its
    # context check would have refused the call and the fallback ("backup") would have answered
    assert [r["body"]["model"] for r in echo.requests] == ["primary"] * 10


def test_chat_with_the_real_llama_server(llama_server):
    cfg = config(llama_server, model="tiny", api_key=None, out_tokens=8, input_tokens=2048)
    chat = chat_chain(registry(cfg).chat(cfg.display_name), lang="en")
    with track_usage() as usage:
        first = chat.invoke("Hello", config=_session("llama"))
        streamed = list(chat.stream("Again", config=_session("llama")))
    assert isinstance(first.content, str) and streamed
    assert usage.calls == 2 and usage.estimated_calls == 1 and usage.input_tokens > 0
