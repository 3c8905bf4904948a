"""The common reranker: a LangChain ``BaseDocumentCompressor`` with a plain ``(index, score)`` API.

Backends only say how to score a list of *distinct* texts (``_judge`` / ``_ajudge``); this class does
the rest the same way for all of them (see :mod:`module_ai.rerank._scores` for the guarantees).
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field

from module_ai.rerank._scores import Judgement, ranked_indices, result_documents, unique_texts

__all__ = ["BaseReranker", "arerank_texts", "rerank_texts"]


class BaseReranker(BaseDocumentCompressor):
    """Reranks Documents (``compress_documents``) or strings (``rank``), sync and async.

    Results come best first. Each result Document is new and carries ``relevance_score`` (0..1,
    normalized), ``raw_score`` (the backend's own score) and ``rerank_index`` (its input position).

    Example:
        >>> rr = reg.reranker("gte-rerank-v2")                     # doctest: +SKIP
        >>> rr.compress_documents(docs, "问题")[0].metadata["relevance_score"]  # doctest: +SKIP
        >>> rr.rank("问题", ["文本一", "文本二"], top_n=1)           # doctest: +SKIP
        [(1, 0.83)]
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    top_n: int | None = Field(default=None, ge=1)
    """Keep at most this many results (``None``: all, reordered)."""
    score_threshold: float | None = Field(default=None, ge=0, le=1)
    """Drop results whose normalized ``relevance_score`` is below this."""
    name: str | None = None
    """Registry name (used in errors and usage records)."""

    # --- what a backend implements ---------------------------------------------------------------
    @abstractmethod
    def _judge(self, query: str, texts: list[str], callbacks: Callbacks = None) -> list[Judgement]:
        """One :class:`Judgement` per text (texts are distinct and never empty)."""

    async def _ajudge(self, query: str, texts: list[str], callbacks: Callbacks = None) -> list[Judgement]:
        return await asyncio.to_thread(self._judge, query, texts, callbacks)

    # --- the common API --------------------------------------------------------------------------
    def rank(self, query: str, texts: Sequence[str], *, top_n: int | None = None,
             score_threshold: float | None = None) -> list[tuple[int, float]]:
        """Rerank plain strings; returns ``(input index, relevance_score)`` pairs, best first.

        Args:
            query: the question.
            texts: candidate passages.
            top_n: overrides the reranker's ``top_n`` for this call.
            score_threshold: overrides the reranker's ``score_threshold`` for this call.
        """
        rows = self._ranked(query, list(texts), top_n, score_threshold, None)
        return [(index, judgement.score) for index, judgement in rows]

    async def arank(self, query: str, texts: Sequence[str], *, top_n: int | None = None,
                    score_threshold: float | None = None) -> list[tuple[int, float]]:
        """Async :meth:`rank`."""
        rows = await self._aranked(query, list(texts), top_n, score_threshold, None)
        return [(index, judgement.score) for index, judgement in rows]

    def compress_documents(self, documents: Sequence[Document], query: str,
                           callbacks: Callbacks | None = None) -> list[Document]:
        """Rerank ``documents`` for ``query``: new Documents, best first (see the class docstring)."""
        texts = [doc.page_content for doc in documents]
        return result_documents(documents, self._ranked(query, texts, None, None, callbacks))

    async def acompress_documents(self, documents: Sequence[Document], query: str,
                                  callbacks: Callbacks | None = None) -> list[Document]:
        """Async :meth:`compress_documents`."""
        texts = [doc.page_content for doc in documents]
        return result_documents(documents, await self._aranked(query, texts, None, None, callbacks))

    # --- plumbing --------------------------------------------------------------------------------
    def _ranked(self, query, texts, top_n, threshold, callbacks) -> list[tuple[int, Judgement]]:
        if not texts:
            return []
        distinct, mapping = unique_texts(texts)
        judgements = self._judge(query, distinct, callbacks)
        return self._cut(judgements, mapping, top_n, threshold)

    async def _aranked(self, query, texts, top_n, threshold, callbacks) -> list[tuple[int, Judgement]]:
        if not texts:
            return []
        distinct, mapping = unique_texts(texts)
        judgements = await self._ajudge(query, distinct, callbacks)
        return self._cut(judgements, mapping, top_n, threshold)

    def _cut(self, judgements, mapping, top_n, threshold) -> list[tuple[int, Judgement]]:
        if len(judgements) != max(mapping) + 1:
            raise AssertionError(f"{type(self).__name__} returned {len(judgements)} scores for "
                                 f"{max(mapping) + 1} texts")
        return ranked_indices(judgements, mapping,
                              top_n=top_n if top_n is not None else self.top_n,
                              score_threshold=threshold if threshold is not None else self.score_threshold)


_INDEX_KEY = "_module_ai_rank_index"


def rerank_texts(reranker: BaseDocumentCompressor, query: str, texts: Sequence[str], *,
                 top_n: int | None = None) -> list[tuple[int, float]]:
    """``(index, score)`` pairs, best first, for plain strings, with any LangChain compressor.

    A module_ai reranker answers through :meth:`BaseReranker.rank`; any other
    ``BaseDocumentCompressor`` (e.g. ``CohereRerank``) gets Documents and its results are read back
    (score = ``metadata["relevance_score"]``, else ``0.0``).

    Example:
        >>> rerank_texts(reg.reranker("minilm-rerank"), "capital of France?", ["Paris", "Rome"])  # doctest: +SKIP
        [(0, 0.79), (1, 0.62)]
    """
    if isinstance(reranker, BaseReranker):
        return reranker.rank(query, texts, top_n=top_n)
    docs = [Document(page_content=text, metadata={_INDEX_KEY: i}) for i, text in enumerate(texts)]
    return _pairs(reranker.compress_documents(docs, query) if docs else [], top_n)


async def arerank_texts(reranker: BaseDocumentCompressor, query: str, texts: Sequence[str], *,
                        top_n: int | None = None) -> list[tuple[int, float]]:
    """Async :func:`rerank_texts`."""
    if isinstance(reranker, BaseReranker):
        return await reranker.arank(query, texts, top_n=top_n)
    docs = [Document(page_content=text, metadata={_INDEX_KEY: i}) for i, text in enumerate(texts)]
    return _pairs(await reranker.acompress_documents(docs, query) if docs else [], top_n)


def _pairs(results: Sequence[Document], top_n: int | None) -> list[tuple[int, float]]:
    pairs = [(int(d.metadata[_INDEX_KEY]), float(d.metadata.get("relevance_score") or 0.0)) for d in results]
    return pairs[:top_n] if top_n is not None else pairs

