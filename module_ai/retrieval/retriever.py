"""``HybridRetriever``: a LangChain BaseRetriever over a :class:`KnowledgeBase`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict

from module_ai.retrieval.protocol import SearchableStore
from module_ai.retrieval.settings import RetrievalSettings, arerank, rerank

__all__ = ["HybridRetriever", "RetrieverMixin"]


class HybridRetriever(BaseRetriever):
    """Hybrid BM25 + dense retrieval over a knowledge base, with an optional reranking stage.

    Build it with :meth:`KnowledgeBase.as_retriever`. Returned Documents are new objects whose
    metadata holds the chunk's metadata plus ``chunk_id``, ``source``, ``score`` (fused, or the
    reranker's ``relevance_score``), ``bm25_score``, ``dense_score`` (``None`` when that side did not
    score the chunk) and ``rank`` (from 1).

    Example:
        >>> retriever = kb.as_retriever(k=5, weights=(0.7, 0.3))  # doctest: +SKIP
        >>> docs = retriever.invoke("如何安装？")  # doctest: +SKIP
        >>> docs[0].metadata["rank"], docs[0].metadata["source"]  # doctest: +SKIP
        (1, '/docs/install.md')
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kb: Any
    """The store searched: any :class:`~module_ai.retrieval.protocol.SearchableStore` (embedded or Milvus)."""
    settings: RetrievalSettings
    """k, mode, weights, fusion, norm, candidates, rrf_k and score_threshold."""
    reranker: BaseDocumentCompressor | None = None
    """Optional second stage, e.g. a cross-encoder; sees the top ``rerank_top`` fused Documents."""
    rerank_top: int | None = None
    """How many fused Documents go to the reranker (default: ``settings.candidates``)."""
    vector_store: VectorStore | None = None
    """A LangChain VectorStore used as the dense side instead of the built-in vectors."""

    def _settings_for(self, overrides: dict[str, Any]) -> RetrievalSettings:
        """The settings of one call: ``invoke(q, k=1, mode="bm25")`` overrides the retriever's own."""
        if not overrides:
            return self.settings
        from dataclasses import fields

        from module_ai.errors import ConfigError

        known = {f.name for f in fields(RetrievalSettings)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown retrieval setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                              field=unknown[0])
        return self.settings.updated(**overrides)

    def _first_stage(self, query: str, settings: RetrievalSettings) -> list[Document]:
        kb: SearchableStore = self.kb
        if self.reranker is None:
            return kb.retrieve(query, settings, vector_store=self.vector_store)
        first = replace(settings, score_threshold=None)
        return kb.retrieve(query, first, limit=self.rerank_top or first.candidates, vector_store=self.vector_store)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **overrides: Any) -> list[Document]:
        settings = self._settings_for(overrides)
        docs = self._first_stage(query, settings)
        if self.reranker is None:
            return docs
        return rerank(docs, query, self.reranker, settings.k, settings.score_threshold)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **overrides: Any
    ) -> list[Document]:
        settings = self._settings_for(overrides)
        docs = await run_in_executor(None, self._first_stage, query, settings)
        if self.reranker is None:
            return docs
        return await arerank(docs, query, self.reranker, settings.k, settings.score_threshold)


class RetrieverMixin:
    """``search`` and ``as_retriever`` for any store with ``settings`` and ``retrieve`` (one implementation)."""

    def search(self, query: str, k: int | None = None, **settings: Any) -> list[Document]:
        """Retrieve the top ``k`` chunks; ``settings`` override the defaults (see :meth:`as_retriever`)."""
        return self.as_retriever(k=k, **settings).invoke(query)

    def as_retriever(self, *, k: int | None = None, mode: str | None = None,
                     weights: Sequence[float] | dict[str, float] | None = None, fusion: str | None = None,
                     norm: str | None = None, candidates: int | None = None,
                     reranker: BaseDocumentCompressor | None = None, score_threshold: float | None = None,
                     rrf_k: float | None = None, rerank_top: int | None = None,
                     vector_store: VectorStore | None = None, **kwargs: Any) -> HybridRetriever:
        """A LangChain retriever over this store; arguments left ``None`` take the stored defaults.

        Args:
            k: documents returned.
            mode: ``"hybrid"``, ``"bm25"`` or ``"dense"``.
            weights: ``(bm25_weight, dense_weight)`` or ``{"bm25": w, "dense": w}``.
            fusion: ``"weighted"`` or ``"rrf"``.
            norm: ``"minmax"`` or ``"zscore"`` (weighted fusion).
            candidates: candidates per retriever before fusion.
            reranker: any BaseDocumentCompressor, applied to the top ``rerank_top`` fused chunks.
            score_threshold: minimum final score.
            rrf_k: the RRF constant.
            rerank_top: chunks handed to the reranker (default ``candidates``).
            vector_store: any LangChain VectorStore as the dense side (ids = chunk ids).
            **kwargs: passed to the BaseRetriever (``tags``, ``metadata``).
        """
        settings = self.settings.updated(k=k, mode=mode, weights=weights, fusion=fusion, norm=norm,
                                         candidates=candidates, score_threshold=score_threshold, rrf_k=rrf_k)
        return HybridRetriever(kb=self, settings=settings, reranker=reranker, rerank_top=rerank_top,
                               vector_store=vector_store, **kwargs)
