"""One query through the hybrid pipeline: candidates -> fusion -> Documents (-> optional reranker)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from module_ai.errors import KnowledgeBaseError
from module_ai.retrieval.fusion import NORMS, RRF_K

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.documents import BaseDocumentCompressor, Document
    from langchain_core.vectorstores import VectorStore

    from module_ai.retrieval._index import SearchIndex

__all__ = ["DEFAULT_SETTINGS", "MODES", "RetrievalSettings", "rerank", "search_index"]

MODES = ("hybrid", "bm25", "dense")
FUSIONS = ("rrf", "weighted")


@dataclass(frozen=True)
class RetrievalSettings:
    """Tunable retrieval settings (stored in the manifest; any can be overridden per retriever).

    Attributes:
        k: documents returned.
        mode: ``"hybrid"``, ``"bm25"`` or ``"dense"``.
        weights: ``(bm25_weight, dense_weight)`` for fusion.
        fusion: ``"weighted"`` (normalized score sum) or ``"rrf"`` (reciprocal rank fusion).
        norm: ``"minmax"`` or ``"zscore"`` score normalization for ``"weighted"``.
        candidates: candidates taken from each retriever before fusion.
        rrf_k: the RRF constant (:data:`~module_ai.retrieval.fusion.RRF_K`).
        score_threshold: drop results whose final score is below this.
    """

    k: int = 8
    mode: str = "hybrid"
    weights: tuple[float, float] = (0.7, 0.3)
    fusion: str = "weighted"
    norm: str = "zscore"
    candidates: int = 100
    rrf_k: float = RRF_K
    score_threshold: float | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.mode in MODES, "mode", f"one of {MODES}"),
            (self.fusion in FUSIONS, "fusion", f"one of {FUSIONS}"),
            (self.norm in NORMS, "norm", f"one of {NORMS}"),
            (self.k > 0 and self.candidates > 0, "k", "k and candidates must be positive"),
            (len(self.weights) == 2 and min(self.weights) >= 0 < sum(self.weights), "weights",
             "(bm25_weight, dense_weight), non-negative, not both 0"),
        ]
        for ok, field, need in checks:
            if not ok:
                raise KnowledgeBaseError(f"invalid {field}={getattr(self, field)!r}: need {need}", field=field)

    def updated(self, **changes: Any) -> RetrievalSettings:
        """A copy with the non-``None`` changes applied (``weights`` may be a ``{"bm25", "dense"}`` dict)."""
        changes = {key: val for key, val in changes.items() if val is not None}
        w = changes.get("weights")
        if isinstance(w, Mapping):
            changes["weights"] = (float(w.get("bm25", 0.0)), float(w.get("dense", 0.0)))
        elif w is not None:
            changes["weights"] = tuple(float(x) for x in w)
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (for the manifest)."""
        data = asdict(self)
        data["weights"] = list(self.weights)
        return data


DEFAULT_SETTINGS = RetrievalSettings()


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

    from module_ai.retrieval._index import top_rows
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


def _reranked(docs: Sequence[Document], k: int, score_threshold: float | None) -> list[Document]:
    from langchain_core.documents import Document

    out: list[Document] = []
    for doc in docs:
        meta = dict(doc.metadata)
        meta.setdefault("fused_score", meta.get("score"))
        if "relevance_score" in meta:
            meta["score"] = float(meta["relevance_score"])
        if score_threshold is not None and meta.get("score") is not None and meta["score"] < score_threshold:
            continue
        meta["rank"] = len(out) + 1
        out.append(Document(page_content=doc.page_content, metadata=meta, id=doc.id))
        if len(out) >= k:
            break
    return out


def rerank(docs: Sequence[Document], query: str, reranker: BaseDocumentCompressor, k: int,
           score_threshold: float | None = None) -> list[Document]:
    """Reorder fused Documents with a reranker; keep the top ``k`` and re-number ``rank``.

    The fused score moves to ``fused_score``; ``score`` becomes the reranker's ``relevance_score``
    when it sets one, and ``score_threshold`` applies to that score.
    """
    return _reranked(reranker.compress_documents(list(docs), query), k, score_threshold)


async def arerank(docs: Sequence[Document], query: str, reranker: BaseDocumentCompressor, k: int,
                  score_threshold: float | None = None) -> list[Document]:
    """Async :func:`rerank` (uses the reranker's ``acompress_documents``)."""
    return _reranked(await reranker.acompress_documents(list(docs), query), k, score_threshold)
