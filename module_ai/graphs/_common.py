"""Shared pieces of the graphs: prompt templates, the model's window, judgement parsing, text cleanup."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from module_ai.errors import require

__all__ = ["import_langgraph", "messages", "window_of"]


def window_of(llm: Any, explicit: int | None = None) -> int | None:
    """Tokens a prompt may use: ``explicit``, else ``input_tokens - out_tokens`` of the model's config.

    ``None`` when neither is known (the graphs then send everything and let the server decide).
    """
    if explicit is not None:
        return explicit
    from module_ai.controls.capabilities import configs_of

    for cfg in configs_of(llm):
        if cfg.input_tokens:
            return cfg.input_tokens - (cfg.out_tokens or 0)
    return None


def import_langgraph() -> ModuleType:
    """``langgraph.graph`` (raises MissingDependencyError naming the ``graph`` extra)."""
    return require("langgraph.graph", "graph")


def messages(system: str, user: str) -> list:
    """A system + human message pair."""
    from langchain_core.messages import HumanMessage, SystemMessage

    return [SystemMessage(content=system), HumanMessage(content=user)]
