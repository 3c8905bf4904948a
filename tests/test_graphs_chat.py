"""chat_graph: memory per thread (in-memory and SQLite), trimming to the model's window, summaries."""

from __future__ import annotations

import json

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from module_ai import ConfigError, ContextWindowError, load_registry
from module_ai.controls.tokens import estimate_message_tokens
from module_ai.graphs import chat_graph, sqlite_checkpointer


class Recorder(BaseCallbackHandler):
    """Records the messages every chat model call receives."""

    def __init__(self) -> None:
        self.calls: list[list] = []

    def on_chat_model_start(self, serialized, messages, **kwargs):
        self.calls.extend(messages)


def run(graph, text: str, thread: str = "t1", recorder: Recorder | None = None) -> dict:
    config = {"configurable": {"thread_id": thread}, "callbacks": [recorder] if recorder else []}
    return graph.invoke({"messages": [HumanMessage(text)]}, config)


def test_memory_per_thread_in_memory():
    rec = Recorder()
    graph = chat_graph(FakeListChatModel(responses=["你好小明", "你叫小明", "不知道"]), system_prompt="你是助手")
    run(graph, "我叫小明", recorder=rec)
    out = run(graph, "我叫什么？", recorder=rec)
    assert [m.content for m in out["messages"]] == ["我叫小明", "你好小明", "我叫什么？", "你叫小明"]
    second = rec.calls[1]
    assert isinstance(second[0], SystemMessage) and second[0].content == "你是助手"
    assert [m.content for m in second[1:]] == ["我叫小明", "你好小明", "我叫什么？"]
    run(graph, "我叫什么？", thread="other", recorder=rec)
    assert [m.content for m in rec.calls[2][1:]] == ["我叫什么？"]  # another thread has no memory


def test_sqlite_memory_survives_a_new_graph(tmp_path):
    db = tmp_path / "sub" / "chat.sqlite"
    first = chat_graph(FakeListChatModel(responses=["记住了"]), checkpointer=str(db))
    run(first, "我的工号是 A-17")
    first.checkpointer.conn.close()
    rec = Recorder()
    second = chat_graph(FakeListChatModel(responses=["A-17"]), checkpointer=db)
    out = run(second, "我的工号？", recorder=rec)
    assert [m.content for m in rec.calls[0]] == ["我的工号是 A-17", "记住了", "我的工号？"]
    assert out["messages"][-1].content == "A-17"
    second.checkpointer.conn.close()


def test_no_memory_and_custom_checkpointer():
    rec = Recorder()
    graph = chat_graph(FakeListChatModel(responses=["a", "b"]), checkpointer=False)
    graph.invoke({"messages": [("user", "一")]}, {"callbacks": [rec]})
    graph.invoke({"messages": [("user", "二")]}, {"callbacks": [rec]})
    assert [len(c) for c in rec.calls] == [1, 1]
    saver = sqlite_checkpointer(":memory:")
    assert chat_graph(FakeListChatModel(responses=["a"]), checkpointer=saver).checkpointer is saver


def test_trims_to_window_keeping_history_stored():
    rec = Recorder()
    graph = chat_graph(FakeListChatModel(responses=["好的"]), window_tokens=40, system_prompt="简短回答")
    for i in range(6):
        out = run(graph, f"第{i}个问题：" + "长" * 6, recorder=rec)
    assert len(out["messages"]) == 12  # everything is stored
    sent = rec.calls[-1]
    assert isinstance(sent[0], SystemMessage)
    assert estimate_message_tokens(sent) <= 40
    assert isinstance(sent[1], HumanMessage)  # starts on a user turn
    assert sent[-1].content.startswith("第5个问题") and len(sent) < 12


def test_window_comes_from_the_model_config_on_the_wire(tmp_path, dashscope_server):
    cfg = {"model_type": "chat", "server_type": "openai", "model": "qwen-plus", "url": dashscope_server.base_url,
           "api_key": "${MODULE_AI_TEST_KEY}", "no_think": True, "input_tokens": 90, "out_tokens": 20}
    (tmp_path / "q.json").write_text(json.dumps(cfg), encoding="utf-8")
    graph = chat_graph(load_registry(tmp_path).chat("q"))
    for i in range(5):
        run(graph, f"问题{i}：" + "字" * 10)
    bodies = [r.body for r in dashscope_server.requests_to("/chat/completions")]
    assert len(bodies) == 5
    sent = bodies[-1]["messages"]
    assert sent[0]["role"] == "user" and sent[-1]["content"].startswith("问题4")
    assert len(sent) < 9 and estimate_message_tokens([m["content"] for m in sent]) <= 70


def test_last_message_too_long_raises_context_window_error():
    graph = chat_graph(FakeListChatModel(responses=["x"]), window_tokens=20)
    with pytest.raises(ContextWindowError, match="input_tokens"):
        run(graph, "很长" * 50)


def test_summary_folds_dropped_turns_into_a_system_note():
    rec = Recorder()
    summarizer = FakeListChatModel(responses=["用户叫小明，喜欢绿茶。", "用户叫小明，喜欢绿茶，住在杭州。"])
    graph = chat_graph(FakeListChatModel(responses=["好"]), window_tokens=90, summarize=True,
                       summary_llm=summarizer, summary_max_chars=30, system_prompt="你是助手")
    for text in ["我叫小明" + "。" * 8, "我喜欢绿茶" + "。" * 8, "我住杭州" + "。" * 8, "我喜欢什么？"]:
        out = run(graph, text, recorder=rec)
    summary_calls = [c for c in rec.calls if "压缩对话历史" in c[0].content]
    assert summary_calls, "the summarizer was never called"
    assert "我叫小明" in summary_calls[0][1].content
    state = graph.get_state({"configurable": {"thread_id": "t1"}}).values
    assert state["summary"] == out["summary"] and state["summary"].startswith("用户叫小明")
    assert "我叫小明" not in [m.content.rstrip("。") for m in state["messages"]]  # folded turns are removed
    last = rec.calls[-1]
    assert last[0].content.startswith("你是助手") and state["summary"] in last[0].content
    assert estimate_message_tokens(last) <= 90


def test_english_prompts_and_bad_lang():
    rec = Recorder()
    summarizer = FakeListChatModel(responses=["The user is Ann."])
    graph = chat_graph(FakeListChatModel(responses=["ok"]), window_tokens=60, summarize=True,
                       summary_llm=summarizer, summary_max_chars=20, lang="en")
    for text in ["My name is Ann, nice to meet you today", "What is the weather like", "Who am I?"]:
        run(graph, text, recorder=rec)
    assert any("compress a conversation" in c[0].content for c in rec.calls)
    with pytest.raises(ConfigError, match="lang"):
        chat_graph(FakeListChatModel(responses=["x"]), lang="fr")


def test_end_to_end_with_llama_server(tmp_path, llama_server):
    cfg = {"model_type": "chat", "server_type": "openai", "model": "tiny", "url": llama_server,
           "input_tokens": 2048, "out_tokens": 16}
    (tmp_path / "tiny.json").write_text(json.dumps(cfg), encoding="utf-8")
    llm = load_registry(tmp_path).chat("tiny")
    graph = chat_graph(llm, checkpointer=tmp_path / "mem.sqlite", system_prompt="你是助手", summarize=True)
    for text in ["你好", "再说一遍"]:
        out = run(graph, text)
    assert [type(m) for m in out["messages"]] == [HumanMessage, AIMessage] * 2
    assert all(isinstance(m.content, str) for m in out["messages"])
    assert "summary" not in out  # everything fits in 2032 tokens: no summary call
    graph.checkpointer.conn.close()


def test_summary_calls_are_amortized_and_fit_the_window():
    rec = Recorder()
    graph = chat_graph(FakeListChatModel(responses=["好"]), window_tokens=400, summarize=True,
                       summary_llm=FakeListChatModel(responses=["摘要"]), summary_max_chars=40)
    for i in range(16):
        run(graph, f"第{i}轮：" + "内容" * 12, recorder=rec)
    summaries = [c for c in rec.calls if "压缩对话历史" in c[0].content]
    answers = [c for c in rec.calls if "压缩对话历史" not in c[0].content]
    assert 1 <= len(summaries) <= 4  # folded down to half the budget, not one turn at a time
    assert all(estimate_message_tokens(c) <= 400 for c in answers)


def test_summary_input_is_cut_to_the_summary_models_window():
    rec = Recorder()
    graph = chat_graph(FakeListChatModel(responses=["好", "摘要"]), window_tokens=260, summarize=True,
                       summary_max_chars=20)
    for i in range(6):
        run(graph, f"第{i}轮：" + "很长的内容" * 12, recorder=rec)
    summaries = [c for c in rec.calls if "压缩对话历史" in c[0].content]
    assert summaries and all(estimate_message_tokens(c) <= 260 for c in summaries)
    with pytest.raises(ContextWindowError, match="summary"):
        tiny = chat_graph(FakeListChatModel(responses=["好"]), window_tokens=120, summarize=True,
                          summary_max_chars=10)
        for i in range(4):
            run(tiny, f"第{i}轮：" + "字" * 20)


async def test_async_invoke_and_token_streaming():
    graph = chat_graph(FakeListChatModel(responses=["你好呀"]))
    config = {"configurable": {"thread_id": "a"}}
    out = await graph.ainvoke({"messages": [("user", "你好")]}, config)
    assert out["messages"][-1].content == "你好呀"
    chunks = [chunk for chunk, _meta in graph.stream({"messages": [("user", "再来")]}, config,
                                                    stream_mode="messages")]
    assert "".join(c.content for c in chunks) == "你好呀"
