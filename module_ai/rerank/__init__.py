"""Rerankers: one LangChain ``BaseDocumentCompressor`` over provider APIs, local models and LLMs.

Example:
    >>> rr = reg.reranker("gte-rerank-v2")                      # doctest: +SKIP
    >>> top = rr.compress_documents(docs, "问题")  # new Documents, best first  # doctest: +SKIP
    >>> top[0].metadata["relevance_score"], top[0].metadata["raw_score"]   # doctest: +SKIP
    >>> rr.rank("问题", ["文本一", "文本二"])  # [(index, score), ...]      # doctest: +SKIP

Layout:

- ``_base``: :class:`BaseReranker` (``compress_documents``/``rank`` sync and async) and
  :func:`rerank_texts`; the guarantees live in ``_scores`` (order, ties, duplicates, cut, normalization).
- ``_styles``: the HTTP APIs as data (:data:`API_STYLES`) plus pure payload/response/batching functions;
  ``_http``: :class:`HTTPReranker` that drives them.
- ``_local``: :class:`CrossEncoderReranker`, :class:`EmbeddingReranker`; ``_llm``: :class:`LLMReranker`.
- ``_build``: ``build_reranker(cfg, registry, path)``, the dispatch on ``rerank_style``.
"""

from __future__ import annotations

from module_ai.rerank._base import BaseReranker, arerank_texts, rerank_texts
from module_ai.rerank._build import DEFAULT_STYLES, OPTION_KEYS, build_reranker
from module_ai.rerank._http import HTTPReranker
from module_ai.rerank._llm import LLMReranker
from module_ai.rerank._local import CrossEncoderReranker, EmbeddingReranker
from module_ai.rerank._scores import SCALES, normalize
from module_ai.rerank._styles import API_STYLES, ApiStyle

__all__ = [
    "API_STYLES",
    "DEFAULT_STYLES",
    "OPTION_KEYS",
    "SCALES",
    "ApiStyle",
    "BaseReranker",
    "CrossEncoderReranker",
    "EmbeddingReranker",
    "HTTPReranker",
    "LLMReranker",
    "arerank_texts",
    "build_reranker",
    "normalize",
    "rerank_texts",
]
