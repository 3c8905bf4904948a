"""Embedded hybrid knowledge base: loading, Chinese-aware splitting, BM25 + dense search, fusion.

Everything is imported lazily on first attribute access, so ``import module_ai.retrieval`` costs
almost nothing; numpy, bm25s, rjieba, faiss and langchain_core's retriever machinery load only when
an index is built, opened or searched.

Example:
    >>> from module_ai.retrieval import KnowledgeBase  # doctest: +SKIP
    >>> kb = KnowledgeBase.build("docs/", "kb/", embeddings, batch_size=32, max_concurrency=4)  # doctest: +SKIP
    >>> kb.as_retriever(k=5).invoke("怎么重置密码？")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from module_ai._lazy import lazy_exports

if TYPE_CHECKING:
    from module_ai.retrieval.embedded.kb import KnowledgeBase
    from module_ai.retrieval.embedding_cache import EmbeddingCache
    from module_ai.retrieval.evaluate import evaluate_retrieval, load_beir
    from module_ai.retrieval.fusion import RRF_K, normalize_scores, rrf_fuse, weighted_fuse
    from module_ai.retrieval.loaders import SUPPORTED_SUFFIXES, load_documents
    from module_ai.retrieval.protocol import UpdateReport
    from module_ai.retrieval.retriever import HybridRetriever
    from module_ai.retrieval.settings import RetrievalSettings
    from module_ai.retrieval.splitter import split_documents, split_text
    from module_ai.retrieval.tokenizer import tokenize

_EXPORTS = {
    "EmbeddingCache": "module_ai.retrieval.embedding_cache",
    "HybridRetriever": "module_ai.retrieval.retriever",
    "KnowledgeBase": "module_ai.retrieval.embedded.kb",
    "RRF_K": "module_ai.retrieval.fusion",
    "RetrievalSettings": "module_ai.retrieval.settings",
    "SUPPORTED_SUFFIXES": "module_ai.retrieval.loaders",
    "UpdateReport": "module_ai.retrieval.protocol",
    "evaluate_retrieval": "module_ai.retrieval.evaluate",
    "load_beir": "module_ai.retrieval.evaluate",
    "load_documents": "module_ai.retrieval.loaders",
    "normalize_scores": "module_ai.retrieval.fusion",
    "rrf_fuse": "module_ai.retrieval.fusion",
    "split_documents": "module_ai.retrieval.splitter",
    "split_text": "module_ai.retrieval.splitter",
    "tokenize": "module_ai.retrieval.tokenizer",
    "weighted_fuse": "module_ai.retrieval.fusion",
}

__all__ = [
    "RRF_K",
    "SUPPORTED_SUFFIXES",
    "EmbeddingCache",
    "HybridRetriever",
    "KnowledgeBase",
    "RetrievalSettings",
    "UpdateReport",
    "evaluate_retrieval",
    "load_beir",
    "load_documents",
    "normalize_scores",
    "rrf_fuse",
    "split_documents",
    "split_text",
    "tokenize",
    "weighted_fuse",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
