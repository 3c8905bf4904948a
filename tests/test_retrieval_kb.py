"""KnowledgeBase: build -> search -> reopen, incremental changes, caching, retriever options."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from langchain_core.documents import BaseDocumentCompressor, Document

from module_ai.errors import KnowledgeBaseError
from module_ai.retrieval import HybridRetriever, KnowledgeBase
from module_ai.retrieval._testing import HashingEmbeddings

FILES = {
    "install.md": "# 安装指南\n在Linux上安装需要Python。运行pip命令即可完成安装。\n\n"
                  "## 代理设置\n如果公司网络需要代理，请设置HTTPS_PROXY环境变量。\n",
    "ml.txt": "机器学习是人工智能的一个分支。深度学习使用多层神经网络。",
    "weather.txt": "The weather today is sunny and warm. Tomorrow brings heavy rain.",
    "stocks.txt": "股票市场今天大幅下跌，投资者担心利率上升。",
}


@pytest.fixture()
def docs_dir(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture()
def emb():
    return HashingEmbeddings(size=64)


@pytest.fixture()
def kb(docs_dir, tmp_path, emb):
    return KnowledgeBase.build(docs_dir, tmp_path / "kb", emb, chunk_size=60, chunk_overlap=10,
                               batch_size=2, show_progress=False)


def _sources(docs: Sequence[Document]) -> list[str]:
    return [d.metadata["source"].rsplit("/", 1)[-1] for d in docs]


def test_build_search_reopen(kb, tmp_path, emb):
    hits = kb.search("代理怎么设置", k=3)
    assert _sources(hits)[0] == "install.md" and hits[0].metadata["heading"] == "安装指南 > 代理设置"
    meta = hits[0].metadata
    assert {"chunk_id", "source", "score", "dense_score", "bm25_score", "rank"} <= set(meta)
    assert hits[0].id == meta["chunk_id"] and [h.metadata["rank"] for h in hits] == [1, 2, 3]
    assert meta["bm25_score"] > 0 and isinstance(meta["dense_score"], float)
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert manifest["embedding_model"] == "hashing-test" and manifest["dimensions"] == 64
    assert manifest["metric"] == "cosine" and manifest["tokenizer"]["name"] == "module_ai-mixed"
    assert {"k", "weights", "fusion", "norm", "candidates"} <= set(manifest["retrieval"])
    reopened = KnowledgeBase.open(tmp_path / "kb", emb)
    assert [d.id for d in reopened.search("代理怎么设置", k=3)] == [d.id for d in hits]
    stats = reopened.stats()
    assert stats["chunks"] == kb.stats()["chunks"] and stats["sources"] == 4 and stats["dimensions"] == 64


def test_modes_and_retriever_type(kb):
    retriever = kb.as_retriever(k=2, mode="bm25")
    assert isinstance(retriever, HybridRetriever)
    bm25 = retriever.invoke("神经网络")
    assert _sources(bm25) == ["ml.txt"] and bm25[0].metadata["dense_score"] is None
    dense = kb.search("神经网络", k=2, mode="dense")
    assert len(dense) == 2 and dense[0].metadata["bm25_score"] is None
    rrf = kb.search("weather rain", k=2, fusion="rrf", weights=(0.5, 0.5))
    assert _sources(rrf)[0] == "weather.txt"
    assert kb.search("weather", k=1, weights={"bm25": 1, "dense": 0})[0].metadata["source"].endswith("weather.txt")
    with pytest.raises(KnowledgeBaseError, match="mode"):
        kb.as_retriever(mode="sparse")


async def test_async_retrieval(kb):
    docs = await kb.as_retriever(k=1).ainvoke("股票下跌")
    assert _sources(docs) == ["stocks.txt"]


def test_zero_embedding_calls_on_unchanged_reindex(kb, docs_dir, tmp_path, emb):
    calls = emb.document_calls
    assert calls == -(-kb.stats()["chunks"] // 2)  # batch_size=2
    report = kb.sync(docs_dir)
    assert report.embedded == 0 and sorted(report.unchanged) == sorted(str(p) for p in docs_dir.iterdir())
    again = KnowledgeBase.build(docs_dir, tmp_path / "kb", emb, chunk_size=60, chunk_overlap=10,
                                show_progress=False)  # a fresh build reuses the embedding cache
    assert emb.document_calls == calls and again.last_report.embedded == 0


def test_incremental_add_update_delete(kb, docs_dir, emb):
    before = {d.id for d in kb.documents()}
    (docs_dir / "new.txt").write_text("量子计算利用量子比特进行运算。", encoding="utf-8")
    report = kb.add_paths(docs_dir / "new.txt")
    assert report.added == [str(docs_dir / "new.txt")] and report.embedded == 1
    assert _sources(kb.search("量子比特", k=1)) == ["new.txt"]

    md = docs_dir / "install.md"
    md.write_text(FILES["install.md"].replace("HTTPS_PROXY", "ALL_PROXY"), encoding="utf-8")
    texts_before = emb.texts_embedded
    report = kb.sync(docs_dir)
    assert report.updated == [str(md)] and report.added == [] and report.deleted == []
    assert report.embedded == emb.texts_embedded - texts_before == report.chunks_added == 1  # only the changed chunk
    ids = {d.id for d in kb.documents()}
    assert len(before - ids) == 1  # the old version of the changed chunk is gone, the rest kept
    assert "ALL_PROXY" in kb.search("ALL_PROXY", k=1)[0].page_content

    assert kb.delete_source(docs_dir / "stocks.txt").deleted == [str(docs_dir / "stocks.txt")]
    assert "stocks.txt" not in _sources(kb.search("股票", k=10))
    (docs_dir / "weather.txt").unlink()
    report = kb.sync(docs_dir)  # sync mirrors the folder: weather.txt goes, stocks.txt (still there) returns
    assert report.deleted == [str(docs_dir / "weather.txt")] and report.added == [str(docs_dir / "stocks.txt")]
    assert report.embedded == 0  # stocks.txt's vectors come from the embedding cache
    assert sorted(s.rsplit("/", 1)[-1] for s in kb.sources()) == ["install.md", "ml.txt", "new.txt", "stocks.txt"]


def test_add_documents_in_memory(tmp_path, emb):
    docs = [Document(page_content="第一篇文档讲猫。"), Document(page_content="第二篇讲狗。", metadata={"source": "dog"})]
    kb = KnowledgeBase.build(docs, tmp_path / "kb", emb, show_progress=False)
    assert kb.sources()[0] == "dog" and kb.sources()[1].startswith("mem:")
    calls = emb.document_calls
    report = kb.add_documents(docs)
    assert report.unchanged == kb.sources() and report.embedded == 0 and emb.document_calls == calls
    kb.add_documents([Document(page_content="第二篇改成讲鸟。", metadata={"source": "dog"})])
    assert "鸟" in kb.search("鸟", k=1, mode="bm25")[0].page_content and len(kb.documents()) == 2


def test_vector_store_stands_in_for_dense_side(kb, emb):
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(emb)
    store.add_documents(kb.documents())
    docs = kb.as_retriever(k=2, vector_store=store).invoke("代理 设置")
    assert _sources(docs)[0] == "install.md" and docs[0].metadata["dense_score"] is not None
    dense_only = kb.search("机器学习", k=1, mode="dense", vector_store=store)
    assert dense_only[0].metadata["chunk_id"] in {d.id for d in kb.documents()}


class _Reverse(BaseDocumentCompressor):
    """Reverses the order and sets relevance_score (stands in for a cross-encoder)."""

    def compress_documents(self, documents, query, callbacks=None):
        out = []
        for i, d in enumerate(reversed(list(documents))):
            out.append(Document(page_content=d.page_content, id=d.id, metadata={**d.metadata, "relevance_score": 1.0 - i / 10}))
        return out


async def test_reranker_stage(kb):
    plain = kb.search("机器学习", k=3, candidates=3)
    reranked = kb.as_retriever(k=2, candidates=3, reranker=_Reverse()).invoke("机器学习")
    assert [d.id for d in reranked] == [d.id for d in reversed(plain)][:2]
    assert [d.metadata["rank"] for d in reranked] == [1, 2]
    assert reranked[0].metadata["score"] == 1.0 and "fused_score" in reranked[0].metadata
    adocs = await kb.as_retriever(k=2, candidates=3, reranker=_Reverse(), score_threshold=0.95).ainvoke("机器学习")
    assert len(adocs) == 1


@pytest.mark.parametrize(("metric", "backend"), [("l2", "numpy"), ("ip", "numpy"), ("cosine", "faiss"), ("l2", "faiss")])
def test_metrics_and_faiss_agree_with_numpy(docs_dir, tmp_path, emb, metric, backend):
    ref = KnowledgeBase.build(docs_dir, tmp_path / "ref", emb, metric=metric, vector_backend="numpy", show_progress=False)
    kb = KnowledgeBase.build(docs_dir, tmp_path / "kb", emb, metric=metric, vector_backend=backend, show_progress=False)
    got = kb.search("神经网络 学习", k=10, mode="dense")
    want = ref.search("神经网络 学习", k=10, mode="dense")
    assert {d.id for d in got} == {d.id for d in want}  # all chunks; order may differ only within ties
    assert [d.metadata["score"] for d in got] == pytest.approx([d.metadata["score"] for d in want], rel=1e-5)
    assert got[0].id == want[0].id
    if metric == "l2":
        assert all(d.metadata["score"] <= 0 for d in got)  # negative distance: higher is better
    assert kb.stats()["vector_backend"] == backend


def test_score_threshold_and_defaults(kb, tmp_path, emb):
    unfiltered = kb.search("股票", k=5)
    kept = kb.search("股票", k=5, score_threshold=0.5)
    assert kept and all(d.metadata["score"] >= 0.5 for d in kept)
    assert any(d.metadata["score"] < 0.5 for d in unfiltered)  # the threshold did drop something
    assert [d.id for d in kept] == [d.id for d in unfiltered if d.metadata["score"] >= 0.5]
    kb.set_defaults(weights=(0.2, 0.8), fusion="rrf", k=2)
    reopened = KnowledgeBase.open(tmp_path / "kb", emb)
    assert reopened.settings.weights == (0.2, 0.8) and reopened.settings.fusion == "rrf"
    assert len(reopened.search("学习")) == 2


def test_open_errors(tmp_path, kb, emb):
    with pytest.raises(KnowledgeBaseError, match="no knowledge base"):
        KnowledgeBase.open(tmp_path / "nothing", emb)
    with pytest.raises(KnowledgeBaseError, match="built with embedding model 'hashing-test'"):
        KnowledgeBase.open(tmp_path / "kb", emb, embedding_model_name="bge-m3")
    keyword_only = KnowledgeBase.open(tmp_path / "kb", None)
    assert _sources(keyword_only.search("股票", k=1, mode="bm25")) == ["stocks.txt"]
    with pytest.raises(KnowledgeBaseError, match="opened without embeddings"):
        keyword_only.search("股票", k=1)
    small = KnowledgeBase.open(tmp_path / "kb", HashingEmbeddings(size=8))
    with pytest.raises(KnowledgeBaseError, match="8 dimensions, the index has 64"):
        small.search("学习")


def test_concurrent_batches(docs_dir, tmp_path):
    emb = HashingEmbeddings(size=16)
    kb = KnowledgeBase.build(docs_dir, tmp_path / "kb", emb, chunk_size=30, chunk_overlap=0,
                             batch_size=1, max_concurrency=4, show_progress=False)
    n = len(kb.documents())
    assert emb.document_calls == n == emb.texts_embedded and n > 4


def test_failed_commit_keeps_last_state(kb, docs_dir, tmp_path, emb, monkeypatch):
    from module_ai.retrieval.embedded import store

    committed = {d.id for d in kb.documents()}
    (docs_dir / "extra.txt").write_text("新增的文件内容讲火山喷发。", encoding="utf-8")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "_write_json_atomic", boom)
    with pytest.raises(OSError):
        kb.add_paths(docs_dir)
    monkeypatch.undo()
    reopened = KnowledgeBase.open(tmp_path / "kb", emb)
    assert {d.id for d in reopened.documents()} == committed  # the half-written generation is invisible
    calls = emb.document_calls
    report = reopened.add_paths(docs_dir)
    assert report.added == [str(docs_dir / "extra.txt")] and emb.document_calls == calls  # cached
    # the uncommitted gen-000002 is gone (its name is never reused); the replaced gen-000001 stays for readers
    assert sorted(p.name for p in (tmp_path / "kb").iterdir() if p.name.startswith(("gen-", ".tmp"))) == [
        "gen-000001", "gen-000003"]
