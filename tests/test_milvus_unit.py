"""Milvus backend, pure parts: config, analyzer presets, expressions, error mapping, ranker choice, metrics.

No Milvus engine is started here (see test_milvus_kb.py for Milvus Lite).
"""

from __future__ import annotations

import pytest
from langchain_core.documents import Document

from module_ai.commands._milvus import target_of
from module_ai.errors import BackendError, ConfigError, KnowledgeBaseError
from module_ai.retrieval import RetrievalSettings
from module_ai.retrieval.milvus import MilvusConfig
from module_ai.retrieval.milvus._client import display_uri, milvus_errors, redact
from module_ai.retrieval.milvus._kbsupport import resolve_config
from module_ai.retrieval.milvus.evaluate import ranking_metrics
from module_ai.retrieval.milvus.schema import STOP_WORDS, analyzer_params, check_manifest
from module_ai.retrieval.milvus.search import hits_to_documents, server_ranker
from module_ai.retrieval.milvus.store import quote, rows_of

TOKEN = "root:s3cr3t-Passw0rd"


def test_config_defaults_and_strictness():
    cfg = MilvusConfig()
    assert cfg.is_lite and cfg.index_type == "HNSW" and cfg.metric == "COSINE" and cfg.language == "zh"
    assert MilvusConfig(index_type="ivf_flat", metric="ip").index_type == "IVF_FLAT"
    assert not MilvusConfig(uri="https://milvus.example:19530").is_lite
    for bad in ({"index_type": "DISKANN"}, {"metric": "HAMMING"}, {"collection": "a-b"}, {"shards": 0},
                {"unknown": 1}, {"language": "fr"}):
        with pytest.raises(ConfigError):
            resolve_config(bad, None)
    assert resolve_config({"metric": "COSINE"}, "l2").metric == "L2"


def test_index_and_search_params():
    assert MilvusConfig(index_type="HNSW").build_params() == {"M": 16, "efConstruction": 200}
    assert MilvusConfig(index_type="HNSW", index_params={"M": 32}).build_params()["M"] == 32
    assert MilvusConfig(index_type="HNSW").query_params(200) == {"ef": 200}  # ef >= limit
    assert MilvusConfig(index_type="HNSW", search_params={"ef": 512}).query_params(10) == {"ef": 512}
    assert MilvusConfig(index_type="IVF_FLAT").query_params(10) == {"nprobe": 16}
    assert MilvusConfig(index_type="FLAT").query_params(10) == {}


def test_token_is_a_reference_or_masked(monkeypatch, tmp_path):
    monkeypatch.setenv("MILVUS_TOKEN_T", TOKEN)
    ref = MilvusConfig(uri="https://m:19530", token="${MILVUS_TOKEN_T}")
    assert ref.resolved_token() == TOKEN and ref.public_dict()["token"] == "${MILVUS_TOKEN_T}"
    lit = MilvusConfig(uri="https://m:19530", token=TOKEN)
    assert TOKEN not in repr(lit) and TOKEN not in str(lit.public_dict())
    assert lit.savable_dict()["token"] is None
    assert MilvusConfig(uri="kb.db").resolved_uri(tmp_path) == str(tmp_path / "kb.db")


def test_analyzer_presets():
    zh, en = analyzer_params("zh"), analyzer_params("en")
    assert zh["tokenizer"] == {"type": "jieba", "mode": "exact", "hmm": False}
    assert en["tokenizer"] == "standard"
    assert {"type": "stemmer", "language": "english"} in zh["filter"]
    assert {"type": "stemmer", "language": "english"} not in analyzer_params("zh", stemming=False)["filter"]
    stops = next(f for f in zh["filter"] if isinstance(f, dict) and f["type"] == "stop")["stop_words"]
    assert {"的", "the", "，", "。", "("} <= set(stops) == set(STOP_WORDS)
    with pytest.raises(ValueError):
        analyzer_params("fr")


def test_jieba_analyzer_keeps_latin_words_in_mixed_text():
    """The documented mixed-language behaviour, checked on Milvus Lite's own analyzer."""
    from milvus_lite.analyzer.factory import create_analyzer

    tokens = create_analyzer(analyzer_params("zh")).tokenize("用Python做机器学习的教程。COVID-19 vaccines")
    assert tokens == ["用", "python", "做", "机器", "学习", "教程", "covid", "19", "vaccines"]


def test_quote_escapes_filter_literals():
    assert quote("a.md") == '"a.md"'
    assert quote('C:\\docs\\"x".md') == '"C:\\\\docs\\\\\\"x\\".md"'
    assert quote("数据/文档.txt") == '"数据/文档.txt"'


def test_rows_of_checks_ids_and_sizes():
    import numpy as np

    docs = [Document("文本", id="c1", metadata={"source": "s", "title": "t" * 5000, "chunk_index": 3})]
    row = rows_of(docs, np.zeros((1, 4), np.float32))[0]
    assert row["id"] == "c1" and row["position"] == 3 and len(row["title"].encode()) <= 1024
    assert row["metadata"]["source"] == "s"
    with pytest.raises(KnowledgeBaseError, match="no id"):
        rows_of([Document("x")], np.zeros((1, 4), np.float32))
    with pytest.raises(KnowledgeBaseError, match="chunk_size"):
        rows_of([Document("长" * 30000, id="big")], np.zeros((1, 4), np.float32))


def test_error_mapping_names_uri_never_token():
    from pymilvus.exceptions import MilvusException

    uri = "https://root:s3cr3t-Passw0rd@milvus.example:19530"
    with pytest.raises(BackendError) as info, milvus_errors(uri, TOKEN, what="connect"):
        raise MilvusException(code=2, message=f"Fail connecting to server on {uri} token={TOKEN}")
    text = str(info.value)
    assert "milvus.example:19530" in text and "s3cr3t" not in text and "root:" not in text
    assert info.value.__cause__ is None  # the original message held the token: not chained
    failed = "collection 'kb' at /x.db: search failed"
    with pytest.raises(KnowledgeBaseError, match=failed), milvus_errors("/x.db", what="search", collection="kb"):
        raise MilvusException(code=1, message="field dense: dim mismatch")
    with pytest.raises(ZeroDivisionError), milvus_errors("/x.db"):  # not ours: untouched
        raise ZeroDivisionError
    assert display_uri(uri) == "https://milvus.example:19530"
    assert redact(f"user root:s3cr3t-Passw0rd {TOKEN}", TOKEN).count("s3cr3t") == 0


def test_check_manifest_reports_the_fix():
    manifest = {"schema_version": 1, "embedding_model": "minilm", "dimensions": 384}
    check_manifest(manifest, embedding_model="minilm", dimensions=384, where="collection 'kb' at x.db")
    with pytest.raises(KnowledgeBaseError, match="built with embedding model 'minilm'.*--rebuild"):
        check_manifest(manifest, embedding_model="bge-m3", dimensions=None, where="w")
    with pytest.raises(KnowledgeBaseError, match="stores 384-dimensional vectors.*gives 1024"):
        check_manifest(manifest, embedding_model=None, dimensions=1024, where="w")
    with pytest.raises(KnowledgeBaseError, match="upgrade module_ai"):
        check_manifest({**manifest, "schema_version": 99}, embedding_model=None, dimensions=None, where="w")


def test_server_ranker_mapping():
    from pymilvus import RRFRanker, WeightedRanker

    auto, server, client = MilvusConfig(), MilvusConfig(fusion="server"), MilvusConfig(fusion="client")
    rrf_eq = RetrievalSettings(fusion="rrf", weights=(1.0, 1.0), rrf_k=20)
    ranker = server_ranker(rrf_eq, auto)
    assert isinstance(ranker, RRFRanker) and ranker.dict()["params"]["k"] == 20
    assert server_ranker(RetrievalSettings(fusion="rrf", weights=(0.7, 0.3)), auto) is None
    assert server_ranker(RetrievalSettings(fusion="weighted"), auto) is None  # min-max: fused here
    weighted = server_ranker(RetrievalSettings(fusion="weighted", weights=(0.7, 0.3)), server)
    assert isinstance(weighted, WeightedRanker) and weighted.dict()["params"]["weights"] == [0.3, 0.7]
    assert server_ranker(rrf_eq, client) is None


def test_hits_to_documents_shape():
    ent = {"text": "正文", "source": "a.md", "title": "T", "metadata": {"source": "a.md", "heading": "h"}}
    docs = hits_to_documents([(("c1", ent, 0.9), 3.2, None), (("c2", {"text": "x"}, 0.1), None, 0.5)], 0.5)
    assert len(docs) == 1 and docs[0].id == "c1" and docs[0].page_content == "正文"
    assert docs[0].metadata == {"source": "a.md", "heading": "h", "title": "T", "chunk_id": "c1", "score": 0.9,
                                "bm25_score": 3.2, "dense_score": None, "rank": 1}


def test_ranking_metrics():
    m = ranking_metrics(["x", "a", "b"], {"a": 1.0, "z": 1.0})
    assert m["mrr@10"] == 0.5 and m["recall@10"] == 0.5
    assert abs(m["ndcg@10"] - (1 / 1.5849625) / (1 + 1 / 1.5849625)) < 1e-6
    assert ranking_metrics([], {"a": 1.0}) == {"ndcg@10": 0.0, "recall@10": 0.0, "mrr@10": 0.0}


def test_cli_targets(monkeypatch, tmp_path):
    folder, fields = target_of(str(tmp_path / "kb"), "docs")
    assert folder == tmp_path / "kb" and fields == {"uri": "milvus.db", "collection": "docs"}
    folder, fields = target_of(str(tmp_path / "x" / "my.db"), "docs")
    assert folder == tmp_path / "x" and fields["uri"].endswith("my.db")
    monkeypatch.setenv("MILVUS_TOKEN", TOKEN)
    folder, fields = target_of("https://root:pw@milvus.example:19530", "docs")
    assert fields["token"] == "${MILVUS_TOKEN}" and "pw" not in str(folder) and folder.name.endswith("-docs")
