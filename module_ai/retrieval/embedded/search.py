"""One query through the embedded index: candidates -> fusion -> Documents with score metadata."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.documents import Document
    from langchain_core.vectorstores import VectorStore

    from module_ai.retrieval.embedded.index import SearchIndex
    from module_ai.retrieval.settings import RetrievalSettings

__all__ = ["search_index", "vector_store_hits"]

def vector_store_hits(
    store: VectorStore, index: SearchIndex, texts: Sequence[str], query: str, c: int
) -> tuple[np.ndarray, np.ndarray]:
    """Dense hits from any LangChain VectorStore, mapped to index rows (by Document id, else text)."""
    import numpy as np

    try:
        pairs = store.similarity_search_with_relevance_scores(query, k=c)
    except NotImplementedError:  # e.g. InMemoryVectorStore: its raw score is already a similarity
        pairs = store.similarity_search_with_score(query, k=c)
    row_of = index.row_of
    by_text: dict[str, int] | None = None
    rows, scores = [], []
    for doc, score in pairs:
        row = row_of.get(doc.id) if doc.id else None
        if row is None:
            by_text = by_text or {t: i for i, t in enumerate(texts)}
            row = by_text.get(doc.page_content)
        if row is not None and row not in rows:
            rows.append(row)
            scores.append(float(score))
    return np.asarray(rows, dtype=np.int64), np.asarray(scores, dtype=np.float64)


def _fused(index: SearchIndex, query: str, embed: Callable[[str], Sequence[float]], s: RetrievalSettings,
           store: VectorStore | None, texts: Sequence[str]) -> list[tuple[int, float, float | None, float | None]]:
    """``[(row, score, bm25_score, dense_score)]`` best first, at most ``s.candidates`` long."""
    import numpy as np

    from module_ai.retrieval.embedded.index import top_rows
    from module_ai.retrieval.fusion import fuse_arrays

    if len(index) == 0:
        return []
    if s.mode == "bm25":
        full = index.bm25_scores(query)
        return [(int(r), float(full[r]), float(full[r]), None) for r in top_rows(full, s.candidates, positive=True)]
    hits = vector_store_hits(store, index, texts, query, s.candidates) if store is not None else None
    q = None if hits is not None else index.query_vector(embed(query))
    if s.mode == "dense":
        rows, scores = hits if hits is not None else index.dense_top(q, s.candidates)
        return [(int(r), float(v), None, float(v)) for r, v in zip(rows, scores)]
    cand = index.candidates(query, q, s.candidates, dense_hits=hits)
    fused = fuse_arrays([cand.bm25[None], cand.dense[None]], [cand.bm25_rank[None], cand.dense_rank[None]],
                        s.weights, method=s.fusion, norm=s.norm, k=s.rrf_k)[0]
    order = np.lexsort((cand.rows, -fused))[: s.candidates]
    return [(int(cand.rows[i]), float(fused[i]), float(cand.bm25[i]),
             None if np.isnan(cand.dense[i]) else float(cand.dense[i])) for i in order]


def search_index(
    index: SearchIndex,
    records: Sequence[Mapping[str, Any]],
    query: str,
    embed: Callable[[str], Sequence[float]],
    settings: RetrievalSettings,
    *,
    limit: int | None = None,
    vector_store: VectorStore | None = None,
) -> list[Document]:
    """Run one query and return new Documents with score metadata, best first.

    Args:
        index: the search structures.
        records: chunk records ``{"id", "text", "metadata"}`` in row order.
        query: the query.
        embed: ``embed_query`` of the knowledge base's embeddings (not called in ``"bm25"`` mode).
        settings: retrieval settings.
        limit: how many to return (default ``settings.k``).
        vector_store: a LangChain VectorStore used as the dense side instead of the built-in one.
    """
    from langchain_core.documents import Document

    texts = [r["text"] for r in records] if vector_store is not None else ()
    hits = _fused(index, query, embed, settings, vector_store, texts)
    out: list[Document] = []
    for rank, (row, score, bm25, dense) in enumerate(hits[: limit or settings.k], start=1):
        if settings.score_threshold is not None and score < settings.score_threshold:
            break
        rec = records[row]
        meta = {**rec["metadata"], "chunk_id": rec["id"], "score": score, "bm25_score": bm25,
                "dense_score": dense, "rank": rank}
        out.append(Document(page_content=rec["text"], metadata=meta, id=rec["id"]))
    return out
