"""Retrieval settings shared by every store, and the rerank step applied after fusion.

:class:`RetrievalSettings` is stored in a knowledge base's manifest (embedded or Milvus) and can be
overridden per retriever; :func:`rerank` / :func:`arerank` reorder fused Documents with any LangChain
``BaseDocumentCompressor``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from module_ai.errors import KnowledgeBaseError
from module_ai.retrieval.fusion import NORMS, RRF_K

if TYPE_CHECKING:
    from langchain_core.documents import BaseDocumentCompressor, Document

__all__ = ["DEFAULT_SETTINGS", "FUSIONS", "MODES", "RetrievalSettings", "arerank", "rerank"]

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
