"""LangGraph workflows: chat with memory and a self-checking RAG agent (needs ``module_ai[graph]``).

Example:
    >>> from module_ai.graphs import chat_graph, rag_agent
    >>> chat = chat_graph(reg.chat("qwen3-4b"), checkpointer="chat.sqlite", summarize=True)  # doctest: +SKIP
    >>> agent = rag_agent(reg.chat("qwen3-4b"), kb.as_retriever())                          # doctest: +SKIP

LangGraph itself is imported when a graph is built, so importing this package stays light.
"""

from __future__ import annotations

from module_ai.graphs.chat import chat_graph, sqlite_checkpointer
from module_ai.graphs.rag import DEFAULT_GROUNDED, DEFAULT_RELEVANT, RagState, rag_agent
from module_ai.prompts.replies import parse_judgement

__all__ = [
    "DEFAULT_GROUNDED",
    "DEFAULT_RELEVANT",
    "RagState",
    "chat_graph",
    "parse_judgement",
    "rag_agent",
    "sqlite_checkpointer",
]
