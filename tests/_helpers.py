"""Test doubles shared by the chain and graph tests (plain classes; the fixtures are in conftest.py).

- `ListRetriever(docs=[...], by_query={query: [...]})`: returns ``by_query[query]`` when present, else
  ``docs``; records every query in ``.queries``.
- `RecordingLLM(responses=[...])`: a scripted chat model that keeps every list of messages it was sent
  in ``.seen``.
- `demo_workspace(folder, llama_server)`: ``folder`` with ``configs/tiny.json`` (the llama.cpp test
  server) and ``docs/`` (a copy of the demo corpus).
- `check_answer_chain(llm, retriever)`: the answer chain over the demo corpus, what every store must give.
- `save_tiny_cross_encoder(folder, words, seed=..., max_positions=...)`: a random BERT cross-encoder
  (num_labels=1) with a tiny WordPiece vocab, saved like a real one (needs torch and transformers).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import BaseMessage
from langchain_core.retrievers import BaseRetriever
from pydantic import Field


class ListRetriever(BaseRetriever):
    """Returns ``by_query[query]`` when present, else ``docs``; records every query."""

    docs: list = Field(default_factory=list)
    by_query: dict = Field(default_factory=dict)
    queries: list = Field(default_factory=list)

    def _get_relevant_documents(self, query, *, run_manager=None):
        self.queries.append(query)
        return list(self.by_query.get(query, self.docs))


class RecordingLLM(FakeListChatModel):
    """A scripted chat model that remembers the messages it was sent."""

    seen: list = Field(default_factory=list)

    def _call(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs):
        self.seen.append(messages)
        return super()._call(messages, stop=stop, run_manager=run_manager, **kwargs)


DEMO = Path(__file__).resolve().parent.parent / "module_ai" / "data" / "demo"


def demo_workspace(folder: Path, llama_server: str) -> Path:
    """``folder`` with ``configs/tiny.json`` (chat model ``tiny`` on ``llama_server``) and ``docs/``."""
    configs = folder / "configs"
    configs.mkdir()
    (configs / "tiny.json").write_text(json.dumps({
        "model_type": "chat", "server_type": "openai", "model": "tiny", "url": llama_server,
        "input_tokens": 2048, "out_tokens": 16, "thinking_style": "none"}))
    shutil.copytree(DEMO, folder / "docs")
    return folder


def check_answer_chain(llm, retriever) -> None:
    """``rag_chain(llm, retriever)`` over the demo corpus (k=2) answers, reports and streams its sources."""
    from module_ai.chains.rag import rag_chain

    top = retriever.invoke("qwen3-4b 的输出价格")
    assert any("1.2 元" in d.page_content for d in top)
    out = rag_chain(llm, retriever).invoke("qwen3-4b 的输出价格是多少？")
    assert isinstance(out["answer"], str) and out["answer"]
    assert len(out["contexts"]) == 2 and out["refused"] is False
    assert out["contexts"][0]["id"] == top[0].id and out["contexts"][0]["source"].endswith(".md")
    assert out["grounded"] is False  # gibberish from the random model cites nothing it can support
    pieces = list(rag_chain(llm, retriever).stream("长城"))
    assert "sources" in pieces[-1]


def save_tiny_cross_encoder(folder: Path, words: list[str], *, seed: int, max_positions: int) -> Path:
    """A random BERT cross-encoder (num_labels=1) over ``words`` saved in ``folder``, like a real one."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=max_positions, num_labels=1,
                        initializer_range=0.5)
    BertForSequenceClassification(config).save_pretrained(folder)
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    return folder
