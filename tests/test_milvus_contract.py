"""Contract: the embedded KnowledgeBase and MilvusKnowledgeBase (Milvus Lite) behave the same.

Same inputs, same guarantees, parametrized over both backends: build / add / update / delete / sync
reports, stats, the retriever's Document shape and keyword ranking.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from module_ai.retrieval import KnowledgeBase
from module_ai.retrieval._testing import HashingEmbeddings
from module_ai.retrieval.milvus import MilvusKnowledgeBase
from module_ai.retrieval.milvus._client import release_lite

FILES = {
    "install.md": "# 安装\n\n用 pip 安装 module_ai。\n\n## 代理\n\n设置 HTTPS_PROXY 环境变量配置代理服务器。\n",
    "search.txt": "Hybrid search fuses BM25 keyword scores with dense vector similarity.\n",
    "faq.md": "# 常见问题\n\n向量数据库用于语义检索；关键词检索用 BM25。\n",
}
BACKENDS = {"embedded": KnowledgeBase, "milvus": MilvusKnowledgeBase}
META_KEYS = {"source", "title", "chunk_id", "chunk_index", "start_index", "score", "bm25_score", "dense_score",
             "rank"}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request, tmp_path):
    cls = BACKENDS[request.param]
    yield cls
    release_lite(tmp_path / "kb" / "milvus.db")


@pytest.fixture()
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _build(backend, source, tmp_path, emb=None):
    return backend.build(source, tmp_path / "kb", emb or HashingEmbeddings(size=16), show_progress=False)


def _src(docs: Path, name: str) -> str:
    return str((docs / name).resolve())


def test_build_report_stats_and_documents(backend, docs, tmp_path):
    kb = _build(backend, docs, tmp_path)
    report = kb.last_report
    assert report.added == sorted(_src(docs, n) for n in FILES) and report.embedded == report.chunks
    stats = kb.stats()
    assert stats["sources"] == 3 and stats["chunks"] == report.chunks and stats["dimensions"] == 16
    assert kb.sources() == sorted(_src(docs, n) for n in FILES)
    assert sorted(d.id for d in kb.documents()) == sorted({d.id for d in kb.documents()})


def test_retriever_contract(backend, docs, tmp_path):
    kb = _build(backend, docs, tmp_path)
    retriever = kb.as_retriever(k=2, mode="bm25")
    assert isinstance(retriever, BaseRetriever)
    top = retriever.invoke("代理服务器")
    assert top[0].metadata["source"] == _src(docs, "install.md") and top[0].metadata["heading"] == "安装 > 代理"
    for mode in ("bm25", "dense", "hybrid"):
        for doc in kb.search("BM25 检索", k=3, mode=mode):
            assert META_KEYS <= set(doc.metadata) and doc.id == doc.metadata["chunk_id"], mode
    ranks = [d.metadata["rank"] for d in kb.search("BM25", k=3)]
    assert ranks == list(range(1, len(ranks) + 1))


def test_change_reports(backend, docs, tmp_path):
    emb = HashingEmbeddings(size=16)
    kb = _build(backend, [docs / "install.md", docs / "search.txt"], tmp_path, emb)
    report = kb.add_paths([docs / "faq.md"])
    assert report.added == [_src(docs, "faq.md")] and report.chunks_added == report.embedded == 1
    (docs / "search.txt").write_text(FILES["search.txt"] + "\nReciprocal rank fusion needs no score scaling.\n")
    report = kb.add_paths([docs / "search.txt"])
    assert report.updated == [_src(docs, "search.txt")] and report.chunks_removed == 1
    report = kb.delete_source(docs / "faq.md")
    assert report.deleted == [_src(docs, "faq.md")] and report.chunks_removed == 1
    (docs / "install.md").unlink()
    report = kb.sync(docs)
    assert report.deleted == [_src(docs, "install.md")] and report.added == [_src(docs, "faq.md")]
    assert report.embedded == 0  # the faq chunk is in the embedding cache
    assert kb.sources() == [_src(docs, "faq.md"), _src(docs, "search.txt")]


def test_add_documents_replaces_the_source(backend, tmp_path):
    kb = _build(backend, [Document("旧内容：苹果。", metadata={"source": "mem://a"})], tmp_path)
    report = kb.add_documents([Document("新内容：香蕉。", metadata={"source": "mem://a"})])
    assert report.updated == ["mem://a"] and report.chunks == 1
    assert kb.search("香蕉", k=1, mode="bm25")[0].page_content == "新内容：香蕉。"


def test_reopen_keeps_defaults(backend, docs, tmp_path):
    kb = _build(backend, docs, tmp_path)
    kb.set_defaults(k=2, weights=(0.5, 0.5))
    kb.close()
    again = backend.open(tmp_path / "kb", HashingEmbeddings(size=16))
    assert again.settings.k == 2 and tuple(again.settings.weights) == (0.5, 0.5)
    assert len(again.search("代理")) == 2
