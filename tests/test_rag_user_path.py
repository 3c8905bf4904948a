"""RAG as a user meets it: `rag index` summary (+ --json), `rag ask --min-score` with and without a chat
model ("no matches", 0..1 relevance with the fused value beside it), bare headings and separators never
indexed alone, snippets on sentence/word boundaries, reranker settings as overrides, `invoke(q, k=1)`."""

from __future__ import annotations

import json

import pytest

from module_ai import ConfigError, load_registry
from module_ai.chains.context import snippet
from module_ai.retrieval import load_documents, split_documents

GUIDE = """# 指南

---

## 安装

先下载安装包。然后运行安装程序，按提示完成安装。

---

## 空节

## 使用

运行 module-ai demo 命令即可开始使用。
"""


@pytest.fixture()
def config_dir(tmp_path, dashscope_server, echo):
    key = "${MODULE_AI_TEST_KEY}"
    (tmp_path / "m.json").write_text(json.dumps({"models": {
        "ds-emb": {"model_type": "embedding", "server_type": "openai", "model": "text-embedding-v4",
                   "url": dashscope_server.base_url, "api_key": key, "dimensions": 64},
        "ds-rerank": {"model_type": "rerank", "server_type": "openai", "rerank_style": "dashscope",
                      "model": "gte-rerank-v2", "url": dashscope_server.url + "/api/v1", "api_key": key},
        "echo": {"model_type": "chat", "server_type": "openai", "model": "fault-model", "url": echo.base_url,
                 "api_key": key, "max_retries": 0},
    }}))
    return tmp_path


@pytest.fixture()
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "guide.md").write_text(GUIDE, encoding="utf-8")
    (folder / "faq.md").write_text("# 常见问题\n\n安装失败时请检查网络连接。\n", encoding="utf-8")
    return folder


def test_bare_headings_and_separators_are_never_chunks(docs):
    chunks = split_documents(load_documents(docs / "guide.md"), chunk_size=40, chunk_overlap=0)
    texts = [c.page_content for c in chunks]
    assert all(t.strip("#-\n ") and not t.strip().startswith("---") for t in texts)
    assert not any(t.strip() in ("# 指南", "---", "## 空节") for t in texts), texts
    usage = next(c for c in chunks if "demo" in c.page_content)
    assert "空节" in usage.metadata["heading"] and "使用" in usage.metadata["heading"]
    install = next(c for c in chunks if "下载" in c.page_content)
    assert install.metadata["heading"].startswith("指南")


def test_a_heading_alone_before_a_long_paragraph_is_folded_into_the_next_chunk():
    from langchain_core.documents import Document

    text = "## 第二章\n\n" + "这是一个没有句号的很长的句子" * 8 + "。"  # one sentence longer than a chunk
    chunks = split_documents([Document(text, metadata={"source": "a.txt"})], chunk_size=50, chunk_overlap=0)
    assert chunks[0].page_content.startswith("这是") and chunks[0].metadata["heading"] == "第二章"
    assert all("##" not in c.page_content for c in chunks)


def test_snippets_end_on_a_sentence_or_word_boundary():
    texts = ["Install the package first. Then run the installer and follow the prompts on the screen.",
             "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda",
             "先下载安装包。然后运行安装程序，按提示完成安装。" * 3]
    for text in texts:
        for limit in (12, 20, 33, 40):
            cut = snippet(text, limit)
            body = cut.removesuffix("…")
            assert cut.endswith("…") and len(body) <= limit and text.startswith(body)
            nxt = text[len(body)]
            assert body[-1] in "。！？.!?；;，" or nxt == " " or not body[-1].isascii(), (cut, limit)


def test_rag_index_prints_a_readable_summary_and_json(cli, config_dir, docs, tmp_path):
    kb = str(tmp_path / "kb")
    proc = cli("-c", str(config_dir), "rag", "index", str(docs), "--kb", kb, "--embedding", "ds-emb", "--quiet")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "files:" in out and "2 added, 0 updated, 0 deleted, 0 unchanged" in out
    assert "embeddings:" in out and "UpdateReport(" not in out
    (docs / "faq.md").write_text("# 常见问题\n\n安装失败时请检查网络和磁盘空间。\n", encoding="utf-8")
    proc = cli("-c", str(config_dir), "rag", "index", str(docs), "--kb", kb, "--quiet", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert [len(summary["files"][k]) for k in ("added", "updated", "deleted", "unchanged")] == [0, 1, 0, 1]
    assert summary["embedded"] >= 1 and summary["chunks"] >= 3 and summary["seconds"] >= 0


@pytest.fixture()
def kb_dir(cli, config_dir, docs, tmp_path):
    kb = str(tmp_path / "kb")
    proc = cli("-c", str(config_dir), "rag", "index", str(docs), "--kb", kb, "--embedding", "ds-emb", "--quiet")
    assert proc.returncode == 0, proc.stderr
    return kb


def test_rag_ask_min_score_without_chat(cli, config_dir, kb_dir):
    proc = cli("-c", str(config_dir), "rag", "ask", "怎么安装", "--kb", kb_dir, "--chat", "none", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["evidence"] and "0..1" in out["scale"]
    for entry in out["evidence"]:
        assert 0 <= entry["relevance"] <= 1 and entry["relevance_from"] == "cosine"
        assert entry["fused_score"] is not None
    best = max(e["relevance"] for e in out["evidence"])
    proc = cli("-c", str(config_dir), "rag", "ask", "怎么安装", "--kb", kb_dir, "--chat", "none", "--min-score",
               f"{best + 0.001:.4f}")
    assert proc.returncode == 0 and proc.stdout.startswith("no matches"), proc.stdout
    proc = cli("-c", str(config_dir), "rag", "ask", "怎么安装", "--kb", kb_dir, "--chat", "none", "--min-score",
               f"{best:.6f}", "--json")
    kept = json.loads(proc.stdout)["evidence"]
    assert kept and all(e["relevance"] >= best - 1e-6 for e in kept)
    proc = cli("-c", str(config_dir), "rag", "ask", "怎么安装", "--kb", kb_dir, "--chat", "none")
    assert "relevance 0." in proc.stdout and "fused" in proc.stdout and "0..1" in proc.stdout


def test_rag_ask_min_score_with_chat_refuses_without_calling_the_model(cli, config_dir, kb_dir, echo):
    proc = cli("-c", str(config_dir), "rag", "ask", "怎么安装", "--kb", kb_dir, "--chat", "echo",
               "--min-score", "0.999")
    assert proc.returncode == 0, proc.stderr
    assert "no matches" in proc.stdout and "--min-score 0.999" in proc.stdout
    assert echo.stats()["total"] == 0
    proc = cli("-c", str(config_dir), "rag", "ask", "怎么安装", "--kb", kb_dir, "--chat", "echo",
               "--min-score", "0", "--json")
    out = json.loads(proc.stdout)
    assert not out["no_matches"] and echo.stats()["total"] == 1


def test_min_score_must_be_a_0_to_1_relevance(cli, config_dir, kb_dir):
    proc = cli("-c", str(config_dir), "rag", "ask", "怎么安装", "--kb", kb_dir, "--min-score", "3")
    assert proc.returncode == 1 and "between 0 and 1" in proc.stderr
    proc = cli("-c", str(config_dir), "rag", "ask", "怎么安装", "--kb", kb_dir, "--mode", "bm25", "--min-score", "0.2")
    assert proc.returncode == 1 and "BM25" in proc.stderr


def test_reranker_settings_are_overrides(config_dir):
    from langchain_core.documents import Document

    reg = load_registry(config_dir)
    docs = [Document(t) for t in ("安装步骤", "运行命令", "安装失败怎么办", "无关内容")]
    assert len(reg.reranker("ds-rerank").compress_documents(docs, "安装")) == 4
    top = reg.reranker("ds-rerank", top_n=2).compress_documents(docs, "安装")
    assert len(top) == 2 and all("安装" in d.page_content for d in top)
    strict = reg.reranker("ds-rerank", score_threshold=0.99).compress_documents(docs, "安装")
    assert all(d.metadata["relevance_score"] >= 0.99 for d in strict) and len(strict) < 4
    with pytest.raises(ConfigError, match="top_k.*known: top_n, score_threshold"):
        reg.reranker("ds-rerank", top_k=2)


def test_retriever_honours_k_per_call(config_dir, kb_dir):
    from module_ai import KnowledgeBase

    reg = load_registry(config_dir)
    kb = KnowledgeBase.open(kb_dir, reg.embeddings("ds-emb"), embedding_model_name="ds-emb")
    retriever = kb.as_retriever(k=3)
    assert len(retriever.invoke("安装")) == 3
    assert len(retriever.invoke("安装", k=1)) == 1
    assert [d.metadata["bm25_score"] is not None for d in retriever.invoke("安装", k=2, mode="bm25")] == [True] * 2
    with pytest.raises(ConfigError, match="top_k"):
        retriever.invoke("安装", top_k=1)
