"""Rank fusion as pure functions: reciprocal rank fusion and weighted score fusion.

Two forms of the same arithmetic:

* :func:`rrf_fuse` and :func:`weighted_fuse` take plain Python rankings / score maps (one per
  retriever) and return a new sorted ``[(id, fused_score), ...]`` list. Inputs are never mutated.
* :func:`fuse_arrays` does the same on ``(queries, candidates)`` NumPy arrays; the knowledge base and
  the evaluator use it (one query at a time, or every query of a benchmark at once).

Conventions:

* Ranks start at :data:`RANK_BASE` (1): the top document of a list has rank 1.
* RRF score of a document = ``sum_i w_i / (k + rank_i)`` over the lists that contain it
  (Cormack, Clarke and Buettcher, SIGIR 2009), with ``k`` = :data:`RRF_K` (60) unless given.
* Weighted fusion normalizes each list's scores, then sums ``w_i * norm_i``. ``"minmax"`` maps a
  list to [0, 1]; ``"zscore"`` to (score - mean) / std. A list whose scores are all equal carries no
  ranking information and normalizes to 0. A document missing from a list gets that list's lowest
  normalized score (0 for min-max).
* Ties keep first-seen order (list order, then position), so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import numpy as np

__all__ = ["NORMS", "RANK_BASE", "RRF_K", "fuse_arrays", "normalize_scores", "rrf_fuse", "weighted_fuse"]

RRF_K = 60
"""RRF smoothing constant ``k`` (the value of the original paper; larger k flattens rank differences)."""

RANK_BASE = 1
"""Rank of the first document of a list."""

NORMS = ("minmax", "zscore")

K = TypeVar("K", bound=Hashable)


def _weights(n: int, weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0] * n
    if len(weights) != n:
        raise ValueError(f"got {len(weights)} weights for {n} result lists")
    return [float(w) for w in weights]


def _sorted(scores: dict[K, float], limit: int | None) -> list[tuple[K, float]]:
    order = {key: i for i, key in enumerate(scores)}
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))
    return ranked if limit is None else ranked[:limit]


def rrf_fuse(
    rankings: Sequence[Sequence[K]],
    weights: Sequence[float] | None = None,
    *,
    k: float = RRF_K,
    limit: int | None = None,
) -> list[tuple[K, float]]:
    """Fuse ranked id lists by weighted reciprocal rank fusion.

    Args:
        rankings: one list of ids per retriever, best first. Duplicates inside a list count once
            (at their best rank).
        weights: one weight per list; default all 1.
        k: the RRF constant (:data:`RRF_K`).
        limit: keep only the top ``limit`` results.

    Returns:
        ``[(id, score), ...]`` sorted by fused score, best first.

    Example:
        >>> rrf_fuse([["a", "b"], ["b", "c"]], k=1)
        [('b', 0.8333333333333333), ('a', 0.5), ('c', 0.3333333333333333)]
    """
    ws = _weights(len(rankings), weights)
    fused: dict[K, float] = {}
    for ranking, w in zip(rankings, ws):
        seen: set[K] = set()
        for pos, key in enumerate(ranking):
            if key in seen:
                continue
            seen.add(key)
            fused[key] = fused.get(key, 0.0) + w / (k + RANK_BASE + pos)
    return _sorted(fused, limit)


def normalize_scores(scores: Mapping[K, float], norm: str = "minmax") -> dict[K, float]:
    """Return a new map with the scores min-max or z-score normalized (see module docstring)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
    if not scores:
        return {}
    vals = [float(v) for v in scores.values()]
    if norm == "minmax":
        lo, span = min(vals), max(vals) - min(vals)
        return {key: ((float(v) - lo) / span if span > 0 else 0.0) for key, v in scores.items()}
    mean = sum(vals) / len(vals)
    std = (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5
    return {key: ((float(v) - mean) / std if std > 0 else 0.0) for key, v in scores.items()}


def weighted_fuse(
    score_lists: Sequence[Mapping[K, float]],
    weights: Sequence[float] | None = None,
    *,
    norm: str = "minmax",
    limit: int | None = None,
) -> list[tuple[K, float]]:
    """Fuse per-retriever score maps by a weighted sum of normalized scores.

    Args:
        score_lists: one ``{id: score}`` map per retriever, higher is better.
        weights: one weight per map; default all 1.
        norm: ``"minmax"`` or ``"zscore"``.
        limit: keep only the top ``limit`` results.

    Returns:
        ``[(id, score), ...]`` sorted by fused score, best first.

    Example:
        >>> weighted_fuse([{"a": 3.0, "b": 1.0}, {"b": 0.9, "c": 0.1}], [0.5, 0.5])
        [('a', 0.5), ('b', 0.5), ('c', 0.0)]
    """
    ws = _weights(len(score_lists), weights)
    normed = [normalize_scores(s, norm) for s in score_lists]
    floors = [min(n.values(), default=0.0) for n in normed]
    keys: dict[K, None] = {}
    for scores in score_lists:
        keys.update(dict.fromkeys(scores))
    fused = {key: sum(w * n.get(key, lo) for n, w, lo in zip(normed, ws, floors)) for key in keys}
    return _sorted(fused, limit)


def _normalize_rows(x: np.ndarray, norm: str) -> np.ndarray:
    """Normalize each row over its finite entries; NaN (missing) becomes the row's lowest value."""
    import numpy as np

    finite = np.isfinite(x)
    if norm == "minmax":
        lo = np.min(np.where(finite, x, np.inf), axis=1, keepdims=True)
        hi = np.max(np.where(finite, x, -np.inf), axis=1, keepdims=True)
        span = hi - lo
        ok = np.isfinite(span) & (span > 0)
        out = np.where(ok, (x - lo) / np.where(ok, span, 1.0), 0.0)
    elif norm == "zscore":
        cnt = np.maximum(finite.sum(axis=1, keepdims=True), 1)
        mean = np.where(finite, x, 0.0).sum(axis=1, keepdims=True) / cnt
        var = (np.where(finite, x - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / cnt
        std = np.sqrt(var)
        out = np.where(std > 0, (x - mean) / np.where(std > 0, std, 1.0), 0.0)
    else:
        raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
    floor = np.min(np.where(finite, out, np.inf), axis=1, keepdims=True)
    return np.where(finite, out, np.where(np.isfinite(floor), floor, 0.0))


def fuse_arrays(
    scores: Sequence[np.ndarray],
    ranks: Sequence[np.ndarray],
    weights: Sequence[float],
    *,
    method: str = "rrf",
    norm: str = "minmax",
    k: float = RRF_K,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Vectorized fusion over ``(queries, candidates)`` arrays, one pair per retriever.

    Args:
        scores: per retriever, the candidates' scores (NaN = not scored by that retriever).
        ranks: per retriever, the candidates' ranks from :data:`RANK_BASE` (0 = not in its list).
        weights: one weight per retriever.
        method: ``"rrf"`` (uses ``ranks``) or ``"weighted"`` (uses ``scores``).
        norm: ``"minmax"`` or ``"zscore"`` for ``"weighted"``.
        k: the RRF constant.
        valid: boolean mask of real candidates (padding is False); padding gets ``-inf``.

    Returns:
        The fused scores, same shape as the inputs; higher is better.
    """
    import numpy as np

    if len(scores) != len(ranks) or len(weights) != len(scores):
        raise ValueError("fuse_arrays needs one score array, rank array and weight per retriever")
    fused = np.zeros(np.shape(scores[0]), dtype=np.float64)
    for s, r, w in zip(scores, ranks, weights):
        if method == "rrf":
            fused += np.where(r > 0, w / (k + np.maximum(r, RANK_BASE)), 0.0)
        elif method == "weighted":
            fused += w * _normalize_rows(np.asarray(s, dtype=np.float64), norm)
        else:
            raise ValueError(f"fusion method must be 'rrf' or 'weighted', not {method!r}")
    return fused if valid is None else np.where(valid, fused, -np.inf)
