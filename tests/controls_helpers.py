"""Helpers for the engineering-controls tests (usage, limits, chat chain, bench).

- `EchoFaultServer`: the fault server, but a chat prompt containing ``#i`` gets a reply of ``i + 1``
  words ending in ``tok{i}``, so order and per-item usage can be checked.
- `fresh_echo()`: the process's EchoFaultServer (started on first use, stopped at exit), reset; each test
  module wraps it in a small ``echo`` fixture.
- `chat_model(url, **fields)`: a registry chat model with a unique name (so limiters never collide).

Every config gets a slightly different default ``timeout``: langchain-openai caches one async httpx
client per (base_url, timeout) for the whole process, and a pooled connection opened in one event loop
fails with "Event loop is closed" in the next (pytest-asyncio gives each test its own loop).
"""

from __future__ import annotations

import atexit
import itertools
import re
import uuid
from typing import Any

from module_ai.config import ModelConfig
from module_ai.controls.limits import limiter_for
from module_ai.registry import Registry
from tests.conftest import TEST_API_KEY
from tests.servers.fault_openai import FaultServer

_ITEM = re.compile(r"#(\d+)")
_timeouts = itertools.count(1)


class EchoFaultServer(FaultServer):
    """Replies to a prompt containing ``#i`` with ``i + 1`` words: ``tok0 ... tok{i}``."""

    async def _chat(self, w, body, cfg, fault):
        messages = body.get("messages") or [{}]
        match = _ITEM.search(str(messages[-1].get("content", "")))
        if match:
            cfg = dict(cfg, reply_tokens=int(match.group(1)) + 1)
        return await super()._chat(w, body, cfg, fault)


_server: EchoFaultServer | None = None


def fresh_echo() -> EchoFaultServer:
    """The shared EchoFaultServer, reset (recordings cleared, default settings)."""
    global _server
    if _server is None:
        _server = EchoFaultServer(TEST_API_KEY)
        atexit.register(_server.stop)
    _server.reset()
    return _server


def config(url: str, name: str | None = None, **fields: Any) -> ModelConfig:
    """A chat config for the fault server (key from ``$MODULE_AI_TEST_KEY``)."""
    data = {"model_type": "chat", "server_type": "openai", "model": "fault-model", "url": url,
            "api_key": "${MODULE_AI_TEST_KEY}", "timeout": 60 + next(_timeouts) / 1000, **fields}
    return ModelConfig(name=name or f"m-{uuid.uuid4().hex[:8]}", **data)


def registry(*configs: ModelConfig) -> Registry:
    return Registry({c.display_name: c for c in configs})


def chat_model(url: str, *, fast_retries: bool = True, **fields: Any):
    """A managed chat model with a unique name; retries wait milliseconds unless Retry-After says more."""
    cfg = config(url, **fields)
    llm = registry(cfg).chat(cfg.display_name)
    if fast_retries:
        limiter_for(cfg).configure(initial=0.001, max_delay=0.01, jitter=0.0)
    return llm


def item(i: int) -> str:
    return f"请回答第 #{i} 个问题"
