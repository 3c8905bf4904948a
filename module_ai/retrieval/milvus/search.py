"""bm25 / dense / hybrid search on a module_ai Milvus collection, returning scored Documents.

Keyword and vector search always run in Milvus. Hybrid fusion maps onto Milvus' own rankers where
they compute what the embedded index computes, and runs here (over Milvus' two result lists)
where they do not. ``MilvusConfig.fusion`` chooses:

* ``"auto"`` (default): ``fusion="rrf"`` with equal weights -> ``RRFRanker(rrf_k)`` in one
  ``hybrid_search`` (rank-based, identical to the embedded RRF; equal weights only scale it). Weighted
  RRF and ``fusion="weighted"`` (min-max or z-score) are fused here with the embedded index's own
  functions (:mod:`module_ai.retrieval.fusion`), so tuned weights mean the same on both backends.
* ``"server"``: always Milvus' rankers: ``RRFRanker(rrf_k)`` (weighted RRF still fused here: Milvus'
  RRF has no weights) and ``WeightedRanker(w_dense, w_bm25)``. Milvus normalizes each score with a
  fixed function before weighting (COSINE ``(1+x)/2``, IP ``0.5+atan(x)/pi``, L2 ``1-2*atan(x)/pi``,
  BM25 ``2*atan(x)/pi``), not per-query min-max: BM25 scores above ~5 all map near 1, so the dense
  side dominates and the same weights rank differently than on the embedded index (measured in
  the parity tests). ``norm`` is ignored there.
* ``"client"``: always fuse here.

Client-side fusion sees each side's top ``candidates``; a chunk missing from one list gets that
list's floor (the embedded index scores the union on both sides, hence small differences).
Scores are higher-is-better: BM25 score, cosine / inner product, ``-distance`` for L2. Server-side
hybrid results carry only the fused score (``bm25_score`` / ``dense_score`` are ``None``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from module_ai.retrieval.milvus.schema import FIELDS

if TYPE_CHECKING:
    from langchain_core.documents import Document

    from module_ai.retrieval.milvus._client import Connection
    from module_ai.retrieval.milvus.config import MilvusConfig

__all__ = ["MAX_TOPK", "OUTPUT_FIELDS", "hits_to_documents", "search", "server_ranker"]

OUTPUT_FIELDS = [FIELDS[n] for n in ("text", "source", "title", "position", "metadata")]
MAX_TOPK = 16_384
"""Milvus' largest ``limit`` per search."""

Hit = tuple[str, dict[str, Any], float]
"""``(chunk id, entity fields, score)``."""
Scored = tuple[Hit, "float | None", "float | None"]
"""A hit with its BM25 and dense scores (``None`` when that side did not score it)."""


def _score(distance: float, metric: str) -> float:
    if metric == "BM25":
        return abs(float(distance))  # Milvus Lite reports -score, a Milvus server +score
    return -float(distance) if metric == "L2" else float(distance)


def _request(config: MilvusConfig, mode: str, data: Any, limit: int, expr: str | None) -> dict[str, Any]:
    if mode == "bm25":
        return {"data": [data], "anns_field": FIELDS["sparse"], "limit": limit, "filter": expr or "",
                "search_params": {"metric_type": "BM25", "params": {}}}
    return {"data": [data], "anns_field": FIELDS["dense"], "limit": limit, "filter": expr or "",
            "search_params": {"metric_type": config.metric, "params": config.query_params(limit)}}


def _leg(conn: Connection, config: MilvusConfig, mode: str, data: Any, limit: int,
         expr: str | None) -> list[Hit]:
    req = _request(config, mode, data, min(limit, MAX_TOPK), expr)
    res = conn.call(f"{mode} search", "search", conn.collection, output_fields=OUTPUT_FIELDS, **req)
    metric = "BM25" if mode == "bm25" else config.metric
    return [(h["id"], h.get("entity") or {}, _score(h["distance"], metric)) for h in (res[0] if res else [])]


def server_ranker(settings: Any, config: MilvusConfig) -> Any:
    """The Milvus ranker for the settings, or ``None`` when the fusion runs client-side (see above).

    Request order is ``[dense, bm25]``, so ``WeightedRanker`` gets ``(w_dense, w_bm25)``.
    """
    from pymilvus import RRFRanker, WeightedRanker

    side = config.fusion
    w_bm25, w_dense = (float(w) for w in settings.weights)
    if side == "client":
        return None
    if settings.fusion == "rrf" and w_bm25 == w_dense:
        k = settings.rrf_k
        return RRFRanker(int(k) if float(k).is_integer() else k)
    if side == "server" and settings.fusion == "weighted":
        return WeightedRanker(w_dense, w_bm25)
    return None


def _hybrid_server(conn: Connection, config: MilvusConfig, query: str, vector: Sequence[float], ranker: Any,
                   candidates: int, limit: int, expr: str | None) -> list[Scored]:
    from pymilvus import AnnSearchRequest

    reqs = []
    for mode, data in (("dense", list(vector)), ("bm25", query)):
        r = _request(config, mode, data, min(candidates, MAX_TOPK), expr)
        reqs.append(AnnSearchRequest(data=r["data"], anns_field=r["anns_field"], param=r["search_params"],
                                     limit=r["limit"], expr=expr or None))
    res = conn.call("hybrid search", "hybrid_search", conn.collection, reqs=reqs, ranker=ranker,
                    limit=min(limit, MAX_TOPK), output_fields=OUTPUT_FIELDS)
    hits = res[0] if res else []
    return [((h["id"], h.get("entity") or {}, float(h["distance"])), None, None) for h in hits]


def _hybrid_client(conn: Connection, config: MilvusConfig, query: str, vector: Sequence[float], settings: Any,
                   limit: int, expr: str | None) -> list[Scored]:
    from module_ai.retrieval.fusion import rrf_fuse, weighted_fuse

    bm25 = _leg(conn, config, "bm25", query, settings.candidates, expr)
    dense = _leg(conn, config, "dense", list(vector), settings.candidates, expr)
    entity = {cid: ent for cid, ent, _ in dense + bm25}
    b_score, d_score = {c: s for c, _, s in bm25}, {c: s for c, _, s in dense}
    if settings.fusion == "rrf":
        fused = rrf_fuse([list(b_score), list(d_score)], settings.weights, k=settings.rrf_k, limit=limit)
    else:
        fused = weighted_fuse([b_score, d_score], settings.weights, norm=settings.norm, limit=limit)
    return [((cid, entity[cid], score), b_score.get(cid), d_score.get(cid)) for cid, score in fused]


def hits_to_documents(hits: Sequence[Scored],
                      score_threshold: float | None = None) -> list[Document]:
    """New Documents: the chunk's metadata plus ``chunk_id``, ``score``, ``bm25_score``, ``dense_score``,
    ``rank`` (as the embedded index returns them)."""
    from langchain_core.documents import Document

    out: list[Document] = []
    for (cid, ent, score), bm25, dense in hits:
        if score_threshold is not None and score < score_threshold:
            break
        meta = dict(ent.get(FIELDS["metadata"]) or {})
        for name in ("source", "title"):
            meta.setdefault(name, ent.get(FIELDS[name], ""))
        meta.update(chunk_id=cid, score=score, bm25_score=bm25, dense_score=dense, rank=len(out) + 1)
        out.append(Document(page_content=ent.get(FIELDS["text"], ""), metadata=meta, id=cid))
    return out


def search(conn: Connection, config: MilvusConfig, query: str, embed: Callable[[str], Sequence[float]],
           settings: Any, *, limit: int | None = None, expr: str | None = None) -> list[Document]:
    """Run one query in ``settings.mode`` and return Documents, best first.

    Args:
        conn: the connection.
        config: the collection's config (metric, search params, fusion side).
        query: the query text.
        embed: ``embed_query`` of the knowledge base's embedding model (not called in bm25 mode).
        settings: a :class:`~module_ai.retrieval.RetrievalSettings` (k, mode, weights as
            ``(bm25, dense)``, fusion, norm, candidates, rrf_k, score_threshold).
        limit: how many to return (default ``settings.k``).
        expr: an optional Milvus filter expression, e.g. ``'source == "a.md"'``.
    """
    n = int(limit or settings.k)
    if not query.strip():
        return []
    if settings.mode == "bm25":
        hits = [(h, h[2], None) for h in _leg(conn, config, "bm25", query, n, expr)]
    elif settings.mode == "dense":
        hits = [(h, None, h[2]) for h in _leg(conn, config, "dense", list(embed(query)), n, expr)]
    else:
        vector = list(embed(query))
        ranker = server_ranker(settings, config)
        if ranker is None:
            hits = _hybrid_client(conn, config, query, vector, settings, n, expr)
        else:
            hits = _hybrid_server(conn, config, query, vector, ranker, max(settings.candidates, n), n, expr)
    return hits_to_documents(hits, settings.score_threshold)
