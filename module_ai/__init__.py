"""module_ai: engineering use of LLMs on LangChain, made easy and right.

One registry reads model configs in the seed's JSON/YAML format and returns real LangChain objects;
on top sit RAG, rerank, chat chains, cost and rate controls, LangGraph workflows and a CLI.

Example:
    >>> from module_ai import load_registry
    >>> reg = load_registry("configs")          # doctest: +SKIP
    >>> reg.chat("qwen3-4b").invoke("你好")       # doctest: +SKIP

Heavy parts (LangChain partners, torch, llama.cpp, bm25s, faiss) load on first use: names listed in
``_LAZY`` are imported when first accessed, so ``import module_ai`` stays light.
"""

from __future__ import annotations

from module_ai._lazy import lazy_exports
from module_ai.config import ModelConfig
from module_ai.controls.tokens import estimate_tokens
from module_ai.errors import (
    AuthenticationError,
    BackendError,
    BadRequestError,
    BudgetExceededError,
    CapabilityError,
    ConfigError,
    ContextWindowError,
    KnowledgeBaseError,
    MediaError,
    MissingAPIKeyError,
    MissingDependencyError,
    ModelNotFoundError,
    ModuleAIError,
    PermissionDeniedError,
    SharedStateError,
    UnknownModelError,
)
from module_ai.registry import Registry, load_registry

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    # RAG: knowledge base, fusion, evaluation, the answer chain
    "KnowledgeBase": "module_ai.retrieval",
    "HybridRetriever": "module_ai.retrieval",
    "evaluate_answers": "module_ai.chains.answer_eval",
    "evaluate_retrieval": "module_ai.retrieval",
    "load_documents": "module_ai.retrieval",
    "rrf_fuse": "module_ai.retrieval",
    "split_documents": "module_ai.retrieval",
    "weighted_fuse": "module_ai.retrieval",
    "check_groundedness": "module_ai.chains.grounding",
    "format_context": "module_ai.chains.rag",
    "rag_chain": "module_ai.chains.rag",
    # knowledge base on Milvus (Lite file or cluster URI)
    "MilvusConfig": "module_ai.retrieval.milvus",
    "MilvusKnowledgeBase": "module_ai.retrieval.milvus",
    # rerank
    "BaseReranker": "module_ai.rerank",
    "CrossEncoderReranker": "module_ai.rerank",
    "EmbeddingReranker": "module_ai.rerank",
    "HTTPReranker": "module_ai.rerank",
    "LLMReranker": "module_ai.rerank",
    "arerank_texts": "module_ai.rerank",
    "rerank_texts": "module_ai.rerank",
    # LangGraph workflows
    "chat_graph": "module_ai.graphs",
    "rag_agent": "module_ai.graphs",
    "sqlite_checkpointer": "module_ai.graphs",
    # multimodal input
    "audio_part": "module_ai.chains.multimodal",
    "check_messages": "module_ai.controls.capabilities",
    "image_part": "module_ai.chains.multimodal",
    "multimodal_message": "module_ai.chains.multimodal",
    "video_part": "module_ai.chains.multimodal",
    "with_capability_check": "module_ai.controls.capabilities",
    # engineering controls: usage and cost, budgets, limits, the chat chain
    "ChatChain": "module_ai.chains.chat",
    "InMemoryHistoryStore": "module_ai.chains.chat",
    "SQLiteHistoryStore": "module_ai.chains.chat",
    "chat_chain": "module_ai.chains.chat",
    "limiter_for": "module_ai.controls.limits",
    "trim_to_window": "module_ai.controls.limits",
    "UsageTracker": "module_ai.controls.usage",
    "configure_shared": "module_ai.controls.shared_state",
    "read_usage_log": "module_ai.controls.usage",
    "track_usage": "module_ai.controls.usage",
    "bench_model": "module_ai.controls.bench",
    # prompts
    "load_prompt": "module_ai.prompts",
}

# every public name, eager and lazy (sorted; pinned by tests/test_public_api.py)
__all__ = [
    "AuthenticationError",
    "BackendError",
    "BadRequestError",
    "BaseReranker",
    "BudgetExceededError",
    "CapabilityError",
    "ChatChain",
    "ConfigError",
    "ContextWindowError",
    "CrossEncoderReranker",
    "EmbeddingReranker",
    "HTTPReranker",
    "HybridRetriever",
    "InMemoryHistoryStore",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "LLMReranker",
    "MediaError",
    "MilvusConfig",
    "MilvusKnowledgeBase",
    "MissingAPIKeyError",
    "MissingDependencyError",
    "ModelConfig",
    "ModelNotFoundError",
    "ModuleAIError",
    "PermissionDeniedError",
    "Registry",
    "SQLiteHistoryStore",
    "SharedStateError",
    "UnknownModelError",
    "UsageTracker",
    "arerank_texts",
    "audio_part",
    "bench_model",
    "chat_chain",
    "chat_graph",
    "check_groundedness",
    "check_messages",
    "configure_shared",
    "estimate_tokens",
    "evaluate_answers",
    "evaluate_retrieval",
    "format_context",
    "image_part",
    "limiter_for",
    "load_documents",
    "load_prompt",
    "load_registry",
    "multimodal_message",
    "rag_agent",
    "rag_chain",
    "read_usage_log",
    "rerank_texts",
    "rrf_fuse",
    "split_documents",
    "sqlite_checkpointer",
    "track_usage",
    "trim_to_window",
    "video_part",
    "weighted_fuse",
    "with_capability_check",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
