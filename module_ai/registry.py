"""Registry: model name -> config -> built LangChain object (lazy, cached).

Example:
    >>> from module_ai import load_registry
    >>> reg = load_registry("configs")                    # doctest: +SKIP
    >>> llm = reg.chat("qwen3-4b")                         # doctest: +SKIP
    >>> emb = reg.embeddings("minilm")                     # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.config import CONFIG_SUFFIXES, ModelConfig, load_config_file
from module_ai.errors import ConfigError, ModuleAIError, UnknownModelError

if TYPE_CHECKING:
    from langchain_core.documents import BaseDocumentCompressor
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

__all__ = ["BUILTIN_CONFIG_DIR", "DEFAULT_CONFIG_DIR", "Registry", "load_registry"]

DEFAULT_CONFIG_DIR = "configs"


class Registry:
    """Named model configs and the LangChain objects built from them.

    Objects are built on first use and cached per (kind, name) when no overrides are given, so
    every caller shares one client (and one concurrency limit) per model.
    """

    def __init__(self, configs: dict[str, ModelConfig], sources: dict[str, str] | None = None) -> None:
        self._configs = dict(configs)
        self._sources = dict(sources or {})
        self._cache: dict[tuple[str, str], Any] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Registry({len(self._configs)} models: {', '.join(sorted(self._configs))})"

    def __contains__(self, name: object) -> bool:
        return name in self._configs

    def names(self, model_type: str | None = None) -> list[str]:
        """Sorted model names, optionally only those of one ``model_type``."""
        return sorted(n for n, c in self._configs.items() if model_type in (None, c.model_type))

    def config(self, name: str) -> ModelConfig:
        """The validated config of ``name``."""
        try:
            return self._configs[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none: the registry is empty)"
            raise UnknownModelError(f"no model named '{name}'; known models: {known}", model=name) from None

    def source(self, name: str) -> str | None:
        """The file the config of ``name`` came from."""
        return self._sources.get(name)

    def chat(self, name: str, **overrides: Any) -> BaseChatModel:
        """A LangChain ``BaseChatModel`` for ``name`` (with ``fallbacks`` attached when configured).

        Overrides replace config fields for this object only, e.g. ``temperature=0``.
        """
        return self._build("chat", name, overrides)

    def embeddings(self, name: str, **overrides: Any) -> Embeddings:
        """A LangChain ``Embeddings`` for ``name``."""
        return self._build("embedding", name, overrides)

    def reranker(self, name: str, **overrides: Any) -> BaseDocumentCompressor:
        """A LangChain ``BaseDocumentCompressor`` that reranks with ``name``.

        Reranker settings are overrides too, as with ``CohereRerank(top_n=3)``:
        ``reg.reranker("gte-rerank-v2", top_n=2, score_threshold=0.3)`` (see ``options`` in README).
        """
        return self._build("rerank", name, _rerank_overrides(self.config(name), overrides))

    def check(self, name: str) -> dict[str, Any]:
        """Reach the model's server (or load the local model) and report; never raises for I/O.

        Returns:
            ``{"name", "ok", "latency_ms", "found", "error"}``; ``found`` says what was seen (models
            listed by the server, or the embedding dimension).
        """
        from module_ai.backends import backend_module

        cfg = self.config(name)
        start = time.perf_counter()
        try:
            if cfg.model_type == "rerank":  # rerank endpoints serve no /models: rerank one document
                found = _probe_rerank(self.reranker(name))
            else:
                found = backend_module(cfg.server_type, cfg.engine).check(cfg, self, self.source(name))
            ok, error = True, None
        except ModuleAIError as exc:
            found, ok, error = None, False, str(exc)
        except Exception as exc:  # noqa: BLE001 - check is a diagnostic: it reports, never raises
            found, ok, error = None, False, f"{type(exc).__name__}: {exc}"
        latency = round((time.perf_counter() - start) * 1000, 1)
        return {"name": name, "ok": ok, "latency_ms": latency, "found": found, "error": error}

    def _build(self, kind: str, name: str, overrides: dict[str, Any]) -> Any:
        cfg = self._typed_config(name, kind)
        if overrides:
            cfg = _with_overrides(cfg, overrides, self.source(name))
            return self._construct(kind, cfg, name)
        key = (kind, name)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._construct(kind, cfg, name)
            return self._cache[key]

    def _construct(self, kind: str, cfg: ModelConfig, name: str) -> Any:
        return self.build(kind, cfg, self.source(name))

    def build(self, kind: str, cfg: ModelConfig, path: str | None = None) -> Any:
        """Build a new (uncached) LangChain object of ``kind`` for ``cfg``: the one builder table.

        ``kind`` is a ``model_type`` (chat, embedding, rerank); a chat config's ``fallbacks`` are
        attached here. Rerankers call this for the chat/embedding model they run on.
        """
        obj = _builder(kind)(kind, cfg, self, path)
        if kind == "chat" and cfg.fallbacks:  # still a chat model: bind_tools/with_structured_output keep them
            from module_ai.backends._fallbacks import ChatWithFallbacks

            obj = ChatWithFallbacks(runnable=obj, fallbacks=[self.chat(name) for name in cfg.fallbacks])
        return obj

    def _typed_config(self, name: str, kind: str) -> ModelConfig:
        cfg = self.config(name)
        if cfg.model_type != kind:
            wanted = self.names(kind)
            raise UnknownModelError(
                f"is a {cfg.model_type} model, not {_article(kind)} {kind} model; {kind} models: "
                f"{', '.join(wanted) or 'none'}",
                model=name,
                path=self.source(name),
                field="model_type",
            )
        return cfg


def _build_backend(kind: str, cfg: ModelConfig, registry: Registry, path: str | None) -> Any:
    from module_ai.backends import build

    return build(kind, cfg, registry, path)


def _build_reranker(kind: str, cfg: ModelConfig, registry: Registry, path: str | None) -> Any:
    from module_ai.rerank import build_reranker

    return build_reranker(cfg, registry, path)


MODEL_BUILDERS = {"chat": _build_backend, "embedding": _build_backend, "rerank": _build_reranker}
"""``model_type`` -> builder ``(kind, cfg, registry, path)``; chat and embedding dispatch on ``server_type``."""


def _builder(kind: str) -> Any:
    return MODEL_BUILDERS[kind]


def _probe_rerank(reranker: Any) -> dict[str, Any]:
    """Rerank one document, the request every rerank endpoint serves."""
    from module_ai.rerank import rerank_texts

    ranked = rerank_texts(reranker, "ping", ["ping"])
    return {"reranked_documents": len(ranked), "score": round(ranked[0][1], 4) if ranked else None}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _rerank_overrides(cfg: ModelConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    """Move reranker settings (``top_n``, ``score_threshold`` ...) given as overrides into ``options``."""
    settings = {k: v for k, v in overrides.items() if k not in ModelConfig.model_fields}
    if not settings:
        return overrides
    fields = {k: v for k, v in overrides.items() if k in ModelConfig.model_fields}
    fields["options"] = {**cfg.options, **fields.get("options", {}), **settings}
    return fields


def _with_overrides(cfg: ModelConfig, overrides: dict[str, Any], path: str | None) -> ModelConfig:
    from module_ai.config import parse_config

    data = cfg.model_dump(exclude={"name"})
    if cfg.api_key is not None:
        data["api_key"] = cfg.api_key.get_secret_value()
    data.update(overrides)
    return parse_config(data, name=cfg.display_name, path=path)


BUILTIN_CONFIG_DIR = Path(__file__).parent / "configs"
"""Configs shipped inside the package (the embedded default ``minilm``); user files override them."""


def load_registry(path: str | os.PathLike[str] | None = None, *, builtin: bool = True) -> Registry:
    """Load every model config from a folder (``*.json``, ``*.yaml``, ``*.yml``) or one file.

    Args:
        path: folder or file; ``None`` means ``$MODULE_AI_CONFIG``, else ``./configs``.
        builtin: also offer the package's built-in configs (``minilm``) under names the user's
            files do not define.

    Raises:
        ConfigError: a file is invalid, or two files define the same model name.
    """
    explicit = path or os.environ.get("MODULE_AI_CONFIG")
    root = Path(explicit or DEFAULT_CONFIG_DIR)
    if not explicit and not root.exists() and builtin:
        return _with_builtin({}, {})  # no ./configs here: the built-in models still work
    if not root.exists():
        raise ConfigError(
            "config path does not exist; pass a folder of *.json/*.yaml model configs or set MODULE_AI_CONFIG",
            path=str(root),
        )
    files = _config_files(root)
    configs: dict[str, ModelConfig] = {}
    sources: dict[str, str] = {}
    for file in files:
        for name, cfg in load_config_file(file).items():
            if name in configs:
                raise ConfigError(
                    f"duplicate model name '{name}': also defined in {sources[name]}; rename one of them",
                    path=str(file),
                    model=name,
                    field="name",
                )
            configs[name], sources[name] = cfg, str(file)
    registry = _with_builtin(configs, sources) if builtin else Registry(configs, sources)
    _check_fallback_cycles(registry)
    return registry


def _config_files(root: Path) -> list[Path]:
    """The config files of a folder (sub-folders ignored), or ``[root]`` for anything else (checked on read)."""
    if not root.is_dir():
        return [root]
    try:
        return sorted(p for p in root.iterdir() if p.suffix in CONFIG_SUFFIXES and not p.is_dir())
    except OSError as exc:
        raise ConfigError(f"cannot list the config folder: {exc.strerror or exc}", path=str(root)) from exc


def _check_fallback_cycles(registry: Registry) -> None:
    """Refuse a model that falls back to itself, directly or through other models."""
    for start in registry.names():
        path, todo = [start], [(start, iter(registry.config(start).fallbacks))]
        while todo:
            _, children = todo[-1]
            child = next(children, None)
            if child is None:
                todo.pop()
                path.pop()
            elif child in path:
                raise ConfigError(f"fallbacks form a cycle: {' -> '.join([*path[path.index(child):], child])}; "
                                  "remove one of them", path=registry.source(start), model=start, field="fallbacks")
            elif child in registry:
                path.append(child)
                todo.append((child, iter(registry.config(child).fallbacks)))


def _with_builtin(configs: dict[str, ModelConfig], sources: dict[str, str]) -> Registry:
    for file in sorted(BUILTIN_CONFIG_DIR.glob("*.json")):
        for name, cfg in load_config_file(file).items():
            if name not in configs:
                configs[name], sources[name] = cfg, str(file)
    return Registry(configs, sources)
