"""Pure scoring helpers: normalization rules, ordering, ``top_n``/threshold and result Documents.

Every reranker ends here, so every backend gives the same guarantees:

- **Order**: by ``relevance_score`` descending; ties keep the input order (a stable sort on
  ``(-score, input index)``).
- **Duplicates**: documents with the same ``page_content`` are scored once and each copy is kept
  (same score, input order between them, own metadata).
- **Cut**: ``score_threshold`` drops results whose *normalized* score is below it, then ``top_n``
  keeps the first ``n``.
- **Inputs are never mutated**: result Documents are new objects with a copied metadata dict.

Normalization (:data:`SCALES`), from the raw score a backend returns to ``relevance_score`` in 0..1:

==============  ===========================================  =====================================
scale           rule                                         used by
==============  ===========================================  =====================================
``probability`` kept as is (clipped to 0..1)                 DashScope (both styles), TEI
``logit``       ``sigmoid(s) = 1 / (1 + exp(-s))``            local CrossEncoder (raw logits)
``cosine``      ``(s + 1) / 2`` (clipped to 0..1)             embedding-similarity reranker
``auto``        if every raw score of the call is in 0..1,   Cohere/Jina, Xinference (vLLM and
                keep them, else ``sigmoid`` on all of them   most servers send 0..1; llama.cpp
                                                             sends logits)
``judgement``   ``s / 10`` (a 0..10 grade from an LLM)        LLM pointwise
``rank``        ``1 - position / n`` (position 0 = best)      LLM listwise
==============  ===========================================  =====================================

``auto`` decides once per call, over every batch merged, so batches of one call stay comparable;
set ``score_scale`` in ``options`` to fix it per model when you rely on a threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SCALES", "Judgement", "normalize", "ranked_indices", "result_documents", "unique_texts"]

SCALES = ("probability", "logit", "cosine", "auto", "judgement", "rank")
"""Names of the score normalization rules (see the module docstring)."""


@dataclass(frozen=True)
class Judgement:
    """The score of one distinct text.

    Attributes:
        raw: the backend's own score (``None`` when none could be obtained).
        score: the normalized 0..1 score used for order, threshold and ``relevance_score``.
        note: why the score is a fallback (set only when the backend could not score the text).
    """

    raw: float | None
    score: float
    note: str | None = None

    @property
    def fallback(self) -> bool:
        """True when the backend could not score this text (it keeps its input order, last)."""
        return self.note is not None


def _sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp = math.exp(value)
    return exp / (1.0 + exp)


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def normalize(raw: Sequence[float], scale: str) -> list[float]:
    """Map raw scores to 0..1 by the named rule (see :data:`SCALES`).

    Example:
        >>> normalize([0.0, 2.0], "logit")[0]
        0.5
        >>> normalize([-1.0, 1.0], "cosine")
        [0.0, 1.0]
    """
    if scale == "auto":
        scale = "probability" if all(0.0 <= s <= 1.0 for s in raw) else "logit"
    if scale == "probability":
        return [_clip(float(s)) for s in raw]
    if scale == "logit":
        return [_sigmoid(float(s)) for s in raw]
    if scale == "cosine":
        return [_clip((float(s) + 1.0) / 2.0) for s in raw]
    if scale == "judgement":
        return [_clip(float(s) / 10.0) for s in raw]
    if scale == "rank":
        n = max(len(raw), 1)
        return [_clip(1.0 - float(s) / n) for s in raw]
    raise ValueError(f"unknown score scale {scale!r}; use one of {', '.join(SCALES)}")


def unique_texts(texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """Distinct texts in first-seen order, and for each input the position of its distinct text.

    Example:
        >>> unique_texts(["a", "b", "a"])
        (['a', 'b'], [0, 1, 0])
    """
    position: dict[str, int] = {}
    mapping = [position.setdefault(text, len(position)) for text in texts]
    return list(position), mapping


def ranked_indices(
    judgements: Sequence[Judgement],
    mapping: Sequence[int],
    *,
    top_n: int | None = None,
    score_threshold: float | None = None,
) -> list[tuple[int, Judgement]]:
    """Input indices best first, with their judgement, after threshold and ``top_n``.

    Args:
        judgements: one per distinct text.
        mapping: for each input, the position of its distinct text (from :func:`unique_texts`).
        top_n: keep at most this many (``None`` keeps all).
        score_threshold: drop results whose normalized score is below this.

    Example:
        >>> js = [Judgement(0.1, 0.1), Judgement(0.9, 0.9)]
        >>> [i for i, _ in ranked_indices(js, [0, 1, 0])]
        [1, 0, 2]
    """
    rows = [(index, judgements[slot]) for index, slot in enumerate(mapping)]
    rows.sort(key=lambda row: (-row[1].score, row[0]))
    if score_threshold is not None:
        rows = [row for row in rows if row[1].score >= score_threshold]
    return rows[:top_n] if top_n is not None else rows


def result_documents(documents: Sequence[Any], ranked: Sequence[tuple[int, Judgement]]) -> list[Any]:
    """New Documents, best first, with ``relevance_score``, ``raw_score`` and ``rerank_index`` metadata.

    Fallback results (the backend could not score them) also get ``rerank_fallback: True`` and
    ``rerank_note`` saying why. The input Documents are not touched.
    """
    from langchain_core.documents import Document

    out = []
    for index, judgement in ranked:
        source = documents[index]
        metadata = {**source.metadata, "relevance_score": judgement.score, "raw_score": judgement.raw,
                    "rerank_index": index}
        if judgement.fallback:
            metadata["rerank_fallback"] = True
            metadata["rerank_note"] = judgement.note
        out.append(Document(page_content=source.page_content, metadata=metadata, id=source.id))
    return out
