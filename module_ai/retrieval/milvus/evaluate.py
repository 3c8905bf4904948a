"""Evaluate the Milvus backend on a BEIR-layout set, in the report shape of the embedded evaluator.

A throwaway collection is built (Milvus Lite in a temporary folder by default, FLAT index so dense
search is exact like the embedded index), every passage (``title`` + newline + ``text``, as the
embedded evaluator) becomes one chunk, and each query runs through the same search path as the
retriever: ``bm25``, ``dense`` and ``hybrid`` (the default settings; fusion by Milvus' ranker).

Example:
    >>> report = evaluate_milvus("data/cmrc2018-dev-zh", emb, max_queries=300)  # doctest: +SKIP
    >>> report["results"]["hybrid"]["ndcg@10"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.retrieval.milvus.config import MilvusConfig

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

    from module_ai.retrieval import RetrievalSettings
    from module_ai.retrieval.milvus._client import Connection

__all__ = ["CUTOFF", "evaluate_milvus", "ranking_metrics"]

CUTOFF = 10
"""nDCG@10, Recall@10, MRR@10 (as the embedded evaluator)."""


def ranking_metrics(ranked: Sequence[str], gains: Mapping[str, float], k: int = CUTOFF) -> dict[str, float]:
    """nDCG@k (graded gains), Recall@k and MRR@k of one ranked id list.

    Example:
        >>> ranking_metrics(["a", "b"], {"b": 1.0})["mrr@10"]
        0.5
    """
    top = list(ranked)[:k]
    dcg = sum(gains.get(d, 0.0) / math.log2(i + 2) for i, d in enumerate(top))
    ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    hits = [i for i, d in enumerate(top) if gains.get(d, 0.0) > 0]
    n_rel = sum(1 for g in gains.values() if g > 0)
    return {"ndcg@10": dcg / idcg if idcg > 0 else 0.0, "recall@10": len(hits) / n_rel if n_rel else 0.0,
            "mrr@10": 1.0 / (hits[0] + 1) if hits else 0.0}


def _sample(queries: Mapping[str, str], qrels: Mapping[str, Any], max_queries: int | None,
            seed: int) -> list[str]:
    """The embedded evaluator's query subsample (same ids for the same seed)."""
    import numpy as np

    ids = sorted(q for q in qrels if q in queries)
    if max_queries and max_queries < len(ids):
        pick = np.random.default_rng(seed).choice(len(ids), size=max_queries, replace=False)
        ids = [ids[i] for i in sorted(pick)]
    return ids


@contextlib.contextmanager
def _collection(config: MilvusConfig | None) -> Iterator[tuple[MilvusConfig, str]]:
    """A throwaway collection config: Lite in a temp folder, or a unique name on the given server."""
    from module_ai.retrieval.milvus._client import release_lite

    base = config or MilvusConfig(index_type="FLAT")
    with tempfile.TemporaryDirectory(prefix="module_ai_milvus_eval_") as tmp:
        if not base.is_lite:
            yield base.model_copy(update={"collection": f"module_ai_eval_{uuid.uuid4().hex[:10]}"}), tmp
            return
        cfg = base.model_copy(update={"uri": str(Path(tmp) / "eval.db")})
        try:
            yield cfg, tmp
        finally:
            release_lite(cfg.uri)


def _index_corpus(conn: Connection, cfg: MilvusConfig, corpus: Mapping[str, Mapping[str, str]],
                  embeddings: Embeddings, model: str, cache: Any, batch_size: int,
                  show_progress: bool) -> None:
    from langchain_core.documents import Document

    from module_ai.retrieval.milvus import schema, store
    from module_ai.retrieval.milvus._kbsupport import embed_with_cache

    docs = [Document(page_content=f"{d['title']}\n{d['text']}" if d["title"] else d["text"], id=cid,
                     metadata={"source": cid, "title": d["title"]}) for cid, d in corpus.items()]
    manifest = {"embedding_model": model, "requested_dimensions": None}
    vectors, _ = embed_with_cache([d.page_content for d in docs], embeddings, manifest, cache, batch_size, 1,
                                  show_progress)
    schema.create_collection(conn, cfg, schema.new_manifest(cfg, model, int(vectors.shape[1])))
    store.upsert(conn, docs, vectors, dimensions=int(vectors.shape[1]))
    store.flush(conn)


def _query_vectors(texts: list[str], embeddings: Embeddings, model: str, cache: Any) -> list[list[float]]:
    """``embed_query`` vectors, cached under ``<model>#query`` like the embedded evaluator."""
    from module_ai.retrieval.embedding_cache import text_hash

    key, hashes = f"{model}#query", [text_hash(t) for t in texts]
    found = dict(cache.get_many(key, 0, hashes)) if cache else {}
    new = [(h, embeddings.embed_query(t)) for h, t in dict(zip(hashes, texts)).items() if h not in found]
    if cache and new:
        cache.put_many(key, 0, new)
    found.update(new)
    return [list(map(float, found[h])) for h in hashes]


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    names = ("ndcg@10", "recall@10", "mrr@10")
    return {m: round(sum(r[m] for r in rows) / max(len(rows), 1), 4) for m in names}


def evaluate_milvus(dataset_dir: str | Path, embeddings: Embeddings, *, name: str | None = None,
                    embedding_model_name: str | None = None, config: MilvusConfig | None = None,
                    max_queries: int | None = None, defaults: RetrievalSettings | None = None,
                    candidates: int = 100, seed: int = 0, cache_dir: str | Path | None = None,
                    batch_size: int = 64, show_progress: bool = False) -> dict[str, Any]:
    """Evaluate bm25, dense and hybrid retrieval through Milvus on a BEIR-layout set.

    Args:
        dataset_dir: folder with ``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv``.
        embeddings: any LangChain Embeddings.
        name: dataset name in the report (default: the folder name).
        embedding_model_name: cache key of the model (default: the object's model name).
        config: where to build the throwaway collection (default: Milvus Lite, FLAT, COSINE, jieba);
            on a server a uniquely named collection is created and dropped afterwards.
        max_queries: evaluate the embedded evaluator's random subsample of this many queries.
        defaults: settings reported as ``hybrid`` (default: the knowledge base's defaults).
        candidates: candidates per side before fusion.
        seed: subsample seed.
        cache_dir: embedding cache folder (shared format with the embedded evaluator).
        batch_size: texts per embedding call.
        show_progress: progress bar while embedding.

    Returns:
        ``{"dataset", "backend": "milvus", "results": {"bm25"|"dense"|"hybrid": {"ndcg@10",
        "recall@10", "mrr@10"}}, "best": {"method", "params"}}``.
    """
    from module_ai.retrieval.embedding import model_name_of
    from module_ai.retrieval.evaluate import load_beir
    from module_ai.retrieval.milvus._client import connect
    from module_ai.retrieval.milvus._kbsupport import open_cache
    from module_ai.retrieval.milvus.search import search
    from module_ai.retrieval.settings import DEFAULT_SETTINGS

    corpus, queries, qrels = load_beir(dataset_dir)
    model = embedding_model_name or model_name_of(embeddings)
    hybrid = (defaults or DEFAULT_SETTINGS).updated(k=CUTOFF, candidates=candidates, mode="hybrid",
                                                    score_threshold=None)
    modes = {"bm25": hybrid.updated(mode="bm25"), "dense": hybrid.updated(mode="dense"), "hybrid": hybrid}
    qids = _sample(queries, qrels, max_queries, seed)
    with _collection(config) as (cfg, tmp):
        cache_root = Path(cache_dir) if cache_dir is not None else Path(tmp)
        cache_root.mkdir(parents=True, exist_ok=True)
        cache = open_cache(cache_root)
        conn = connect(cfg)
        try:
            _index_corpus(conn, cfg, corpus, embeddings, model, cache, batch_size, show_progress)
            qvecs = _query_vectors([queries[q] for q in qids], embeddings, model, cache)
            per_mode: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
            for qid, vec in zip(qids, qvecs):
                gains = {d: g for d, g in qrels[qid].items() if d in corpus}
                for mode, settings in modes.items():
                    docs = search(conn, cfg, queries[qid], lambda _q, v=vec: v, settings)
                    per_mode[mode].append(ranking_metrics([d.id for d in docs], gains))
        finally:
            if not cfg.is_lite:
                conn.call("drop eval collection", "drop_collection", cfg.collection)
            conn.close()
            cache.close()
    results = {mode: _mean(rows) for mode, rows in per_mode.items()}
    best = max(("hybrid", "bm25", "dense"), key=lambda m: results[m]["ndcg@10"])
    params = {"mode": best} if best != "hybrid" else {"mode": "hybrid", "fusion": hybrid.fusion,
                                                        "weights": list(hybrid.weights), "norm": hybrid.norm}
    return {"dataset": name or Path(dataset_dir).name, "backend": "milvus", "results": results,
            "best": {"method": best, "params": params}}
