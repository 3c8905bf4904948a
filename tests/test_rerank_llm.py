"""The LLM reranker: templates, partial and total fallback, sliding windows, errors, and the real llama.cpp server."""

from __future__ import annotations

import httpx
import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from pydantic import Field

from module_ai.config import ModelConfig
from module_ai.controls.events import add_listener, remove_listener
from module_ai.errors import BackendError
from module_ai.registry import Registry
from module_ai.rerank import LLMReranker
from module_ai.rerank._llm import sliding_windows
from tests.servers.fake_rerank import scripted_judge

QUERY = "What do giant pandas eat?"
TEXTS = ["Cars need fuel to run.", "The stock market fell.", "Giant pandas eat bamboo.",
         "Bamboo forests are home to wild pandas."]


class Recorder(GenericFakeChatModel):
    """Replies from a list and keeps the prompts it saw."""

    prompts: list = Field(default_factory=list)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.prompts.append(messages[-1].content)
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


@pytest.mark.parametrize("mode", ["pointwise", "listwise"])
def test_partial_garbage_falls_back_for_those_items_only(mode):
    rr = LLMReranker(llm=scripted_judge(garble="stock"), mode=mode)
    out = rr.compress_documents([Document(page_content=t) for t in TEXTS], QUERY)
    order = [d.metadata["rerank_index"] for d in out]
    assert order[0] == 2 and order[-1] == 1  # the garbled one goes last
    fallback = [d for d in out if d.metadata.get("rerank_fallback")]
    assert [d.metadata["rerank_index"] for d in fallback] == [1]
    assert fallback[0].metadata["relevance_score"] == 0.0 and fallback[0].metadata["raw_score"] is None
    word = "unparsable" if mode == "pointwise" else "left out"
    assert word in fallback[0].metadata["rerank_note"]


def test_all_garbage_keeps_input_order_and_says_so():
    rr = LLMReranker(llm=GenericFakeChatModel(messages=iter([AIMessage("@@##")] * 10)))
    out = rr.compress_documents([Document(page_content=t) for t in TEXTS], QUERY)
    assert [d.metadata["rerank_index"] for d in out] == [0, 1, 2, 3]
    assert all(d.metadata["rerank_fallback"] for d in out)


def test_language_of_the_template_follows_the_query():
    rec = Recorder(messages=iter([AIMessage("5")] * 3))
    LLMReranker(llm=rec).rank("熊猫吃什么？", ["竹子"])
    LLMReranker(llm=rec).rank("What do pandas eat?", ["bamboo"])
    LLMReranker(llm=rec, language="zh").rank("What do pandas eat?", ["bamboo"])
    zh, en, forced = rec.prompts[-3:]
    assert "问题：熊猫吃什么？" in zh and "分数" in zh
    assert "Question: What do pandas eat?" in en and "Score:" in en
    assert "问题：What do pandas eat?" in forced


def test_prompt_templates_are_overridable_data_files(tmp_path, monkeypatch):
    (tmp_path / "rerank_pointwise.en.txt").write_text("CUSTOM {query} || {document} ->", encoding="utf-8")
    monkeypatch.setenv("MODULE_AI_PROMPTS", str(tmp_path))
    rec = Recorder(messages=iter([AIMessage("7")]))
    assert LLMReranker(llm=rec).rank("q?", ["doc"]) == [(0, 0.7)]
    assert rec.prompts[-1] == "CUSTOM q? || doc ->"


def test_listwise_sliding_windows_bring_the_best_to_the_top():
    judge = scripted_judge()
    texts = [f"Filler passage number {i} about nothing." for i in range(44)] + ["Giant pandas eat bamboo."]
    rr = LLMReranker(llm=judge, mode="listwise", window=20)
    pairs = rr.rank(QUERY, texts)
    assert pairs[0][0] == 44 and judge.calls == len(sliding_windows(45, 20))
    assert all(score > 0 for _, score in pairs)  # every text was placed by the model


def test_chat_failure_is_backend_error():
    class Down(GenericFakeChatModel):
        def _generate(self, *args, **kwargs):
            raise httpx.ConnectError("connection refused")

    rr = LLMReranker(llm=Down(messages=iter([])), name="judge")
    with pytest.raises(BackendError, match="'judge'.*ConnectError"):
        rr.rank(QUERY, TEXTS)


def test_llm_reranker_end_to_end_on_real_llama_server(llama_server):
    """The tiny random model answers gibberish: every item takes the fallback path, usage is billed as chat."""
    chat = ModelConfig(name="tiny-chat", model_type="chat", server_type="openai", model="tiny", url=llama_server,
                       temperature=0, out_tokens=6, thinking_style="none", pay_in=1.0, pay_out=2.0)
    rr_cfg = ModelConfig(name="llm-rr", model_type="rerank", server_type="openai", rerank_style="llm", model="tiny",
                         rerank_model="tiny-chat", options={"top_n": 3})
    reranker = Registry({"tiny-chat": chat, "llm-rr": rr_cfg}).reranker("llm-rr")
    seen = []
    add_listener(seen.append)
    try:
        out = reranker.compress_documents([Document(page_content=t) for t in TEXTS], QUERY)
    finally:
        remove_listener(seen.append)
    assert len(out) == 3
    keys = [(-d.metadata["relevance_score"], d.metadata["rerank_index"]) for d in out]
    assert keys == sorted(keys)
    for d in out:
        assert d.metadata.get("rerank_fallback") or isinstance(d.metadata["raw_score"], float)
    chats = [r for r in seen if r.kind == "chat"]
    assert len(chats) == len(TEXTS) and all(r.model == "tiny-chat" and r.cost > 0 for r in chats)
    assert not [r for r in seen if r.kind == "rerank"]  # no double billing
