"""Pure functions for citations and groundedness of an answer against the chunks it cites.

Rule (default, no model needed): an answer sentence is *supported* when it cites at least one
context block ``[n]`` and the share of its content units found in the cited blocks reaches
:data:`LEXICAL_SUPPORT_THRESHOLD`. Content units are CJK character bigrams plus lowercased latin
words/numbers of two or more characters. With embeddings, a sentence that misses the lexical bar
is still supported when its cosine similarity to a cited block reaches
:data:`EMBEDDING_SUPPORT_THRESHOLD`. A refusal sentence is never "unsupported".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from module_ai.chains.context import citations, split_sentences, strip_citations

__all__ = [
    "EMBEDDING_SUPPORT_THRESHOLD",
    "LEXICAL_SUPPORT_THRESHOLD",
    "check_groundedness",
    "content_units",
    "is_refusal",
    "lexical_support",
]

LEXICAL_SUPPORT_THRESHOLD = 0.5
"""Share of a sentence's content units that must occur in its cited blocks."""
EMBEDDING_SUPPORT_THRESHOLD = 0.6
"""Cosine similarity (unit vectors) to a cited block that also counts as support."""

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_LATIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-.]*[A-Za-z0-9]|[0-9]")
_PUNCT_SPACE = " \t\r\n。.!！?？;；,，:：、\"'“”"


def is_refusal(answer: str, refusal: str) -> bool:
    """True when ``answer`` gives nothing: empty, only citation markers (``[1]``), or the refusal sentence.

    Example:
        >>> is_refusal("[1]", "根据已知信息无法回答"), is_refusal("根据已知信息无法回答。", "根据已知信息无法回答")
        (True, True)
    """
    bare = strip_citations(answer).strip(_PUNCT_SPACE)
    return not bare or bare == refusal.strip(_PUNCT_SPACE)


def content_units(text: str) -> set[str]:
    """CJK bigrams (single characters for one-character runs) and latin words of 2+ characters."""
    text = strip_citations(text)
    units: set[str] = set()
    for run in _CJK_RUN.findall(text):
        units.update(run[i:i + 2] for i in range(max(1, len(run) - 1)))
    units.update(w.lower() for w in _LATIN.findall(text) if len(w) >= 2)
    return units


def lexical_support(sentence: str, evidence: str) -> float:
    """Share of the sentence's content units found in ``evidence`` (1.0 for a sentence with none)."""
    units = content_units(sentence)
    if not units:
        return 1.0
    have = content_units(evidence)
    return len(units & have) / len(units)


def check_groundedness(
    answer: str,
    blocks: Sequence[str],
    *,
    refusal: str | None = None,
    embed: Callable[[list[str]], list[list[float]]] | None = None,
    judge: Callable[[str, str], bool] | None = None,
) -> dict[str, Any]:
    """Check each answer sentence against the blocks it cites (``blocks[n-1]`` is block ``[n]``).

    Returns:
        ``{"grounded": bool, "sentences": [{"text", "citations", "support", "supported"}],
        "unsupported": [sentence, ...], "bad_citations": [n, ...]}``.
    """
    report: list[dict[str, Any]] = []
    bad: list[int] = []
    for sentence in split_sentences(answer):
        if refusal and refusal in sentence:
            continue
        cites = citations(sentence)
        valid = [n for n in cites if 1 <= n <= len(blocks)]
        bad.extend(n for n in cites if n not in valid and n not in bad)
        evidence = "\n".join(blocks[n - 1] for n in valid)
        support = lexical_support(sentence, evidence) if valid else 0.0
        supported = bool(valid) and support >= LEXICAL_SUPPORT_THRESHOLD
        if valid and not supported and embed is not None:
            support = max(support, _embedding_support(sentence, [blocks[n - 1] for n in valid], embed))
            supported = support >= EMBEDDING_SUPPORT_THRESHOLD
        if valid and judge is not None:
            supported = judge(sentence, evidence)
        report.append({"text": sentence, "citations": cites, "support": round(support, 3),
                       "supported": supported})
    unsupported = [r["text"] for r in report if not r["supported"]]
    return {"grounded": not unsupported and not bad, "sentences": report, "unsupported": unsupported,
            "bad_citations": bad}


def _embedding_support(sentence: str, evidence: list[str], embed: Callable) -> float:
    vectors = embed([sentence, *evidence])
    first = vectors[0]
    norm = sum(x * x for x in first) ** 0.5 or 1.0
    best = 0.0
    for other in vectors[1:]:
        other_norm = sum(x * x for x in other) ** 0.5 or 1.0
        best = max(best, sum(a * b for a, b in zip(first, other)) / (norm * other_norm))
    return best
