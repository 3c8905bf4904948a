"""In-process rerankers: a sentence-transformers ``CrossEncoder`` and embedding similarity.

- :class:`CrossEncoderReranker` loads a cross-encoder from a local folder (e.g. a downloaded
  ``BAAI/bge-reranker-v2-m3``) once per process, offline. ``raw_score`` is the model's logit,
  ``relevance_score`` its sigmoid. One ``CallRecord(kind="rerank")`` per call, tokens estimated.
- :class:`EmbeddingReranker` ranks by cosine similarity between the query and each text embedded by
  any LangChain ``Embeddings`` (e.g. the registry's ``minilm``): ``raw_score`` is the cosine,
  ``relevance_score`` is ``(cos + 1) / 2``. A bi-encoder is a weaker reranker than a cross-encoder;
  it is the offline fallback that always works. Usage is reported by the embedding model itself;
  passage vectors are cached (LRU), so a passage seen before costs nothing.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any

from pydantic import Field, PrivateAttr

from module_ai.controls.events import CallRecord, emit
from module_ai.errors import BackendError, ModuleAIError, require
from module_ai.rerank._base import BaseReranker
from module_ai.rerank._scores import Judgement, normalize
from module_ai.rerank._styles import request_tokens

__all__ = ["CrossEncoderReranker", "EmbeddingReranker", "load_cross_encoder"]

_loaded: dict[tuple, tuple[Any, threading.Lock]] = {}
_load_lock = threading.Lock()


def load_cross_encoder(model_dir: str, *, max_length: int | None = None, device: str | None = None,
                       label: str | None = None) -> tuple[Any, threading.Lock]:
    """Load (once per process, offline) a sentence-transformers ``CrossEncoder``; returns it and its lock."""
    key = (model_dir, max_length, device)
    with _load_lock:
        if key not in _loaded:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            st = require("sentence_transformers", "local", model=label)
            try:
                model = st.CrossEncoder(model_dir, max_length=max_length, device=device)
            except Exception as exc:
                raise BackendError(f"could not load cross-encoder from {model_dir}: {exc}", model=label) from exc
            _loaded[key] = (model, threading.Lock())
        return _loaded[key]


class CrossEncoderReranker(BaseReranker):
    """Scores (query, text) pairs with a local cross-encoder; scores are logits through sigmoid.

    Example:
        >>> rr = CrossEncoderReranker(model_path="/models/bge-reranker-v2-m3")   # doctest: +SKIP
        >>> rr.rank("熊猫吃什么", ["竹子", "汽车"])                                # doctest: +SKIP
    """

    model_path: str
    """Folder holding the cross-encoder (config, weights, tokenizer)."""
    max_length: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=32, gt=0)
    device: str | None = None
    module_ai_config: Any = Field(default=None, exclude=True, repr=False)

    def _judge(self, query: str, texts: list[str], callbacks: Any = None) -> list[Judgement]:
        label = self.name or self.model_path
        model, lock = load_cross_encoder(self.model_path, max_length=self.max_length, device=self.device,
                                         label=label)
        start = time.perf_counter()
        try:
            with lock:
                logits = _predict_logits(model, [(query, text) for text in texts], self.batch_size)
        except Exception as exc:
            raise BackendError(f"cross-encoder {self.model_path} failed: {type(exc).__name__}: {exc}",
                               model=label) from exc
        if getattr(logits, "ndim", 1) != 1:
            raise BackendError(f"cross-encoder {self.model_path} returns {logits.shape[-1]} labels per pair; "
                               "a reranker needs one score (num_labels=1)", model=label)
        raw = [float(x) for x in logits]
        self._record(query, texts, start)
        return [Judgement(r, s) for r, s in zip(raw, normalize(raw, "logit"))]

    def _record(self, query: str, texts: list[str], start: float) -> None:
        from module_ai.controls.cost import call_cost

        cfg = self.module_ai_config
        tokens = request_tokens(query, texts)
        emit(CallRecord(model=self.name or self.model_path, kind="rerank", input_tokens=tokens, estimated=True,
                        cost=call_cost(cfg, tokens, 0) if cfg is not None else 0.0,
                        currency=cfg.currency if cfg is not None else "CNY",
                        latency_s=time.perf_counter() - start, timestamp=time.time(),
                        extra={"documents": len(texts), "local": True}))


def _predict_logits(model: Any, pairs: list[tuple[str, str]], batch_size: int) -> Any:
    """Raw logits: ``activation_fn`` (sentence-transformers >= 4) or ``activation_fct`` (3.x) = identity."""
    import torch

    common = {"batch_size": batch_size, "show_progress_bar": False, "convert_to_numpy": True}
    try:
        return model.predict(pairs, activation_fn=torch.nn.Identity(), **common)
    except TypeError:
        return model.predict(pairs, activation_fct=torch.nn.Identity(), **common)


class EmbeddingReranker(BaseReranker):
    """Ranks texts by cosine similarity of their embeddings to the query's.

    Passage vectors are kept in an LRU cache (``cache_size`` texts, 0 turns it off): in RAG the same
    passages come back for many questions, and only texts not seen before are embedded.

    Example:
        >>> rr = EmbeddingReranker(embeddings=reg.embeddings("minilm"))    # doctest: +SKIP
        >>> rr.rank("capital of France?", ["Paris is the capital.", "Cats sleep."])  # doctest: +SKIP
        [(0, 0.83), (1, 0.52)]
    """

    embeddings: Any
    """Any LangChain ``Embeddings``."""
    cache_size: int = Field(default=10_000, ge=0)
    """Passage vectors kept (least recently used dropped first)."""

    _cache: OrderedDict = PrivateAttr(default_factory=OrderedDict)
    _cache_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def _judge(self, query: str, texts: list[str], callbacks: Any = None) -> list[Judgement]:
        known, missing = self._lookup(texts)
        with self._failures():
            query_vector = self.embeddings.embed_query(query)
            fresh = self.embeddings.embed_documents(missing) if missing else []
        return _cosine_judgements(query_vector, self._vectors(texts, known, missing, fresh))

    async def _ajudge(self, query: str, texts: list[str], callbacks: Any = None) -> list[Judgement]:
        known, missing = self._lookup(texts)
        with self._failures():
            if missing:
                query_vector, fresh = await asyncio.gather(self.embeddings.aembed_query(query),
                                                           self.embeddings.aembed_documents(missing))
            else:
                query_vector, fresh = await self.embeddings.aembed_query(query), []
        return _cosine_judgements(query_vector, self._vectors(texts, known, missing, fresh))

    def _lookup(self, texts: list[str]) -> tuple[dict[str, Any], list[str]]:
        """Cached vectors (a snapshot) and the texts still to embed."""
        with self._cache_lock:
            known = {t: self._cache[t] for t in texts if t in self._cache}
        return known, [t for t in texts if t not in known]

    def _vectors(self, texts: list[str], known: dict[str, Any], missing: list[str],
                 fresh: list[list[float]]) -> list[Any]:
        known = {**known, **dict(zip(missing, fresh))}
        if self.cache_size:
            with self._cache_lock:
                for text in texts:
                    self._cache[text] = known[text]
                    self._cache.move_to_end(text)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return [known[t] for t in texts]

    @contextmanager
    def _failures(self):
        try:
            yield
        except ModuleAIError:
            raise
        except Exception as exc:
            raise BackendError(f"embedding failed while reranking: {type(exc).__name__}: {exc}",
                               model=self.name) from exc


def _cosine_judgements(query_vector: list[float], vectors: list[list[float]]) -> list[Judgement]:
    import numpy as np

    q = np.asarray(query_vector, dtype=np.float64)
    m = np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1)
    norms = np.linalg.norm(m, axis=1) * (np.linalg.norm(q) or 1.0)
    cosine = (m @ q) / np.where(norms == 0, 1.0, norms)
    raw = [float(c) for c in cosine]
    return [Judgement(r, s) for r, s in zip(raw, normalize(raw, "cosine"))]
