"""MilvusKnowledgeBase on the real Milvus Lite engine (pymilvus client API, as against a cluster).

Embeddings are the deterministic HashingEmbeddings (no model), so each test builds in about a second.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.retrievers import BaseRetriever

from module_ai.errors import BackendError, KnowledgeBaseError
from module_ai.retrieval._testing import HashingEmbeddings
from module_ai.retrieval.milvus import MilvusConfig, MilvusKnowledgeBase
from module_ai.retrieval.milvus._client import release_lite

ZH = "# 安装指南\n\n在 Linux 上用 pip 安装 module_ai，需要 Python 3.10 以上。\n\n## 代理\n\n公司网络需要设置 HTTPS_PROXY 环境变量来配置代理服务器。\n"
EN = "Milvus is a vector database. It supports BM25 full text search and hybrid search with reciprocal rank fusion.\n"
MIXED = "# 向量数据库\n\n向量数据库 Milvus 支持 HNSW 和 IVF_FLAT 索引，适合大规模语义检索。\n"


@pytest.fixture()
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "install.md").write_text(ZH, encoding="utf-8")
    (folder / "milvus.txt").write_text(EN, encoding="utf-8")
    (folder / "vector.md").write_text(MIXED, encoding="utf-8")
    return folder


@pytest.fixture()
def make_kb(tmp_path):
    """``make_kb(docs, **kwargs)`` builds a KB in a fresh folder; Lite servers are released afterwards."""
    made: list[Path] = []

    def make(source, *, kb_dir: Path | None = None, emb=None, **kwargs) -> MilvusKnowledgeBase:
        kb_dir = kb_dir or tmp_path / f"kb{len(made)}"
        made.append(kb_dir)
        return MilvusKnowledgeBase.build(source, kb_dir, emb or HashingEmbeddings(size=32), show_progress=False,
                                         **kwargs)

    yield make
    for kb_dir in made:
        release_lite(kb_dir / "milvus.db")


def _ids(kb: MilvusKnowledgeBase) -> list[str]:
    return [d.id for d in kb.documents()]


def test_build_and_search_every_mode(docs, make_kb):
    kb = make_kb(docs)
    stats = kb.stats()
    assert stats["backend"] == "milvus" and stats["lite"] and stats["sources"] == 3
    assert stats["chunks"] == kb.last_report.chunks == len(_ids(kb)) and stats["dimensions"] == 32
    for mode in ("bm25", "dense", "hybrid"):
        top = kb.search("如何配置代理服务器", k=2, mode=mode)
        assert top and top[0].metadata["source"].endswith("install.md"), mode
        meta = top[0].metadata
        assert meta["rank"] == 1 and meta["chunk_id"] == top[0].id and isinstance(meta["score"], float)
        assert meta["heading"] == "安装指南 > 代理" and meta["title"] == "安装指南"
    bm25 = kb.search("reciprocal rank fusion", k=3, mode="bm25")
    assert [d.metadata["source"].endswith("milvus.txt") for d in bm25] == [True]  # only term matches
    assert kb.search("   ", mode="bm25") == []


def test_retriever_is_a_langchain_retriever(docs, make_kb):
    retriever = make_kb(docs).as_retriever(k=1, mode="bm25")
    assert isinstance(retriever, BaseRetriever)
    assert retriever.invoke("HNSW 索引")[0].metadata["source"].endswith("vector.md")
    assert [len(r) for r in retriever.batch(["代理", "BM25"])] == [1, 1]
    assert asyncio.run(retriever.ainvoke("BM25"))[0].metadata["source"].endswith("milvus.txt")


def test_fusion_runs_on_milvus_rankers_or_here(docs, make_kb, tmp_path):
    kb = make_kb(docs)
    rrf = kb.search("Milvus 向量数据库", k=3, fusion="rrf", weights=(1, 1), rrf_k=60)
    assert rrf[0].metadata["bm25_score"] is None  # fused by RRFRanker: only the fused score comes back
    assert rrf[0].metadata["score"] == pytest.approx(2 / 61, rel=1e-5)  # top of both lists
    weighted = kb.search("Milvus 向量数据库", k=3)  # default weighted min-max: fused here, both sides kept
    assert weighted[0].metadata["bm25_score"] > 0 and weighted[0].metadata["dense_score"] is not None
    assert 0 < kb.search("Milvus", k=1, fusion="rrf", weights=(0.7, 0.3))[0].metadata["score"] < 1
    server = MilvusKnowledgeBase.open(kb.kb_dir, kb.embeddings, config={"fusion": "server"})
    top = server.search("Milvus 向量数据库", k=3)  # WeightedRanker with Milvus' own normalization
    assert top[0].metadata["bm25_score"] is None and 0 < top[0].metadata["score"] <= 1


def test_filter_expression_and_vectorstore(docs, make_kb):
    kb = make_kb(docs)
    only = kb.retrieve("数据库", kb.settings, expr='source like "%vector.md"')
    assert only and {d.metadata["source"] for d in only} == {str((docs / "vector.md").resolve())}
    store = kb.as_vectorstore()
    pairs = store.similarity_search_with_score("BM25 search", k=1, fetch_k=10, ranker_type="rrf")
    assert pairs and pairs[0][0].page_content.startswith("Milvus is a vector database")


def test_incremental_add_update_delete_sync(docs, make_kb, tmp_path):
    emb = HashingEmbeddings(size=32)
    kb = make_kb([docs / "install.md", docs / "milvus.txt"], emb=emb)
    first = emb.texts_embedded
    report = kb.add_paths(docs / "vector.md")
    assert report.added == [str((docs / "vector.md").resolve())] and report.embedded == emb.texts_embedded - first
    assert report.chunks == kb.stats()["chunks"]
    before = set(_ids(kb))
    (docs / "install.md").write_text(ZH + "\n## 卸载\n\n运行 pip uninstall module_ai 卸载。\n", encoding="utf-8")
    count = emb.texts_embedded
    report = kb.update(docs / "install.md")
    assert report.updated == [str((docs / "install.md").resolve())] and report.chunks_added >= 1
    assert emb.texts_embedded - count == report.chunks_added  # unchanged chunks were not re-embedded
    assert kb.search("卸载", k=1, mode="bm25")[0].metadata["source"].endswith("install.md")
    assert len(set(_ids(kb)) - before) == report.chunks_added and len(_ids(kb)) == len(set(_ids(kb)))
    report = kb.delete_source(docs / "milvus.txt")
    assert report.deleted == [str((docs / "milvus.txt").resolve())] and report.chunks_removed == 1
    assert kb.search("reciprocal rank fusion", mode="bm25") == []
    (docs / "vector.md").unlink()
    report = kb.sync(docs)
    assert report.deleted == [str((docs / "vector.md").resolve())]
    assert report.added == [str((docs / "milvus.txt").resolve())] and report.embedded == 0  # cached
    assert kb.sources() == sorted(str((docs / n).resolve()) for n in ("install.md", "milvus.txt"))
    assert kb.sync(docs).chunks_added == 0  # nothing changed: nothing written


def test_add_documents_replaces_a_source(make_kb):
    kb = make_kb([Document("第一版内容：苹果。", metadata={"source": "mem://a", "title": "A"})])
    report = kb.add_documents([Document("第二版内容：香蕉。", metadata={"source": "mem://a", "title": "A"})])
    assert report.updated == ["mem://a"] and report.chunks_removed == 1 and report.chunks == 1
    assert kb.search("香蕉", mode="bm25")[0].page_content == "第二版内容：香蕉。"


def test_reopen_from_disk(docs, make_kb):
    kb = make_kb(docs)
    kb.set_defaults(k=2, fusion="rrf", weights=(1, 1))
    expected = [d.id for d in kb.search("代理", mode="hybrid")]
    kb_dir = kb.kb_dir
    kb.close()
    release_lite(kb_dir / "milvus.db")  # the in-process server is gone: the next open reads the files
    again = MilvusKnowledgeBase.open(kb_dir, HashingEmbeddings(size=32))
    assert again.settings.k == 2 and again.settings.fusion == "rrf"
    assert [d.id for d in again.search("代理")] == expected
    assert again.stats()["chunks"] == len(_ids(again))


def test_schema_change_is_reported_with_the_fix(docs, make_kb):
    kb = make_kb(docs, embedding_model_name="hash32")
    wider = HashingEmbeddings(size=48)
    reopened = MilvusKnowledgeBase.open(kb.kb_dir, wider)
    for call in (lambda: reopened.search("代理", mode="dense"),
                 lambda: reopened.add_documents([Document("新文档", metadata={"source": "mem://n"})])):
        with pytest.raises(KnowledgeBaseError, match=r"stores 32-dimensional vectors.*48.*rebuild"):
            call()
    assert reopened.search("代理", mode="bm25")  # keyword search needs no vectors
    with pytest.raises(KnowledgeBaseError, match="stores 32-dimensional"):
        MilvusKnowledgeBase.open(kb.kb_dir, wider, dimensions=48)
    with pytest.raises(KnowledgeBaseError, match="built with embedding model 'hash32'.*--rebuild"):
        MilvusKnowledgeBase.open(kb.kb_dir, wider, embedding_model_name="hash48")
    with pytest.raises(KnowledgeBaseError, match="built with embedding model 'hash32'"):
        make_kb(docs, kb_dir=kb.kb_dir, emb=wider, embedding_model_name="hash48")
    with pytest.raises(KnowledgeBaseError, match="metric 'COSINE'.*rebuild"):
        make_kb(docs, kb_dir=kb.kb_dir, embedding_model_name="hash32", metric="l2")
    rebuilt = make_kb(docs, kb_dir=kb.kb_dir, emb=wider, embedding_model_name="hash48", rebuild=True)
    assert rebuilt.stats()["dimensions"] == 48 and rebuilt.search("代理", mode="dense")


class _FailingEmbeddings(HashingEmbeddings):
    """Raises on the ``fail_on``-th embed_documents call (an interrupted index job)."""

    def __init__(self, fail_on: int) -> None:
        super().__init__(size=32)
        self.fail_on = fail_on

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if self.document_calls + 1 == self.fail_on:
            self.document_calls += 1
            raise RuntimeError("connection reset")
        return super().embed_documents(texts)


def test_interrupted_build_rerun_leaves_no_duplicates(make_kb, tmp_path, monkeypatch):
    from module_ai.retrieval.milvus import _update

    monkeypatch.setattr(_update, "WRITE_WINDOW", 4)
    docs = [Document(f"第{i}段：关于主题{i}的说明文字。", metadata={"source": f"mem://doc{i}"}) for i in range(20)]
    kb_dir = tmp_path / "kb_interrupted"
    with pytest.raises(RuntimeError, match="connection reset"):
        make_kb(docs, kb_dir=kb_dir, emb=_FailingEmbeddings(fail_on=3), batch_size=2)
    partial = MilvusKnowledgeBase.open(kb_dir, HashingEmbeddings(size=32))
    written = partial.stats()["chunks"]
    assert 0 < written < 20
    emb = HashingEmbeddings(size=32)
    kb = make_kb(docs, kb_dir=kb_dir, emb=emb, batch_size=2)
    ids = _ids(kb)
    assert len(ids) == len(set(ids)) == 20 == kb.stats()["chunks"]
    assert kb.last_report.chunks_added == 20 - written and emb.texts_embedded == 20 - 4  # 4 were cached
    again = make_kb(docs, kb_dir=kb_dir, emb=emb, batch_size=2)
    assert again.last_report.chunks_added == 0 and again.stats()["chunks"] == 20


def test_layouts_languages_and_metrics(docs, make_kb):
    en = make_kb(docs, config={"language": "en", "index_type": "IVF_FLAT", "metric": "L2"})
    top = en.search("full text search", k=2, mode="bm25")
    assert top[0].metadata["source"].endswith("milvus.txt")
    dense = en.search("vector database", k=2, mode="dense")
    assert all(d.metadata["score"] <= 0 for d in dense)  # L2: -distance, higher is better
    ip = make_kb(docs, config={"index_type": "FLAT", "metric": "IP", "collection": "kb_ip"})
    assert ip.stats()["metric"] == "IP" and ip.search("代理", k=1, mode="dense")


class _Reverse(BaseDocumentCompressor):
    def compress_documents(self, documents, query, callbacks=None):
        return [Document(d.page_content, metadata={**d.metadata, "relevance_score": float(i)}, id=d.id)
                for i, d in enumerate(documents)][::-1]


def test_reranker_on_top_of_milvus(docs, make_kb):
    kb = make_kb(docs)
    plain = kb.as_retriever(k=3).invoke("数据库")
    reranked = kb.as_retriever(k=3, reranker=_Reverse(), rerank_top=3).invoke("数据库")
    assert [d.id for d in reranked] == [d.id for d in plain][::-1]
    assert [d.metadata["rank"] for d in reranked] == [1, 2, 3] and "fused_score" in reranked[0].metadata


def test_unreachable_uri_names_the_uri_never_the_token(docs, tmp_path, monkeypatch):
    secret = "root:Sup3r-Secret-Token"
    monkeypatch.setenv("MILVUS_TOKEN_TEST", secret)
    cfg = MilvusConfig(uri="http://127.0.0.1:1", token="${MILVUS_TOKEN_TEST}", timeout=2)
    with pytest.raises(BackendError) as info:
        MilvusKnowledgeBase.build(docs, tmp_path / "kb", HashingEmbeddings(size=32), config=cfg)
    text = f"{info.value} {info.value!r}"
    assert "127.0.0.1:1" in text and "Sup3r" not in text and "root:" not in text
    with pytest.raises(BackendError) as info:
        MilvusKnowledgeBase.open(tmp_path / "kb", HashingEmbeddings(), config={"uri": "https://u:pw@127.0.0.1:1"})
    assert "127.0.0.1:1" in str(info.value) and "pw" not in str(info.value)
    with pytest.raises(KnowledgeBaseError, match="ending in .db"):
        MilvusKnowledgeBase.build(docs, tmp_path / "kb", HashingEmbeddings(), config={"uri": "store.sqlite"})


def test_missing_or_foreign_collection(docs, tmp_path):
    from pymilvus import MilvusClient

    with pytest.raises(KnowledgeBaseError, match="milvus.json missing"):
        MilvusKnowledgeBase.open(tmp_path / "nothing", HashingEmbeddings())
    with pytest.raises(KnowledgeBaseError, match="no Milvus Lite database here"):
        MilvusKnowledgeBase.open(tmp_path / "nothing", HashingEmbeddings(), config={})
    assert not (tmp_path / "nothing").exists()
    db = tmp_path / "other" / "milvus.db"
    db.parent.mkdir()
    try:
        client = MilvusClient(str(db))
        client.create_collection("foreign", dimension=4)
        with pytest.raises(KnowledgeBaseError, match="not created by module_ai"):
            MilvusKnowledgeBase.open(db.parent, HashingEmbeddings(), config={"collection": "foreign"})
        with pytest.raises(KnowledgeBaseError, match="does not exist; build it"):
            MilvusKnowledgeBase.open(db.parent, HashingEmbeddings(), config={"collection": "absent"})
    finally:
        release_lite(db)


def test_save_best_into_a_milvus_collection(docs, make_kb):
    from module_ai.commands._milvus import save_best_milvus

    kb = make_kb(docs)
    new = save_best_milvus(str(kb.kb_dir), "module_ai_kb", HashingEmbeddings(size=32),
                           {"mode": "hybrid", "fusion": "rrf", "weights": [0.4, 0.6]})
    reopened = MilvusKnowledgeBase.open(kb.kb_dir, HashingEmbeddings(size=32))
    assert new.fusion == "rrf" and reopened.settings.weights == (0.4, 0.6)
