"""Multi-turn chat: an LCEL chain with a system prompt, message history and window trimming.

``chat_chain(llm)`` returns a runnable taking ``"你好"`` or ``{"input": "你好"}`` and giving an
``AIMessage`` (cost in ``response_metadata["cost"]``, usage in ``usage_metadata``). Each session's
history lives in a store: :class:`InMemoryHistoryStore` (default) or :class:`SQLiteHistoryStore`
(survives restarts). Before each call the prompt (system + history + new message) is trimmed to the
model's window, ``input_tokens - out_tokens``: the system message and the newest turns stay, the
oldest turns go (the stored history is kept whole).

Example:
    >>> from module_ai import chat_chain, load_registry          # doctest: +SKIP
    >>> chat = chat_chain(load_registry().chat("qwen3-4b"), history="chats.db")    # doctest: +SKIP
    >>> cfg = {"configurable": {"session_id": "user-42"}}          # doctest: +SKIP
    >>> chat.invoke("我叫小王", config=cfg)                         # doctest: +SKIP
    >>> for chunk in chat.stream("我叫什么？", config=cfg):         # doctest: +SKIP
    ...     print(chunk.content, end="")
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory, InMemoryChatMessageHistory
from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
from langchain_core.runnables import Runnable

from module_ai.controls.capabilities import configs_of
from module_ai.controls.limits import trim_to_window, window_tokens

__all__ = [
    "ChatChain", "InMemoryHistoryStore", "SQLiteChatMessageHistory", "SQLiteHistoryStore", "chat_chain",
    "load_system_prompt",
]


def load_system_prompt(lang: str = "zh") -> str:
    """The packaged chat system prompt (``prompts/chat_system.<lang>.txt``; ``$MODULE_AI_PROMPTS`` overrides)."""
    from module_ai.prompts import load_prompt

    return load_prompt("chat_system", lang).strip()


class InMemoryHistoryStore:
    """Session id -> in-memory history (lost when the process ends). Call it with a session id."""

    def __init__(self) -> None:
        self._sessions: dict[str, InMemoryChatMessageHistory] = {}
        self._lock = threading.Lock()

    def __call__(self, session_id: str) -> BaseChatMessageHistory:
        with self._lock:
            return self._sessions.setdefault(session_id, InMemoryChatMessageHistory())

    def sessions(self) -> list[str]:
        """Known session ids."""
        return sorted(self._sessions)


class SQLiteChatMessageHistory(BaseChatMessageHistory):
    """One session's messages in a SQLite file (table ``module_ai_messages``), safe across threads.

    Args:
        path: the database file (created when missing).
        session_id: the conversation.
    """

    def __init__(self, path: str | os.PathLike, session_id: str) -> None:
        self.path = str(Path(path).expanduser())
        self.session_id = session_id
        _init_db(self.path)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        with _closing(self._connect()) as db:
            rows = db.execute("SELECT message FROM module_ai_messages WHERE session_id = ? ORDER BY id",
                              (self.session_id,)).fetchall()
        return messages_from_dict([json.loads(row[0]) for row in rows])

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        rows = [(self.session_id, json.dumps(message_to_dict(m), ensure_ascii=False)) for m in messages]
        with _closing(self._connect()) as db, db:
            db.executemany("INSERT INTO module_ai_messages (session_id, message) VALUES (?, ?)", rows)

    def clear(self) -> None:
        with _closing(self._connect()) as db, db:
            db.execute("DELETE FROM module_ai_messages WHERE session_id = ?", (self.session_id,))


class SQLiteHistoryStore:
    """Session id -> :class:`SQLiteChatMessageHistory` in one SQLite file. Call it with a session id."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _init_db(str(self.path))

    def __call__(self, session_id: str) -> BaseChatMessageHistory:
        return SQLiteChatMessageHistory(self.path, session_id)

    def sessions(self) -> list[str]:
        """Known session ids."""
        with _closing(sqlite3.connect(self.path, timeout=30)) as db:
            return [r[0] for r in db.execute("SELECT DISTINCT session_id FROM module_ai_messages ORDER BY 1")]


class _closing:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.db.close()


def _init_db(path: str) -> None:
    """Create the table if missing (checked every time: the file may have been deleted since)."""
    with _closing(sqlite3.connect(path, timeout=30)) as db, db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS module_ai_messages (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                   "session_id TEXT NOT NULL, message TEXT NOT NULL, "
                   "created REAL NOT NULL DEFAULT (julianday('now')))")
        db.execute("CREATE INDEX IF NOT EXISTS module_ai_messages_session ON module_ai_messages (session_id, id)")


def _store_for(history: Any) -> Callable[[str], BaseChatMessageHistory]:
    if history is None or history == "memory":
        return InMemoryHistoryStore()
    if isinstance(history, (str, os.PathLike)):
        return SQLiteHistoryStore(history)
    if callable(history):
        return history
    raise TypeError("history must be None, 'memory', a SQLite file path or a callable session_id -> history")


class ChatChain(Runnable):
    """Runs ``prompt | trim | llm`` with the session's history and appends each new turn to it.

    Built by :func:`chat_chain`. Input: ``str`` or ``{"input": str}``; output: the model's message.
    The session comes from ``config["configurable"]["session_id"]`` (else the default).
    """

    def __init__(self, chain: Any, store: Callable[[str], BaseChatMessageHistory], session_id: str) -> None:
        self.chain, self.store, self.session_id = chain, store, session_id

    @property
    def config_specs(self) -> list:
        from langchain_core.runnables import ConfigurableFieldSpec

        return [ConfigurableFieldSpec(id="session_id", annotation=str, name="Session ID", default=self.session_id,
                                      description="Conversation id; each has its own history.", is_shared=True)]

    def _prepare(self, value: Any, config: Any) -> tuple[BaseChatMessageHistory, Any, dict]:
        from langchain_core.messages import HumanMessage

        text = value.get("input") if isinstance(value, dict) else value
        session = ((config or {}).get("configurable") or {}).get("session_id") or self.session_id
        history = self.store(session)
        human = text if isinstance(text, BaseMessage) else HumanMessage(content=text)
        return history, human, {"input": [human], "history": history.messages}

    def invoke(self, value: Any, config: Any = None, **kwargs: Any) -> Any:
        history, human, inputs = self._prepare(value, config)
        output = self.chain.invoke(inputs, config, **kwargs)
        history.add_messages([human, _as_message(output)])
        return output

    async def ainvoke(self, value: Any, config: Any = None, **kwargs: Any) -> Any:
        history, human, inputs = self._prepare(value, config)
        output = await self.chain.ainvoke(inputs, config, **kwargs)
        await history.aadd_messages([human, _as_message(output)])
        return output

    def stream(self, value: Any, config: Any = None, **kwargs: Any) -> Iterator[Any]:
        history, human, inputs = self._prepare(value, config)
        whole = None
        for chunk in self.chain.stream(inputs, config, **kwargs):
            whole = chunk if whole is None else whole + chunk
            yield chunk
        if whole is not None:
            history.add_messages([human, _as_message(whole)])

    async def astream(self, value: Any, config: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
        history, human, inputs = self._prepare(value, config)
        whole = None
        async for chunk in self.chain.astream(inputs, config, **kwargs):
            whole = chunk if whole is None else whole + chunk
            yield chunk
        if whole is not None:
            await history.aadd_messages([human, _as_message(whole)])


def _as_message(output: Any) -> BaseMessage:
    from langchain_core.messages import AIMessage, AIMessageChunk, message_chunk_to_message

    if isinstance(output, AIMessageChunk):
        return message_chunk_to_message(output)
    return output if isinstance(output, BaseMessage) else AIMessage(content=str(output))


def chat_chain(llm: Any, system_prompt: str | os.PathLike | None = None, *, lang: str = "zh",
               history: Any = None, session_id: str = "default", max_input_tokens: int | None = None) -> ChatChain:
    """A chat runnable with a system prompt, per-session history and trimming to the window.

    Args:
        llm: a chat model (e.g. ``registry.chat("qwen3-4b")``; any LangChain chat model works).
        system_prompt: the system message text, or a path to a text file; ``None`` uses the packaged
            prompt for ``lang`` (override it with ``$MODULE_AI_PROMPTS/chat_system.<lang>.txt``).
        lang: ``zh`` or ``en`` (only used for the packaged prompt).
        history: ``None``/``"memory"`` (in memory), a SQLite file path, or a callable
            ``session_id -> BaseChatMessageHistory`` (e.g. a store from this module).
        session_id: the session used when the call's config gives none
            (``config={"configurable": {"session_id": ...}}``).
        max_input_tokens: the prompt budget; default ``input_tokens - out_tokens`` of the model.

    Returns:
        A :class:`ChatChain`: input ``str`` or ``{"input": str}``, output the model's ``AIMessage``.

    Example:
        >>> chat = chat_chain(registry.chat("qwen3-4b"), history="chats.db")   # doctest: +SKIP
        >>> chat.invoke("你好", config={"configurable": {"session_id": "u1"}}).content   # doctest: +SKIP
    """
    from langchain_core.messages import SystemMessage
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
    from langchain_core.runnables import RunnableLambda

    if isinstance(system_prompt, os.PathLike):
        system_prompt = Path(system_prompt).read_text(encoding="utf-8").strip()
    system = load_system_prompt(lang) if system_prompt is None else system_prompt
    prompt = ChatPromptTemplate.from_messages(
        [SystemMessage(content=system), MessagesPlaceholder("history"), MessagesPlaceholder("input")])
    cfg = next(iter(configs_of(llm)), None)
    budget = max_input_tokens if max_input_tokens is not None else window_tokens(cfg)
    trim = RunnableLambda(lambda value: trim_to_window(value.to_messages(), cfg, max_tokens=budget),
                          name="trim_to_window")
    return ChatChain(prompt | trim | llm, _store_for(history), session_id)
