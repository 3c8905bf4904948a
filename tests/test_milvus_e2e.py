"""End to end with the Milvus backend: MiniLM embeddings, Milvus Lite, the answer chain on the llama.cpp
test server, and ``module-ai rag index|ask|eval --backend milvus``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from module_ai import load_registry
from module_ai.cli import main
from module_ai.retrieval.milvus import MilvusKnowledgeBase
from module_ai.retrieval.milvus._client import release_lite
from tests._helpers import check_answer_chain, demo_workspace

COVID = Path(__file__).resolve().parents[1] / "data" / "retrieval" / "covidqa-chunks-a-en"


@pytest.fixture()
def workspace(tmp_path, llama_server):
    yield demo_workspace(tmp_path, llama_server)
    release_lite(tmp_path / "kb" / "milvus.db")


def test_answer_chain_over_milvus(workspace):
    reg = load_registry(workspace / "configs")
    kb = MilvusKnowledgeBase.build(workspace / "docs", workspace / "kb", reg.embeddings("minilm"),
                                   embedding_model_name="minilm", chunk_size=120, chunk_overlap=20,
                                   show_progress=False)
    check_answer_chain(reg.chat("tiny"), kb.as_retriever(k=2))  # the tiny model has 2,048 tokens of context


def _tiny_beir(dst: Path, n_queries: int = 12) -> Path:
    """The first queries of covidqa with their passages plus as many distractors (a 2-second eval)."""
    qrels = [line.split("\t") for line in (COVID / "qrels.tsv").read_text().splitlines()[1:]]
    qids = list(dict.fromkeys(q for q, _, _ in qrels))[:n_queries]
    rel = {d for q, d, _ in qrels if q in qids}
    corpus = [json.loads(x) for x in (COVID / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    keep = [d for d in corpus if d["_id"] in rel] + [d for d in corpus if d["_id"] not in rel][: len(rel)]
    dst.mkdir()
    (dst / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in keep), encoding="utf-8")
    queries = [json.loads(x) for x in (COVID / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    (dst / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries if q["_id"] in qids))
    rows = [f"{q}\t{d}\t{s}" for q, d, s in qrels if q in qids]
    (dst / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    return dst


def test_cli_index_ask_eval_with_milvus(workspace, capsys, monkeypatch):
    import module_ai.commands._milvus as support

    monkeypatch.setattr(support, "eval_cache_dir", lambda: workspace / "eval_cache")
    cfg, kb = str(workspace / "configs"), str(workspace / "kb")
    milvus = ["--backend", "milvus"]
    assert main(["--config", cfg, "rag", "index", str(workspace / "docs"), "--kb", kb, "--quiet",
                 "--chunk-size", "120", "--chunk-overlap", "20", *milvus]) == 0
    assert "chunks" in capsys.readouterr().out and (workspace / "kb" / "milvus.db").exists()
    assert main(["--config", cfg, "rag", "ask", "中文为什么需要分词", "--kb", kb, "--chat", "none", "--json",
                 *milvus]) == 0
    evidence = json.loads(capsys.readouterr().out)
    assert evidence["answer"] is None and evidence["evidence"][0]["source"].endswith("02_rag_design.md")
    assert main(["--config", cfg, "rag", "ask", "中文为什么需要分词", "--kb", kb, "--chat", "tiny", "--k", "2",
                 "--json", *milvus]) == 0
    answered = json.loads(capsys.readouterr().out)
    assert answered["answer"] and len(answered["contexts"]) == 2
    assert main(["--config", cfg, "rag", "index", str(workspace / "docs"), "--kb", kb, "--quiet", *milvus]) == 0
    summary = capsys.readouterr().out  # unchanged folder: a no-op sync
    assert "chunks:     0 added, 0 removed" in summary and "embeddings: 0 computed" in summary
    assert main(["--config", cfg, "rag", "ask", "q", "--kb", str(workspace / "nokb"), *milvus]) == 1
    assert "module-ai rag index" in capsys.readouterr().err
    data = _tiny_beir(workspace / "beir")
    assert main(["--config", cfg, "rag", "eval", str(data), "--json", *milvus]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == "milvus" and set(report["results"]) == {"bm25", "dense", "hybrid"}
    assert all(0 < r["ndcg@10"] <= 1 for r in report["results"].values())
    assert not (workspace / "nokb").exists()  # asking a missing knowledge base creates nothing
