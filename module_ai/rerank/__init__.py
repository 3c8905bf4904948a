"""Rerankers: one LangChain ``BaseDocumentCompressor`` over provider APIs, local models and LLMs."""

from __future__ import annotations

from typing import Any

from module_ai.config import ModelConfig
from module_ai.errors import ConfigError

__all__ = ["build_reranker"]


def build_reranker(cfg: ModelConfig, registry: Any, path: str | None):
    """Build the reranker for a ``model_type: rerank`` config (dispatch on ``rerank_style``)."""
    raise ConfigError(f"rerank_style {cfg.rerank_style!r} is not supported yet", path=path,
                      model=cfg.display_name, field="rerank_style")
