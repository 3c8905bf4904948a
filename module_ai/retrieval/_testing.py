"""Deterministic fake embeddings for tests and examples (no model, no network).

``HashingEmbeddings`` hashes keyword tokens into a fixed number of dimensions (a bag of words), so
texts that share words are close: good enough to test ranking, fusion and caching. It counts calls
and embedded texts, and can sleep per call to simulate a slow server.
"""

from __future__ import annotations

import hashlib
import threading
import time

from langchain_core.embeddings import Embeddings

__all__ = ["HashingEmbeddings"]


class HashingEmbeddings(Embeddings):
    """Bag-of-hashed-tokens embeddings that count their calls.

    Args:
        size: vector dimensions.
        delay: seconds to sleep in every ``embed_documents`` call.
        model: name reported as ``model`` (used as the default embedding model name).

    Example:
        >>> emb = HashingEmbeddings(size=8); len(emb.embed_query("机器学习")), emb.query_calls
        (8, 1)
    """

    def __init__(self, size: int = 64, *, delay: float = 0.0, model: str = "hashing-test") -> None:
        self.size = size
        self.delay = delay
        self.model = model
        self.document_calls = 0
        self.query_calls = 0
        self.texts_embedded = 0
        self._lock = threading.Lock()

    def _vector(self, text: str) -> list[float]:
        from module_ai.retrieval.tokenizer import tokenize

        vec = [0.0] * self.size
        for tok in tokenize(text) or [text]:
            digest = hashlib.blake2b(tok.encode(), digest_size=8).digest()
            vec[int.from_bytes(digest[:4], "little") % self.size] += 1.0 if digest[4] & 1 else -1.0
        vec[0] += 0.01  # no all-zero vectors
        return vec

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts (counts one call)."""
        with self._lock:
            self.document_calls += 1
            self.texts_embedded += len(texts)
        if self.delay:
            time.sleep(self.delay)
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        """Embed a query (counted separately)."""
        with self._lock:
            self.query_calls += 1
        return self._vector(text)
