"""Chat with memory: a LangGraph graph that keeps each thread's history in a checkpointer, sends the
model only what fits its window, and (optionally) folds older turns into a running summary.

Window: ``input_tokens - out_tokens`` from the model's config (or ``window_tokens=``), counted with
:func:`module_ai.controls.tokens.estimate_message_tokens` (errs high). The newest turns that fit are sent,
starting on a user message; the system prompt (and summary note) always go first.

Summary (``summarize=True``): when the history no longer fits, before the model answers, the oldest
turns (down to :data:`SUMMARY_KEEP_SHARE` of the budget) are summarized,
together with the previous summary, into ``state["summary"]`` (at most ``summary_max_chars``
characters) and removed from the stored history. The summary is sent as a system note; the room it may
take is reserved in the window up front, so a turn is never both dropped and left unsummarized.
Without ``summarize``, the full history stays in the checkpointer and only the send is trimmed.

Prompts: ``prompts/graph_chat.yaml``; a model whose config says ``prompt_profile: small`` gets the short
``graph_chat.small.yaml`` (``llm`` its summary note, the summary model the summary prompts).

Streaming: ``graph.stream(..., stream_mode="messages")`` yields tokens of every model call; keep those
whose metadata has ``langgraph_node == "model"`` to skip the summary call's tokens.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.chains.context import truncate_to_tokens
from module_ai.chains.rag import prompt_profile_of
from module_ai.controls.tokens import estimate_message_tokens, estimate_tokens
from module_ai.errors import ContextWindowError, require
from module_ai.graphs._common import import_langgraph, messages, window_of
from module_ai.prompts import load_prompt_set
from module_ai.prompts.replies import reply_text

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

__all__ = ["chat_graph", "sqlite_checkpointer"]

SUMMARY_MAX_CHARS = 500
"""Default cap on the running summary; the same number of tokens is reserved in the window."""
SUMMARY_KEEP_SHARE = 0.5
"""When the history overflows, turns are folded until the rest uses at most this share of the
history's budget, so a summary call happens every few turns instead of every turn."""


def sqlite_checkpointer(path: str | os.PathLike[str]) -> BaseCheckpointSaver:
    """A ``SqliteSaver`` on ``path`` (created with its folder); ``":memory:"`` keeps it in RAM.

    The saver is synchronous: for ``ainvoke``/``astream`` pass an ``AsyncSqliteSaver`` instead.

    Example:
        >>> saver = sqlite_checkpointer("data/chat.sqlite")   # doctest: +SKIP
        >>> saver.conn.close()                                 # doctest: +SKIP
    """
    saver_cls = require("langgraph.checkpoint.sqlite", "graph").SqliteSaver
    if str(path) != ":memory:":
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        path = Path(path).expanduser()
    return saver_cls(sqlite3.connect(str(path), check_same_thread=False))


def chat_graph(
    llm: Any,
    *,
    checkpointer: Any = None,
    system_prompt: str | None = None,
    summarize: bool = False,
    lang: str = "zh",
    window_tokens: int | None = None,
    summary_llm: Any = None,
    summary_max_chars: int = SUMMARY_MAX_CHARS,
    token_counter: Callable[[list], int] = estimate_message_tokens,
    prompt_profile: str | None = None,
) -> CompiledStateGraph:
    """Build a compiled chat graph with memory per ``thread_id``.

    Args:
        llm: any LangChain chat model (its module_ai config gives the window).
        checkpointer: ``None`` in-memory; a path (str/Path) for SQLite; ``False`` for no memory; or any
            LangGraph checkpointer.
        system_prompt: sent first on every turn.
        summarize: fold turns that fall out of the window into a running summary.
        lang: ``zh`` or ``en``, the language of the summary prompts.
        window_tokens: override the model's ``input_tokens - out_tokens``.
        summary_llm: model for summaries (default ``llm``).
        summary_max_chars: cap on the summary length (and tokens reserved for it).
        token_counter: ``messages -> tokens``.
        prompt_profile: ``default`` or ``small`` for both models; ``None`` takes each model's
            ``prompt_profile`` from its config.

    Raises:
        ContextWindowError: at invoke time, when the newest user message alone does not fit.

    Example:
        >>> graph = chat_graph(reg.chat("qwen3-4b"), checkpointer="chat.sqlite")     # doctest: +SKIP
        >>> cfg = {"configurable": {"thread_id": "u1"}}
        >>> graph.invoke({"messages": [("user", "我叫小明")]}, cfg)                   # doctest: +SKIP
        >>> graph.invoke({"messages": [("user", "我叫什么？")]}, cfg)["messages"][-1].content  # doctest: +SKIP
    """
    lg = import_langgraph()
    prompts = load_prompt_set("graph_chat", lang, profile=prompt_profile or prompt_profile_of(llm))
    window = window_of(llm, window_tokens)
    # tokens held back for the summary note: the summary (<= 1 token per char) + the note's framing
    reserve = summary_max_chars + estimate_tokens(prompts["summary_note"]) + 4 if summarize else 0
    plan = _Plan(system_prompt, prompts, window, reserve, token_counter)

    def model_node(state: dict, config) -> dict:
        prompt = plan.prompt(state.get("messages", []), state.get("summary", ""))
        return {"messages": [llm.invoke(prompt, config)]}

    builder = lg.StateGraph(_state_class())
    builder.add_node("model", model_node)
    if summarize:
        summary_window = window if summary_llm is None else window_of(summary_llm)
        summary_prompts = prompts if summary_llm is None else load_prompt_set(
            "graph_chat", lang, profile=prompt_profile or prompt_profile_of(summary_llm))
        summarizer = _summarize_node(plan, summary_llm or llm, summary_prompts, summary_max_chars, summary_window)
        builder.add_node("summarize", summarizer)
        builder.add_edge(lg.START, "summarize")
        builder.add_edge("summarize", "model")
    else:
        builder.add_edge(lg.START, "model")
    builder.add_edge("model", lg.END)
    return builder.compile(checkpointer=_checkpointer(checkpointer), name="module_ai_chat")


class _Plan:
    """Decides what is sent: system note + the newest turns that fit the window."""

    def __init__(self, system_prompt, prompts, window, reserve, counter) -> None:
        self.system_prompt, self.prompts = system_prompt, prompts
        self.window, self.reserve, self.counter = window, reserve, counter

    def system(self, summary: str) -> list:
        from langchain_core.messages import SystemMessage

        parts = [self.system_prompt] if self.system_prompt else []
        if summary:
            parts.append(self.prompts["summary_note"].format(summary=summary))
        return [SystemMessage(content="\n\n".join(parts))] if parts else []

    def split(self, history: list, summary: str, share: float = 1.0) -> tuple[list, list]:
        """(dropped, kept): kept are the newest turns that fit ``share`` of the history's budget,
        starting on a user message."""
        from langchain_core.messages import trim_messages

        if self.window is None:
            return [], list(history)
        fixed = self.counter(self.system("")) + self.reserve if self.reserve else self.counter(self.system(summary))
        budget = int((self.window - fixed) * share)
        kept = trim_messages(history, max_tokens=max(budget, 0), token_counter=self.counter,
                             strategy="last", start_on="human", allow_partial=False) if budget > 0 else []
        if not kept and history and share == 1.0:
            need = self.counter(history[-1:])
            raise ContextWindowError(
                f"the last message needs about {need} tokens but only {max(budget, 0)} are left of the "
                f"window ({self.window} = input_tokens - out_tokens, minus the system prompt and summary); "
                "shorten the message or use a model with a larger input_tokens")
        cut = len(history) - len(kept)  # trim_messages(strategy="last") keeps a suffix
        return list(history[:cut]), list(history[cut:])

    def prompt(self, history: list, summary: str) -> list:
        return self.system(summary) + self.split(history, summary)[1]


def _summarize_node(plan: _Plan, llm: Any, prompts: dict, max_chars: int, window: int | None):
    def summarize(state: dict, config) -> dict:
        from langchain_core.messages import RemoveMessage

        history, summary = state.get("messages", []), state.get("summary", "")
        dropped = plan.split(history, summary)[0]
        if not dropped:
            return {}
        more, kept = plan.split(history, summary, SUMMARY_KEEP_SHARE)
        dropped = more if kept else dropped
        dialogue = _fit_dialogue(dropped, prompts, summary, window)
        user = prompts["summary_user"].format(summary=summary or prompts["empty_summary"], dialogue=dialogue,
                                              max_chars=max_chars)
        new = reply_text(llm.invoke(messages(prompts["summary_system"], user), config))[:max_chars]
        return {"summary": new or summary, "messages": [RemoveMessage(id=m.id) for m in dropped]}

    return summarize


def _fit_dialogue(dropped: list, prompts: dict, summary: str, window: int | None) -> str:
    """The dropped turns as text; its newest part only when it does not fit the summary model."""
    dialogue = "\n".join(f"{prompts.get(m.type, m.type)}: {reply_text(m)}" for m in dropped)
    if window is None:
        return dialogue
    room = window - estimate_tokens(prompts["summary_system"] + prompts["summary_user"] + summary) - 16
    if room <= 0:
        raise ContextWindowError(f"the summary prompt does not fit the summary model's window ({window} "
                                 "tokens); use a summary_llm with a larger input_tokens or a shorter "
                                 "summary_max_chars")
    tail = len(truncate_to_tokens(dialogue[::-1], room))
    return dialogue[len(dialogue) - tail:]


def _state_class():
    from langgraph.graph import MessagesState

    class ChatState(MessagesState, total=False):
        summary: str

    return ChatState


def _checkpointer(value: Any):
    if value is None:
        from langgraph.checkpoint.memory import InMemorySaver

        return InMemorySaver()
    if value is False:
        return None
    if isinstance(value, (str, os.PathLike)):
        return sqlite_checkpointer(value)
    return value
