"""One contract for every reranker type: same documents, same query, same guarantees.

Guarantees: results best first by ``relevance_score`` (0..1) with ties in input order; ``raw_score`` and
``rerank_index`` in metadata; ``top_n`` and ``score_threshold`` cut the same ranking; empty input gives []
without any model call; inputs are never mutated; duplicates keep both copies with one score; sync, async
and the ``rank`` pairs agree; usable inside LangChain's ``ContextualCompressionRetriever``.
Types whose scores mean something (MiniLM, scripted LLM judges) must also put the relevant passage first.
"""

from __future__ import annotations

import asyncio
import copy

import pytest
from langchain_core.documents import Document

from module_ai.config import ModelConfig
from module_ai.controls.events import add_listener, remove_listener
from module_ai.registry import Registry, load_registry
from module_ai.rerank import BaseReranker, LLMReranker, arerank_texts, rerank_texts
from tests._helpers import save_tiny_cross_encoder
from tests.servers import fake_rerank

QUERY = "What do giant pandas eat?"
TEXTS = ["Cars need fuel to run on the highway.", "Giant pandas eat bamboo almost exclusively.",
         "The stock market fell sharply on Monday.", "Giant pandas eat bamboo almost exclusively.",
         "Pandas is a Python library for data analysis.", "Bamboo forests in China are home to wild pandas."]
RELEVANT = 1  # its duplicate is 3
KEY_REF = "${MODULE_AI_TEST_KEY}"

HTTP_KINDS = ["cohere", "cohere-logits", "xinference", "tei", "dashscope", "dashscope_openai"]
LOCAL_KINDS = ["embedding-minilm", "cross-encoder-tiny"]
LLM_KINDS = ["llm-pointwise-scripted", "llm-listwise-scripted", "llm-pointwise-llama-server",
             "llm-listwise-llama-server", "ollama-default-llm", "ollama-embedding"]
KINDS = HTTP_KINDS + LOCAL_KINDS + LLM_KINDS
MEANINGFUL = {"embedding-minilm", "llm-pointwise-scripted", "llm-listwise-scripted"}


def _docs() -> list[Document]:
    return [Document(page_content=t, metadata={"source": f"s{i}", "tags": ["x"]}, id=f"d{i}")
            for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory) -> str:
    """A random BERT cross-encoder (num_labels=1) with a tiny WordPiece vocab, saved like a real one."""
    words = sorted({w.strip(".?,").lower() for t in TEXTS + [QUERY] for w in t.split()})
    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    return str(save_tiny_cross_encoder(folder, [*words, *"abcdefghijklmnopqrstuvwxyz"], seed=7, max_positions=128))


def _registry(**configs: dict) -> Registry:
    return Registry({name: ModelConfig(name=name, **data) for name, data in configs.items()})


def _http_reranker(request, kind: str) -> BaseReranker:
    style = kind.removesuffix("-logits")
    if style.startswith("dashscope"):
        srv = request.getfixturevalue("dashscope_server")
        url = srv.url + ("/api/v1" if style == "dashscope" else "/compatible-api/v1")
    else:
        srv = request.getfixturevalue("fake_servers")[style]
        srv.reset()
        if kind.endswith("-logits"):
            srv.configure(scale="logit")
        url = srv.base_url
    return _registry(rr={"model_type": "rerank", "server_type": "openai", "rerank_style": style, "model": "m",
                         "url": url, "api_key": KEY_REF, "max_documents": 4}).reranker("rr")


def _llama_chat(request) -> dict:
    import httpx

    url = request.getfixturevalue("llama_server")
    # langchain-openai caches one async httpx client per base URL; each test runs its own event loop,
    # so each test gets its own async client
    return {"model_type": "chat", "server_type": "openai", "model": "tiny", "url": url, "temperature": 0,
            "out_tokens": 6, "thinking_style": "none", "options": {"http_async_client": httpx.AsyncClient()}}


def build(request, kind: str) -> BaseReranker:
    """The reranker of ``kind``, built through the registry wherever a config exists."""
    if kind in HTTP_KINDS:
        return _http_reranker(request, kind)
    if kind == "embedding-minilm":
        return load_registry("configs").reranker("minilm-rerank")  # the shipped config
    if kind == "cross-encoder-tiny":
        folder = request.getfixturevalue("tiny_cross_encoder")
        return _registry(ce={"model_type": "rerank", "server_type": "local", "model": folder}).reranker("ce")
    if kind.endswith("-scripted"):
        mode = kind.split("-")[1]
        return LLMReranker(llm=fake_rerank.scripted_judge(), mode=mode, window=3)
    if kind.endswith("-llama-server"):
        mode = kind.split("-")[1]
        return _registry(chat=_llama_chat(request),
                         rr={"model_type": "rerank", "server_type": "openai", "rerank_style": "llm", "model": "x",
                             "rerank_model": "chat", "options": {"mode": mode, "window": 4}}).reranker("rr")
    ollama = request.getfixturevalue("ollama_server")
    if kind == "ollama-default-llm":  # server_type ollama, no style: an LLM judge over the config itself
        return _registry(rr={"model_type": "rerank", "server_type": "ollama", "model": "qwen3:4b",
                             "url": ollama.url, "temperature": 0, "out_tokens": 6, "no_think": True}).reranker("rr")
    return _registry(rr={"model_type": "rerank", "server_type": "ollama", "rerank_style": "embedding",
                         "model": "qwen3-embedding:0.6b", "url": ollama.url}).reranker("rr")


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


@pytest.fixture
def reranker(request, kind) -> BaseReranker:
    return build(request, kind)


def _indices(docs) -> list[int]:
    return [d.metadata["rerank_index"] for d in docs]


def test_order_scores_and_metadata(reranker, kind):
    docs = _docs()
    out = reranker.compress_documents(docs, QUERY)
    assert sorted(_indices(out)) == list(range(len(TEXTS)))  # a permutation: nothing lost, nothing added
    keys = [(-d.metadata["relevance_score"], d.metadata["rerank_index"]) for d in out]
    assert keys == sorted(keys)  # best first, ties in input order
    for d in out:
        i = d.metadata["rerank_index"]
        assert 0.0 <= d.metadata["relevance_score"] <= 1.0
        assert d.page_content == TEXTS[i] and d.id == f"d{i}" and d.metadata["source"] == f"s{i}"
        if d.metadata.get("rerank_fallback"):
            assert d.metadata["relevance_score"] == 0.0 and d.metadata["rerank_note"]
        else:
            assert isinstance(d.metadata["raw_score"], float)
    if kind in MEANINGFUL:
        assert _indices(out)[:2] == [RELEVANT, RELEVANT + 2]


def test_top_n_and_threshold_cut_the_same_ranking(reranker):
    full = reranker.compress_documents(_docs(), QUERY)
    top2 = reranker.model_copy(update={"top_n": 2}).compress_documents(_docs(), QUERY)
    assert _indices(top2) == _indices(full)[:2]
    assert [i for i, _ in reranker.rank(QUERY, TEXTS, top_n=3)] == _indices(full)[:3]
    scores = sorted({d.metadata["relevance_score"] for d in full})
    threshold = scores[len(scores) // 2]
    kept = reranker.model_copy(update={"score_threshold": threshold}).compress_documents(_docs(), QUERY)
    assert _indices(kept) == [d.metadata["rerank_index"] for d in full if d.metadata["relevance_score"] >= threshold]
    assert reranker.rank(QUERY, TEXTS, score_threshold=threshold) == [
        (d.metadata["rerank_index"], d.metadata["relevance_score"]) for d in kept]


def test_empty_input_makes_no_call(reranker):
    seen = []
    add_listener(seen.append)
    try:
        assert reranker.compress_documents([], QUERY) == []
        assert reranker.rank(QUERY, []) == []
        assert asyncio.run(reranker.acompress_documents([], QUERY)) == []
    finally:
        remove_listener(seen.append)
    assert seen == []


def test_inputs_are_not_mutated(reranker):
    docs = _docs()
    before = copy.deepcopy(docs)
    out = reranker.compress_documents(docs, QUERY)
    assert docs == before
    assert all(o is not d and o.metadata is not d.metadata for o in out for d in docs)
    out[0].metadata["tags"].append("changed-by-caller")  # nested values are shared, top-level dicts are not
    assert "relevance_score" not in docs[0].metadata


def test_duplicates_keep_both_copies_with_one_score(reranker):
    out = reranker.compress_documents(_docs(), QUERY)
    by_index = {d.metadata["rerank_index"]: d for d in out}
    first, second = by_index[RELEVANT], by_index[RELEVANT + 2]
    assert first.metadata["relevance_score"] == second.metadata["relevance_score"]
    assert first.metadata["source"] == "s1" and second.metadata["source"] == "s3"
    assert _indices(out).index(RELEVANT) < _indices(out).index(RELEVANT + 2)


def test_sync_async_and_pairs_agree(reranker):
    out = reranker.compress_documents(_docs(), QUERY)
    expected = [(d.metadata["rerank_index"], d.metadata["relevance_score"]) for d in out]
    assert reranker.rank(QUERY, TEXTS) == expected
    assert rerank_texts(reranker, QUERY, TEXTS) == expected

    async def all_async():  # one event loop: async clients (openai, ollama) are bound to their loop
        return (await reranker.arank(QUERY, TEXTS), await arerank_texts(reranker, QUERY, TEXTS),
                await reranker.acompress_documents(_docs(), QUERY))

    pairs, pairs_again, async_docs = asyncio.run(all_async())
    assert pairs == pairs_again == expected
    assert [(d.metadata["rerank_index"], d.metadata["relevance_score"]) for d in async_docs] == expected


def test_works_in_contextual_compression_retriever(reranker):
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.retrievers import BaseRetriever

    class FixedRetriever(BaseRetriever):
        def _get_relevant_documents(self, query, *, run_manager=None):
            return _docs()

    retriever = ContextualCompressionRetriever(base_compressor=reranker.model_copy(update={"top_n": 3}),
                                               base_retriever=FixedRetriever())
    got = retriever.invoke(QUERY)
    assert _indices(got) == [i for i, _ in reranker.rank(QUERY, TEXTS, top_n=3)]


def test_rerank_texts_accepts_any_langchain_compressor():
    from langchain_core.documents import BaseDocumentCompressor

    class Reverse(BaseDocumentCompressor):
        def compress_documents(self, documents, query, callbacks=None):
            return list(reversed(documents))

    assert rerank_texts(Reverse(), "q", ["a", "b", "c"], top_n=2) == [(2, 0.0), (1, 0.0)]
    assert rerank_texts(Reverse(), "q", []) == []
