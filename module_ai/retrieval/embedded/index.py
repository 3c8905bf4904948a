"""In-memory search structures of one knowledge-base generation: BM25 (bm25s) and exact dense search.

Dense search is exact: one matrix-vector product plus ``argpartition`` in NumPy, or a FAISS flat index
(``vector_backend="faiss"``, or ``"auto"`` from :data:`FAISS_AUTO_ROWS` rows when faiss is installed).
BLAS and OpenMP are pinned to one thread per query: on small machines parallelism belongs across
queries (see ``perf-anchors.md`` §1). Scores are higher-is-better for every metric (l2 gives the
negative Euclidean distance).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from module_ai.errors import KnowledgeBaseError, require
from module_ai.retrieval.tokenizer import get_tokenizer

if TYPE_CHECKING:
    import numpy as np

__all__ = ["FAISS_AUTO_ROWS", "METRICS", "Candidates", "SearchIndex", "build_bm25"]

METRICS = ("cosine", "ip", "l2")
FAISS_AUTO_ROWS = 1_000_000
"""From this many chunks ``vector_backend="auto"`` uses a FAISS flat index (if faiss is installed)."""


@lru_cache(maxsize=1)
def _controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def one_thread() -> contextlib.AbstractContextManager[Any]:
    """Context manager limiting BLAS/OpenMP pools to one thread (no-op without threadpoolctl)."""
    ctl = _controller()
    return ctl.limit(limits=1) if ctl is not None else contextlib.nullcontext()


def build_bm25(tokens: Sequence[Sequence[str]]) -> Any:
    """Build a bm25s index (Lucene BM25, k1=1.5, b=0.75) from per-chunk token lists.

    The arrays equal ``bm25s.BM25().index(...)``'s; they are computed vectorised
    (:mod:`module_ai.retrieval.embedded.bm25_build`), several times faster than bm25s's loop.
    """
    from module_ai.retrieval.embedded.bm25_build import index_tokens

    return index_tokens(tokens)


def normalize_rows(mat: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """Unit-normalize the rows of a float32 matrix (zero rows stay zero); ``inplace`` reuses ``mat``."""
    import numpy as np

    if inplace and mat.ndim == 2 and mat.dtype == np.float32 and mat.flags.writeable:
        for start in range(0, len(mat), _NORM_BLOCK):  # rows are independent: same bits, small temporaries
            block = mat[start : start + _NORM_BLOCK]
            norms = np.linalg.norm(block, axis=-1, keepdims=True)
            norms[norms == 0] = 1.0
            block /= norms
        return mat
    norms = np.linalg.norm(mat, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    return (mat / norms).astype(np.float32, copy=False)


_NORM_BLOCK = 8192
"""Rows per step of an in-place normalization (the squares of a whole matrix would double its memory)."""


def top_rows(scores: np.ndarray, c: int, *, positive: bool = False) -> np.ndarray:
    """Rows of the ``c`` highest scores, best first (ties by row); only scores > 0 if ``positive``."""
    import numpy as np

    cand = np.flatnonzero(scores > 0) if positive else None
    pool = scores if cand is None else scores[cand]
    if pool.size > c:
        part = np.argpartition(-pool, c - 1)[:c]
    else:
        part = np.arange(pool.size)
    part = part[np.lexsort((part, -pool[part]))]
    return part if cand is None else cand[part]


@dataclass(frozen=True)
class Candidates:
    """Union of both retrievers' candidates for one query (arrays of equal length)."""

    rows: np.ndarray
    bm25: np.ndarray
    dense: np.ndarray
    bm25_rank: np.ndarray
    dense_rank: np.ndarray


class SearchIndex:
    """Immutable search structures over the chunks of one generation.

    Args:
        ids: chunk ids in row order.
        vectors: float32 ``(rows, dims)``, already normalized when ``metric="cosine"``.
        bm25: a bm25s index over the same rows (``None`` when there are no rows).
        metric: ``"cosine"``, ``"ip"`` or ``"l2"``.
        tokenizer: tokenizer settings from the manifest.
        vector_backend: ``"numpy"``, ``"faiss"`` or ``"auto"``.
    """

    def __init__(self, ids: list[str], vectors: np.ndarray, bm25: Any, *, metric: str,
                 tokenizer: dict[str, Any] | None = None, vector_backend: str = "auto") -> None:
        import numpy as np

        if metric not in METRICS:
            raise KnowledgeBaseError(f"metric must be one of {METRICS}, not {metric!r}", field="metric")
        self.ids = ids
        self.row_of = {cid: i for i, cid in enumerate(ids)}
        self.metric = metric
        self.bm25 = bm25
        self.dims = int(vectors.shape[1]) if vectors.ndim == 2 else 0
        self.tokenize = get_tokenizer(tokenizer, query=True)
        self._vocab: dict[str, int] = dict(bm25.vocab_dict) if bm25 is not None else {}
        self._faiss = None
        self.vectors: np.ndarray | None = np.ascontiguousarray(vectors, dtype=np.float32)
        self._sqnorm = (self.vectors**2).sum(axis=1) if metric == "l2" else None
        if self._use_faiss(vector_backend):
            self._faiss = self._build_faiss()
            self.vectors = None  # faiss holds the only copy; rows are reconstructed on demand

    def __len__(self) -> int:
        return len(self.ids)

    def _use_faiss(self, backend: str) -> bool:
        if backend not in ("auto", "numpy", "faiss"):
            raise KnowledgeBaseError(f"vector_backend must be auto, numpy or faiss, not {backend!r}")
        if backend == "faiss":
            require("faiss", "rag")
            return len(self) > 0
        return backend == "auto" and len(self) >= FAISS_AUTO_ROWS and importlib.util.find_spec("faiss") is not None

    def _build_faiss(self) -> Any:
        faiss = require("faiss", "rag")
        faiss.omp_set_num_threads(1)
        index = faiss.IndexFlatL2(self.dims) if self.metric == "l2" else faiss.IndexFlatIP(self.dims)
        index.add(self.vectors)
        return index

    def query_vector(self, vector: Sequence[float]) -> np.ndarray:
        """Check the size of a query embedding and normalize it for cosine."""
        import numpy as np

        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if self.dims and q.shape[0] != self.dims:
            raise KnowledgeBaseError(
                f"query embedding has {q.shape[0]} dimensions, the index has {self.dims}; "
                "open the knowledge base with the embedding model it was built with"
            )
        return normalize_rows(q) if self.metric == "cosine" else q

    def bm25_scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for the query (zeros when no query token is in the vocabulary)."""
        import numpy as np

        ids = [self._vocab[t] for t in self.tokenize(query) if t in self._vocab]
        if not ids or self.bm25 is None:
            return np.zeros(len(self), dtype=np.float32)
        return self.bm25.get_scores_from_ids(ids)

    def dense_at(self, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Dense scores of the given rows only."""
        vecs = self.vectors[rows] if self.vectors is not None else self._faiss.reconstruct_batch(rows)
        dots = vecs @ q
        if self.metric != "l2":
            return dots
        import numpy as np

        return -np.sqrt(np.maximum((vecs**2).sum(axis=1) - 2 * dots + float(q @ q), 0.0))

    def dense_top(self, q: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``c`` best rows by dense score and their scores, best first."""
        import numpy as np

        c = min(c, len(self))
        if c <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        with one_thread():
            if self._faiss is not None:
                dist, idx = self._faiss.search(q.reshape(1, -1), c)
                keep = idx[0] >= 0
                rows, raw = idx[0][keep], dist[0][keep]
                return rows, (-np.sqrt(np.maximum(raw, 0.0)) if self.metric == "l2" else raw)
            dots = self.vectors @ q
        if self.metric == "l2":
            dots = 2 * dots - self._sqnorm  # = -|x - q|^2 + |q|^2: same order as -distance
        rows = top_rows(dots, c)
        return rows, self.dense_at(q, rows)

    def candidates(self, query: str, q: np.ndarray | None, c: int,
                   dense_hits: tuple[np.ndarray, np.ndarray] | None = None) -> Candidates:
        """Union of the top ``c`` BM25 rows (score > 0) and top ``c`` dense rows, with both scores.

        Args:
            query: the query text (for BM25).
            q: the prepared query vector, or ``None`` when ``dense_hits`` is given.
            c: candidates per retriever.
            dense_hits: precomputed ``(rows, scores)`` of another dense retriever (e.g. a LangChain
                VectorStore); rows it did not return get a NaN dense score.
        """
        import numpy as np

        full = self.bm25_scores(query)
        b_rows = top_rows(full, c, positive=True)
        d_rows, d_scores = dense_hits if dense_hits is not None else self.dense_top(q, c)
        rows = np.union1d(b_rows, d_rows).astype(np.int64)
        b_rank = np.zeros(rows.size, dtype=np.int64)
        b_rank[np.searchsorted(rows, b_rows)] = np.arange(1, b_rows.size + 1)
        d_rank = np.zeros(rows.size, dtype=np.int64)
        d_rank[np.searchsorted(rows, d_rows)] = np.arange(1, d_rows.size + 1)
        if dense_hits is None:
            dense = self.dense_at(q, rows).astype(np.float64)
        else:
            dense = np.full(rows.size, np.nan)
            dense[np.searchsorted(rows, d_rows)] = d_scores
        return Candidates(rows, full[rows].astype(np.float64), dense, b_rank, d_rank)
