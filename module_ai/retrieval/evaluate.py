"""Evaluate and tune hybrid retrieval on a BEIR-layout set (corpus.jsonl, queries.jsonl, qrels.tsv).

Reports nDCG@10, Recall@10 and MRR@10 for ``bm25``, ``dense``, ``hybrid`` (the default settings),
``hybrid_tuned`` (grid over bm25 weight 0..1 step 0.1 x {weighted min-max, weighted z-score, rrf},
scored by 5-fold cross-validation over queries; a hybrid setting is preferred over a single retriever only
when its gain on the training folds exceeds one standard error) and, given a reranker, ``hybrid_rerank``. Each query's
candidates are computed once; the grid only re-fuses arrays.

Example:
    >>> report = evaluate_retrieval("data/cmrc2018-dev-zh", embeddings, max_queries=500)  # doctest: +SKIP
    >>> report["results"]["hybrid_tuned"]["ndcg@10"], report["best"]  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.errors import KnowledgeBaseError
from module_ai.retrieval import metrics as M
from module_ai.retrieval.settings import DEFAULT_SETTINGS, RetrievalSettings

if TYPE_CHECKING:
    from langchain_core.documents import BaseDocumentCompressor
    from langchain_core.embeddings import Embeddings

    from module_ai.retrieval.embedded.index import SearchIndex

__all__ = ["evaluate_retrieval", "load_beir"]

_ORDER = ("hybrid_tuned", "hybrid", "bm25", "dense", "hybrid_rerank")


def load_beir(dataset_dir: str | Path) -> tuple[dict[str, dict[str, str]], dict[str, str], dict[str, dict[str, float]]]:
    """Read a BEIR-layout folder.

    Returns:
        ``(corpus, queries, qrels)``: ``{doc_id: {"title", "text"}}``, ``{query_id: text}`` and
        ``{query_id: {doc_id: gain}}`` (pairs with gain <= 0 dropped).
    """
    root = Path(dataset_dir)
    try:
        with open(root / "corpus.jsonl", encoding="utf-8") as fh:
            corpus = {str(d["_id"]): {"title": d.get("title") or "", "text": d.get("text") or ""}
                      for d in map(json.loads, filter(str.strip, fh))}
        with open(root / "queries.jsonl", encoding="utf-8") as fh:
            queries = {str(q["_id"]): q["text"] for q in map(json.loads, filter(str.strip, fh))}
        qrels: dict[str, dict[str, float]] = {}
        with open(root / "qrels.tsv", encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                if float(row["score"]) > 0:
                    qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = float(row["score"])
    except (OSError, KeyError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise KnowledgeBaseError(f"not a BEIR-layout set ({type(exc).__name__}: {exc})", path=str(root)) from exc
    judged = sum(1 for q in qrels if q in queries)
    if not corpus or not judged:
        raise KnowledgeBaseError(f"the evaluation set is empty ({len(corpus)} documents, {judged} queries with "
                                 "judgments in qrels.tsv); fill corpus.jsonl, queries.jsonl and qrels.tsv",
                                 path=str(root))
    return corpus, queries, qrels


def _index(corpus: Mapping[str, Mapping[str, str]], embeddings: Embeddings, model: str, cache: Any,
           batch_size: int, max_concurrency: int, show_progress: bool) -> SearchIndex:
    from module_ai.retrieval.embedded.index import SearchIndex, build_bm25, normalize_rows
    from module_ai.retrieval.embedding import embed_texts
    from module_ai.retrieval.tokenizer import get_tokenizer

    texts = [f"{d['title']}\n{d['text']}" if d["title"] else d["text"] for d in corpus.values()]
    vectors, _ = embed_texts(texts, embeddings, model=model, cache=cache, batch_size=batch_size,
                             max_concurrency=max_concurrency, show_progress=show_progress)
    tok = get_tokenizer()
    bm25 = build_bm25([tok(t) for t in texts])
    return SearchIndex(list(corpus), normalize_rows(vectors), bm25, metric="cosine", vector_backend="numpy")


def _query_vectors(texts: list[str], embeddings: Embeddings, model: str, cache: Any,
                   show_progress: bool = False) -> list[Any]:
    """Query embeddings via ``embed_query`` (instruction models differ from documents), cached."""
    from tqdm.auto import tqdm

    from module_ai.retrieval.embedding_cache import text_hash

    key = f"{model}#query"
    hashes = [text_hash(t) for t in texts]
    found = cache.get_many(key, 0, hashes) if cache else {}
    todo = [(h, t) for h, t in dict(zip(hashes, texts)).items() if h not in found]
    new = [(h, embeddings.embed_query(t)) for h, t in tqdm(todo, desc="queries", unit="query",
                                                              disable=not show_progress or not todo)]
    if cache and new:
        cache.put_many(key, 0, [h for h, _ in new], [v for _, v in new])
    found.update(new)
    return [found[h] for h in hashes]


def _sample(queries: Mapping[str, str], qrels: Mapping[str, Any], max_queries: int | None, seed: int) -> list[str]:
    import numpy as np

    ids = sorted(q for q in qrels if q in queries)
    if max_queries and max_queries < len(ids):
        pick = np.random.default_rng(seed).choice(len(ids), size=max_queries, replace=False)
        ids = [ids[i] for i in sorted(pick)]
    return ids


def _summary(per_query: Mapping[str, Any]) -> dict[str, float]:
    return {name: round(float(v.mean()), 4) for name, v in per_query.items()}


def _rerank_metrics(index: SearchIndex, corpus: Mapping[str, Mapping[str, str]], batch: M.Batch,
                    fused: Any, queries: list[str], reranker: BaseDocumentCompressor, top: int) -> dict[str, Any]:
    """Rerank each query's top ``top`` fused candidates and score the new order."""
    import numpy as np
    from langchain_core.documents import Document

    order = np.argsort(-fused, axis=1, kind="stable")[:, :top]
    new = np.full(fused.shape, -np.inf)
    for i, query in enumerate(queries):
        cols = [int(c) for c in order[i] if np.isfinite(fused[i, c])]
        docs = []
        for c in cols:
            d = corpus[index.ids[batch.rows[i, c]]]
            docs.append(Document(page_content=f"{d['title']}\n{d['text']}" if d["title"] else d["text"],
                                 metadata={"col": c}))
        for pos, doc in enumerate(reranker.compress_documents(docs, query)):
            new[i, doc.metadata["col"]] = -pos
    return M.metrics(batch, new)


def evaluate_retrieval(
    dataset_dir: str | Path,
    embeddings: Embeddings,
    *,
    name: str | None = None,
    embedding_model_name: str | None = None,
    reranker: BaseDocumentCompressor | None = None,
    rerank_top: int = 30,
    max_queries: int | None = None,
    defaults: RetrievalSettings = DEFAULT_SETTINGS,
    candidates: int = 100,
    folds: int = 5,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    max_concurrency: int = 1,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Evaluate bm25, dense, hybrid, tuned hybrid (and reranked hybrid) on a BEIR-layout set.

    Args:
        dataset_dir: folder with ``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv``.
        embeddings: any LangChain Embeddings (passages: ``title`` + newline + ``text``).
        name: dataset name in the report (default: the folder name).
        embedding_model_name: cache key of the model (default: the object's model name).
        reranker: optional second stage over the default hybrid's top ``rerank_top``.
        rerank_top: candidates handed to the reranker per query.
        max_queries: evaluate a random subsample of this many queries (``seed``).
        defaults: the settings reported as ``hybrid``.
        candidates: candidates per retriever before fusion.
        folds: cross-validation folds for ``hybrid_tuned``.
        seed: seed for subsampling and fold assignment.
        cache_dir: keep an embedding cache here (document and query vectors) for repeated runs.
        batch_size, max_concurrency: embedding batching (see :func:`KnowledgeBase.build`).
        show_progress: show a progress bar while embedding the corpus.

    Returns:
        ``{"dataset": name, "results": {method: {"ndcg@10", "recall@10", "mrr@10"}},
        "best": {"method": ..., "params": {...}}}``; ``best`` is the method with the highest nDCG@10
        (``hybrid_tuned`` reports the setting chosen on all queries).
    """
    from module_ai.retrieval.embedded.index import one_thread
    from module_ai.retrieval.embedding import model_name_of
    from module_ai.retrieval.embedding_cache import EmbeddingCache

    corpus, queries, qrels = load_beir(dataset_dir)
    model = embedding_model_name or model_name_of(embeddings)
    cache = None
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cache = EmbeddingCache(Path(cache_dir) / "embedding_cache")
    index = _index(corpus, embeddings, model, cache, batch_size, max_concurrency, show_progress)
    qids = _sample(queries, qrels, max_queries, seed)
    qtexts = [queries[q] for q in qids]
    qvecs = _query_vectors(qtexts, embeddings, model, cache, show_progress)
    with one_thread():
        cands = [index.candidates(t, index.query_vector(v), candidates) for t, v in zip(qtexts, qvecs)]
    rels = [{index.row_of[d]: g for d, g in qrels[q].items() if d in index.row_of} for q in qids]
    batch = M.pad(cands, rels)
    default = {"mode": "hybrid", "fusion": defaults.fusion, "weights": list(defaults.weights), "norm": defaults.norm}
    settings = M.grid()
    per_setting = [M.metrics(batch, M.fuse(batch, p)) for p in settings]
    tuned, chosen = M.cross_validate(per_setting, settings, folds, seed)
    results = {
        "bm25": _summary(M.metrics(batch, M.single(batch, "bm25"))),
        "dense": _summary(M.metrics(batch, M.single(batch, "dense"))),
        "hybrid": _summary(M.metrics(batch, M.fuse(batch, default))),
        "hybrid_tuned": {k: round(v, 4) for k, v in tuned.items()},
    }
    params = {"bm25": {"mode": "bm25"}, "dense": {"mode": "dense"}, "hybrid": default,
              "hybrid_tuned": settings[chosen]}
    if reranker is not None:
        results["hybrid_rerank"] = _summary(
            _rerank_metrics(index, corpus, batch, M.fuse(batch, default), qtexts, reranker, rerank_top))
        params["hybrid_rerank"] = {**default, "reranker": type(reranker).__name__, "rerank_top": rerank_top}
    best = max([m for m in _ORDER if m in results], key=lambda m: (results[m]["ndcg@10"], -_ORDER.index(m)))
    if cache is not None:
        cache.close()
    return {"dataset": name or Path(dataset_dir).name, "results": results,
            "best": {"method": best, "params": params[best]}}
